"""A deferrable merge first waits in the worker (``defer_after``): a merge that ends meanwhile costs no
deferral, no resumed task and no second pool; one that does not is deferred with what is left of its
``wait_timeout``. The real hook and pypsrp against an emulator whose clock the test moves: a merge
ends exactly when the test advances the clock, so every order below is sequenced, not raced.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import types
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator
from tests.lifecycle.test_cluster_chain import MemoryStateStore, _TaskInstance
from tests.support.emulated import uri_for

HOUR = 3600.0
DAY = dt.datetime(2026, 11, 20, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def emulator(tmp_path: Any, monkeypatch: Any) -> Iterator[Any]:
    from hyperv_emulator.api import Emulator
    from hyperv_emulator.model.clock import ManualClock

    with Emulator(root_dir=tmp_path / "hosts", auth="basic", clock=ManualClock()) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emu, "hv-01"))
        yield emu


def context(run_id: str) -> dict[str, Any]:
    dag_run = types.SimpleNamespace(dag_id="merge_defer_after", run_id=run_id, run_after=DAY, start_date=DAY)
    return {
        "dag_run": dag_run,
        "logical_date": DAY,
        "ti": _TaskInstance(),
        "task_state_store": MemoryStateStore(),
    }


def web_01(emu: Any) -> Any:
    return next(v for v in emu.host("hv-01").vms() if v.name == "web-01")


@pytest.fixture
def looks(emulator: Any, monkeypatch: Any) -> list[int]:
    """Each host-state poll (the merge wait's look at the host), counted; the real call still runs."""
    seen: list[int] = []
    real = HyperVHook.host_state

    def host_state(self: HyperVHook, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(seen) + 1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HyperVHook, "host_state", host_state)
    return seen


def test_a_merge_that_ends_while_the_worker_waits_is_not_deferred(
    emulator: Any, looks: list[int], monkeypatch: Any
):
    ctx = context("manual__short")
    HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="crash").execute(ctx)
    assert [c.name for c in web_01(emulator).checkpoints]  # positive control: there is one to merge
    counted = HyperVHook.host_state

    def merge_ends_before_the_second_look(self: HyperVHook, *args: Any, **kwargs: Any) -> Any:
        if len(looks) == 1:  # the first look saw it merging; the host finishes before the next
            emulator.clock.advance(HOUR)
        return counted(self, *args, **kwargs)

    monkeypatch.setattr(HyperVHook, "host_state", merge_ends_before_the_second_look)
    merge = HyperVMergeCheckpointOperator(
        task_id="merge", vm="web-01", deferrable=True, poll_interval=0.05, defer_after=30
    )
    result = merge.execute(ctx)  # no TaskDeferred: it ended in the worker
    assert result["merged"] is True and looks == [1, 2]
    vm = web_01(emulator)
    assert not vm.checkpoints and not [d for d in vm.hard_drives if d.disk.path.lower().endswith(".avhdx")]


def test_a_merge_still_running_after_defer_after_is_deferred_with_the_rest_of_its_timeout(
    emulator: Any, looks: list[int]
):
    ctx = context("manual__long")
    HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="crash").execute(ctx)
    merge = HyperVMergeCheckpointOperator(
        task_id="merge", vm="web-01", deferrable=True, poll_interval=0.05, defer_after=0.3, wait_timeout=100
    )
    with pytest.raises(TaskDeferred) as deferred:
        merge.execute(ctx)
    assert len(looks) > 1  # it waited in the worker first (the clock never moved: still merging)
    _classpath, kwargs = deferred.value.trigger.serialize()
    assert 99.0 < kwargs["give_up_after"] < 100.0  # wait_timeout bounds the whole wait, worker part included
    trigger = type(deferred.value.trigger)(**kwargs)
    emulator.clock.advance(HOUR)

    async def first_event() -> Any:
        return await trigger.run().__anext__()

    event = asyncio.run(asyncio.wait_for(first_event(), 60)).payload
    assert event["status"] == "success", event
    assert merge.execute_complete(ctx, event)["merged"] is True
    assert not web_01(emulator).checkpoints


def test_a_transient_fault_while_the_worker_waits_hands_the_wait_to_the_trigger(
    emulator: Any, looks: list[int], monkeypatch: Any
):
    from hyperv_emulator.faults import Fault

    ctx = context("manual__fault")
    HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="crash").execute(ctx)
    counted = HyperVHook.host_state

    def busy_from_the_first_look(self: HyperVHook, *args: Any, **kwargs: Any) -> Any:
        if not looks:  # every request refused as busy, past the hook's own retries
            emulator.faults.inject(Fault.WSMAN_BUSY, times=None)
        return counted(self, *args, **kwargs)

    monkeypatch.setattr(HyperVHook, "host_state", busy_from_the_first_look)
    merge = HyperVMergeCheckpointOperator(
        task_id="merge", vm="web-01", deferrable=True, poll_interval=0.05, defer_after=30
    )
    with pytest.raises(TaskDeferred):
        merge.execute(ctx)
    assert looks == [1] and emulator.faults.count_fired(Fault.WSMAN_BUSY) > 1  # the fault fired, retried
    emulator.faults.clear()


def test_defer_after_zero_defers_at_once(emulator: Any, looks: list[int]):
    ctx = context("manual__zero")
    HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="crash").execute(ctx)
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", deferrable=True, defer_after=0)
    with pytest.raises(TaskDeferred):
        merge.execute(ctx)
    assert looks == []


def test_the_default_comes_from_the_hyperv_config_section(monkeypatch: Any):
    monkeypatch.setenv("AIRFLOW__HYPERV__MERGE_DEFER_AFTER", "7.5")
    assert HyperVMergeCheckpointOperator(task_id="merge", vm="web-01").defer_after == 7.5
    monkeypatch.delenv("AIRFLOW__HYPERV__MERGE_DEFER_AFTER")
    assert HyperVMergeCheckpointOperator(task_id="merge", vm="web-01").defer_after == 30.0
    assert HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", defer_after=0).defer_after == 0.0


def test_a_negative_defer_after_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="defer_after"):
        HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", defer_after=-1)
