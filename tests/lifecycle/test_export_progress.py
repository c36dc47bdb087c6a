"""A long export says how far it is, in GiB and percent, in the task log: waited for in the worker and
deferred (the trigger's lines are the task's log in Airflow 3).

The export is held with a ManualClock (``auto_advance=False``): Hyper-V writes only when the test moves
time on, so each progress line the test waits for has more bytes than the one before, without sleeps
or timing assertions. The lines are read from the operator's and the trigger's structlog loggers.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from airflow.sdk.exceptions import TaskDeferred

from hyperv_emulator.api import Emulator
from hyperv_emulator.model.clock import ManualClock
from tests.lifecycle.test_export_safety import MemoryStateStore, export_op, exports, provider_checkpoint
from tests.support.emulated import settings_for, uri_for
from tests.support.waiting import wait_for

LINE = re.compile(r"^Export of web-01: (\d+\.\d) of (\d+\.\d) GiB \((\d+) %\), \S+ elapsed$")
# web-01's disk holds 6 GiB (emulator/hyperv_emulator/fleets/example.yaml); at 100 MiB/s of emulated
# time an export takes about a minute, and every 20 s the test lets pass adds about a third.
RATE_MB_PER_S = 100.0
STEP_SECONDS = 20.0


@pytest.fixture
def slow(tmp_path, monkeypatch):
    with Emulator(root_dir=tmp_path / "hosts", auth="basic", clock=ManualClock()) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emu, "hv-01"))
        emu.host("hv-01").timing.export_mb_per_s = RATE_MB_PER_S
        yield emu


@pytest.fixture
def task_log() -> Iterator[list[dict[str, Any]]]:
    """What the operator and the trigger log (structlog, as Airflow 3 sets it up), while the test runs."""
    with structlog.testing.capture_logs() as logs:
        yield logs


def progress(logs: list[dict[str, Any]]) -> list[tuple[float, float, int]]:
    """(GiB written, GiB expected, percent) of each progress line, in order."""
    found = []
    for entry in list(logs):
        match = LINE.match(str(entry.get("event", "")))
        if match:
            found.append((float(match[1]), float(match[2]), int(match[3])))
    return found


def grows(lines: list[tuple[float, float, int]]) -> bool:
    """Never less than before, and more in both GiB and percent at least twice: three distinct readings."""
    steady = all(a[0] <= b[0] and a[2] <= b[2] for a, b in itertools.pairwise(lines))
    distinct = sorted({(gib, pct) for gib, _, pct in lines})
    rising = [b for a, b in itertools.pairwise(distinct) if b[0] > a[0] and b[1] > a[1]]
    return steady and len(rising) >= 2


def let_it_write(emu: Emulator, logs: list[dict[str, Any]], steps: int = 2) -> None:
    """Move emulated time on ``steps`` times, each once a progress line showed what was written so far
    (so the next line must show more), then let the export finish."""
    for _ in range(steps):
        seen = len(progress(logs))
        wait_for(lambda seen=seen: len(progress(logs)) > seen, 60, what="a progress line")
        emu.clock.advance(STEP_SECONDS)
    seen = len(progress(logs))
    wait_for(lambda: len(progress(logs)) > seen, 60, what="a progress line after the last step")
    emu.clock.auto_advance = True


def test_a_worker_export_logs_growing_gib_and_percent(slow, task_log):
    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False  # Hyper-V writes only when the test moves time on
    op = export_op(name, progress_interval=0)  # every round's line is due: the test sets the pace
    store = MemoryStateStore()
    result: dict[str, Any] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.update(op.execute({"task_state_store": store}))
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        let_it_write(slow, task_log)
    finally:
        slow.clock.auto_advance = True
        worker.join(60)
    assert not failure, failure
    lines = progress(task_log)
    assert grows(lines), lines
    # Counted against what the checkpoint's disks hold, which is what the export wrote for them.
    disks = sum(f["length"] for f in result["files"] if "\\virtual hard disks\\" in f["path"])
    assert store.data["hyperv-export"]["expected_bytes"] == disks
    assert {expected for _, expected, _ in lines} == {round(disks / 2**30, 1)}
    assert not waiting_lines(task_log)  # the progress lines replace the plain line of each round


def test_a_deferred_export_logs_growing_gib_and_percent_from_the_trigger(slow, task_log):
    from airflow_hyperv.triggers.hyperv import HyperVOperationTrigger

    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False
    op = export_op(name, deferrable=True, progress_interval=0)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, HyperVOperationTrigger) and trigger.target.progress is not None
    # What the triggerer runs: rebuilt from its serialized kwargs.
    _classpath, kwargs = trigger.serialize()
    trigger = HyperVOperationTrigger(**kwargs)
    events: list[Any] = []
    failure: list[BaseException] = []

    def triggerer() -> None:
        async def first_event() -> Any:
            return await trigger.run().__anext__()

        try:
            events.append(asyncio.run(first_event()))
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=triggerer)
    thread.start()
    try:
        let_it_write(slow, task_log)
    finally:
        slow.clock.auto_advance = True
        thread.join(60)
    assert not failure, failure
    lines = progress(task_log)
    assert grows(lines), lines
    assert events and events[0].payload["status"] == "success", events
    manifest = op.execute_complete({}, events[0].payload)
    assert manifest["path"] and exports(slow)[0].outcome == "ok"


def test_positive_control_a_held_export_does_not_pass_for_a_growing_one(slow, task_log):
    """The check above fails when the bytes do not grow: the export held, time never moved on."""
    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False
    op = export_op(name, progress_interval=0)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({"task_state_store": MemoryStateStore()})
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(lambda: len(progress(task_log)) >= 3, 60, what="three progress lines")
        assert not grows(progress(task_log)), progress(task_log)
    finally:
        op.on_kill()  # cancels the export on the host
        worker.join(60)
    assert failure and "cancelled" in str(failure[0]), failure


def test_no_progress_interval_keeps_the_plain_waiting_line(slow, task_log):
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation

    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False
    deferring = export_op(name, deferrable=True, progress_interval=None)
    with pytest.raises(TaskDeferred) as deferred:
        deferring.execute({})
    target = deferred.value.trigger.target
    assert target.progress is None  # nothing more to read on each poll
    deferring._cancel(settings_for(slow, "hv-01"), DisconnectedOperation.from_dict(target.operation))

    op = export_op(name, progress_interval=None)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({"task_state_store": MemoryStateStore()})
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(lambda: waiting_lines(task_log), 60, what="a plain waiting line")
    finally:
        slow.clock.auto_advance = True
        worker.join(60)
    assert not failure, failure
    assert not progress(task_log)
    assert not [e for e in exports(slow) if e.outcome == "running"]


def waiting_lines(logs: list[dict[str, Any]]) -> list[str]:
    return [
        str(e["event"]) for e in list(logs) if str(e.get("event", "")).startswith("Waiting for the export")
    ]


def staging_reads(emu: Emulator) -> int:
    """Get-ChildItem -Recurse calls the provider made: each progress read is one."""
    return len([e for e in emu.audit.entries(cmdlet="Get-ChildItem") if "Recurse" in str(e.parameters)])


@pytest.mark.parametrize("interval, more_reads", [(3600.0, False), (0.0, True)])
def test_a_deferred_wait_reads_the_staging_folder_only_when_a_line_is_due(
    slow, task_log, interval, more_reads
):
    """Five polls of a held export: with a one-hour interval only the first poll reads the bytes (one
    line, one read, no shell kept between polls); with 0 (the positive control) every poll reads."""
    from airflow_hyperv.triggers.hyperv import HyperVOperationTrigger

    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False
    op = export_op(name, deferrable=True, progress_interval=interval)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    _classpath, kwargs = deferred.value.trigger.serialize()
    trigger = HyperVOperationTrigger(**{**kwargs, "poll_interval": 0.1})
    before_reads = staging_reads(slow)
    before = slow.counters.snapshot()
    done = threading.Event()

    def triggerer() -> None:
        async def until_done() -> None:
            task = asyncio.ensure_future(trigger.run().__anext__())
            while not done.is_set():
                await asyncio.sleep(0.05)
            task.cancel()

        asyncio.run(until_done())

    thread = threading.Thread(target=triggerer)
    thread.start()
    try:
        # A still-running poll ends with a Disconnect: wait for five of them.
        wait_for(lambda: (slow.counters.snapshot() - before).by_action.get("Disconnect", 0) >= 5, 60,
                 what="five polls of the export")  # fmt: skip
    finally:
        done.set()
        thread.join(60)
        slow.clock.auto_advance = True
    reads = staging_reads(slow) - before_reads
    assert len(progress(task_log)) >= 1
    if more_reads:
        assert reads >= 4, reads
    else:
        assert reads == 1, reads
        assert len(progress(task_log)) == 1


def test_a_deferred_export_is_handed_back_before_its_predicted_end_and_ends_in_the_worker(
    slow, task_log, monkeypatch
):
    """The trigger's first progress read predicts the end within ``resume_before_end`` (bytes were
    written at once on the manual clock, so the real-time rate is high): it ends the wait marked
    ``nearly_done``; the task then waits for the end in the worker, which the test lets come."""
    from airflow_hyperv.hooks import waiter
    from airflow_hyperv.triggers.hyperv import HyperVOperationTrigger

    monkeypatch.setattr(waiter, "HANDBACK_NOT_BEFORE", 0.0)  # its 30 s guard: tests/triggers/test_waiter.py

    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False
    op = export_op(name, deferrable=True, resume_before_end=3600.0)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    _classpath, kwargs = deferred.value.trigger.serialize()
    assert kwargs["resume_before_end"] == 3600.0
    slow.clock.advance(STEP_SECONDS)  # a third written, in no real time at all
    trigger = HyperVOperationTrigger(**kwargs)

    async def first_event() -> Any:
        return await trigger.run().__anext__()

    event = asyncio.run(asyncio.wait_for(first_event(), 60)).payload
    assert event["status"] == "success" and event.get("nearly_done"), event
    assert [e.outcome for e in exports(slow)] == ["running"]  # positive control: handed back before its end
    result: dict[str, Any] = {}
    failure: list[BaseException] = []

    def resumed() -> None:
        try:
            result.update(op.execute_complete({}, event))
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=resumed)
    worker.start()
    try:
        wait_for(lambda: any("waiting for its end in the worker" in str(e.get("event")) for e in list(task_log)),
                 60, what="the task waiting in the worker")  # fmt: skip
    finally:
        slow.clock.auto_advance = True  # the export may finish now
        worker.join(60)
    assert not failure, failure
    assert result["path"] and exports(slow)[0].outcome == "ok"


def test_an_export_that_runs_past_its_predicted_end_goes_back_to_the_triggerer(slow, task_log):
    """Handed back early, but the export does not end (the clock is held): after 3 x the lead plus one
    poll interval in the worker the task defers again, and that trigger hands back only at the end."""
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation

    name = provider_checkpoint(slow, "web-01")
    slow.clock.auto_advance = False
    op = export_op(name, deferrable=True, resume_before_end=0.1, poll_interval=0.1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    event = {
        "status": "success",
        "nearly_done": True,
        "message": "test",
        "resume_state": deferred.value.trigger.resume_state,
    }
    with pytest.raises(TaskDeferred) as again:
        op.execute_complete({}, event)
    assert again.value.trigger.resume_before_end == 0.0
    # wait_timeout still counts from the export's start, not from this second deferral
    assert op.wait_timeout - 60 < again.value.trigger.give_up_after < op.wait_timeout
    assert any("deferring again" in str(e.get("event")) for e in list(task_log))
    assert [e.outcome for e in exports(slow)] == ["running"]  # not cancelled: the triggerer waits on
    op._cancel(
        settings_for(slow, "hv-01"), DisconnectedOperation.from_dict(again.value.trigger.target.operation)
    )


def test_the_lead_defaults_to_the_hyperv_config_section(monkeypatch):
    from airflow_hyperv.operators.export import HyperVExportCheckpointOperator

    def lead() -> float:
        return HyperVExportCheckpointOperator(
            task_id="export", vm="web-01", export_root="D:\\B"
        ).resume_before_end

    assert lead() == 10.0
    monkeypatch.setenv("AIRFLOW__HYPERV__EXPORT_RESUME_BEFORE_END", "0")
    assert lead() == 0.0
    with pytest.raises(ValueError, match="resume_before_end"):
        HyperVExportCheckpointOperator(
            task_id="export", vm="web-01", export_root="D:\\B", resume_before_end=-1
        )
