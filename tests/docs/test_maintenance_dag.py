"""The example DAG the operator snippets of docs/operators.md come from does what the docs say, under
dag.test() against the emulated fleet: checkpoint, verified export, retention, health check, merge."""

from __future__ import annotations


def test_maintenance_checkpoint_exports_and_merges(fleet_dags, emulator):
    run = fleet_dags("maintenance_checkpoint").test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert set(states.values()) == {"success"}, states
    assert len(emulator.audit.entries(cmdlet="Export-VMSnapshot")) == 1
    host = emulator.host("hv-01")
    host.settle()
    web = next(v for v in host.vms() if v.name == "web-01")
    assert not host.snapshots(web), "the checkpoint was left behind"
    assert emulator.faults.fired == []


def test_a_failed_maintenance_still_merges_the_checkpoint(fleet_dags, emulator, monkeypatch):
    dag = fleet_dags("maintenance_checkpoint")
    task = dag.get_task("maintenance")

    def fail(*args, **kwargs):
        raise RuntimeError("maintenance failed (simulated)")

    monkeypatch.setattr(task, "python_callable", fail)
    run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed", states
    assert states["maintenance"] == "failed" and states["merge"] == "success", states
    host = emulator.host("hv-01")
    host.settle()
    web = next(v for v in host.vms() if v.name == "web-01")
    assert not host.snapshots(web), "the checkpoint was left behind"
