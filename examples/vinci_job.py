"""Create a Vinci job, wait for it with progress, print the video URL.

Runs against the embedded fake Vinci server, so it needs no key and no network:

    python examples/vinci_job.py

Against the real API, drop the server and let the client read VINCI_API_KEY:

    with VinciClient() as client:
        ...
"""

from __future__ import annotations

from requests_resilience.testing import FakeVinciServer
from requests_resilience.vinci import JobStatus, VinciClient


def show(status: JobStatus) -> None:
    print(f"  {status.status:<10} {status.progress:5.1f}%")


def main() -> None:
    with (
        FakeVinciServer(polls_to_complete=4) as server,
        VinciClient(api_key=server.api_key, base_url=server.base_url) as client,
    ):
        print(f"balance: ${client.balance().balance_usd:.2f}")
        job = client.text_to_video("Calm ocean at sunrise", duration_seconds=5)
        print(f"created {job.request_id}, estimated ${job.estimated_cost_usd:.2f}")
        # The real API is polled every 5 s and more; the fake server is quick.
        done = client.wait(job, timeout=60, poll_interval=0.1, on_progress=show)
        print(f"video: {done.video_url}")


if __name__ == "__main__":
    main()
