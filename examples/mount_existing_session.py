"""Mount a resilience pipeline on a Session you already have.

Only URLs under the prefix go through the pipeline; everything else on the session
keeps its adapters, cookies and headers. Runs against the embedded fake Vinci server:

    python examples/mount_existing_session.py
"""

from __future__ import annotations

import requests

from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    InsufficientBalanceError,
    Pipeline,
    Retry,
    StatusErrors,
    attempts_of,
    mount,
)
from requests_resilience.testing import FakeVinciServer, Fault


def main() -> None:
    with FakeVinciServer() as server, requests.Session() as session:
        session.headers["User-Agent"] = "billing-worker/2"  # yours, kept as it is
        mount(
            session,
            server.base_url + "/",
            Pipeline(
                StatusErrors(),  # the final 4xx/5xx becomes a typed exception
                Retry(initial_delay=0.05, timeout=10),  # jittered backoff, Retry-After
                CircuitBreaker(),  # fails fast while the server keeps failing
                APIKeyAuth(server.api_key),  # or APIKeyAuth(env_var="VINCI_API_KEY")
            ),
        )

        server.script(Fault.status(503), Fault.status(429, retry_after="0.1"))
        response = session.get(server.url("/billing/balance"))
        print("balance:", response.json()["balance_usd"])
        print("attempts:", [attempt.outcome for attempt in attempts_of(response)])

        server.balance_usd = 0.10
        try:
            session.post(server.url("/generate/text-to-video"), json={"prompt": "a fox"})
        except InsufficientBalanceError as exc:  # also a requests.HTTPError
            print(f"refused: {exc.status_code} {exc.detail}")


if __name__ == "__main__":
    main()
