"""A fake Vinci API server on loopback, with scripted faults, for testing clients.

The server is a real HTTP/1.1 server (werkzeug, keep-alive, one thread per connection)
on ``127.0.0.1`` and an ephemeral port. It implements the endpoints of the Vinci API as
documented (generation, status polling, billing, API keys, auth, optional rate limits) and
misbehaves on demand: scripted :class:`Fault` objects, outage windows and added latency.
It records every request so tests can assert what their client sent.

Layout of the private modules:

- ``_server``: :class:`FakeVinciServer`, the lifecycle and the public controls;
- ``_fake_vinci_app``: the WSGI app (routing, auth, rate limits, endpoints, faults);
- ``_state``: the lock-guarded state, :class:`RateLimitConfig`, :class:`RecordedRequest`;
- ``_faults``: :class:`Fault` and the answers it shapes;
- ``_wsgi_handler``: the keep-alive request handler (drains, resets, quiet logging).
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections.abc import Iterable
from decimal import Decimal
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, make_server

from requests_resilience.testing._fake_vinci_app import BASE_PATH, FakeVinciApp
from requests_resilience.testing._faults import Fault
from requests_resilience.testing._state import (
    DEFAULT_API_KEY,
    RateLimitConfig,
    RecordedRequest,
    ServerOptions,
    VinciState,
    to_money,
)
from requests_resilience.testing._wsgi_handler import ConnectionTracker, handler_class

__all__ = ["FakeVinciServer", "Fault", "RateLimitConfig", "RecordedRequest"]

HOST = "127.0.0.1"
_POLL_INTERVAL = 0.01  # how often serve_forever checks for shutdown: stop() waits at most this
_JOIN_TIMEOUT = 1.0  # stop() waits at most this for connection threads to end


def _normalise_path(path: str | None, *, option: str = "path") -> str | None:
    if path is None:
        return None
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{option} must start with '/', got {path!r}")
    if path == BASE_PATH or path.startswith(BASE_PATH + "/"):
        return path[len(BASE_PATH) :] or "/"
    return path


def _check_seconds(value: float, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{option} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{option} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class FakeVinciServer:
    """A fake Vinci API server on ``127.0.0.1``, started and stopped from Python.

    It serves the documented endpoints under ``/api/v1`` over real HTTP/1.1 (keep-alive),
    so a client under test talks to it exactly as to the real API. Jobs advance one step
    per status poll: ``pending`` on the first poll, ``processing`` (with ``progress``) on
    the next ones, ``completed`` on poll number ``polls_to_complete``. Scripted faults,
    outages and latency make it misbehave; every request is recorded.

    Also available as the ``fake_vinci`` pytest fixture (a started server per test).

    Example:
        >>> import requests
        >>> from requests_resilience.testing import FakeVinciServer, Fault
        >>> with FakeVinciServer(balance_usd=10.0) as server:
        ...     server.script(Fault.status(503), path="/generate/text-to-video")
        ...     headers = {"Authorization": f"Bearer {server.api_key}"}
        ...     first = requests.post(
        ...         server.url("/generate/text-to-video"), json={"prompt": "a fox"},
        ...         headers=headers, timeout=5,
        ...     )
        ...     second = requests.post(
        ...         server.url("/generate/text-to-video"), json={"prompt": "a fox"},
        ...         headers=headers, timeout=5,
        ...     )
        ...     (first.status_code, second.json()["status"], server.jobs_created)
        (503, 'pending', 1)

    The controls and observations are thread-safe; ``start()`` and ``stop()`` are meant to
    be called from one thread.
    """

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        balance_usd: float = 100.0,
        total_spent_usd: float = 0.0,
        price_per_second: float = 0.05,
        polls_to_complete: int = 3,
        max_upload_bytes: int = 10 * 1024 * 1024,
        rate_limit: RateLimitConfig | None = None,
        send_request_id_header: bool = False,
        port: int = 0,
        host: str = HOST,
    ) -> None:
        """Configure the server; nothing listens until :meth:`start`.

        Args:
            api_keys: The valid API keys (``Authorization: Bearer <key>``); the first is
                :attr:`api_key`. More can be created through ``POST /keys``.
            balance_usd: The starting balance; jobs are charged against it at creation.
            total_spent_usd: The starting ``total_spent_usd`` of the account.
            price_per_second: Dollars per second of video (the API's price is 0.05).
            polls_to_complete: The status poll on which a job ends (1 or more).
            max_upload_bytes: Request bodies larger than this get 413 (the real limit is
                not documented).
            rate_limit: Per-key rate limiting with ``X-RateLimit-*`` headers; off if None.
            send_request_id_header: Add an ``X-Request-ID`` header to every answer (the
                real API does not document one).
            port: The port to listen on; 0 picks a free one.
            host: The address to listen on; loopback (``127.0.0.1``) by default. The
                server is for tests: give another address only on a network you trust.

        Raises:
            ValueError: If an option is out of range; the message names the option.
        """
        if isinstance(api_keys, str):
            raise ValueError("api_keys must be an iterable of keys, not a single str")
        self._options = ServerOptions(
            api_keys=tuple(api_keys),
            balance_usd=to_money(balance_usd, option="balance_usd"),
            total_spent_usd=to_money(total_spent_usd, option="total_spent_usd"),
            price_per_second=_price(price_per_second),
            polls_to_complete=polls_to_complete,
            max_upload_bytes=max_upload_bytes,
            rate_limit=rate_limit,
            send_request_id_header=send_request_id_header,
            port=port,
            host=host,
        )
        self._state = VinciState(self._options)
        self._tracker = ConnectionTracker(self._state.lock)
        self._app = FakeVinciApp(self._state, self._wait)
        self._stopping = threading.Event()
        self._httpd: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "stopped"
        return f"<FakeVinciServer {where}>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeVinciServer:
        """Listen and serve in a background thread.

        Returns:
            The server itself, started.

        Raises:
            RuntimeError: If it is already running.
            OSError: If the port cannot be bound.
        """
        if self._httpd is not None:
            raise RuntimeError("the fake Vinci server is already running")
        self._stopping = threading.Event()
        try:
            httpd = make_server(
                self._options.host,
                self._options.port,
                self._app,
                threaded=True,
                request_handler=handler_class(self._tracker),
            )
        except SystemExit as exc:  # werkzeug exits when the port is taken
            where = f"{self._options.host}:{self._options.port}"
            raise OSError(f"cannot listen on {where}") from exc
        # Connection threads are daemons, and stop() closes their sockets itself: do not
        # let server_close() join them (a kept-alive idle connection would block it).
        httpd.block_on_close = False  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"fake-vinci-server:{httpd.port}",
            daemon=True,
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every client connection and end stalled faults.

        Returns promptly (a few milliseconds) even while requests are stalled or delayed:
        their waits end and their connections are closed. Stopping a stopped server does
        nothing.
        """
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        self._tracker.close_all(timeout=_JOIN_TIMEOUT)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeVinciServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``; return True at once if the server is stopping."""
        return self._stopping.wait(seconds)

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    @property
    def host(self) -> str:
        """The address the server listens on (``127.0.0.1`` unless ``host`` was given)."""
        return self._options.host

    @property
    def port(self) -> int:
        """The port the server listens on.

        Raises:
            RuntimeError: If the server is not running.
        """
        if self._httpd is None:
            raise RuntimeError("the fake Vinci server is not running: call start() first")
        return self._httpd.port

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://127.0.0.1:<port>/api/v1``."""
        host = self._options.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}{BASE_PATH}"

    def url(self, path: str) -> str:
        """Return the URL of ``path`` relative to the API base (``"/billing/balance"``)."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def api_key(self) -> str:
        """The first valid API key given to the server."""
        return self._options.api_keys[0]

    # -- faults -------------------------------------------------------------------------

    def script(
        self,
        *faults: Fault | Iterable[Fault],
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """Queue faults, one per next request matching ``path`` and ``method``, in order.

        Each matching request takes the oldest queued fault it matches; requests that
        match no queued fault are served normally. A scripted fault takes precedence over
        an outage.

        Args:
            *faults: The faults, in the order they apply; a sequence of faults (such
                as ``Fault.outage(3)``) counts as its items.
            path: Only requests to this path, relative to the API base
                (``"/generate/text-to-video"``); ``fnmatch`` patterns such as
                ``"/status/*"`` work. None matches every path.
            method: Only requests with this method (any case). None matches every method.

        Raises:
            TypeError: If an item of ``faults`` is not a :class:`Fault`.
            ValueError: If ``path`` does not start with ``/``.
        """
        queued: list[Fault] = []
        for item in faults:
            group: list[object] = [item] if isinstance(item, Fault) else _fault_group(item)
            for fault in group:
                if not isinstance(fault, Fault):
                    raise TypeError(f"script() takes Fault objects, got {fault!r}")
                queued.append(fault)
        self._state.script(queued, _normalise_path(path), method.upper() if method else None)

    def outage(
        self, seconds: float, *, status: int = 503, retry_after: str | float | None = None
    ) -> None:
        """Answer every request with ``status`` for the next ``seconds`` of real time.

        The body is ``{"detail": "<reason phrase>"}``. Requests with a scripted fault get
        their fault instead. A new outage replaces the current one.

        Args:
            seconds: How long the outage lasts, from now (``time.monotonic``).
            status: The status to answer, 200 to 599.
            retry_after: Sent verbatim as ``Retry-After``; none if None.
        """
        duration = _check_seconds(seconds, "seconds")
        probe = Fault.status(status, retry_after=retry_after)  # validates status, retry_after
        header = dict(probe.headers).get("Retry-After")
        self._state.outage(duration, status, header)

    def set_latency(self, seconds: float) -> None:
        """Wait ``seconds`` before handling every request (0 turns latency off)."""
        self._state.set_latency(_check_seconds(seconds, "seconds"))

    def clear_faults(self) -> None:
        """Drop queued faults, the outage, the latency and pending job failures."""
        self._state.clear_faults()

    def fail_next_jobs(self, n: int = 1, *, error: str = "Content policy violation") -> None:
        """Make the next ``n`` created jobs end ``failed`` with ``error`` instead of completing.

        Raises:
            ValueError: If ``n`` is negative or ``error`` is empty.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        if not isinstance(error, str) or not error:
            raise ValueError("error must be a non-empty string")
        self._state.fail_next_jobs(n, error)

    @property
    def pending_faults(self) -> int:
        """How many scripted faults no request has taken yet."""
        return self._state.pending_faults

    # -- observation --------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Every request received, faulted and unauthorised ones included."""
        return self._state.request_count

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received, oldest first (a copy)."""
        return self._state.requests

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Count the recorded requests with this method and path (None matches any).

        ``path`` is relative to the API base and may be an ``fnmatch`` pattern.
        """
        wanted_path = _normalise_path(path)
        wanted_method = method.upper() if method else None
        return sum(
            1
            for request in self._state.requests
            if (wanted_method is None or request.method == wanted_method)
            and (wanted_path is None or fnmatch.fnmatchcase(request.path, wanted_path))
        )

    @property
    def jobs_created(self) -> int:
        """Jobs actually created, that is, charged."""
        return self._state.jobs_created

    @property
    def balance_usd(self) -> float:
        """The account balance in dollars; settable (for example, to test 402)."""
        return float(self._state.balance)

    @balance_usd.setter
    def balance_usd(self, value: float) -> None:
        self._state.balance = to_money(value, option="balance_usd")

    @property
    def total_spent_usd(self) -> float:
        """Dollars charged so far, plus the starting ``total_spent_usd``."""
        return float(self._state.spent)

    def reset_stats(self) -> None:
        """Forget the request count, the recorded requests and ``jobs_created``.

        The balance, jobs, keys and faults are kept.
        """
        self._state.reset_stats()


def _fault_group(item: object) -> list[object]:
    if isinstance(item, (str, bytes)) or not isinstance(item, Iterable):
        raise TypeError(f"script() takes Fault objects, got {item!r}")
    return list(item)


def _price(value: float) -> Decimal:
    price = Decimal(str(value))
    if not price.is_finite() or price < 0:
        raise ValueError(f"price_per_second must be a finite amount >= 0, got {value!r}")
    return price
