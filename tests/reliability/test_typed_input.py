"""Every public exception survives pickling, and a large valid JSON answer is JSON.

- Each exception class exported by ``requests_resilience`` and
  ``requests_resilience.vinci`` (found from their ``__all__``, so a new one is covered
  without editing this file) is built with its attributes, pickled and unpickled: the
  copy has the same type, message and attributes. Before the change (commit a1dc275)
  2 of the 25 could not be unpickled (`JobFailedError`, `JobTimeoutError`); after, 0.
- A loopback server answers a job status with a valid 5 MB JSON object: before, the
  client raised `UnexpectedResponseError` ("the body is not JSON": any body over 1 MiB
  was not parsed); after, the status is read.

The bad-option rows of item 9 are in ``test_bad_configuration.py``.
"""

from __future__ import annotations

import inspect
import json
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

import requests_resilience
import requests_resilience.vinci
from requests_resilience import APIStatusError, Attempt, RateLimitError
from requests_resilience.vinci import JobFailedError, JobStatus, JobTimeoutError, VinciClient
from tests.helpers import prepared, response
from tests.reliability.test_hostile_text import Server

STATUS = JobStatus(request_id="job-1", status="failed", progress=0.0, error="the model fell over")

#: Arguments for the classes whose constructor is not ``(message, **attributes)``.
SPECIAL: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "JobFailedError": ((STATUS,), {}),
    "JobTimeoutError": (("job-1", 300.0, STATUS), {}),
    "UnexpectedResponseError": (("unexpected status answer",), {"request_id": "job-1"}),
}


def exception_classes() -> Iterator[type[BaseException]]:
    """Every exception class in the public ``__all__`` of the package and of vinci."""
    for module in (requests_resilience, requests_resilience.vinci):
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, BaseException):
                yield value


def build(cls: type[BaseException]) -> BaseException:
    """An instance of `cls` with its attributes set (history too, for APIError)."""
    args, kwargs = SPECIAL.get(cls.__name__, (("something went wrong",), {}))
    if issubclass(cls, APIStatusError):
        kwargs = {"status_code": 503, "request_id": "req-9", "detail": "busy"}
        if issubclass(cls, RateLimitError):
            kwargs["retry_after"] = 2.5
        kwargs["response"] = response(503, {"detail": "busy"}, request=prepared())
    error = cls(*args, **kwargs)
    if isinstance(error, requests_resilience.APIError):
        error.history = (Attempt(number=1, status_code=503, reason="status 503"),)
    return error


def attributes(error: BaseException) -> dict[str, Any]:
    """The attributes to compare: everything but the request and response objects."""
    values = {k: v for k, v in vars(error).items() if k not in {"request", "response"}}
    values["args"] = error.args
    values["str"] = str(error)
    return values


CLASSES = sorted(exception_classes(), key=lambda cls: cls.__name__)


def test_the_enumeration_finds_every_exception() -> None:
    """The enumeration is not empty and includes the two that did not unpickle before."""
    names = {cls.__name__ for cls in CLASSES}
    assert len(CLASSES) == 26  # ConcurrencyLimitError joined
    assert {"JobFailedError", "JobTimeoutError", "APIError", "ConfigurationError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_public_exception_pickles_with_its_attributes(cls: type[BaseException]) -> None:
    """Pickled and back: same type, same message, same attributes."""
    error = build(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert attributes(copy) == attributes(error)
    response = getattr(error, "response", None)
    if response is not None:
        copied = copy.response  # type: ignore[attr-defined] # an APIError's
        assert copied.status_code == response.status_code
        assert copied.content == response.content


def test_a_job_failed_error_keeps_its_status() -> None:
    """JobFailedError after a round trip: request_id, error and the JobStatus itself."""
    copy = pickle.loads(pickle.dumps(JobFailedError(STATUS)))
    assert (copy.request_id, copy.error, copy.status) == ("job-1", "the model fell over", STATUS)


def test_a_job_timeout_error_keeps_its_deadline() -> None:
    """JobTimeoutError after a round trip: still a TimeoutError, with timeout and last status."""
    copy = pickle.loads(pickle.dumps(JobTimeoutError("job-1", 300.0, STATUS)))
    assert isinstance(copy, JobTimeoutError)
    assert isinstance(copy, TimeoutError)
    assert (copy.request_id, copy.timeout, copy.last_status) == ("job-1", 300.0, STATUS)


def test_a_valid_5_mb_json_answer_is_read() -> None:
    """A 5 MB job status (valid JSON) from a loopback server parses into a JobStatus."""
    big = {
        "request_id": "job-1",
        "status": "processing",
        "progress": 40,
        "frames": ["f" * 100] * 50_000,
    }
    body = json.dumps(big).encode()
    assert len(body) > 5_000_000
    server = Server(lambda path: (200, "OK", {"Content-Type": "application/json"}, body)).start()
    try:
        base = f"http://127.0.0.1:{server.port}/api/v1"
        with VinciClient(api_key="sk-json-0123456789abcdef", base_url=base) as client:
            status = client.status("job-1")
    finally:
        server.stop()
    assert (status.request_id, status.status, status.progress) == ("job-1", "processing", 40.0)
