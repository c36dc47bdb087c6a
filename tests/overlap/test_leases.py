"""Overlapping runs on one VM: the protection lease, the VM's checkpoint type, truthful labels.

Every order is sequenced explicitly: run A holds the VM (its DAG run is made "running" in the
metadata database, or its holder is a run this Airflow does not know), then run B acts.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
import types
import uuid

import pendulum
import pytest

from airflow_hyperv.hyperv.enums import CheckpointType, Consistency
from airflow_hyperv.hyperv.errors import CommandFailedError
from airflow_hyperv.hyperv.lease import new_lease
from airflow_hyperv.hyperv.names import checkpoint_name
from hyperv_emulator.faults import Fault
from tests.support.dags import write_dag
from tests.support.emulated import uri_for

DAY = pendulum.datetime(2026, 11, 20, 1, tz="UTC")


def vm_model(emulator, name="web-01"):
    return next(v for v in emulator.host("hv-01").vms() if v.name == name)


def checkpoint_names(emulator, name="web-01"):
    return sorted(c.name for c in vm_model(emulator, name).checkpoints)


def foreign_lease(vm_id, *, dag_id="other_deployment", run_id="manual__elsewhere"):
    """A holder this Airflow does not know (another deployment sharing the host): never stale."""
    name = checkpoint_name(dag_id=dag_id, run_id=run_id, vm_id=str(vm_id), logical_date=DAY)
    return new_lease(
        dag_id=dag_id, run_id=run_id, vm_id=str(vm_id), checkpoint_name=name,
        checkpoint_type_before="Production", host="hv-01",
    )  # fmt: skip


class _TaskInstance:
    """The one Task SDK call the create task makes about other runs, answered from the metadata DB."""

    map_index = -1

    def get_dagrun_state(self, dag_id, run_id):
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
            if run is None:
                raise LookupError(f"no DAG run {dag_id}/{run_id}")
            return str(run.state)


def context_for(dag_id, run_id, when=DAY):
    dag_run = types.SimpleNamespace(dag_id=dag_id, run_id=run_id, run_after=when, start_date=when)
    return {"dag_run": dag_run, "logical_date": when, "ti": _TaskInstance()}


def set_run_state(run, state):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == run.dag_id, DagRun.run_id == run.run_id).update(
            {"state": state}
        )


@pytest.fixture
def create_only_dag(airflow_db, emulator, monkeypatch):
    """Run A: a DAG that only takes a checkpoint of web-01 (so it keeps its checkpoint and lease)."""
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    source = textwrap.dedent(
        """
        import pendulum
        from airflow.sdk import DAG
        from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator

        with DAG("overlap_a", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                 catchup=False, default_args={"retries": 0}) as dag:
            HyperVCreateCheckpointOperator(task_id="production_checkpoint", vm="web-01", poll_interval=0.1)
        """
    )
    return write_dag("overlap_a", source)


def run_a_holds_web01(create_only_dag, emulator, hook):
    """Run A takes its checkpoint and lease of web-01; returns (A's DAG run, A's checkpoint name)."""
    run = create_only_dag.test(logical_date=DAY)
    assert str(run.state) == "success"
    held = hook.read_lease(vm_model(emulator).id)
    assert held is not None and held.run_id == run.run_id
    assert checkpoint_names(emulator) == [held.checkpoint_name]
    return run, held.checkpoint_name


# -- hook level ---------------------------------------------------------------------------------------


def test_only_one_run_gets_the_lease_and_only_its_owner_releases_it(hook, emulator):
    vm = hook.get_vm(name="web-01")
    a, b = foreign_lease(vm.id, run_id="a"), foreign_lease(vm.id, run_id="b")
    assert hook.acquire_lease(a).ours
    claim = hook.acquire_lease(b)
    assert not claim.ours and claim.lease.run_id == "a"
    again = hook.acquire_lease(a)  # a retry of A's task resumes its own lease
    assert again.ours and again.resumed
    assert hook.release_lease(b) is False and hook.read_lease(vm.id) is not None
    assert hook.release_lease(a) is True and hook.read_lease(vm.id) is None
    refused = [e for e in emulator.audit.entries(cmdlet="New-Item") if "NewItemIOError" in ",".join(e.errors)]
    assert (
        len(refused) == 2
    )  # the emulator refused B's and A's second create, as New-Item without -Force does


def test_failed_set_vm_productiononly_stops_the_invocation_and_labels_nothing_application(hook, emulator):
    """Old code: Set-VM failed non-terminating, Checkpoint-VM ran under the VM's own Production type,
    fell back to a standard checkpoint (the guest could not quiesce) and it was labelled application."""
    vm = hook.get_vm(name="web-01")
    emulator.faults.inject(Fault.SET_VM_FAILURE, vm="web-01")
    emulator.faults.inject(Fault.GUEST_CANNOT_QUIESCE, vm="web-01")
    with pytest.raises(CommandFailedError, match="no checkpoint was attempted"):
        hook.create_checkpoint(vm.id, "airflow-hyperv t", consistency=Consistency.APPLICATION)
    assert emulator.faults.count_fired(Fault.SET_VM_FAILURE) == 1
    assert checkpoint_names(emulator) == []
    assert vm_model(emulator).checkpoint_type.name == "Production"
    # -ErrorAction Stop ended the whole invocation at the first Set-VM: nothing after it ran.
    assert emulator.audit.entries(cmdlet="Checkpoint-VM") == []
    assert [e.outcome for e in emulator.audit.entries(cmdlet="Set-VM")] == ["failed"]


def test_a_checkpoint_with_memory_state_is_crash_consistent_whatever_was_asked(hook, emulator):
    vm = hook.get_vm(name="web-01")
    hook.set_checkpoint_type(vm.id, CheckpointType.Standard)
    made = hook.create_checkpoint(vm.id, "airflow-hyperv s", consistency=Consistency.CRASH)
    assert made.checkpoint.has_memory_state
    hook.set_checkpoint_type(vm.id, CheckpointType.Production)
    again = hook.create_checkpoint(vm.id, "airflow-hyperv s", consistency=Consistency.APPLICATION)
    assert not again.created and again.consistency is Consistency.CRASH


def test_an_answer_lost_between_create_and_rename_is_adopted_once_and_named(hook, emulator):
    vm = hook.get_vm(name="web-01")
    lease = foreign_lease(vm.id)
    assert hook.acquire_lease(lease).ours
    before = [str(c.id) for c in hook.list_checkpoints(vm.id)]
    lease = hook.record_lease(type(lease)(**{**lease.__dict__, "existing_checkpoint_ids": tuple(before)}))
    emulator.faults.inject(Fault.SESSION_LOST_BEFORE_RENAME, vm="web-01")
    emulator.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Checkpoint-VM")
    result = hook.create_checkpoint(
        vm.id, lease.checkpoint_name, consistency=Consistency.APPLICATION, lease=lease
    )
    assert emulator.faults.count_fired(Fault.SESSION_LOST_BEFORE_RENAME) == 1
    assert emulator.faults.count_fired(Fault.DROP_AFTER_RUN) == 1
    assert checkpoint_names(emulator) == [lease.checkpoint_name]  # one checkpoint, renamed
    assert result.checkpoint.name == lease.checkpoint_name and result.created  # by this call, once
    assert len(emulator.audit.entries(cmdlet="Checkpoint-VM")) == 1  # never a second one
    assert len(emulator.audit.entries(cmdlet="Rename-VMSnapshot")) == 1
    # The lost session never ran the statement that puts the type back: the adoption did.
    assert vm_model(emulator).checkpoint_type.name == "Production"


def test_the_merge_puts_back_the_type_recorded_in_the_lease(hook, emulator, monkeypatch):
    """A create whose restoring Set-VM never ran (its worker was killed) left ProductionOnly behind."""
    from airflow_hyperv.operators.checkpoint import HyperVMergeCheckpointOperator

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    vm = hook.get_vm(name="web-01")
    lease = foreign_lease(vm.id, dag_id="overlap_b", run_id="run_b")
    assert hook.acquire_lease(lease).ours
    hook.set_checkpoint_type(vm.id, CheckpointType.ProductionOnly)
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", poll_interval=0.1)
    result = merge.execute(context_for("overlap_b", "run_b"))
    assert result["merged"] is False  # nothing to merge: the create never made one
    assert vm_model(emulator).checkpoint_type.name == "Production"
    assert hook.read_lease(vm.id) is None


# -- Airflow: dag.test() and the create operator ------------------------------------------------------


def test_a_stale_lease_is_taken_over_and_its_checkpoint_left_alone(
    create_only_dag, dag_factory, emulator, hook
):
    """Run A finished without merging (its lease is stale). Run B, whose chain includes retention,
    takes the lease over, protects the VM and never touches A's checkpoint (the old retention
    merged every provider checkpoint but its own run's)."""
    _run_a, a_checkpoint = run_a_holds_web01(create_only_dag, emulator, hook)
    dag_b = dag_factory(
        "overlap_b", vm="web-01", export_root="D:\\Backups", keep_exports=2, busy_timeout=60,
    )  # fmt: skip
    run_b = dag_b.test(logical_date=DAY.add(hours=1))
    states = {ti.task_id: str(ti.state) for ti in run_b.get_task_instances()}
    assert str(run_b.state) == "success", states
    assert states["protect_web-01.retention_production"] == "success"
    assert checkpoint_names(emulator) == [a_checkpoint]  # A's checkpoint untouched, B's merged
    assert hook.read_lease(vm_model(emulator).id) is None  # B released what it took over
    assert vm_model(emulator).checkpoint_type.name == "Production"


