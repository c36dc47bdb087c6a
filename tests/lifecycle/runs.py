"""What the lifecycle tests read back from a ``dag.test()`` run and from the emulated host."""

from __future__ import annotations

from typing import Any

from tests.support.dags import task_states as states  # by task id without the group: protect_x.merge -> merge

__all__ = ["chain_snapshot", "states", "xcom"]


def xcom(dag_run: Any, task_id: str) -> Any:
    """The return value of the task whose id ends with ``.<task_id>`` in this run, or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    ti = next(t for t in dag_run.get_task_instances() if t.task_id.endswith("." + task_id))
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def chain_snapshot(emulator: Any, host: str, vm_name: str) -> dict[str, Any]:
    """What a run must leave as it found it: checkpoints, checkpoint type, each drive's disk and its
    parent, and the VM's AVHDX files on disk."""
    model = emulator.host(host)
    model.settle()
    vm = next(v for v in model.vms() if v.name == vm_name)
    root = model.fs.to_real("C:\\")
    return {
        "checkpoints": [c.name for c in model.snapshots(vm)],
        "checkpoint_type": vm.checkpoint_type.name,
        "drives": [(d.disk.path, d.disk.parent_path) for d in vm.hard_drives],
        "avhdx_files": sorted(p.name for p in root.rglob("*.avhdx") if vm_name.lower() in str(p).lower()),
    }
