"""The protection chain on a four-node failover cluster (fleets/cluster.yaml), operator by operator with
the real hook and pypsrp: VMs live-migrated between the steps, a VM caught in the middle of a migration,
a node going down between steps, a node that answers "not found" for a VM that just left it.

Every order is sequenced explicitly: migrations are test-tool calls between two steps, or held until
the test completes them (``until_completed``); a step is held at an emulator gate while the VM moves.
"""

from __future__ import annotations

import datetime as dt
import threading
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_hyperv.hooks.cluster import ClusterRouter
from airflow_hyperv.hooks.connection import connection_uri
from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator
from airflow_hyperv.operators.export import HyperVExportCheckpointOperator

CLUSTER_FLEET = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "cluster.yaml"
ROOT = "C:\\ClusterStorage\\Volume2\\Backups"  # every node reaches it at this path
DAY = dt.datetime(2026, 11, 20, 1, tzinfo=dt.timezone.utc)


class MemoryStateStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


class _TaskInstance:
    map_index = -1

    def get_dagrun_state(self, dag_id: str, run_id: str) -> str:
        return "running"


def context(run_id: str) -> dict[str, Any]:
    dag_run = types.SimpleNamespace(dag_id="cluster_chain", run_id=run_id, run_after=DAY, start_date=DAY)
    return {
        "dag_run": dag_run,
        "logical_date": DAY,
        "ti": _TaskInstance(),
        "task_state_store": MemoryStateStore(),
    }


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    from hyperv_emulator.api import Emulator

    monkeypatch.setattr(ClusterRouter, "poll_interval", 0.05)
    with Emulator(CLUSTER_FLEET, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_HYPERV_DEFAULT", connection_uri(**emu.cluster_connection().as_fields())
        )
        yield emu


def vm_id(emu: Any, name: str) -> uuid.UUID:
    return next(g.vm_id for g in emu.cluster().groups.values() if g.name == name)


def where(emu: Any, cmdlet: str) -> list[str]:
    """The nodes a cmdlet ran on, in order."""
    return [e.host for e in emu.audit.entries(cmdlet=cmdlet)]


def vm_model(emu: Any, name: str) -> Any:
    owner = emu.cluster().owner_of(vm_id(emu, name))
    return next(v for v in emu.host(owner).vms() if v.name == name)


def leftovers(emu: Any, name: str) -> dict[str, Any]:
    """What a finished run must not leave: checkpoints, AVHDX files on the CSV, the lease file."""
    vm = vm_model(emu, name)
    csv = emu.host("hv-n1").fs.to_real("C:\\ClusterStorage\\Volume1")
    lease = emu.host("hv-n1").fs.to_real(
        f"C:\\ClusterStorage\\Volume1\\airflow-hyperv\\leases\\{vm.id}.lease"
    )
    return {
        "checkpoints": [c.name for c in vm.checkpoints],
        "avhdx": sorted(p.name for p in csv.rglob("*.avhdx") if name in str(p)),
        "drives": [d.disk.path for d in vm.hard_drives if d.disk.path.lower().endswith(".avhdx")],
        "lease": lease.exists(),
        "checkpoint_type": vm.checkpoint_type.name,
    }


