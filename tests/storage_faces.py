"""What the async storage tests share: one key's state seen through both faces."""

from __future__ import annotations

import time

from requests_resilience._redis import RedisLink
from requests_resilience.testing import FakeClock


class TwoFaces:
    """A policy's sync and async faces of one key, on one fake clock (wall time = now).

    Subclasses add the faces themselves (``sync``, ``aio``) and the policy's settings.

    Args:
        link: the policy's Redis link (None for memory state).
    """

    def __init__(self, link: RedisLink | None) -> None:
        self._link = link
        self.clock = FakeClock(wall=time.time())

    @property
    def link(self) -> RedisLink:
        """The Redis link (the test expects one)."""
        assert self._link is not None
        return self._link

    def now(self) -> float:
        """The shared-state time of the fake clock (its ``time()``)."""
        return self.clock.time()

    async def close(self) -> None:
        """Close the clients the link holds: the asyncio one of this loop, and the sync one."""
        if self._link is not None:
            await self._link.aclose()
            self._link.client.close()
