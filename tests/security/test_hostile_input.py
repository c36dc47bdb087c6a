"""Hostile names and paths through operators and DAG params: a clear error before any change, and the
emulator's audit log proves nothing else was touched."""

from __future__ import annotations

import pytest

from tests.support.dags import failure_reason, task_states
from tests.support.emulated import uri_for

MUTATING = {
    "Set-VM", "Checkpoint-VM", "Export-VMSnapshot", "Remove-VMSnapshot", "Restore-VMSnapshot", "Start-VM",
    "Stop-VM", "New-Item", "Move-Item", "Remove-Item",
}  # fmt: skip

# Names the provider refuses before any round trip, with a word its error must contain.
REFUSED_VM_NAMES = {
    "*": "wildcard",
    "dc-0?": "wildcard",
    "[ds]c-01": "wildcard",
    "dc`-01": "wildcard",
    "dc-01\nRemove-VM dc-01": "control character",
    "v" * 300: "characters long",
}
# Names that are legal VM names: looked up as one literal -Name value, found nowhere.
LOOKED_UP_VM_NAMES = [
    "x'; Remove-VM -Name dc-01 -Force; '",
    '"; Stop-VM dc-01; "',
    "$(Remove-VM dc-01)",
    "dc-01; Get-VM | Remove-VM",
    "..\\..\\Windows",
    "ΔΣ-数据库-01",
]
HOSTILE_VM_NAMES = [*REFUSED_VM_NAMES, *LOOKED_UP_VM_NAMES]

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


def _bound_anywhere(emulator, value):
    """Audit entries that bound ``value`` (or a value containing it) to any parameter."""
    return [
        (e.cmdlet, e.parameters)
        for e in emulator.audit.entries()
        if any(value in bound for bound in e.parameters.values())
    ]


@pytest.mark.parametrize("name", HOSTILE_VM_NAMES, ids=range(len(HOSTILE_VM_NAMES)))
def test_hostile_vm_names_through_the_protection_chain(dag_factory, emulator, name):
    run = dag_factory(f"hostile_vm_{abs(hash(name)) % 10**8}", vm=name, policy="fallback",
                      export_root="D:\\Backups").test()  # fmt: skip
    states = task_states(run)
    assert str(run.state) == "failed" and states["verify"] == "failed", states
    assert _mutations(emulator) == []
    reason = failure_reason(run, "verify")
    if name in REFUSED_VM_NAMES:
        # refused by the provider: nothing reached the host at all
        assert REFUSED_VM_NAMES[name] in reason.lower(), reason
        assert emulator.audit.entries() == [], [(e.cmdlet, e.parameters) for e in emulator.audit.entries()]
        return
    # Looked up by each task that resolves the VM, the whole name bound as the one -Name value
    # (byte for byte: not split, trimmed, escaped or quoted). Nothing else was bound: the reads that
    # ride in the same round trip (``Get-VM -Name | Get-VMSnapshot``, ...) were piped nothing and
    # touched nothing. The export root's volume, also read in verify's first round trip, bound only
    # the root and its parents.
    assert "not found" in reason.lower(), reason
    entries = emulator.audit.entries()
    lookups = [(e.cmdlet, e.parameters) for e in entries if e.cmdlet == "Get-VM"]
    assert lookups and all(entry == ("Get-VM", {"Name": name}) for entry in lookups), lookups
    volumes = [e.parameters for e in entries if e.cmdlet == "Get-Volume"]
    assert volumes == [{"FilePath": "D:\\Backups"}, {"FilePath": "D:\\"}], volumes
    piped = [(e.cmdlet, e.parameters, e.targets) for e in entries if e.cmdlet not in ("Get-VM", "Get-Volume")]
    assert all(c.startswith("Get-") and params == {} and not targets for c, params, targets in piped), piped


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=range(len(HOSTILE_PATHS)))
def test_hostile_export_paths_fail_before_any_change(dag_factory, emulator, path):
    run = dag_factory(
        f"hostile_path_{abs(hash(path)) % 10**8}", vm="dc-01", policy="require", export_root=path
    ).test()
    states = task_states(run)
    if ("$(" in path or "`" in path) and ":" not in path[2:]:
        # Legal Windows file names: the export lands under that literal folder, nothing is executed.
        assert str(run.state) == "success", states
        exports = [e for e in emulator.audit.entries(cmdlet="Export-VMSnapshot") if e.outcome == "ok"]
        assert len(exports) == 1, exports
        assert exports[0].parameters["Path"].startswith(path + "\\"), exports[0].parameters
        folder = emulator.host("hv-01").fs.to_real(path)
        assert folder.is_dir() and any(p.is_file() for p in folder.rglob("*")), folder
        return
    assert str(run.state) == "failed" and states["verify"] == "failed", states
    assert "export path" in failure_reason(run, "verify"), failure_reason(run, "verify")
    assert _mutations(emulator) == []
    assert _bound_anywhere(emulator, path) == []  # the path never reached the host


@pytest.mark.parametrize("checkpoint_name", ["*", "airflow-hyperv*", "[a]", "x\ny", "x" * 200])
def test_hostile_checkpoint_names_for_merge_and_restore(emulator, checkpoint_name, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_hyperv.operators.checkpoint import (
        HyperVMergeCheckpointOperator,
        HyperVRestoreCheckpointOperator,
    )

    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
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
    assert _bound_anywhere(emulator, checkpoint_name) == []  # never sent, not even to a read


def test_hostile_dag_params_for_pre_deployment(fleet_dags, emulator):
    dag = fleet_dags("pre_deployment_snapshot")
    run = dag.test(run_conf={"vm": "web-*", "simulate_failure": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed" and states["verify"] == "failed", states
    assert _mutations(emulator) == []
    assert _bound_anywhere(emulator, "web-*") == []  # refused before it reached the host
