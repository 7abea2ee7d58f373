"""The pipeline as an httpx transport (``requests_resilience.httpx.ResilientTransport``).

Needs the ``httpx`` extra (``pip install 'requests-resilience[httpx]'``).

Example:
    >>> import httpx
    >>> from requests_resilience import Pipeline, Retry, StatusErrors
    >>> from requests_resilience.httpx import ResilientTransport
    >>> client = httpx.Client(transport=ResilientTransport(Pipeline(StatusErrors(), Retry())))
"""

from __future__ import annotations

from requests_resilience._httpx import AsyncResilientTransport, ResilientTransport

__all__ = ["AsyncResilientTransport", "ResilientTransport"]