def test_the_second_run_defers_while_the_first_holds_the_vm_and_proceeds_after_its_merge(
    create_only_dag, emulator, hook, monkeypatch
):
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_hyperv.operators.checkpoint import (
        HyperVCreateCheckpointOperator,
        HyperVMergeCheckpointOperator,
    )

    run_a, a_checkpoint = run_a_holds_web01(create_only_dag, emulator, hook)
    set_run_state(run_a, "running")  # A is still at work (exporting, say)
    create_b = HyperVCreateCheckpointOperator(
        task_id="production_checkpoint",
        vm="web-01",
        deferrable=True,
        poll_interval=0.05,
        reschedule_when_busy=False,
    )
    context_b = context_for("overlap_b", "run_b", DAY.add(hours=1))
    with pytest.raises(TaskDeferred) as deferred:
        create_b.execute(context_b)
    trigger = deferred.value.trigger
    assert trigger.wait_for.value == "lease_free" and trigger.target.holder.run_id == run_a.run_id
    assert checkpoint_names(emulator) == [a_checkpoint]  # B changed nothing yet

    # A's merge teardown merges A's checkpoint and releases the lease; then B's trigger fires.
    merge_a = HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", poll_interval=0.05)
    assert merge_a.execute(context_for(run_a.dag_id, run_a.run_id, DAY))["merged"] is True
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "success" and "released" in event["message"]
    made = create_b.execute_complete(context_b, event)
    assert checkpoint_names(emulator) == [made["checkpoint_name"]]
    held = hook.read_lease(vm_model(emulator).id)
    assert held is not None and held.run_id == "run_b"

    merge_b = HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", poll_interval=0.05)
    assert merge_b.execute(context_b)["merged"] is True
    assert checkpoint_names(emulator) == [] and hook.read_lease(vm_model(emulator).id) is None
    assert vm_model(emulator).checkpoint_type.name == "Production"


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def test_the_second_run_polls_in_the_worker_while_the_first_holds_the_vm(hook, emulator, monkeypatch):
    """The non-deferrable path: B polls the lease; it proceeds once A released it (sequenced on
    the emulator's audit log: A releases only after B was seen polling twice)."""
    from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    vm = hook.get_vm(name="web-01")
    lease_a = foreign_lease(vm.id)
    assert hook.acquire_lease(lease_a).ours
    create_b = HyperVCreateCheckpointOperator(
        task_id="production_checkpoint",
        vm="web-01",
        deferrable=False,
        poll_interval=0.05,
        reschedule_when_busy=False,
    )
    outcome: dict = {}

    def run_b():
        try:
            outcome["made"] = create_b.execute(context_for("overlap_b", "run_b"))
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    polls_before = len(emulator.audit.entries(cmdlet="New-Item"))
    worker = threading.Thread(target=run_b)
    worker.start()
    refused = []
    for _ in range(2000):  # bounded: B's refused creates are what we wait for, not time
        refused = [e for e in emulator.audit.entries(cmdlet="New-Item")[polls_before:] if e.errors]
        if len(refused) >= 2 or not worker.is_alive():
            break
        threading.Event().wait(0.01)
    assert len(refused) >= 2, outcome  # B polled, refused each time, and made nothing
    assert checkpoint_names(emulator) == []
    assert hook.release_lease(lease_a)
    worker.join(timeout=120)
    assert "made" in outcome, outcome
    assert checkpoint_names(emulator) == [outcome["made"]["checkpoint_name"]]


