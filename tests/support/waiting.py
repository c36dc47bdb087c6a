"""Polling until something holds: the one ``wait_for`` of the tests (and its asyncio twin).

A wait never asserts how long something took: it only bounds how long the test waits before it says
what it was waiting for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    *,
    what: str = "",
    interval: float = 0.02,
    check: Callable[[], Any] | None = None,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate()`` until it returns something truthy, and return that; an AssertionError
    naming ``what`` (and ``explain()``, e.g. process logs) after ``timeout`` seconds. ``check()`` runs
    before each poll and may raise to end the wait early (a process that died)."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        if value := predicate():
            return value
        if time.monotonic() > deadline:
            message = f"waited {timeout:.0f}s for {what}" if what else "condition not reached"
            raise AssertionError(message + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T], timeout: float = 10.0, *, what: str = "", interval: float = 0.01
) -> T:
    """``wait_for`` inside an event loop: the loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        if value := predicate():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}" if what else "condition not reached")
        await asyncio.sleep(interval)