def create(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    return HyperVCreateCheckpointOperator(task_id="checkpoint", vm=name, poll_interval=0.1).execute(ctx)


def export(name: str, ctx: dict[str, Any], root: str = ROOT) -> dict[str, Any]:
    op = HyperVExportCheckpointOperator(
        task_id="export", vm=name, export_root=root, deferrable=False, poll_interval=0.1
    )
    return op.execute(ctx)


def merge(name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    return HyperVMergeCheckpointOperator(
        task_id="merge", vm=name, deferrable=False, poll_interval=0.1
    ).execute(ctx)


def verify_export(emu: Any, manifest: dict[str, Any]) -> list[str]:
    from airflow_hyperv.hooks.hyperv import HyperVHook

    with HyperVHook("hyperv_default") as hv:
        return hv.verify_export(manifest)


def test_the_chain_follows_a_vm_live_migrated_after_the_checkpoint_and_after_the_export(cluster):
    clean = leftovers(cluster, "sql-01")
    ctx = context("manual__migrations")
    made = create("sql-01", ctx)
    assert made["consistency"] == "application" and made["host"] == "hvc-01"
    cluster.cluster().live_migrate(vm_id(cluster, "sql-01"), "hv-n3")
    manifest = export("sql-01", ctx)
    cluster.cluster().live_migrate(vm_id(cluster, "sql-01"), "hv-n2")
    merged = merge("sql-01", ctx)
    # Each step ran on the node that owned the VM at that moment (positive control: they differ).
    assert where(cluster, "Checkpoint-VM") == ["hv-n1"]
    assert where(cluster, "Export-VMSnapshot") == ["hv-n3"]
    assert where(cluster, "Remove-VMSnapshot") == ["hv-n2"]
    # The export is in the cluster's folder, whole, and verifies again from any node.
    assert manifest["path"].startswith(f"{ROOT}\\hvc-01\\{vm_id(cluster, 'sql-01')}\\")
    assert verify_export(cluster, manifest) == []
    assert merged["merged"] is True
    assert leftovers(cluster, "sql-01") == clean  # the checkpoint merged, nothing left


def test_a_step_that_meets_a_vm_in_the_middle_of_a_live_migration_waits_for_it(cluster):
    ctx = context("manual__midway")
    create("web-01", ctx)
    migration = cluster.cluster().start_live_migration(
        vm_id(cluster, "web-01"), "hv-n4", until_completed=True
    )
    outcome: dict[str, Any] = {}

    def run_export() -> None:
        try:
            outcome["manifest"] = export("web-01", ctx)
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    worker = threading.Thread(target=run_export)
    worker.start()
    assert migration.wait_seen(30), "the export never asked about the moving VM"
    assert where(cluster, "Export-VMSnapshot") == []  # nothing was attempted while it moved
    migration.complete()
    worker.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert where(cluster, "Export-VMSnapshot") == ["hv-n4"]
    merge("web-01", ctx)
    assert leftovers(cluster, "web-01")["checkpoints"] == [] and not leftovers(cluster, "web-01")["lease"]


def test_a_node_going_down_between_steps(cluster):
    ctx = context("manual__node_down")
    create("dc-01", ctx)
    assert cluster.cluster().fail_node("hv-n3") == {"dc-01": "hv-n4", "sql-02": "hv-n4", "web-03": "hv-n4"}
    manifest = export("dc-01", ctx)
    merged = merge("dc-01", ctx)
    assert where(cluster, "Checkpoint-VM") == ["hv-n3"]
    assert where(cluster, "Export-VMSnapshot") == ["hv-n4"] and where(cluster, "Remove-VMSnapshot") == [
        "hv-n4"
    ]
    assert verify_export(cluster, manifest) == [] and merged["merged"] is True
    assert leftovers(cluster, "dc-01")["checkpoints"] == [] and not leftovers(cluster, "dc-01")["avhdx"]


def test_a_node_that_answers_not_found_for_a_vm_that_just_left_is_handled(cluster):
    """The merge resolved the VM on hv-n2, then the VM moved before its next pipeline reached hv-n2: that
    node answers the real not-found error; the hook asks the cluster again and goes on on hv-n1."""
    ctx = context("manual__left")
    create("app-01", ctx)
    export("app-01", ctx)
    app = vm_id(cluster, "app-01")
    gate = cluster.faults.gate("Get-VM", vm=str(app))  # the merge's first Get-VM -Id after resolving by name
    outcome: dict[str, Any] = {}

    def run_merge() -> None:
        try:
            outcome["merged"] = merge("app-01", ctx)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run_merge)
    worker.start()
    assert gate.wait_blocked(30)
    cluster.cluster().live_migrate(app, "hv-n1")
    gate.release()
    worker.join(60)
    assert "error" not in outcome, outcome.get("error")
    not_found = [e for e in cluster.audit.entries(host="hv-n2", cmdlet="Get-VM") if e.errors]
    assert not_found and not_found[0].errors == ["ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"]
    assert where(cluster, "Remove-VMSnapshot") == ["hv-n1"] and outcome["merged"]["merged"] is True


def test_an_export_root_on_one_nodes_disk_is_refused_before_anything_changes(cluster):
    ctx = context("manual__local_root")
    create("web-02", ctx)
    before = len(cluster.audit.entries())
    with pytest.raises(AirflowFailException, match="is a folder of one node"):
        export("web-02", ctx, root="D:\\Backups")
    changed = [e.cmdlet for e in cluster.audit.entries()[before:] if not e.cmdlet.startswith("Get-")]
    assert changed == []
    merge("web-02", ctx)


NODES = ("hv-n1", "hv-n2", "hv-n3", "hv-n4")


def requests_per_node(emu: Any) -> dict[str, int]:
    return {node: len(emu.audit.entries(host=node)) for node in NODES}


def run_deferred(emu: Any, op: Any, ctx: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, int]]:
    """What Airflow does with a deferring task: the trigger rebuilt from its serialized kwargs (as the
    triggerer gets it) and run to its first event. Returns the trigger, the event's payload and each
    node's audit count when the task had deferred (before the trigger ran)."""
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    _classpath, kwargs = deferred.value.trigger.serialize()
    assert deferred.value.method_name == "execute_complete"
    trigger = type(deferred.value.trigger)(**kwargs)
    deferred_at = requests_per_node(emu)

    async def first_event() -> Any:
        return await trigger.run().__anext__()

    return trigger, asyncio.run(asyncio.wait_for(first_event(), 60)).payload, deferred_at


