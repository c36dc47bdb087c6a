"""When the shared host polls of one triggerer run: spread over the poll interval, on a steady beat.

Each host's poll loop gets a **phase** in ``[0, interval)``: it polls at ``phase + k * interval`` on
the event loop's clock, so ten hosts polled every 10 s poll about a second apart instead of all at
once (a round of simultaneous 100-VM polls costs seconds of client CPU on a small triggerer, and
the waits of the last host in the round react that much later). The beat is measured from the
clock, not from the end of the previous poll, so a slow poll does not shift the next one and loops
do not drift into step; a poll that overruns its slot skips to the next free one rather than
catching up with a burst.

``hash_phase`` is where a loop would sit on its own (deterministic: a hash of its key, the same in
every process). ``PhasePlan`` places the loops of one process: the first at its hash phase, each
later one in the middle of the largest free gap, so n loops are never closer than
``interval / (2 n)``. Pure: no clock, no I/O.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable


def hash_phase(key: str, interval: float) -> float:
    """A deterministic phase in ``[0, interval)`` for ``key`` (sha256, not ``hash()``, which differs
    between processes).

    :param key: What identifies the poll loop (its connection id, and what it watches).
    :param interval: Seconds between two polls.
    :return: Seconds into the interval.
    """
    if interval <= 0:
        return 0.0
    fraction = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return fraction * interval


def widest_gap_middle(phases: Iterable[float], interval: float) -> float:
    """The middle of the largest gap between ``phases`` on the circle of length ``interval`` (the
    first of equal gaps, in phase order)."""
    ordered = sorted(p % interval for p in phases)
    if not ordered:
        return 0.0
    best_start, best_gap = ordered[-1], ordered[0] + interval - ordered[-1]  # the gap that wraps
    for start, end in itertools.pairwise(ordered):
        if end - start > best_gap:
            best_start, best_gap = start, end - start
    return (best_start + best_gap / 2.0) % interval


class PhasePlan:
    """The phases of the poll loops of one process, per interval: ``take`` one when a loop starts,
    ``release`` it when the loop ends."""

    def __init__(self) -> None:
        self._taken: dict[float, list[float]] = {}

    def take(self, key: str, interval: float) -> float:
        """A phase for a new loop: its hash phase when it is the only loop of this interval, else the
        middle of the widest gap between the loops already running.

        :param key: What identifies the loop (``hash_phase``).
        :param interval: Seconds between two polls of the loop.
        :return: Seconds into the interval, in ``[0, interval)``.
        """
        if interval <= 0:
            return 0.0
        taken = self._taken.setdefault(interval, [])
        phase = widest_gap_middle(taken, interval) if taken else hash_phase(key, interval)
        taken.append(phase)
        return phase

    def release(self, interval: float, phase: float) -> None:
        """The loop that held ``phase`` has ended: its place is free again."""
        taken = self._taken.get(interval)
        if taken and phase in taken:
            taken.remove(phase)
            if not taken:
                del self._taken[interval]

    def phases(self, interval: float) -> list[float]:
        """The phases in use for ``interval``, sorted."""
        return sorted(self._taken.get(interval, []))


def next_slot(phase: float, interval: float, *, not_before: float) -> float:
    """The first time at or after ``not_before`` that is ``phase`` plus a whole number of intervals
    (on the same clock as ``not_before``).

    :param phase: The loop's phase, seconds into the interval.
    :param interval: Seconds between two polls; 0 or less: ``not_before`` itself.
    :param not_before: The earliest time the next poll may start.
    :return: When the next poll starts.
    """
    if interval <= 0:
        return not_before
    return phase + math.ceil((not_before - phase) / interval) * interval


def after_poll(phase: float, interval: float, *, started: float, now: float) -> float:
    """When a loop polls next, given when its last poll ``started`` and the time ``now``: the slot one
    interval on (at least half an interval after that start, so the first poll, made at once, is not
    followed by a second one a moment later), or the first free slot after ``now`` when the poll
    overran (no burst to catch up).

    :param phase: The loop's phase.
    :param interval: Seconds between two polls.
    :param started: When the last poll started.
    :param now: The time now (after the poll).
    :return: When the next poll starts.
    """
    return next_slot(phase, interval, not_before=max(now, started + interval / 2.0))
