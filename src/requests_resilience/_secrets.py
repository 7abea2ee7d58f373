"""Keeping credentials out of messages, logs and spans.

A policy that holds a credential exposes it through a `secrets` attribute (a tuple of
strings). The pipeline gathers them into one `Redactor` when it is built, and every
place that turns server input or request data into text (exception messages, log
events, span attributes) passes that text through `call.redactor`.

Redaction removes the whole secret and also every 8-character piece of it, so a server
that echoes a truncated key ("sk-abc123...") in an error body does not leak it either.

Some text is made where no call is at hand: the message of an exception built from a
response (a reason phrase such as ``401 Bad key sk-...``), a URL after a redirect (the
server chose it; its path may hold the key), the state of an exception being pickled.
For those, every live `Redactor` also registers its secrets of at least 8 characters
with the process (weakly: a pipeline that is gone takes its secrets with it), and
`redact_known` removes all of them. Exception messages, `_safe_url` (the URL of every
message and log event) and pickled exceptions go through it, so a server-controlled
text cannot carry a key of this process into any of them. Shorter secrets are left to
the call's own redactor: a 3-character "secret" removed from every text of the process
would mangle unrelated messages.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable

__all__ = ["NO_SECRETS", "REDACTED", "Redactor", "known_secrets", "redact_known"]

REDACTED = "[REDACTED]"
_PIECE = 8


class Redactor:
    """Replaces known secrets, and any 8-character piece of them, in text.

    Example:
        >>> Redactor(["sk-0123456789abcdef"]).redact("bad key sk-01234567...")
        'bad key [REDACTED]...'
    """

    __slots__ = ("__weakref__", "_pieces", "_secrets")

    def __init__(self, secrets: Iterable[str] = (), *, register: bool = True) -> None:
        unique = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)
        self._secrets: tuple[str, ...] = tuple(unique)
        pieces: list[str] = []
        for secret in unique:
            if len(secret) > _PIECE:
                pieces.extend(secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1))
        self._pieces: tuple[str, ...] = tuple(dict.fromkeys(pieces))
        if register and any(len(s) >= _PIECE for s in unique):
            _REGISTRY.add(self)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The whole secrets, longest first (never shown by ``repr``)."""
        return self._secrets

    def redact(self, text: str) -> str:
        """Return `text` with every secret and every 8-character piece of one replaced."""
        if not self._secrets or not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for piece in self._pieces:
            if piece in text:
                text = text.replace(piece, REDACTED)
        return text

    def redact_bytes(self, data: bytes) -> bytes:
        """`redact` for a body: the UTF-8 form of each secret and piece is replaced."""
        if not self._secrets or not data:
            return data
        marker = REDACTED.encode()
        for text in (*self._secrets, *self._pieces):
            needle = text.encode("utf-8", errors="ignore")
            if needle and needle in data:
                data = data.replace(needle, marker)
        return data

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._secrets)} secret(s)>)"


class _Registry:
    """The secrets of every live `Redactor` (weakly held), as one combined redactor."""

    def __init__(self) -> None:
        # Re-entrant: a weakref callback may run (garbage collection) while it is held.
        self._lock = threading.RLock()
        self._refs: dict[int, weakref.ref[Redactor]] = {}
        self._combined: Redactor | None = None

    def add(self, redactor: Redactor) -> None:
        key = id(redactor)

        def forget(ref: weakref.ref[Redactor], key: int = key) -> None:
            with self._lock:
                if self._refs.get(key) is ref:
                    del self._refs[key]
                    self._combined = None

        with self._lock:
            self._refs[key] = weakref.ref(redactor, forget)
            self._combined = None

    def combined(self) -> Redactor:
        combined = self._combined
        if combined is not None:
            return combined
        with self._lock:
            if self._combined is None:
                secrets: set[str] = set()
                for ref in list(self._refs.values()):
                    live = ref()
                    if live is not None:
                        secrets.update(s for s in live.secrets if len(s) >= _PIECE)
                self._combined = Redactor(secrets, register=False)
            return self._combined


_REGISTRY = _Registry()

NO_SECRETS = Redactor()


def known_secrets() -> Redactor:
    """One redactor for every secret (of 8 characters or more) of the live redactors."""
    return _REGISTRY.combined()


def redact_known(text: str) -> str:
    """Remove every secret this process knows of (see the module docstring) from `text`.

    Meant for text built where no call's redactor is at hand, off the happy path: an
    exception's message, a URL for a message or an event.

    Example:
        >>> _ = Redactor(["sk-live-0123456789abcdef"])  # kept alive by `_` here
        >>> redact_known("GET https://api.example.com/k/sk-live-0123456789abcdef/x")
        'GET https://api.example.com/k/[REDACTED]/x'
    """
    if not text:
        return text
    return _REGISTRY.combined().redact(text)
