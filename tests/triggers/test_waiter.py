"""The one wait loop (hooks.waiter): the same rounds in the worker and on the event loop.

The polls here are scripted answers (a poll is the only I/O the loop sees); the kinds of wait run
against the emulator in test_wait_trigger*.py, tests/sensors and tests/lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from airflow_hyperv.hooks.waiter import (
    MAX_CONSECUTIVE_ERRORS,
    HostStateWait,
    LeaseWait,
    Outcome,
    Polled,
    async_wait,
    async_wait_on,
    wait,
)
from airflow_hyperv.hyperv.errors import AuthenticationFailedError
from airflow_hyperv.hyperv.lease import new_lease
from airflow_hyperv.hyperv.waits import HostSnapshot, WaitFor, WaitTarget

log = logging.getLogger("test-waiter")
VM = "0f0f0f0f-0000-0000-0000-000000000001"
TARGET = WaitTarget(WaitFor.VM_STATE, VM, target_state="Running")


def snapshot(state: str | None) -> HostSnapshot:
    if state is None:
        return HostSnapshot()
    return HostSnapshot(vms={VM: {"name": "web-01", "state": state, "heartbeat_ok": True}})


class Script:
    """Answers polls in order: a HostSnapshot, or an exception to raise; the last one repeats."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.polls = 0

    def __call__(self) -> Any:
        answer = self.answers[min(self.polls, len(self.answers) - 1)]
        self.polls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


def run_sync(step: Any, script: Script, **kw: Any) -> Outcome:
    return wait(step, script, interval=0, log=log, **kw)


def run_async(step: Any, script: Script, **kw: Any) -> Outcome:
    async def poll() -> Any:
        return script()

    return asyncio.run(async_wait(step, poll, interval=0, log=log, **kw))


def run_stream(step: Any, script: Script, **kw: Any) -> Outcome | None:
    async def polls():
        while True:
            try:
                yield Polled(script())
            except Exception as exc:
                yield Polled(error=exc)

    return asyncio.run(async_wait_on(step, polls(), log=log, **kw))


DRIVERS: list[Callable[..., Any]] = [run_sync, run_async, run_stream]
ids = ["wait", "async_wait", "async_wait_on"]


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_polls_until_the_target_is_reached(drive):
    script = Script(snapshot("Off"), snapshot("Starting"), snapshot("Running"))
    outcome = drive(HostStateWait(TARGET), script, error_budget=MAX_CONSECUTIVE_ERRORS)
    assert (outcome.status, outcome.message, script.polls) == ("success", "web-01 is Running", 3)


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_a_vanished_vm_ends_the_wait_as_an_error(drive):
    outcome = drive(HostStateWait(TARGET), Script(snapshot("Off"), snapshot(None)), error_budget=5)
    assert outcome.status == "error" and outcome.message == f"VM {VM} is no longer on the host"


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_the_error_budget_counts_failures_in_a_row_only(drive):
    down = ConnectionError("refused")
    script = Script(down, down, down, down, snapshot("Off"), down, down, down, down, down)
    outcome = drive(HostStateWait(TARGET), script, error_budget=5)
    assert outcome.status == "error" and outcome.message == "polling the host failed 5 times: refused"
    assert script.polls == 10 and outcome.cause is down and not outcome.rejected_login


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_a_rejected_login_ends_the_wait_at_the_first_poll(drive):
    script = Script(AuthenticationFailedError("the host rejected the credentials"), snapshot("Running"))
    outcome = drive(HostStateWait(TARGET), script, error_budget=5)
    assert script.polls == 1  # never retried: each retry is one more rejected login
    assert outcome.rejected_login and outcome.status == "error"
    assert outcome.message == "the host rejected the credentials"


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_a_rejected_login_is_found_in_the_exceptions_chain(drive):
    try:
        try:
            raise AuthenticationFailedError("rejected")
        except AuthenticationFailedError as exc:
            raise RuntimeError("the task fails") from exc
    except RuntimeError as wrapped:
        failure = wrapped
    script = Script(failure, snapshot("Running"))
    outcome = drive(HostStateWait(TARGET), script, error_budget=5)
    assert script.polls == 1 and outcome.rejected_login


@pytest.mark.parametrize("drive", [run_sync, run_async], ids=ids[:2])
def test_without_an_error_budget_a_failed_poll_is_raised(drive):
    script = Script(snapshot("Off"), ConnectionError("refused"))
    with pytest.raises(ConnectionError, match="refused"):
        drive(HostStateWait(TARGET), script)
    assert script.polls == 2


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_giving_up_says_what_was_last_observed(drive):
    outcome = drive(HostStateWait(TARGET), Script(snapshot("Off")), give_up_after=1e-9, error_budget=5)
    assert outcome.timed_out and outcome.status == "error"
    assert outcome.message == "not done after 1e-09s: web-01 is Off"


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_the_lease_wait_gives_up_before_it_rechecks(drive):
    holder = new_lease(
        dag_id="d", run_id="r", vm_id=VM, checkpoint_name="c", checkpoint_type_before="", host="hv-01"
    )
    target = WaitTarget(WaitFor.LEASE_FREE, VM, holder=holder)
    busy = Script(holder)
    outcome = drive(LeaseWait(target, recheck_after=1e-9), busy, give_up_after=1e-9, error_budget=5)
    assert outcome.timed_out and outcome.message.startswith("not free after 1e-09s: ")
    outcome = drive(LeaseWait(target, recheck_after=1e-9), busy, error_budget=5)
    assert outcome.ok and outcome.details == {"recheck": True}
    assert outcome.message.startswith("still busy, checking the holder's run: ")
    outcome = drive(LeaseWait(target, recheck_after=300), Script(None), error_budget=5)
    assert outcome.ok and "was released by" in outcome.message and not outcome.details