def test_deferred_export_and_merge_on_a_cluster_follow_the_vm_to_its_node(cluster):
    """The triggerer's side on a cluster connection: the export is polled on the node whose shell runs it
    (the operation names it), the merge wait reads every node that is up, and each completion acts on
    the node the VM has moved to since."""
    clean = leftovers(cluster, "sql-01")
    ctx = context("manual__deferred")
    sql = vm_id(cluster, "sql-01")
    create("sql-01", ctx)
    assert cluster.cluster().owner_of(sql) == "hv-n1"

    export_op = HyperVExportCheckpointOperator(
        task_id="export", vm="sql-01", export_root=ROOT, deferrable=True, poll_interval=0.1
    )
    trigger, event, _ = run_deferred(cluster, export_op, ctx)
    assert trigger.target.operation["node"] == "hv-n1"  # its disconnected shell lives there
    assert event["status"] == "success", event
    cluster.cluster().live_migrate(sql, "hv-n3")  # between the export's wait and its verification
    manifest = export_op.execute_complete(ctx, event)
    assert where(cluster, "Export-VMSnapshot") == ["hv-n1"]

    merge_op = HyperVMergeCheckpointOperator(
        task_id="merge", vm="sql-01", deferrable=True, poll_interval=0.1, defer_after=0
    )
    trigger, event, deferred_at = run_deferred(cluster, merge_op, ctx)
    assert event["status"] == "success", event
    assert where(cluster, "Remove-VMSnapshot") == ["hv-n3"]
    # The merge wait asked every node (the VM could have moved while it merged), not only the first.
    asked = {n for n, count in requests_per_node(cluster).items() if count > deferred_at[n]}
    assert asked == set(NODES), asked
    cluster.cluster().live_migrate(sql, "hv-n2")  # between the merge's wait and its confirmation
    confirmed_from = len(cluster.audit.entries(host="hv-n2"))
    merged = merge_op.execute_complete(ctx, event)
    assert merged["merged"] is True
    assert len(cluster.audit.entries(host="hv-n2")) > confirmed_from  # confirmed where the VM runs now
    assert verify_export(cluster, manifest) == []
    assert leftovers(cluster, "sql-01") == clean
