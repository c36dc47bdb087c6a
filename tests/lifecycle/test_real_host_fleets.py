"""The protection chain through ``dag.test()`` against hosts that look like real ones in ways the
example fleet does not: a German host (localized service names, local-time dates) and a host whose
VMs include Critical states."""

from __future__ import annotations

import pytest

from hyperv_emulator.api import EXAMPLE_FLEET
from tests.lifecycle.runs import chain_snapshot, states, xcom

FLEETS = EXAMPLE_FLEET.parent


@pytest.fixture
def emulator(request, tmp_path):
    """Overrides the shared fixture (dag_factory uses it): the fleet file given by indirect parametrize."""
    from hyperv_emulator.api import Emulator

    with Emulator(
        fleet=FLEETS / request.param, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0
    ) as emu:
        yield emu


@pytest.mark.parametrize("emulator", ["de-de.yaml"], indirect=True)
def test_chain_is_green_on_a_german_host(dag_factory, emulator):
    before = chain_snapshot(emulator, "hv-01", "dc-01")
    run = dag_factory(
        "t_de_de", vm="dc-01", policy="require", export_root="D:\\Sicherungen", deferrable=True
    ).test()
    st = states(run)
    assert str(run.state) == "success", st
    assert st["production_checkpoint"] == "success" and st["standard_checkpoint"] == "skipped"
    assert st["export_production"] == "success" and st["merge"] == "success"
    assert xcom(run, "verify")["verdict"] == "production"
    assert chain_snapshot(emulator, "hv-01", "dc-01") == before
    assert len(emulator.audit.entries(cmdlet="Export-VMSnapshot")) == 1


@pytest.mark.parametrize("emulator", ["critical.yaml"], indirect=True)
def test_chain_protects_a_healthy_vm_beside_critical_ones_and_refuses_a_critical_vm(dag_factory, emulator):
    run = dag_factory(
        "t_crit_ok", vm="dc-01", policy="require", export_root="D:\\Backups", deferrable=True
    ).test()
    st = states(run)
    assert str(run.state) == "success", st
    assert st["production_checkpoint"] == "success" and st["export_production"] == "success"

    before = chain_snapshot(emulator, "hv-01", "store-01")
    run = dag_factory("t_crit_paused", vm="store-01", policy="require", export_root="D:\\Backups").test()
    st = states(run)
    assert str(run.state) == "failed" and st["choose"] == "failed", st
    report = xcom(run, "verify")
    assert report["verdict"] == "blocked" and report["state"] == "PausedCritical"
    assert [f["code"] for f in report["findings"] if f["severity"] == "blocks"] == ["vm-critical"]
    assert chain_snapshot(emulator, "hv-01", "store-01") == before
    assert len(emulator.audit.entries(cmdlet="Checkpoint-VM")) == 1  # dc-01's only
