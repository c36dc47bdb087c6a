"""The one wait loop: poll → judge → sleep, shared by the worker (``wait``) and the triggerer
(``async_wait``, ``async_wait_on`` for a shared stream that polls for many waits).

The loop itself (``_rounds``) does no I/O: the drivers poll and sleep, the loop decides. So every
wait, in a worker, a sensor or a trigger, follows the same rules:

* a rejected login ends the wait at once and is never retried (each retry is one more rejected
  login towards the account's lockout);
* any other failed poll counts against an error budget (consecutive failures); without a budget the
  failure is raised (the sync hook has already retried it);
* the wait gives up after ``give_up_after`` seconds, saying what it last observed.

What differs between kinds of wait (what is polled, how it is judged, what the messages say) is a
``WaitStep``: ``HostStateWait`` (a VM state or a finished merge, judged from a host snapshot),
``OperationWait`` (a pipeline running in a disconnected session), ``LeaseWait`` (another run's lease).

A step may also report how far the awaited work has got (``report``: an export's GiB and percent), a
line logged as it is, paced by the step; a round that reports logs no "waiting" line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airflow_hyperv.config import DEFAULT_WAIT_ERROR_BUDGET
from airflow_hyperv.hyperv.errors import is_rejected_login
from airflow_hyperv.hyperv.progress import (
    DEFAULT_PROGRESS_INTERVAL,
    OutputProgress,
    ProgressPacer,
    progress_line,
)
from airflow_hyperv.hyperv.waits import HostSnapshot, Verdict, WaitTarget, host_verdict, lease_verdict

if TYPE_CHECKING:
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.hyperv import HyperVHook
    from airflow_hyperv.hyperv.lease import Lease

T = TypeVar("T")
# A ramped wait's first pause (HostStateWait(ramp=True)); later pauses grow with the time waited.
RAMP_FIRST_PAUSE = 1.0
# How long after an operation's predicted end its wait looks (OperationWait.pause).
PREDICTED_END_SLACK = 0.5
# An early hand-back (OperationWait ``lead``) never comes sooner than this after the wait began: on
# Airflow 3.3 a task whose trigger fires within seconds of its deferral can be failed as "changed
# externally" (https://github.com/apache/airflow/issues/71580 and /72716: the scheduler drains the
# deferring try's exit after the resumed try started). A short operation simply ends first, as before.
HANDBACK_NOT_BEFORE = 30.0
# Failed polls in a row a wait tolerates (transient faults only: a rejected login ends it at once):
# the default of [hyperv] wait_error_budget, which the triggers and the export read at use time.
MAX_CONSECUTIVE_ERRORS = DEFAULT_WAIT_ERROR_BUDGET


@dataclass(frozen=True)
class Polled(Generic[T]):
    """One poll: what it read, or why it failed."""

    value: T | None = None
    error: BaseException | None = None


class PollFailed(Exception):
    """A poll that failed elsewhere (the shared host poll), told to a waiter as its text."""


@dataclass(frozen=True)
class Outcome:
    """How a wait ended. ``details`` are the extra fields of a trigger's event."""

    status: str  # "success" or "error"
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    cause: BaseException | None = None  # the failed poll that ended it, if one did

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def rejected_login(self) -> bool:
        return bool(self.details.get("rejected_login"))

    @property
    def timed_out(self) -> bool:
        return bool(self.details.get("timed_out"))


class WaitStep(Generic[T]):
    """What one kind of wait does each round, and what its messages say."""

    subject = "polling"  # what a poll does, for messages: "polling the host failed 5 times: ..."

    def judge(self, observation: T) -> Verdict:
        raise NotImplementedError

    def rejected(self, exc: BaseException) -> str:
        """The message of a wait ended by a rejected login."""
        return f"{self.subject}: {exc}"

    def timed_out(self, seconds: float, verdict: Verdict) -> str:
        return f"not done after {seconds:g}s: {verdict.observed}"

    def still_waiting(self, elapsed: float, verdict: Verdict) -> Outcome | None:
        """An end other than done or timed out, checked after both (the lease wait's recheck)."""
        return None

    def waiting(self, verdict: Verdict) -> tuple[Any, ...] | None:
        """The log line (format, args...) of a round that waits on, or None for none."""
        return None

    def pause(self, interval: float, elapsed: float) -> float:
        """Seconds until the next poll after a round that waits on (default: the wait's interval)."""
        return interval

    def report(self, verdict: Verdict) -> tuple[Any, ...] | None:
        """A progress line (format, args...) logged as it is, when one is due; None for none."""
        return None


