"""Emulated time. Operations that take time on a real host wait on a ``Clock``, never on ``time.sleep``."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol

# 2025-01-06T08:00:00Z: a fixed, readable start for ManualClock so test output is reproducible.
DEFAULT_START = 1736150400.0


class Clock(Protocol):
    """Emulated wall-clock seconds since the Unix epoch."""

    def now(self) -> float: ...

    def sleep_until(self, t: float, cancelled: threading.Event | None = None) -> bool:
        """Block until emulated time ``t``; False if ``cancelled`` was set first."""
        ...


def to_datetime(t: float) -> datetime:
    """Emulated seconds to an aware UTC datetime (what CreationTime and LastWriteTime carry)."""
    return datetime.fromtimestamp(t, tz=timezone.utc)


class ScaledClock:
    """Real time sped up: emulated seconds = real seconds x ``time_scale`` (60 = one minute per second)."""

    def __init__(self, time_scale: float = 1.0, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, not {time_scale}")
        self.time_scale = time_scale
        self._start = time.time() if start is None else start
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._t0) * self.time_scale

    def sleep_until(self, t: float, cancelled: threading.Event | None = None) -> bool:
        event = cancelled or threading.Event()
        while True:
            remaining = (t - self.now()) / self.time_scale
            if remaining <= 0:
                return True
            if event.wait(min(remaining, 0.25)):
                return False


class ManualClock:
    """Time that moves only when a test says so.

    ``advance()`` moves it forward and wakes waiters. With ``auto_advance`` (the default) a blocking
    ``sleep_until`` jumps time forward itself, so a single-threaded test can run a slow cmdlet; with
    ``auto_advance=False`` the operation blocks until another thread advances the clock.
    """

    def __init__(self, start: float = DEFAULT_START, *, auto_advance: bool = True) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self._cond = threading.Condition()

    def now(self) -> float:
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time never goes back")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()
            return self._now

    def sleep_until(self, t: float, cancelled: threading.Event | None = None) -> bool:
        with self._cond:
            while self._now < t:
                if cancelled is not None and cancelled.is_set():
                    return False
                if self.auto_advance:
                    self._now = t
                    self._cond.notify_all()
                    break
                self._cond.wait(0.05)
            return not (cancelled is not None and cancelled.is_set())
