"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
import math


async def wait_changed(event: asyncio.Event, seconds: float | None) -> None:
    """Wait until `event` is set or `seconds` pass (None or inf: no limit).

    asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for can swallow a cancel that
    lands as the wait ends (CPython gh-86296), which would keep a stopped dispatcher alive.
    """
    limit = None if seconds is None or seconds == math.inf else seconds
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await event.wait()