def test_a_shared_stream_that_ends_ends_the_wait_without_an_outcome():
    async def two_polls():
        yield Polled(snapshot("Off"))
        yield Polled(snapshot("Off"))

    assert asyncio.run(async_wait_on(HostStateWait(TARGET), two_polls(), log=log)) is None


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_each_waiting_round_logs_what_it_waits_on_and_for_how_long(drive, caplog):
    caplog.set_level(logging.INFO, logger=log.name)
    outcome = drive(HostStateWait(TARGET), Script(snapshot("Off"), snapshot("Off"), snapshot("Running")))
    assert outcome.ok
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Waiting for")]
    assert len(lines) == 2, lines  # one per round that waits on, none for the round that ends it
    assert all("vm_state" in line and " (waited " in line and line.endswith("s)") for line in lines), lines


@pytest.mark.parametrize("drive", DRIVERS, ids=ids)
def test_an_operation_wait_reports_progress_instead_of_the_waiting_line(drive, caplog):
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.waiter import OperationPoll, OperationWait
    from airflow_hyperv.hyperv.progress import GiB, OutputProgress

    caplog.set_level(logging.INFO, logger=log.name)
    op = DisconnectedOperation(shell_id="s", command_id="c", label="export-checkpoint")
    running = PollResult("running")
    step = OperationWait(
        op,
        progress=("Waiting for the export of %s", "web-01"),
        watch=OutputProgress("D:\\Backups\\x", 4 * GiB, "web-01"),
        progress_interval=0,
    )
    outcome = drive(
        step,
        Script(
            OperationPoll(running, written=GiB),
            OperationPoll(running, unread="TransientTransportError: reset"),  # noted, never a failed poll
            OperationPoll(running, written=3 * GiB),
            OperationPoll(PollResult("completed")),
        ),
        error_budget=1,
    )
    assert outcome.ok, outcome
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(", ")[0] for line in lines] == [
        "Export of web-01: 1.0 of 4.0 GiB (25 %)",
        "Export of web-01: still running",
        "Export of web-01: 3.0 of 4.0 GiB (75 %)",
    ], lines
    assert "bytes written not known: TransientTransportError: reset" in lines[1]


def test_an_operation_wait_without_a_watched_folder_logs_the_plain_line(caplog):
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.waiter import OperationWait

    caplog.set_level(logging.INFO, logger=log.name)
    step = OperationWait(DisconnectedOperation("s", "c"), progress=("Waiting for the export of %s", "web-01"))
    assert run_sync(step, Script(PollResult("running"), PollResult("completed"))).ok
    assert [r.getMessage().split(" (waited")[0] for r in caplog.records] == [
        "Waiting for the export of web-01"
    ]


def test_each_round_that_waits_on_sleeps_what_the_step_asks(monkeypatch):
    """The loop asks the step how long to pause (the ramped merge wait, the export's predicted end)."""
    from airflow_hyperv.hooks import waiter

    slept: list[float] = []
    monkeypatch.setattr(waiter.time, "sleep", slept.append)

    class Counting(HostStateWait):
        def pause(self, interval: float, elapsed: float) -> float:
            return 100.0 + len(slept)

    outcome = wait(
        Counting(TARGET), Script(snapshot("Off"), snapshot("Off"), snapshot("Running")), interval=5, log=log
    )
    assert outcome.ok and slept == [100.0, 101.0]


def test_a_ramped_host_wait_looks_after_one_second_then_as_long_as_it_has_waited():
    ramped, plain = HostStateWait(TARGET, ramp=True), HostStateWait(TARGET)
    assert [ramped.pause(10, elapsed) for elapsed in (0, 0.5, 1, 3, 8, 30)] == [1, 1, 1, 3, 8, 10]
    assert [plain.pause(10, elapsed) for elapsed in (0, 3, 30)] == [10, 10, 10]


def test_an_operations_end_is_predicted_from_its_progress_reads():
    from airflow_hyperv.hooks.waiter import predicted_end

    assert predicted_end([], 1000, 100.0) is None  # nothing read yet
    assert predicted_end([(110.0, 0)], 1000, 100.0) is None  # nothing written yet: no rate
    assert predicted_end([(110.0, 500)], 0, 100.0) is None  # nothing expected
    assert predicted_end([(110.0, 250)], 1000, 100.0) == pytest.approx(140.0)  # one read: since the start
    assert predicted_end([(110.0, 250)], 1000, None) is None  # ... and no start recorded
    assert predicted_end([(110.0, 100), (120.0, 400)], 1000, 100.0) == pytest.approx(140.0)  # between reads
    assert predicted_end([(110.0, 100), (120.0, 1200)], 1000, 100.0) == 120.0  # all written: due now


