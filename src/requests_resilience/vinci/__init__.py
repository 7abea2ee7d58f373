"""The Vinci video API, resilient: a preset pipeline, a typed client, a CLI and a demo.

Mount the preset on a session of your own::

    import requests
    from requests_resilience import vinci

    session = vinci.mount(requests.Session())  # the key from VINCI_API_KEY

or use the typed client::

    from requests_resilience.vinci import VinciClient

    with VinciClient() as client:
        job = client.text_to_video("Calm ocean at sunrise", duration_seconds=5)
        print(client.wait(job).video_url)

or, in asyncio code, ``AsyncVinciClient`` (the same methods, awaited; needs httpx),
or the command line: ``vinci demo`` (no key, no network), ``vinci generate "..." --wait``.
"""

from requests_resilience.vinci._async_client import AsyncVinciClient
from requests_resilience.vinci._balance import BalanceGuard
from requests_resilience.vinci._client import ImageInput, VinciClient
from requests_resilience.vinci._demo import DemoReport, print_report, run_demo
from requests_resilience.vinci._errors import (
    JobFailedError,
    JobTimeoutError,
    UnexpectedResponseError,
    VinciInputError,
)
from requests_resilience.vinci._models import (
    ASPECT_RATIOS,
    JOB_STATES,
    APIKey,
    AspectRatio,
    Balance,
    Job,
    JobState,
    JobStatus,
    KeyInfo,
    RevokedKey,
    Usage,
)
from requests_resilience.vinci._preset import (
    API_KEY_ENV_VAR,
    DEFAULT,
    DEFAULT_BASE_URL,
    build_pipeline,
    mount,
)
from requests_resilience.vinci._wait import PollSchedule, ProgressCallback

__all__ = [
    "API_KEY_ENV_VAR",
    "ASPECT_RATIOS",
    "DEFAULT",
    "DEFAULT_BASE_URL",
    "JOB_STATES",
    "APIKey",
    "AspectRatio",
    "AsyncVinciClient",
    "Balance",
    "BalanceGuard",
    "DemoReport",
    "ImageInput",
    "Job",
    "JobFailedError",
    "JobState",
    "JobStatus",
    "JobTimeoutError",
    "KeyInfo",
    "PollSchedule",
    "ProgressCallback",
    "RevokedKey",
    "UnexpectedResponseError",
    "Usage",
    "VinciClient",
    "VinciInputError",
    "build_pipeline",
    "mount",
    "print_report",
    "run_demo",
]