def test_on_busy_skip_skips_and_names_the_holder(hook, emulator, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    vm = hook.get_vm(name="web-01")
    assert hook.acquire_lease(foreign_lease(vm.id)).ours
    create_b = HyperVCreateCheckpointOperator(task_id="production_checkpoint", vm="web-01", on_busy="skip")
    with pytest.raises(AirflowSkipException, match=r"other_deployment.*manual__elsewhere"):
        create_b.execute(context_for("overlap_b", "run_b"))
    assert checkpoint_names(emulator) == []
    assert hook.read_lease(vm.id).dag_id == "other_deployment"  # the holder's lease is untouched


def test_busy_parameters_are_checked_when_the_dag_is_parsed():
    from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator
    from airflow_hyperv.operators.export import HyperVRetentionOperator

    with pytest.raises(ValueError, match="on_busy"):
        HyperVCreateCheckpointOperator(task_id="c", vm="web-01", on_busy="steal")
    with pytest.raises(ValueError, match="HyperVMergeCheckpointOperator"):
        HyperVRetentionOperator(
            task_id="r", vm="web-01", export_root="D:\\B", merge_leftover_checkpoints=True
        )
    with pytest.raises(ValueError, match="max_age_days"):
        HyperVRetentionOperator(task_id="r", vm="web-01", export_root="D:\\B", max_age_days=0)


def test_a_run_whose_set_vm_failed_fails_leaves_nothing_and_keeps_the_type(dag_factory, emulator, hook):
    dag = dag_factory("overlap_setvm", vm="web-01")
    emulator.faults.inject(Fault.SET_VM_FAILURE, vm="web-01")
    run = dag.test(logical_date=DAY)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert emulator.faults.count_fired(Fault.SET_VM_FAILURE) == 1
    assert str(run.state) == "failed" and states["protect_web-01.production_checkpoint"] == "failed", states
    assert checkpoint_names(emulator) == []
    assert vm_model(emulator).checkpoint_type.name == "Production"
    assert hook.read_lease(vm_model(emulator).id) is None


def test_a_run_whose_create_lost_its_session_ends_with_one_checkpoint_merged_and_the_type_back(
    dag_factory, emulator, hook
):
    dag = dag_factory("overlap_drop", vm="web-01")
    emulator.faults.inject(Fault.SESSION_LOST_BEFORE_RENAME, vm="web-01")
    emulator.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Checkpoint-VM")
    run = dag.test(logical_date=DAY)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert emulator.faults.count_fired(Fault.SESSION_LOST_BEFORE_RENAME) == 1
    assert len(emulator.audit.entries(cmdlet="Checkpoint-VM")) == 1
    assert checkpoint_names(emulator) == []  # adopted, exported nothing here, merged
    assert vm_model(emulator).checkpoint_type.name == "Production"
    assert hook.read_lease(vm_model(emulator).id) is None


def test_lease_ids_are_guids_only():
    from airflow_hyperv.hyperv.lease import lease_path

    assert lease_path("C:\\ProgramData\\airflow-hyperv\\leases", uuid.UUID(int=1)).endswith(
        "\\00000000-0000-0000-0000-000000000001.lease"
    )
    with pytest.raises(ValueError):
        lease_path("C:\\leases", "web-01*")


def test_in_a_dag_run_the_second_run_defers_and_fails_naming_the_holder_after_busy_timeout(
    create_only_dag, dag_factory, emulator, hook
):
    """dag.test() runs the trigger inline: B's checkpoint task defers on A's lease (the failure text
    comes from execute_complete, reached only through the trigger), gives up after busy_timeout and
    changes nothing; A keeps its checkpoint and its lease."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run_a, a_checkpoint = run_a_holds_web01(create_only_dag, emulator, hook)
    set_run_state(run_a, "running")
    dag_b = dag_factory(
        "overlap_b_deferred", vm="web-01", deferrable=True, busy_timeout=1, reschedule_when_busy=False
    )
    run_b = dag_b.test(logical_date=DAY.add(hours=1))
    states = {ti.task_id: str(ti.state) for ti in run_b.get_task_instances()}
    assert str(run_b.state) == "failed"
    assert states["protect_web-01.production_checkpoint"] == "failed", states
    with create_session() as session:
        rows = session.query(XComModel).filter_by(run_id=run_b.run_id, key="hyperv_failure").all()
        reasons = [XComModel.deserialize_value(r)["reason"] for r in rows]
    assert any("stayed busy" in r and run_a.run_id in r for r in reasons), reasons
    assert checkpoint_names(emulator) == [a_checkpoint]
    assert hook.read_lease(vm_model(emulator).id).run_id == run_a.run_id
    assert vm_model(emulator).checkpoint_type.name == "Production"


def test_by_default_a_busy_vm_reschedules_the_task_so_it_holds_no_worker_or_pool_slot(
    hook, emulator, monkeypatch
):
    """The example pools count deferred tasks: a run deferred on another run's lease would hold a slot
    the holder's own export and merge may need. The default wait is a reschedule, which holds none."""
    from airflow.sdk.exceptions import AirflowRescheduleException

    from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    vm = hook.get_vm(name="web-01")
    assert hook.acquire_lease(foreign_lease(vm.id)).ours
    create_b = HyperVCreateCheckpointOperator(
        task_id="production_checkpoint", vm="web-01", deferrable=True, poll_interval=30
    )
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        create_b.execute(context_for("overlap_b", "run_b"))
    wait = (rescheduled.value.reschedule_date - pendulum.now("UTC")).total_seconds()
    assert 0 < wait <= 30  # the next look at the lease: one poll interval from now
    assert checkpoint_names(emulator) == []
    assert hook.read_lease(vm.id).dag_id == "other_deployment"  # the holder's lease is untouched


def test_in_a_dag_run_the_second_run_reschedules_and_fails_naming_the_holder_after_busy_timeout(
    create_only_dag, dag_factory, emulator, hook
):
    """Through dag.test(): B's checkpoint task is rescheduled while A holds the lease, then gives up
    after busy_timeout naming A's run; nothing changed, A keeps its checkpoint and its lease."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    run_a, a_checkpoint = run_a_holds_web01(create_only_dag, emulator, hook)
    set_run_state(run_a, "running")
    dag_b = dag_factory("overlap_b_rescheduled", vm="web-01", busy_timeout=1, poll_interval=0.2)
    run_b = dag_b.test(logical_date=DAY.add(hours=2))
    states = {ti.task_id: str(ti.state) for ti in run_b.get_task_instances()}
    assert str(run_b.state) == "failed"
    assert states["protect_web-01.production_checkpoint"] == "failed", states
    with create_session() as session:
        rescheduled = (
            session.query(TaskReschedule)
            .join(TaskReschedule.task_instance)
            .filter_by(run_id=run_b.run_id, task_id="protect_web-01.production_checkpoint")
            .count()
        )
        rows = session.query(XComModel).filter_by(run_id=run_b.run_id, key="hyperv_failure").all()
        reasons = [XComModel.deserialize_value(r)["reason"] for r in rows]
    assert rescheduled >= 1  # it waited by reschedule (the fault-free path never reschedules)
    assert any("still being protected" in r and run_a.run_id in r for r in reasons), reasons
    assert checkpoint_names(emulator) == [a_checkpoint]
    assert hook.read_lease(vm_model(emulator).id).run_id == run_a.run_id
    assert vm_model(emulator).checkpoint_type.name == "Production"


def test_verify_reports_another_runs_lease_and_checkpoint_as_theirs(hook, emulator, monkeypatch):
    """Old text: another run's checkpoint "will be removed by the retention task"; no lease finding."""
    from airflow_hyperv.operators.verify import HyperVVerifyOperator

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    vm = hook.get_vm(name="web-01")
    other = foreign_lease(vm.id)
    assert hook.acquire_lease(other).ours
    hook.create_checkpoint(vm.id, other.checkpoint_name, consistency=Consistency.APPLICATION)
    report = HyperVVerifyOperator(task_id="verify", vm="web-01").execute(context_for("overlap_b", "run_b"))
    findings = {f["code"]: f for f in report["findings"]}
    assert "will not touch" in findings["leftover-ours"]["message"]
    assert "retention" not in findings["leftover-ours"]["message"]
    assert findings["lease-held"]["severity"] == "info"
    assert "other_deployment" in findings["lease-held"]["message"]
    assert report["verdict"] == "production"  # reported, not blocking: the checkpoint task waits


def test_lease_reads_ride_with_the_reads_beside_them(hook, emulator):
    """The lease is read in the round trip of the VM read next to it (recording it, ending it), and a
    record acts on that read: a lease gone meanwhile is refused, never overwritten."""
    from airflow_hyperv.hyperv.errors import HyperVError

    vm = hook.get_vm(name="web-01")
    assert hook.vm_checkpoints_and_lease(vm.id)[2] is None
    lease = foreign_lease(vm.id)
    assert hook.acquire_lease(lease).ours
    current, checkpoints, held = hook.vm_checkpoints_and_lease(vm.id)
    assert held == hook.read_lease(vm.id) == lease and current.id == vm.id
    assert [c.id for c in checkpoints] == [c.id for c in hook.list_checkpoints(vm.id)]
    recorded = type(lease)(**{**lease.__dict__, "checkpoint_type_before": current.checkpoint_type.name})
    with pytest.raises(HyperVError, match="no longer this run's"):  # the read passed in is what counts
        hook.record_lease(recorded, held=None)
    before = emulator.counters.snapshot()
    hook.record_lease(recorded, held=held)
    assert (emulator.counters.snapshot() - before).pipelines_run == 1  # the write only: no second read
    assert hook.read_lease(vm.id) == recorded

    other = hook.finish_lease(vm.id, "airflow-hyperv not-this-run")
    assert other is None and hook.read_lease(vm.id) == recorded  # not ours: left alone
    hook.set_checkpoint_type(vm.id, CheckpointType.ProductionOnly)  # a lost connection left it so
    before = emulator.counters.snapshot()
    assert hook.finish_lease(vm.id, recorded.checkpoint_name) == recorded
    # the lease with the VM, Set-VM, the read right before the removal, the removal
    assert (emulator.counters.snapshot() - before).pipelines_run == 4
    assert vm_model(emulator).checkpoint_type.name == recorded.checkpoint_type_before == "Production"
    assert hook.read_lease(vm.id) is None