class HostStateWait(WaitStep[HostSnapshot]):
    """A VM state or a finished merge, judged from one snapshot of the host.

    ``ramp``: the first polls come sooner (after 1 s, then after as long as the wait has lasted, up to
    the interval), for a short wait in the worker before deferring: a merge of a small AVHDX that ends
    in 3 s is seen after about 4 s, not 10, and costs a few polls more only while it is young."""

    subject = "polling the host"

    def __init__(self, target: WaitTarget, *, ramp: bool = False) -> None:
        self.target = target
        self.ramp = ramp

    def pause(self, interval: float, elapsed: float) -> float:
        return min(interval, max(RAMP_FIRST_PAUSE, elapsed)) if self.ramp else interval

    def judge(self, observation: HostSnapshot) -> Verdict:
        return host_verdict(self.target, observation)

    def rejected(self, exc: BaseException) -> str:
        return str(exc)

    def waiting(self, verdict: Verdict) -> tuple[Any, ...]:
        return ("Waiting for %s: %s", self.target.kind.value, verdict.observed)


@dataclass(frozen=True)
class OperationPoll:
    """One poll of a disconnected operation: its state (None: the poll was cut off, the task was
    killed) and, when the wait watches its output, the bytes written so far (None: not read, and
    ``unread`` says why). Reading the bytes is best effort: it never fails the poll."""

    state: PollResult | None
    written: int | None = None
    unread: str = ""


def read_progress(hv: HyperVHook, state: PollResult, watch: OutputProgress | None) -> OperationPoll:
    """``state`` and, while the operation runs and ``watch`` is set, the bytes under its folder, read on
    ``hv``'s pool (``HyperVHook.bytes_under``). A failed read is noted, not raised, except a rejected
    login, which ends the wait like any rejected poll."""
    if watch is None or state.state != "running":
        return OperationPoll(state)
    try:
        return OperationPoll(state, written=hv.bytes_under(watch.folder))
    except Exception as exc:
        if is_rejected_login(exc):
            raise
        return OperationPoll(state, unread=f"{type(exc).__name__}: {exc}")


