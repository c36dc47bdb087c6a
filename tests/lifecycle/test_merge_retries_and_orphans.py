"""The merge says "merged" only when its own checkpoint's disks have left the chain, on every try
(issue 10 items 3 and 10), through dag.test() against an emulator whose clock the test moves.

With a manual clock a removed checkpoint's merge stays pending until the test advances the clock, so
"the first try timed out while the host was still merging" is sequenced, not raced.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_hyperv.hyperv.enums import Consistency
from hyperv_emulator.faults import Fault
from tests.support.dags import write_dag
from tests.support.emulated import settings_for, uri_for

HOUR = 3600.0


@pytest.fixture
def emulator(tmp_path: Any) -> Iterator[Any]:
    """Replaces the shared fixture: a manual clock, so merges end only when the test says so."""
    from hyperv_emulator.api import Emulator
    from hyperv_emulator.model.clock import ManualClock

    with Emulator(root_dir=tmp_path / "hosts", auth="basic", clock=ManualClock()) as emu:
        yield emu


@pytest.fixture
def conn(airflow_db: Any, emulator: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    return emulator


def merge_dag(dag_id: str, *, create: bool, on_retry: Any = None, wait_timeout: float = 1.0) -> Any:
    """checkpoint (optional) >> merge, written to the dags folder (dag.test() needs a parsed DAG)."""
    checkpoint = (
        'HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="crash") >> merge'
        if create
        else ""
    )
    source = textwrap.dedent(
        f"""
        import datetime as dt
        import pendulum
        from airflow.sdk import DAG
        from airflow_hyperv.operators.checkpoint import (
            HyperVCreateCheckpointOperator,
            HyperVMergeCheckpointOperator,
        )

        with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                 default_args={{"retries": 1, "retry_delay": dt.timedelta(0)}}) as dag:
            merge = HyperVMergeCheckpointOperator(
                task_id="merge", vm="web-01", deferrable=False, poll_interval=0.05, wait_timeout={wait_timeout!r}
            )
            {checkpoint}
        """
    )
    dag = write_dag(dag_id, source)
    if on_retry is not None:
        dag.get_task("merge").on_retry_callback = [on_retry]
    return dag


def tis(run: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in run.get_task_instances()}


def web(emulator: Any) -> Any:
    return next(v for v in emulator.host("hv-01").vms() if v.name == "web-01")


def foreign_checkpoint(emulator: Any) -> None:
    """Someone's own checkpoint on the VM: the case where the old retry skipped the disk wait."""
    from airflow_hyperv.hooks.hyperv import HyperVHook

    with HyperVHook(settings=settings_for(emulator, "hv-01")) as hv:
        vm = hv.get_vm(name="web-01")
        hv.create_checkpoint(vm.id, "before-the-release", consistency=Consistency.CRASH)


def test_a_retry_after_the_first_try_removed_the_checkpoint_still_waits_for_its_merge(conn: Any) -> None:
    emulator = conn
    foreign_checkpoint(emulator)
    run = merge_dag("merge_retry_still_merging", create=True).test()
    ti = tis(run)["merge"]
    vm = web(emulator)
    assert emulator.audit.entries(cmdlet="Remove-VMSnapshot"), "the first try removed the checkpoint"
    assert vm.merge_until is not None, "the host is still merging (the clock never moved)"
    # Both tries waited and failed: none called the unfinished merge clean.
    assert str(ti.state) == "failed" and ti.try_number == 2, (ti.state, ti.try_number)
    assert ti.xcom_pull(task_ids="merge") is None


def test_a_retry_reports_merged_once_the_first_tries_merge_has_finished(conn: Any) -> None:
    emulator = conn
    foreign_checkpoint(emulator)
    clock = emulator.host("hv-01").clock

    def merge_finishes_between_tries(context: Any) -> None:
        clock.advance(HOUR)

    run = merge_dag("merge_retry_finished", create=True, on_retry=merge_finishes_between_tries).test()
    ti = tis(run)["merge"]
    assert str(ti.state) == "success" and ti.try_number == 2, (ti.state, ti.try_number)
    result = ti.xcom_pull(task_ids="merge")
    assert result["merged"] is True, result  # the retry knew which disks, and saw them leave the chain
    assert len(emulator.audit.entries(cmdlet="Remove-VMSnapshot")) == 1
    assert [c.name for c in emulator.host("hv-01").snapshots(web(emulator))] == ["before-the-release"]


def test_a_pre_existing_orphaned_avhdx_is_reported_at_once_not_waited_for(conn: Any) -> None:
    """A merge that failed before this run left the VM on an AVHDX with no checkpoint: not this run's."""
    from airflow_hyperv.hooks.hyperv import HyperVHook

    emulator = conn
    emulator.faults.inject(Fault.MERGE_FAILURE, vm="web-01")
    with HyperVHook(settings=settings_for(emulator, "hv-01")) as hv:
        vm_id = uuid.UUID(str(web(emulator).id))
        old = hv.create_checkpoint(vm_id, "long-ago", consistency=Consistency.CRASH).checkpoint
        hv.remove_checkpoint(old.id)
        emulator.host("hv-01").clock.advance(HOUR)
        orphan = hv.vm_overview(vm_id).drives[0].path
    assert emulator.faults.count_fired(Fault.MERGE_FAILURE) == 1 and orphan.lower().endswith(".avhdx")

    run = merge_dag("merge_with_an_old_orphan", create=False, wait_timeout=30.0).test()
    ti = tis(run)["merge"]
    assert str(ti.state) == "success" and ti.try_number == 1, (ti.state, ti.try_number)
    result = ti.xcom_pull(task_ids="merge")
    assert result["merged"] is False and result["orphaned_avhdx"] == [orphan], result