def test_an_operation_wait_looks_just_after_its_predicted_end_and_only_a_few_times_more(monkeypatch):
    from airflow_hyperv.hooks import waiter
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.waiter import OperationPoll, OperationWait
    from airflow_hyperv.hyperv.progress import OutputProgress

    now = [1000.0]
    monkeypatch.setattr(waiter.time, "time", lambda: now[0])
    op = DisconnectedOperation(shell_id="s", command_id="c", label="export-checkpoint", started_at=990.0)
    step = OperationWait(op, watch=OutputProgress("D:\\Backups\\x", 4000, "web-01"))
    assert step.pause(10, 0) == 10  # nothing read: the wait's own cadence
    step.judge(OperationPoll(PollResult("running"), written=1000))  # 1000 bytes in 10 s: ends at 1030
    assert step.pause(10, 10) == 10  # 30 s to go
    now[0] = 1023.0
    assert step.pause(10, 33) == pytest.approx(7.5)  # the end, and half a second
    now[0] = 1029.8
    assert step.pause(10, 40) == 1.0  # just before it: not sooner than a second
    now[0] = 1031.0
    assert step.pause(10, 41) == 2.5  # overdue: a quarter interval, for one interval
    now[0] = 1041.0
    assert step.pause(10, 51) == 10  # past that: back to the cadence
    unwatched = OperationWait(op)
    unwatched.judge(OperationPoll(PollResult("running"), written=1000))
    assert unwatched.pause(10, 10) == 10  # nothing expected: no prediction


def test_with_a_lead_the_wait_ends_nearly_done_that_long_before_the_predicted_end(monkeypatch):
    from airflow_hyperv.hooks import waiter
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.waiter import OperationPoll, OperationWait
    from airflow_hyperv.hyperv.progress import OutputProgress

    now = [1000.0]
    monkeypatch.setattr(waiter.time, "time", lambda: now[0])
    monkeypatch.setattr(waiter, "HANDBACK_NOT_BEFORE", 0.0)  # the guard has its own test below
    op = DisconnectedOperation(shell_id="s", command_id="c", label="export-checkpoint", started_at=990.0)
    step = OperationWait(op, watch=OutputProgress("D:\\Backups\\x", 4000, "web-01"), lead=5)
    far = step.judge(OperationPoll(PollResult("running"), written=1000))  # ends at 1030: 30 s away
    assert not far.done
    assert step.pause(10, 10) == 10  # 25 s to the lead: the cadence
    now[0] = 1020.0
    assert step.pause(10, 30) == pytest.approx(5.5)  # the poll that finds the end within the lead
    now[0] = 1025.5
    near = step.judge(OperationPoll(PollResult("running")))
    assert near.done and not near.failed and near.details == {"nearly_done": True}, near
    ended = step.judge(OperationPoll(PollResult("completed")))
    assert ended.done and "nearly_done" not in ended.details  # an end seen first is an ordinary end
    no_lead = OperationWait(op, watch=OutputProgress("D:\\Backups\\x", 4000, "web-01"))
    no_lead.judge(OperationPoll(PollResult("running"), written=1000))
    assert not no_lead.judge(OperationPoll(PollResult("running"))).done  # positive control: lead 0


def test_an_early_hand_back_waits_until_the_wait_is_old_enough(monkeypatch):
    """Airflow 3.3 may fail a task whose trigger fires within seconds of its deferral: no early hand-back
    before HANDBACK_NOT_BEFORE (30 s); the poll after that moment is the one that may hand back."""
    from airflow_hyperv.hooks import waiter
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.waiter import HANDBACK_NOT_BEFORE, OperationPoll, OperationWait
    from airflow_hyperv.hyperv.progress import OutputProgress

    assert HANDBACK_NOT_BEFORE == 30.0
    now = [1000.0]
    monkeypatch.setattr(waiter.time, "time", lambda: now[0])
    op = DisconnectedOperation(shell_id="s", command_id="c", label="export-checkpoint", started_at=999.0)
    step = OperationWait(op, watch=OutputProgress("D:\\Backups\\x", 4000, "web-01"), lead=10)
    now[0] = 1001.0
    early = step.judge(OperationPoll(PollResult("running"), written=200))  # 100 B/s: ends at 1039
    assert not early.done  # 38 s to go, 1 s into the wait
    now[0] = 1025.0
    assert not step.judge(OperationPoll(PollResult("running"))).done  # within the lead, but only 25 s old
    assert step.pause(10, 25) == pytest.approx(5.5)  # the poll just after the wait is 30 s old
    now[0] = 1030.5
    assert step.judge(OperationPoll(PollResult("running"))).details == {"nearly_done": True}
