"""The whole chain through ``dag.test()`` for the cases the lifecycle must get right."""

from __future__ import annotations

from airflow_hyperv.emulator.faults import Fault


def states(dag_run) -> dict[str, str]:
    return {ti.task_id.split(".", 1)[-1]: str(ti.state) for ti in dag_run.get_task_instances()}


def chain_snapshot(emulator, host, vm_name):
    """What must be back where it started: checkpoints, drive paths, checkpoint type."""
    model = emulator.host(host)
    vm = next(v for v in model.vms() if v.name == vm_name)
    return {
        "checkpoints": [c.name for c in model.snapshots(vm)],
        "checkpoint_type": vm.checkpoint_type.name,
    }


def test_healthy_windows_vm_gets_an_application_consistent_export(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "dc-01")
    dag = dag_factory("t_healthy", vm="dc-01", policy="require", export_root="D:\\Backups", deferrable=True)
    run = dag.test()
    st = states(run)
    assert str(run.state) == "success", st
    assert st["production_checkpoint"] == "success" and st["standard_checkpoint"] == "skipped"
    assert st["export_production"] == "success" and st["merge"] == "success"
    assert chain_snapshot(emulator, "hv-01", "dc-01") == before
    assert len(emulator.audit.entries(cmdlet="Checkpoint-VM")) == 1
    assert len(emulator.audit.entries(cmdlet="Export-VMSnapshot")) == 1
