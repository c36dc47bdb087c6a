"""The Asset-driven DAGs under dag.test(), fed by real events: a VM stop read from the emulator's
event log by the watcher's trigger protects that VM; the export it makes is verified by
verify_new_export and restore-tested by restore_verification."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.dags import copy_example_dags, import_file, set_pools
from tests.support.emulated import uri_for


@pytest.fixture
def event_dags(airflow_db, emulator, monkeypatch):
    folder = copy_example_dags()
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_HV_01", uri_for(emulator, "hv-01"))
    set_pools({"hyperv_hv_01": 2})

    def load(name: str):
        return import_file(folder / f"{name}.py")

    return load


def xcom(dag_run, task_prefix: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(run_id=dag_run.run_id, key="return_value").all()
        return [XComModel.deserialize_value(r) for r in rows if r.task_id.startswith(task_prefix)]


def first_event(trigger) -> dict:
    async def one() -> dict:
        gen = trigger.run()
        try:
            return (await asyncio.wait_for(gen.__anext__(), 90)).payload
        finally:
            await gen.aclose()

    return asyncio.run(one())


def test_a_vm_stop_event_protects_it_and_its_export_is_verified_and_restore_tested(
    event_dags, emulator, tmp_path, monkeypatch
):
    module = event_dags("protect_on_change")
    host = emulator.host("hv-01")
    web = next(v for v in host.vms() if v.name == "web-01")
    watcher = module.hv01_changes.watchers[0].trigger
    _classpath, kwargs = watcher.serialize()
    from airflow_hyperv.triggers.events import HyperVEventTrigger

    trigger = HyperVEventTrigger(**{**kwargs, "poll_interval": 0.05})
    # The watcher starts at the newest record; then maintenance shuts the VM down. Sequenced, not timed:
    # the VM stops only once the watcher has read the log (its starting point) at least once; a stop
    # before that would be older than where it starts, and never reported.
    import threading

    from tests.support.waiting import wait_for

    reads = len(emulator.audit.entries(cmdlet="Get-WinEvent"))
    # The watcher reads each channel's newest record (its starting point), then polls them: once it has
    # read the log more times than it has channels, every starting point is set.
    settled = reads + len(trigger.channels) + 1

    def stop_once_watched() -> None:
        wait_for(lambda: len(emulator.audit.entries(cmdlet="Get-WinEvent")) >= settled, 60,
                 what="the watcher's starting points and first poll")  # fmt: skip
        host.stop_vm(web)

    stopper = threading.Thread(target=stop_once_watched, daemon=True)
    stopper.start()
    payload = first_event(trigger)
    stopper.join(10)
    assert payload["kind"] == "vm_shut_down" and payload["vm_id"] == str(web.id)

    run = module.dag.test(run_conf={"vms": [payload["vm_id"]]})
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    manifests = [m for m in xcom(run, "protect.export_") if m]
    assert len(manifests) == 1 and manifests[0]["vm_id"] == str(web.id)
    manifest = manifests[0]
    assert manifest["consistency"] == "application"  # an Off VM: offline checkpoint, nothing to quiesce
    assert not host.snapshots(web)  # merged back

    verify = event_dags("verify_new_export").dag
    ok = verify.test(run_conf={"manifests": [manifest]})
    assert str(ok.state) == "success"

    restore = event_dags("restore_verification").dag
    tested = restore.test(run_conf={"export": manifest})
    states = {ti.task_id: str(ti.state) for ti in tested.get_task_instances()}
    assert str(tested.state) == "success", states
    result = xcom(tested, "restore_test_")[0]
    assert result["outcome"] == "restorable"
    assert not [v for v in host.vms() if v.path.lower().startswith("d:\\restoretests")]

    # The report reads those asset events: web-01 exported (application-consistent) and restore-tested.
    monkeypatch.setenv("AIRFLOW_HYPERV_REPORT_DIR", str(tmp_path))
    reported = event_dags("protection_report").dag.test()
    assert str(reported.state) == "success"
    row = next(r for r in xcom(reported, "report")[0] if r["vm"] == "web-01" and r["host"] == "hv-01")
    assert row["last_export"] and row["last_app_consistent"] and row["last_restore_test"], row
    assert "web-01" in (tmp_path / "protection-report.html").read_text()

    # A file damaged after the export: both the verification and the restore test say so.
    disk = next(f for f in manifest["files"] if f["path"].endswith(".vhdx"))
    real = host.fs.to_real(manifest["path"] + "\\" + disk["path"])
    real.write_bytes(real.read_bytes()[:-1] + b"!")
    bad = verify.test(run_conf={"manifests": [manifest]})
    assert str(bad.state) == "failed"
    bad_restore = restore.test(run_conf={"export": manifest})
    states = {ti.task_id: str(ti.state) for ti in bad_restore.get_task_instances()}
    assert states["restore_test_web_01"] == "failed" and states["cleanup"] == "success", states
    assert not emulator.audit.entries(cmdlet="Import-VM")[1:]  # the damaged export was never imported
