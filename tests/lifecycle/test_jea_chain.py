"""The protection chain through a JEA endpoint whose role is exactly the one docs/connection.md
documents (the provider ships it as airflow_hyperv.jea.ROLE_CAPABILITY; restricted mode loads that)."""

from __future__ import annotations

import pytest

from airflow_hyperv.hyperv.pipelines import bound_command, single_statement
from airflow_hyperv.jea import ROLE_CAPABILITY
from tests.lifecycle.runs import states
from tests.support.emulated import uri_for


@pytest.fixture
def emulator(tmp_path):
    from hyperv_emulator.api import Emulator

    with Emulator(
        root_dir=tmp_path / "hosts",
        auth="basic",
        time_scale=1000.0,
        restricted=True,
        role_capability=ROLE_CAPABILITY,
    ) as emu:
        yield emu


def refused(emulator) -> list[tuple[str, list[str]]]:
    return [(e.cmdlet, e.errors) for e in emulator.audit.entries() if e.outcome == "failed"]


def test_the_endpoint_is_restricted(hook, emulator):
    """Positive control: the role is in force (a parameter it does not list is unknown)."""
    assert emulator.role is not None and emulator.role.source.endswith("AirflowHyperV.psrc")
    result = hook.run_repeatable(single_statement(bound_command("Get-VMSnapshot", VMName="dc-01")))
    assert result.errors[0].fully_qualified_error_id.startswith("NamedParameterNotFound")


@pytest.mark.parametrize(
    ("vm", "policy", "deferrable"), [("dc-01", "require", True), ("app-01", "fallback", False)]
)
def test_the_protection_chain_runs_through_the_documented_role(dag_factory, emulator, vm, policy, deferrable):
    run = dag_factory(
        f"t_jea_{policy}",
        vm=vm,
        policy=policy,
        export_root="D:\\Backups",
        keep_exports=1,
        deferrable=deferrable,
    ).test()
    st = states(run)
    assert str(run.state) == "success", (st, refused(emulator))
    assert not refused(emulator)
    sent = {e.cmdlet for e in emulator.audit.entries()}
    assert {"Get-Volume", "Checkpoint-VM", "Export-VMSnapshot", "Get-FileHash", "Remove-VMSnapshot"} <= sent


def test_the_restore_test_runs_through_the_documented_role(hook, emulator, monkeypatch):
    """Import-VM, Rename-VM, Get-/Disconnect-VMNetworkAdapter, Start-/Stop-VM and Remove-VM are in the role."""
    from tests.restore.test_restore_test import leftovers, make_export, run

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    result = run(make_export(hook))
    assert result["outcome"] == "restorable", refused(emulator)
    assert not refused(emulator)
    assert leftovers(emulator) == ([], [])
    sent = {e.cmdlet for e in emulator.audit.entries()}
    assert {"Import-VM", "Rename-VM", "Disconnect-VMNetworkAdapter", "Remove-VM"} <= sent
