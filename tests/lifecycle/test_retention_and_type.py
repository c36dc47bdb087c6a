"""Retention keeps the newest verified exports and never pays for a failed one; set-type round trip."""

from __future__ import annotations

import pendulum

from hyperv_emulator.faults import Fault
from tests.support.emulated import uri_for


def export_folders(emulator, vm_name):
    model = emulator.host("hv-01")
    vm = next(v for v in model.vms() if v.name == vm_name)
    base = model.fs.to_real(f"D:\\Backups\\hv-01\\{str(vm.id).lower()}")  # <root>\<host>\<vm id>
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def test_retention_keeps_the_newest_and_deletes_only_after_a_verified_export(dag_factory, emulator):
    dag = dag_factory("t_retention", vm="web-01", policy="require", export_root="D:\\Backups", keep_exports=2)
    days = [pendulum.datetime(2026, 11, d, 1, tz="UTC") for d in (20, 21, 22)]
    for day in days:
        assert str(dag.test(logical_date=day).state) == "success"
    kept = export_folders(emulator, "web-01")
    assert kept == [
        "20261121T0100Z-" + kept[0].split("-", 1)[1],
        "20261122T0100Z-" + kept[1].split("-", 1)[1],
    ]

    # A fourth run whose export fails must not cost the two good exports.
    emulator.faults.inject(Fault.DISK_FULL_DURING_EXPORT, vm="web-01")
    run = dag.test(logical_date=pendulum.datetime(2026, 11, 23, 1, tz="UTC"))
    assert str(run.state) == "failed"
    assert export_folders(emulator, "web-01") == kept


def test_set_checkpoint_type_operator(emulator, monkeypatch):
    from airflow_hyperv.operators.checkpoint import HyperVSetCheckpointTypeOperator

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    result = HyperVSetCheckpointTypeOperator(
        task_id="t", vm="web-01", checkpoint_type="ProductionOnly"
    ).execute({})
    assert result["previous"] == "Production" and result["checkpoint_type"] == "ProductionOnly"
    vm = next(v for v in emulator.host("hv-01").vms() if v.name == "web-01")
    assert vm.checkpoint_type.name == "ProductionOnly"