class OperationWait(WaitStep["OperationPoll | PollResult | None"]):
    """A pipeline started in a disconnected session, until it ends (or its session is lost).

    ``stopped`` (the worker's wait): asked each round whether this side stopped the operation (the
    task was killed); a poll that answers None was cut off by that. ``progress``: the log line of a
    round that waits on. ``watch``: the folder the operation writes and what it should hold; then each
    round that waits on may report how far it has got (``OperationPoll.written``), at once and then at
    most every ``progress_interval`` seconds, instead of the ``progress`` line. ``lead`` (the
    triggerer's wait): end the wait, marked ``nearly_done``, once the predicted end is that close, so
    the task's resume overlaps the operation's last seconds and the task waits out the end itself.
    """

    def __init__(
        self,
        operation: DisconnectedOperation,
        *,
        subject: str | None = None,
        progress: tuple[Any, ...] | None = None,
        stopped: Callable[[], bool] | None = None,
        watch: OutputProgress | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        lead: float = 0.0,
    ) -> None:
        self.operation = operation
        self.lead = lead
        self.subject = subject or f"polling {operation.label}"
        self.progress = progress
        self.stopped = stopped
        self.watch = watch
        self.pacer = ProgressPacer(progress_interval)
        self._last: OperationPoll = OperationPoll(None)
        self._first_seen = time.time()  # elapsed time for an operation that did not record its start
        self._written: list[tuple[float, int]] = []  # (when, bytes written) of each progress read

    def judge(self, observation: OperationPoll | PollResult | None) -> Verdict:
        polled = observation if isinstance(observation, OperationPoll) else OperationPoll(observation)
        self._last = polled
        if polled.written is not None:
            self._written.append((time.time(), polled.written))
        state = polled.state
        label = self.operation.label
        if state is None or (self.stopped is not None and self.stopped()):
            return Verdict(True, f"{label}: stopped", failed=True)
        if state.state == "running":
            left = self._left()
            waited = time.time() - self._first_seen
            if self.lead > 0 and left is not None and left <= self.lead and waited >= HANDBACK_NOT_BEFORE:
                return Verdict(
                    True, f"{label} should end within {max(left, 0.0):.0f}s", details={"nearly_done": True}
                )
            return Verdict(False, f"{label} still running")
        if state.state == "gone":
            return Verdict(
                True, f"{label}: the host no longer has the session (restarted or reaped)", failed=True
            )
        result = state.result
        errs = [asdict(e) for e in result.errors] if result else []
        return Verdict(
            True,
            errs[0]["message"] if errs else f"{label} ended {state.state}",
            failed=not (state.state == "completed" and not errs),
            details={"errors": errs, "state": state.state},
        )

    def timed_out(self, seconds: float, verdict: Verdict) -> str:
        return f"{self.operation.label} still running after {seconds:g}s"

    def waiting(self, verdict: Verdict) -> tuple[Any, ...] | None:
        return None if self.watch is not None else self.progress

    def pause(self, interval: float, elapsed: float) -> float:
        """The poll after the end the progress reads predict comes then, not up to a whole interval
        later (the export's end is what the merge waits for, and the VM runs on its AVHDX meanwhile);
        with a ``lead``, the poll that finds the end that close (not before ``HANDBACK_NOT_BEFORE``).
        Past the predicted end the wait looks a few times more often for one interval, then returns to
        its cadence: a wrong prediction costs at most four extra polls."""
        left = self._left()
        if left is None:
            return interval
        due = left
        if self.lead:
            may_hand_back_in = self._first_seen + HANDBACK_NOT_BEFORE - time.time()
            due = min(left, max(left - self.lead, may_hand_back_in))
        if due >= interval:
            return interval
        if due > 0:
            return max(due + PREDICTED_END_SLACK, RAMP_FIRST_PAUSE)
        if left > -interval:
            return max(interval / 4, RAMP_FIRST_PAUSE) if left <= 0 else RAMP_FIRST_PAUSE
        return interval

    def _left(self) -> float | None:
        """Seconds until the end the progress reads predict (negative: overdue); None: no prediction."""
        end = predicted_end(
            self._written, self.watch.expected_bytes if self.watch else 0, self.operation.started_at
        )
        return None if end is None else end - time.time()

    def progress_due(self) -> bool:
        """Whether this round should read the bytes written: only a round that will log a line does
        (one pipeline less on every other poll)."""
        return self.watch is not None and self.pacer.is_due()

    def report(self, verdict: Verdict) -> tuple[Any, ...] | None:
        read = self._last.written is not None or bool(self._last.unread)
        if self.watch is None or not read or not self.pacer.due():
            return None
        started = self.operation.started_at or self._first_seen
        line = progress_line(
            self.watch.name,
            self._last.written,
            self.watch.expected_bytes,
            time.time() - started,
            unknown=self._last.unread,
        )
        return ("%s", line)


class LeaseWait(WaitStep["Lease | None"]):
    """Another run's lease on a VM, until it is released or changes hands. Every ``recheck_after``
    seconds the wait ends anyway, so the task can ask Airflow whether the holder's run is over."""

    subject = "reading the lease"

    def __init__(self, target: WaitTarget, recheck_after: float) -> None:
        assert target.holder is not None
        self.target = target
        self.holder = target.holder
        self.recheck_after = recheck_after

    def judge(self, observation: Lease | None) -> Verdict:
        return lease_verdict(self.holder, observation)

    def timed_out(self, seconds: float, verdict: Verdict) -> str:
        return f"not free after {seconds:g}s: {verdict.observed}"

    def still_waiting(self, elapsed: float, verdict: Verdict) -> Outcome | None:
        if elapsed > self.recheck_after:
            return Outcome(
                "success", f"still busy, checking the holder's run: {verdict.observed}", {"recheck": True}
            )
        return None

    def waiting(self, verdict: Verdict) -> tuple[Any, ...]:
        return ("Waiting for %s: %s", self.target.kind.value, verdict.observed)


# -- the loop ---------------------------------------------------------------------------------------


