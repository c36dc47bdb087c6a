"""Hostile names and paths through operators and DAG params: a clear error before any change, and the
emulator's audit log proves nothing else was touched."""

from __future__ import annotations

import pytest

MUTATING = {
    "Set-VM", "Checkpoint-VM", "Export-VMSnapshot", "Remove-VMSnapshot", "Restore-VMSnapshot", "Start-VM",
    "Stop-VM", "New-Item", "Move-Item", "Remove-Item",
}  # fmt: skip

HOSTILE_VM_NAMES = [
    "*",
    "dc-0?",
    "[ds]c-01",
    "dc`-01",
    "x'; Remove-VM -Name dc-01 -Force; '",
    '"; Stop-VM dc-01; "',
    "$(Remove-VM dc-01)",
    "dc-01\nRemove-VM dc-01",
    "dc-01; Get-VM | Remove-VM",
    "..\\..\\Windows",
    "v" * 300,
    "ΔΣ-数据库-01",
]

HOSTILE_PATHS = [
    "D:\\Backups\\..\\..\\Windows\\System32",
    "D:\\Backups\\*",
    "D:\\Backups\\$(Remove-Item C:\\ -Recurse)",  # ':' is not allowed after the drive
    "D:\\Backups\\$(whoami)",  # legal characters on Windows: it must stay a literal folder name
    "D:\\Backups\nC:\\Windows",
    "relative\\path",
    "\\\\?\\GLOBALROOT\\Device",
    "D:/Backups",
    "D:\\" + "p" * 300,
    "D:\\Backups\\`whoami`",
]


def _mutations(emulator):
    return [(e.cmdlet, e.parameters) for e in emulator.audit.entries() if e.cmdlet in MUTATING]


def _task_states(run):
    return {ti.task_id.split(".", 1)[-1]: str(ti.state) for ti in run.get_task_instances()}


@pytest.mark.parametrize("name", HOSTILE_VM_NAMES, ids=range(len(HOSTILE_VM_NAMES)))
def test_hostile_vm_names_through_the_protection_chain(dag_factory, emulator, name):
    run = dag_factory(f"hostile_vm_{abs(hash(name)) % 10**8}", vm=name, policy="fallback",
                      export_root="D:\\Backups").test()  # fmt: skip
    states = _task_states(run)
    assert str(run.state) == "failed" and states["verify"] == "failed", states
    assert _mutations(emulator) == []
    # Only exact-name look-ups ran, each with the name bound as one literal value.
    lookups = emulator.audit.entries(cmdlet="Get-VM")
    assert all(e.parameters.get("Name") in (None, name) for e in lookups)


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=range(len(HOSTILE_PATHS)))
def test_hostile_export_paths_fail_before_any_change(dag_factory, emulator, path):
    run = dag_factory(
        f"hostile_path_{abs(hash(path)) % 10**8}", vm="dc-01", policy="require", export_root=path
    ).test()
    states = _task_states(run)
    if ("$(" in path or "`" in path) and ":" not in path[2:]:
        # Legal Windows file names: the export lands under that literal folder, nothing is executed.
        assert str(run.state) == "success", states
        assert all("$(" not in e.cmdlet and "`" not in e.cmdlet for e in emulator.audit.entries())
        return
    assert str(run.state) == "failed" and states["verify"] == "failed", states
    assert _mutations(emulator) == []


@pytest.mark.parametrize("checkpoint_name", ["*", "airflow-hyperv*", "[a]", "x\ny", "x" * 200])
def test_hostile_checkpoint_names_for_merge_and_restore(emulator, checkpoint_name, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_hyperv.operators.checkpoint import (
        HyperVMergeCheckpointOperator,
        HyperVRestoreCheckpointOperator,
    )

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", emulator.connection_uri("hv-01"))
    for op in (
        HyperVMergeCheckpointOperator(
            task_id="m", vm="dc-01", checkpoint_name=checkpoint_name, deferrable=False
        ),
        HyperVRestoreCheckpointOperator(
            task_id="r", vm="dc-01", checkpoint_name=checkpoint_name, deferrable=False
        ),
    ):
        with pytest.raises(AirflowFailException, match="checkpoint name"):
            op.execute(context={})
    assert _mutations(emulator) == []


def test_hostile_dag_params_for_pre_deployment(fleet_dags, emulator):
    dag = fleet_dags("pre_deployment_snapshot")
    run = dag.test(run_conf={"vm": "web-*", "simulate_failure": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed" and states["verify"] == "failed", states
    assert _mutations(emulator) == []
