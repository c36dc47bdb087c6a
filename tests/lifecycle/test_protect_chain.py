"""The whole chain through ``dag.test()`` for the cases the lifecycle must get right."""

from __future__ import annotations

from hyperv_emulator.faults import Fault
from tests.lifecycle.runs import chain_snapshot, states, xcom


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


def test_linux_without_vss_daemon_falls_back_visibly(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "app-01")
    run = dag_factory("t_fallback", vm="app-01", policy="fallback", export_root="D:\\Backups").test()
    st = states(run)
    assert str(run.state) == "success", st
    assert st["standard_checkpoint"] == "success" and st["production_checkpoint"] == "skipped"
    made = xcom(run, "standard_checkpoint")
    assert made["consistency"] == "crash"
    report = xcom(run, "verify")
    assert report["verdict"] == "standard_only" and report["findings"]
    assert xcom(run, "export_standard")["consistency"] == "crash"
    assert chain_snapshot(emulator, "hv-01", "app-01") == before


def test_require_on_a_vm_that_cannot_quiesce_fails_and_changes_nothing(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "app-01")
    run = dag_factory("t_require", vm="app-01", policy="require", export_root="D:\\Backups").test()
    st = states(run)
    assert str(run.state) == "failed" and st["choose"] == "failed", st
    assert st["production_checkpoint"] in ("upstream_failed", "skipped")
    mutating = {"Set-VM", "Checkpoint-VM", "Export-VMSnapshot", "Remove-VMSnapshot", "New-Item", "Move-Item"}
    assert not [e for e in emulator.audit.entries() if e.cmdlet in mutating]
    assert chain_snapshot(emulator, "hv-01", "app-01") == before


def test_checkpoints_disabled_vm_is_refused_under_require_and_skipped_under_skip(dag_factory, emulator):
    run = dag_factory("t_disabled", vm="build-01", policy="require", hyperv_conn_id="hv_02").test()
    assert str(run.state) == "failed" and states(run)["choose"] == "failed"
    assert "disabled" in str(xcom(run, "verify")["findings"])
    run = dag_factory("t_disabled_skip", vm="build-01", policy="skip", hyperv_conn_id="hv_02").test()
    st = states(run)
    assert str(run.state) == "success" and st["choose"] == "success", st
    assert st["production_checkpoint"] == "skipped" and st["standard_checkpoint"] == "skipped"
    assert not emulator.audit.entries(cmdlet="Checkpoint-VM")
    assert chain_snapshot(emulator, "hv-02", "build-01")["checkpoint_type"] == "Disabled"


def test_off_vm_gets_an_offline_checkpoint(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-02", "legacy-01")
    run = dag_factory("t_off", vm="legacy-01", policy="require", hyperv_conn_id="hv_02").test()
    st = states(run)
    assert str(run.state) == "success", st
    assert st["production_checkpoint"] == "success"
    assert any(f["code"] == "offline" for f in xcom(run, "verify")["findings"])
    assert chain_snapshot(emulator, "hv-02", "legacy-01") == before


def test_failed_export_still_merges_and_promotes_nothing(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "web-01")
    emulator.faults.inject(Fault.DISK_FULL_DURING_EXPORT, vm="web-01")
    run = dag_factory("t_export_fails", vm="web-01", policy="require", export_root="D:\\Backups").test()
    st = states(run)
    assert str(run.state) == "failed" and st["export_production"] == "failed", st
    assert st["merge"] == "success"
    assert emulator.faults.count_fired(Fault.DISK_FULL_DURING_EXPORT) == 1
    assert chain_snapshot(emulator, "hv-01", "web-01") == before  # merged, type restored
    backups = emulator.host("hv-01").fs.to_real("D:\\Backups")
    leftovers = [p for p in backups.rglob("*") if p.is_file()] if backups.exists() else []
    assert leftovers == []  # the partial export was removed, nothing promoted


def test_retry_after_the_answer_to_checkpoint_vm_was_lost_makes_one_checkpoint(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "sql-01")
    emulator.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Checkpoint-VM")
    run = dag_factory("t_lost_answer", vm="sql-01", policy="require", export_root="D:\\Backups").test()
    st = states(run)
    assert str(run.state) == "success", st
    assert emulator.faults.count_fired(Fault.DROP_AFTER_RUN) == 1
    assert len(emulator.audit.entries(cmdlet="Checkpoint-VM")) == 1
    assert chain_snapshot(emulator, "hv-01", "sql-01") == before


def test_non_deferrable_chain_waits_in_the_worker(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "dc-01")
    run = dag_factory(
        "t_sync", vm="dc-01", policy="require", export_root="D:\\Backups", deferrable=False
    ).test()
    assert str(run.state) == "success", states(run)
    assert chain_snapshot(emulator, "hv-01", "dc-01") == before