def _rounds(
    step: WaitStep[T],
    *,
    interval: float,
    error_interval: float | None,
    error_budget: int | None,
    give_up_after: float | None,
    log: logging.Logger | Any,
) -> Generator[float, Polled[T], Outcome]:
    """The wait's decisions. Sent each poll, it yields how long to sleep before the next one and
    returns the outcome; a failed poll without an error budget is raised."""
    errors = 0
    started = time.monotonic()
    polled = yield 0.0
    while True:
        if polled.error is not None:
            exc = polled.error
            if is_rejected_login(exc):
                log.error("%s: ending the wait without retrying", exc)
                return Outcome("error", step.rejected(exc), {"rejected_login": True}, cause=exc)
            if error_budget is None:
                raise exc
            errors += 1
            subject = step.subject[:1].upper() + step.subject[1:]
            log.warning("%s failed (%d in a row): %s", subject, errors, exc)
            if errors >= error_budget:
                return Outcome("error", f"{step.subject} failed {errors} times: {exc}", cause=exc)
            polled = yield interval if error_interval is None else error_interval
            continue
        errors = 0
        verdict = step.judge(polled.value)  # type: ignore[arg-type]
        elapsed = time.monotonic() - started
        if verdict.done:
            return Outcome("error" if verdict.failed else "success", verdict.observed, verdict.details)
        if give_up_after and elapsed > give_up_after:
            return Outcome("error", step.timed_out(give_up_after, verdict), {"timed_out": True})
        other_end = step.still_waiting(elapsed, verdict)
        if other_end is not None:
            return other_end
        report = step.report(verdict)
        line = step.waiting(verdict)
        if report is not None:  # how far the awaited work has got
            log.info(*report)
        elif line is not None:  # what it waits on, and for how long so far
            log.info(line[0] + " (waited %.0fs)", *line[1:], elapsed)
        polled = yield step.pause(interval, elapsed)


def wait(
    step: WaitStep[T],
    poll: Callable[[], T],
    *,
    interval: float,
    error_interval: float | None = None,
    error_budget: int | None = None,
    give_up_after: float | None = None,
    log: logging.Logger | Any,
) -> Outcome:
    """Wait in this thread: ``poll()`` until ``step`` judges the wait over (see the module)."""
    rounds = _rounds(
        step,
        interval=interval,
        error_interval=error_interval,
        error_budget=error_budget,
        give_up_after=give_up_after,
        log=log,
    )
    pause = next(rounds)
    while True:
        if pause > 0:
            time.sleep(pause)
        polled: Polled[T]
        try:
            polled = Polled(poll())
        except Exception as exc:
            polled = Polled(error=exc)
        try:
            pause = rounds.send(polled)
        except StopIteration as end:
            return end.value


def predicted_end(written: list[tuple[float, int]], expected: int, started_at: float | None) -> float | None:
    """When an operation writing ``expected`` bytes should end, from its progress reads ((when, bytes)
    pairs, epoch seconds): the rate between the first and last read, or since ``started_at`` when there
    is one read. None when nothing can be said (no bytes expected or written yet, no rate)."""
    if not expected or not written or written[-1][1] <= 0:
        return None
    last_at, last = written[-1]
    if last >= expected:
        return last_at
    first_at, first = written[0]
    if last_at > first_at and last > first:
        rate = (last - first) / (last_at - first_at)
    elif started_at and last_at > started_at:
        rate = last / (last_at - started_at)
    else:
        return None
    return last_at + (expected - last) / rate


async def async_wait(
    step: WaitStep[T],
    poll: Callable[[], Awaitable[T]],
    *,
    interval: float,
    error_interval: float | None = None,
    error_budget: int | None = None,
    give_up_after: float | None = None,
    log: logging.Logger | Any,
) -> Outcome:
    """``wait`` on the event loop: ``await poll()`` (run pypsrp in a thread), ``asyncio.sleep``."""
    rounds = _rounds(
        step,
        interval=interval,
        error_interval=error_interval,
        error_budget=error_budget,
        give_up_after=give_up_after,
        log=log,
    )
    pause = next(rounds)
    while True:
        if pause > 0:
            await asyncio.sleep(pause)
        polled: Polled[T]
        try:
            polled = Polled(await poll())
        except Exception as exc:
            polled = Polled(error=exc)
        try:
            pause = rounds.send(polled)
        except StopIteration as end:
            return end.value


async def async_wait_on(
    step: WaitStep[T],
    polls: AsyncIterator[Polled[T]],
    *,
    error_budget: int | None = None,
    give_up_after: float | None = None,
    log: logging.Logger | Any,
) -> Outcome | None:
    """The same wait on polls someone else makes and paces (a shared stream): no sleeping here.
    None if the stream ended first."""
    rounds = _rounds(
        step,
        interval=0.0,
        error_interval=None,
        error_budget=error_budget,
        give_up_after=give_up_after,
        log=log,
    )
    next(rounds)
    async for polled in polls:
        try:
            rounds.send(polled)
        except StopIteration as end:
            return end.value
    rounds.close()
    return None
