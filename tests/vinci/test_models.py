"""The result dataclasses and their defensive parsers."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import pytest

from requests_resilience.vinci import APIKey, JobStatus, UnexpectedResponseError
from requests_resilience.vinci._models import (
    parse_api_key,
    parse_balance,
    parse_job,
    parse_job_status,
    parse_key_list,
    parse_revoked,
    parse_usage,
)

JOB = {
    "request_id": "req_1",
    "status": "pending",
    "estimated_cost_usd": 0.25,
    "estimated_duration_seconds": 5,
}


def test_a_job_is_read() -> None:
    """A documented creation answer becomes a Job."""
    job = parse_job(JOB)
    assert (job.request_id, job.status, job.estimated_cost_usd) == ("req_1", "pending", 0.25)
    assert job.estimated_duration_seconds == 5.0


def test_results_are_frozen() -> None:
    """Results cannot be changed."""
    job = parse_job(JOB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = "failed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"request_id": None}, "request_id"),
        ({"request_id": ""}, "request_id"),
        ({"status": "queued"}, "status"),
        ({"estimated_cost_usd": "0.25"}, "estimated_cost_usd"),
        ({"estimated_cost_usd": True}, "estimated_cost_usd"),
        ({"estimated_cost_usd": float("nan")}, "estimated_cost_usd"),
        ({"estimated_duration_seconds": None}, "estimated_duration_seconds"),
    ],
)
def test_a_bad_job_field_is_named(changes: dict[str, Any], field: str) -> None:
    """A missing or mistyped field raises UnexpectedResponseError naming it."""
    body = {k: v for k, v in {**JOB, **changes}.items() if v is not None}
    with pytest.raises(UnexpectedResponseError, match=field):
        parse_job(body)


def test_a_broken_job_answer_keeps_its_request_id() -> None:
    """The job may exist: the error carries its request_id."""
    with pytest.raises(UnexpectedResponseError) as info:
        parse_job({"request_id": "req_9", "status": "pending"})
    assert info.value.request_id == "req_9"
    assert "req_9" in str(info.value)


@pytest.mark.parametrize(
    ("body", "progress"),
    [
        ({"status": "pending", "estimated_cost_usd": 0.25}, 0.0),
        ({"status": "processing", "progress": 45}, 45.0),
        ({"status": "processing", "progress": 450}, 100.0),
        ({"status": "processing", "progress": -3}, 0.0),
        ({"status": "processing"}, 0.0),
        ({"status": "completed", "video_url": "https://v/x.mp4"}, 100.0),
        ({"status": "failed", "error": "nope"}, 0.0),
    ],
)
def test_progress_is_clamped_to_a_percentage(body: dict[str, Any], progress: float) -> None:
    """progress is 0-100 whatever the server says."""
    assert parse_job_status(body, "req_1").progress == progress


def test_a_completed_status_carries_the_video() -> None:
    """completed: video_url, duration_seconds and cost_usd are read."""
    status = parse_job_status(
        {
            "request_id": "req_1",
            "status": "completed",
            "video_url": "https://v/x.mp4",
            "duration_seconds": 5.0,
            "cost_usd": 0.25,
        },
        "req_1",
    )
    assert status == JobStatus(
        request_id="req_1",
        status="completed",
        progress=100.0,
        video_url="https://v/x.mp4",
        duration_seconds=5.0,
        cost_usd=0.25,
    )
    assert status.done


def test_a_completed_status_without_a_video_is_an_error() -> None:
    """completed without video_url is unreadable."""
    with pytest.raises(UnexpectedResponseError, match="video_url"):
        parse_job_status({"status": "completed"}, "req_1")


def test_a_failed_status_without_a_message_gets_one() -> None:
    """failed without error still yields a message."""
    status = parse_job_status({"status": "failed"}, "req_1")
    assert status.error
    assert status.done


def test_a_status_without_request_id_uses_the_one_asked_for() -> None:
    """The id polled for fills a missing request_id."""
    assert parse_job_status({"status": "pending"}, "req_7").request_id == "req_7"


def test_billing_answers_are_read() -> None:
    """Balance and Usage parse their documented fields."""
    assert parse_balance({"balance_usd": 25.5, "total_spent_usd": 134.75}).balance_usd == 25.5
    usage = parse_usage(
        {
            "period_days": 7,
            "total_requests": 2,
            "total_seconds": 10,
            "total_cost_usd": 0.5,
            "current_balance_usd": 9.5,
            "total_spent_usd": 0.5,
        }
    )
    assert (usage.period_days, usage.total_requests, usage.total_seconds) == (7, 2, 10.0)
    with pytest.raises(UnexpectedResponseError, match="period_days"):
        parse_usage({"period_days": 7.5})


def test_a_new_key_hides_its_secret_from_repr() -> None:
    """APIKey's repr and str never show api_key."""
    key = parse_api_key(
        {
            "key_id": "vinci_1",
            "name": "ci",
            "api_key": "sk-very-secret-value-123",
            "rate_limit": 20,
            "created_at": "2025-01-02T03:04:05Z",
        }
    )
    assert key.api_key == "sk-very-secret-value-123"
    assert "sk-very-secret" not in repr(key)
    assert "sk-very-secret" not in str(key)
    assert key.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_a_new_key_is_kept_even_with_odd_metadata() -> None:
    """Only key_id and api_key are required: the secret is never lost to a timestamp."""
    key = parse_api_key({"key_id": "vinci_1", "api_key": "sk-x", "created_at": "yesterday"})
    assert key == APIKey(key_id="vinci_1", name="", api_key="sk-x")


def test_a_key_list_is_read_and_checked() -> None:
    """list entries need key_id and a boolean is_active."""
    keys = parse_key_list(
        {
            "api_keys": [
                {"key_id": "vinci_1", "name": "a", "is_active": True, "last_used": None},
            ],
            "count": 1,
        }
    )
    assert keys[0].is_active
    assert keys[0].last_used is None
    with pytest.raises(UnexpectedResponseError, match="is_active"):
        parse_key_list({"api_keys": [{"key_id": "vinci_1"}]})
    with pytest.raises(UnexpectedResponseError, match="api_keys"):
        parse_key_list({"keys": []})
    with pytest.raises(UnexpectedResponseError, match=r"api_keys\[0\]"):
        parse_key_list({"api_keys": ["vinci_1"]})


def test_a_revocation_falls_back_to_the_asked_key_id() -> None:
    """A revocation answer without key_id names the key asked for."""
    assert parse_revoked({"message": "API key revoked"}, "vinci_2").key_id == "vinci_2"
