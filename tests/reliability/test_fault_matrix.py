"""Every step of the protection chain x every fault, run through ``dag.test()`` with task retries.

For each case the chain runs against a fresh emulated fleet with one fault armed at one step, and the
end state is read from the emulator's model and audit log:

* never two checkpoints for one run (Checkpoint-VM calls that completed, and the model);
* no checkpoint of ours left when the run ends; after a merge failure the run FAILS and says the
  AVHDX is orphaned;
* the VM's checkpoint type as it was;
* no export promoted unless complete (every file whole), no staging folder left;
* the DAG run's state (and the failed task) say what really happened.

``docs/reliability.md`` is generated from the run by the session-scoped collector at the bottom (only
when the whole matrix ran). Regenerate: ``.venv/bin/pytest -q tests/reliability/test_fault_matrix.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hyperv_emulator.faults import Fault
from tests.support.dags import failure_reason, task_states

VM = "web-01"  # Linux with hv_vss_daemon, CheckpointType Production (set to ProductionOnly while we checkpoint)
EXPORT_ROOT = "D:\\Backups"
BASE_DATE = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.timezone.utc)
DOC = Path(__file__).parents[2] / "docs" / "reliability.md"
DEFAULT_ARGS = '{"retries": 2, "retry_delay": dt.timedelta(0)}'

CHAIN_BODY = """
from airflow_hyperv.authoring.protect import protect_vm

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={default_args}) as dag:
    protect_vm({vm!r}, policy="require", export_root={root!r}, deferrable={deferrable}, poll_interval=0.1)
"""

# Built like protect_vm's chain: the merge teardown records its failure reason, and a leaf after it fails
# the run when the merge fails (a teardown's own failure does not).
RESTORE_BODY = """
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TriggerRule
from airflow_hyperv.operators.checkpoint import (
    HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator, HyperVRestoreCheckpointOperator,
)
from airflow_hyperv.operators.failures import record_failure

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={default_args}) as dag:
    checkpoint = HyperVCreateCheckpointOperator(task_id="checkpoint", vm={vm!r}, consistency="application")
    restore = HyperVRestoreCheckpointOperator(task_id="restore", vm={vm!r}, poll_interval=0.1, deferrable=False)
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm={vm!r}, poll_interval=0.1, deferrable=False,
                                          on_failure_callback=record_failure)
    checkpoint >> restore >> merge
    merge.as_teardown(setups=[checkpoint])
    merge.trigger_rule = TriggerRule.ALL_DONE
    merge >> EmptyOperator(task_id="cleaned_up")
"""


@dataclass(frozen=True)
class Step:
    name: str
    cmdlet: str  # where transport faults are armed
    task: str  # the task whose try the fault hits
    dag: str  # which DAG runs the case
    what: str


STEPS = [
    Step("verify", "Get-Volume", "verify", "rel_chain", "the read-only verify task"),
    Step(
        "set type", "Set-VM", "production_checkpoint", "rel_chain", "the Set-VM statements of the checkpoint"
    ),
    Step("checkpoint", "Checkpoint-VM", "production_checkpoint", "rel_chain", "Checkpoint-VM"),
    Step("export", "Export-VMSnapshot", "export_production", "rel_chain_deferred", "the deferred export"),
    Step("merge", "Remove-VMSnapshot", "merge", "rel_chain_deferred", "the deferred merge"),
    Step("restore", "Restore-VMSnapshot", "restore", "rel_restore", "Restore-VMSnapshot"),
]
FAULTS = [
    "drop before run",
    "drop after run",
    "WS-Man busy",
    "WS-Man timeout",
    "guest cannot quiesce",
    "disk full during export",
    "merge failure",
    "credentials rejected",
    "emulator restarted",
]
TRANSPORT = {
    "drop before run": Fault.DROP_BEFORE_RUN,
    "drop after run": Fault.DROP_AFTER_RUN,
    "WS-Man busy": Fault.WSMAN_BUSY,
    "WS-Man timeout": Fault.WSMAN_TIMEOUT,
}
# Host faults and the steps where they can happen. The restore step runs its own DAG (checkpoint >>
# restore >> merge): a guest that cannot quiesce hits its checkpoint, a merge failure its merge.
HOST_FAULTS = {
    "guest cannot quiesce": (Fault.GUEST_CANNOT_QUIESCE, {"checkpoint", "restore"}),
    "disk full during export": (Fault.DISK_FULL_DURING_EXPORT, {"export"}),
    "merge failure": (Fault.MERGE_FAILURE, {"merge", "restore"}),
}
WHY_IMPOSSIBLE = {
    "guest cannot quiesce": "only Checkpoint-VM asks the guest to quiesce (VSS / fsfreeze)",
    "disk full during export": "only Export-VMSnapshot writes to the backup target",
    "merge failure": "only a removed checkpoint is merged (Remove-VMSnapshot)",
}
# The task that must fail the run, per case; every other case must succeed (after task retries).
EXPECTED_FAILURE = {
    ("checkpoint", "guest cannot quiesce"): "production_checkpoint",
    ("merge", "merge failure"): "merge",
    ("restore", "guest cannot quiesce"): "checkpoint",
    ("restore", "merge failure"): "merge",
}


def impossible(step: Step, fault: str) -> str | None:
    """Why ``fault`` cannot happen at ``step`` (listed in the document, not run), or None."""
    if fault in HOST_FAULTS and step.name not in HOST_FAULTS[fault][1]:
        return WHY_IMPOSSIBLE[fault]
    if step.name == "set type" and fault == "credentials rejected":
        return (
            "credentials are checked when a connection opens, before any statement; the Set-VM statements "
            "travel in the Checkpoint-VM round trip: the checkpoint row is this case"
        )
    return None


# How each restart lands: the timing that makes the step last, what the watcher waits for, and notes.
RESTART = {
    "verify": dict(
        timing={}, latency=True, note="WinRM restarted while the answer to Get-Volume was on its way"
    ),
    "set type": dict(
        timing={"checkpoint_seconds": 3000.0},
        running="Checkpoint-VM",
        reset={"checkpoint_seconds": 3.0},
        note="WinRM restarted between the Set-VM statements (Checkpoint-VM running): the pipeline is killed",
    ),
    "checkpoint": dict(timing={}, latency=True, note="WinRM restarted after Checkpoint-VM ran, answer lost"),
    "export": dict(
        timing={"export_mb_per_s": 3.0},
        running="Export-VMSnapshot",
        reset={"export_mb_per_s": 250.0},
        delay=0.3,
        note="WinRM restarted during the deferred export: its disconnected session is gone",
    ),
    "merge": dict(
        timing={"merge_mb_per_s": 0.25},
        seen="Remove-VMSnapshot",
        delay=0.2,
        note="WinRM restarted during the deferred merge wait",
    ),
    "restore": dict(
        timing={"restore_seconds": 3000.0},
        running="Restore-VMSnapshot",
        reset={"restore_seconds": 2.0},
        note="WinRM restarted while Restore-VMSnapshot ran: the pipeline is killed",
    ),
}
DOWNTIME = 0.0  # extra seconds the port stays closed (stopping the server itself takes up to 0.5 s)


DOC_NOTES = [
    "- Transport faults are armed on the request that carries the step's cmdlet; the Set-VM statements "
    "travel in the same round trip as Checkpoint-VM (set type, then checkpoint, then the VM's own type back).",
    "- A merge failure is bounded here with a 5 s wait (`wait_timeout`; 6 h by default): the host gives no "
    "non-localized signal that a merge ended, so the merge task judges completion from the disk chain, "
    "gives up at its timeout naming the AVHDX the VM still runs on, and, being a teardown with "
    "`on_failure_fail_dagrun`, fails the run. A retry that finds no checkpoint but a VM still on a "
    "differencing disk waits again instead of reporting 'nothing to merge'. That case polls in the worker: "
    "`dag.test()` runs a trigger inline without its deferral timeout.",
    "- The restore step runs its own DAG, built like `protect_vm`'s chain: the merge teardown records its "
    "failure reason and a `cleaned_up` leaf after it fails the run when the merge fails (a teardown's own "
    "failure does not). A guest that cannot quiesce fails its application-consistent checkpoint at once "
    "and nothing is restored; a merge failure after the restore fails the run and names the orphaned AVHDX. "
    "A restore whose answer was lost is applied again by the retry (re-applying a checkpoint gives the "
    "same state).",
    "- *fired*: a case fails unless its fault happened exactly once: transport, host and credential "
    "faults are counted by the emulator layer that acted them out; a restart by the watcher that saw the "
    "step in flight.",
]
# Cases where the export's session is lost while Hyper-V may still write into its staging folder: the
# folder is left (named in the task log) and the retry exports into a new one, never into it.
STAGING_KEPT: dict[tuple[str, str], str] = {
    ("export", "drop after run"): "every answer about the export is lost: its staging is left, the retry "
    "exported into a new folder",
    ("export", "emulator restarted"): "the export's session died with WinRM: its staging is left, the retry "
    "exported into a new folder",
}
# Cases that show a bug not fixed yet: the row says FAILED and the test xfails; once fixed, they pass.
KNOWN_BUGS: dict[tuple[str, str], str] = {}
CASES = [(s, f) for s in STEPS for f in FAULTS if impossible(s, f) is None]
IMPOSSIBLE = [(s, f, why) for s in STEPS for f in FAULTS if (why := impossible(s, f)) is not None]


def case_id(step: Step, fault: str) -> str:
    return f"{step.name}|{fault}".replace(" ", "-")


# -- the collector that writes docs/reliability.md ----------------------------------------------------


@pytest.fixture(scope="session")
def matrix_rows() -> Any:
    rows: dict[tuple[str, str], dict[str, str]] = {}
    yield rows
    if not all((s.name, f) in rows for s, f in CASES):
        return  # a partial run (-k, -x) does not rewrite the document
    lines = [
        "# Reliability: the fault matrix",
        "",
        "<!-- Generated by tests/reliability/test_fault_matrix.py; do not edit by hand. -->",
        "Generated from the test run; regenerate with "
        "`.venv/bin/pytest -q tests/reliability/test_fault_matrix.py`.",
        "",
        f"Date: {dt.date.today().isoformat()}",
        "",
        "Each case runs the chain with `dag.test()` (task retries 2, retry delay 0) against a fresh emulated "
        f"fleet, with one fault armed at one step, protecting `{VM}` (CheckpointType Production, "
        f"export to `{EXPORT_ROOT}`). The restore step runs checkpoint >> restore >> merge (teardown). "
        "Export and merge run deferred (disconnected session / trigger). A restart stops the emulator's "
        f"WS-Man server and starts a new one on the same port: sessions and running "
        "pipelines are lost, the host's VMs, disks and files persist.",
        "",
        "Columns: *fired* = the evidence that the fault really happened (the emulator's record of the "
        "faults it acted out, or the server restarts); *made* = Checkpoint-VM calls that completed; "
        "*left* = checkpoints on the VM after the run (and orphaned AVHDX files); *type* = the VM's "
        "checkpoint type afterwards; *export* = a promoted export folder and whether every file in it is "
        "whole (staging folders must be gone, unless the export's session was lost while Hyper-V may still "
        "write: then one is left and named). A case whose fault did not fire fails.",
        "",
        "| step | fault | outcome | fired | made | left | type restored | export promoted | DAG state | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step, fault in CASES:
        r = rows[(step.name, fault)]
        lines.append(
            f"| {step.name} | {fault} | {r['outcome']} | {r['fired']} | {r['made']} | {r['left']} | "
            f"{r['type']} | {r['export']} | {r['state']} | {r['note']} |"
        )
    lines += [
        "",
        "## Combinations that cannot happen",
        "",
        "Not run: the fault has no way to occur at that step.",
        "",
        "| step | fault | why not |",
        "|---|---|---|",
        *(f"| {step.name} | {fault} | {why} |" for step, fault, why in IMPOSSIBLE),
    ]
    lines += ["", "## Notes", "", *DOC_NOTES]
    lines += [
        "",
        f"{len(CASES)} cases run; {len(IMPOSSIBLE)} combinations cannot happen.",
        "",
    ]
    # Keep the "Overlapping runs" section that tests/e2e/test_overlap_matrix.py writes below the matrix.
    previous = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    overlap = (
        previous[previous.find("<!-- overlap-matrix:start") :]
        if "<!-- overlap-matrix:start" in previous
        else ""
    )
    DOC.write_text("\n".join(lines) + ("\n" + overlap if overlap else ""), encoding="utf-8")


# -- DAGs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dags(dag_loader: Any) -> dict[str, Any]:
    common = {"vm": VM, "root": EXPORT_ROOT, "default_args": DEFAULT_ARGS}
    return {
        "rel_chain": dag_loader(
            "rel_chain", CHAIN_BODY.format(dag_id="rel_chain", deferrable=False, **common)
        ),
        "rel_chain_deferred": dag_loader(
            "rel_chain_deferred", CHAIN_BODY.format(dag_id="rel_chain_deferred", deferrable=True, **common)
        ),
        "rel_restore": dag_loader("rel_restore", RESTORE_BODY.format(dag_id="rel_restore", **common)),
    }


def task_of(dag: Any, short: str) -> Any:
    return next(t for tid, t in dag.task_dict.items() if tid.split(".")[-1] == short)


# -- observing the end state --------------------------------------------------------------------------


def vm_model(emu: Any) -> Any:
    return next(v for v in emu.host("hv-01").vms() if v.name == VM)


def avhdx_files(emu: Any) -> list[str]:
    root = emu.host("hv-01").fs.to_real("C:\\")
    return sorted(p.name for p in root.rglob("*") if p.suffix.lower() == ".avhdx" and VM in str(p).lower())


def exports(emu: Any) -> tuple[list[str], list[str], list[str]]:
    """(complete promoted folders, incomplete promoted folders, staging folders left)."""
    from hyperv_emulator.model.paths import read_standin_header, standin_bytes

    fs = emu.host("hv-01").fs
    base = fs.to_real(EXPORT_ROOT)
    complete: list[str] = []
    incomplete: list[str] = []
    staging: list[str] = []
    vm = vm_model(emu)
    expected = {
        f"{VM}/virtual machines/{str(vm.id).upper()}.vmcx".lower(),
        f"{VM}/virtual machines/{str(vm.id).upper()}.vmgs".lower(),
        *(f"{VM}/virtual hard disks/{Path(d.disk.base().path.replace(chr(92), '/')).name}".lower()
          for d in vm.hard_drives),
    }  # fmt: skip
    if not base.exists():
        return complete, incomplete, staging
    vm_dirs = [
        v for host_dir in base.iterdir() if host_dir.is_dir() for v in host_dir.iterdir() if v.is_dir()
    ]
    for vm_dir in sorted(vm_dirs):  # <root>\<host>\<vm id>\<export>
        for folder in sorted(p for p in vm_dir.iterdir() if p.is_dir()):
            if folder.name.startswith(".staging-"):
                staging.append(folder.name)
                continue
            files = [p for p in folder.rglob("*") if p.is_file()]
            rel = {str(p.relative_to(folder)).lower() for p in files}
            whole = all(
                (header := read_standin_header(p)) is not None and p.read_bytes() == standin_bytes(header)
                for p in files
            )
            (complete if whole and expected <= rel else incomplete).append(folder.name)
    return complete, incomplete, staging


# -- arming -------------------------------------------------------------------------------------------


def arm(step: Step, fault: str, holder: Any, dag: Any) -> tuple[str, list[Any]]:
    """Arm ``fault`` at ``step``; returns a note and the (task, previous hook) pairs to put back."""
    emu = holder.emu
    restore_hooks: list[Any] = []
    if fault in TRANSPORT:
        emu.faults.inject(TRANSPORT[fault], cmdlet=step.cmdlet)
        return f"armed on the request that carries {step.cmdlet}", restore_hooks
    if fault in HOST_FAULTS:
        emu.faults.inject(HOST_FAULTS[fault][0], vm=VM)
        if fault == "merge failure":
            # The wait cannot tell a failed merge from a running one (docs/reliability.md): bound it.
            merge = task_of(dag, "merge")
            restore_hooks.append((merge, "wait_timeout", merge.wait_timeout))
            merge.wait_timeout = 5.0
        return "", restore_hooks
    if fault == "credentials rejected":
        task = task_of(dag, step.task)
        fired: list[bool] = []

        def reject_once(context: Any) -> None:
            if not fired:
                fired.append(True)
                emu.faults.inject(Fault.REJECT_CREDENTIALS)

        restore_hooks.append((task, "_pre_execute_hook", task._pre_execute_hook))
        task._pre_execute_hook = reject_once
        return (
            f"401 on the first connection of {step.task}'s first try: it fails at once, no task retry",
            restore_hooks,
        )
    plan = RESTART[step.name]
    timing = emu.fleet.timing
    if plan.get("latency"):
        emu.faults.inject(Fault.LATENCY, cmdlet=step.cmdlet, seconds=DOWNTIME + 1.0)

        def condition() -> bool:
            return emu.faults.count_fired(Fault.LATENCY) > 0
    else:
        wanted = plan.get("running") or plan.get("seen")

        def condition() -> bool:
            entries = emu.audit.entries(cmdlet=wanted)
            if not entries or (plan.get("running") and entries[-1].outcome != "running"):
                return False
            for key, value in plan.get("reset", {}).items():  # the retry runs at normal speed
                setattr(timing, key, value)
            return True

    holder.restart_when(condition, delay=float(plan.get("delay", 0.0)), downtime=DOWNTIME)
    return str(plan["note"]), restore_hooks


# -- proof that the fault happened -------------------------------------------------------------------


def fault_evidence(fault: str, holder: Any) -> tuple[str, str]:
    """(what the emulator recorded of ``fault``, the problem if that is not exactly one occurrence).

    Transport and host faults are recorded by the layer that acted them out (``FaultPlan.fired``);
    rejected credentials by the authenticator's check of the same plan; a restart by the holder, after
    its watcher saw the step in flight (the latency plans: the delayed answer was on its way)."""
    emu = holder.emu
    if fault == "emulator restarted":
        delayed = emu.faults.count_fired(Fault.LATENCY)
        text = f"{holder.restarts} restart" + (f", {delayed} delayed answer" if delayed else "")
        return text, "" if holder.restarts == 1 else f"expected one restart, saw {holder.restarts}"
    if fault in TRANSPORT:
        kind = TRANSPORT[fault]
    elif fault in HOST_FAULTS:
        kind = HOST_FAULTS[fault][0]
    else:
        assert fault == "credentials rejected", fault
        kind = Fault.REJECT_CREDENTIALS
    count = emu.faults.count_fired(kind)
    details = sorted({f.detail for f in emu.faults.fired if f.fault is kind})
    text = f"{count} x {kind.value}"
    return text, "" if count == 1 else f"the fault fired {count} times (expected once): {details}"


# -- the matrix ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("step", "fault"), CASES, ids=[case_id(s, f) for s, f in CASES])
def test_fault_matrix(
    step: Step, fault: str, make_emulator: Any, dags: dict[str, Any], matrix_rows: Any
) -> None:
    timing = RESTART[step.name]["timing"] if fault == "emulator restarted" else {}
    holder = make_emulator(**timing)  # type: ignore[arg-type]
    emu = holder.emu
    before = vm_model(emu)
    type_before, drives_before = before.checkpoint_type.name, [d.disk.path for d in before.hard_drives]
    # dag.test() runs a trigger inline without its deferral timeout: the bounded merge wait polls in the worker
    dag = dags["rel_chain" if (step.name, fault) == ("merge", "merge failure") else step.dag]
    note, put_back = arm(step, fault, holder, dag)
    index = CASES.index((step, fault))
    try:
        run = dag.test(logical_date=BASE_DATE + dt.timedelta(days=index))
    finally:
        for task, attribute, previous in put_back:
            setattr(task, attribute, previous)
    deadline = time.monotonic() + 10
    while holder.restarts == 0 and fault == "emulator restarted" and time.monotonic() < deadline:
        time.sleep(0.05)  # the watcher must have acted before we judge

    # -- what really happened -------------------------------------------------------------------------
    vm = vm_model(emu)
    merging_at_end = vm.merge_until is not None
    emu.host("hv-01").settle()
    made = [e for e in emu.audit.entries(cmdlet="Checkpoint-VM") if e.outcome == "ok"]
    left = emu.host("hv-01").snapshots(vm)
    orphans = avhdx_files(emu)
    complete, incomplete, staging = exports(emu)
    states = task_states(run)
    failed = sorted(t for t, s in states.items() if s == "failed")
    state = str(run.state)
    is_chain = step.dag != "rel_restore"
    expected_failed = EXPECTED_FAILURE.get((step.name, fault))
    # Rejected credentials are never retried (a retry is one more rejected login towards the account's
    # lockout): the task whose login was refused fails at once, on its first try, after one rejected login.
    auth_case = fault == "credentials rejected"
    if auth_case:
        expected_failed = step.task
    # A merge teardown whose login was refused cannot remove the checkpoint: it stays, and the run fails.
    auth_keeps_checkpoint = auth_case and step.name == "merge"
    merge_reason = failure_reason(run, "merge") if expected_failed == "merge" else ""
    fired, fired_problem = fault_evidence(fault, holder)
    restores = emu.audit.entries(cmdlet="Restore-VMSnapshot")

    notes = [n for n in [note] if n]
    if fault == "disk full during export":
        notes.append(
            "the first try ran out of space half-way; its staging was removed and the retry exported again"
        )
    if expected_failed == "production_checkpoint":
        notes.append("require policy: the run fails, nothing fell back to a standard checkpoint")
    if (step.name, expected_failed) == ("restore", "checkpoint"):
        notes.append(
            "the restore DAG's checkpoint fails at once (application consistency); nothing is restored"
        )
    if expected_failed == "merge" and "orphan" in merge_reason.lower():
        notes.append("the merge task fails and names the orphaned AVHDX")
    if merging_at_end:
        notes.append("RUN ENDED WHILE THE HOST WAS STILL MERGING")
    if auth_case:
        tries = {ti.task_id.split(".")[-1]: ti.try_number for ti in run.get_task_instances()}
        rejected = emu.counters.rejected_logins("hv-01")
        notes.append(f"{rejected} rejected login, {step.task} failed on try {tries.get(step.task)}")
        if auth_keeps_checkpoint:
            notes.append("the merge could not log in: the checkpoint stays and the run fails")
    row = {
        "outcome": "ok",
        "fired": fired,
        "made": str(len(made)),
        "left": f"{len(left)}" + (f" (+{len(orphans)} orphaned AVHDX)" if orphans else ""),
        "type": "yes" if vm.checkpoint_type.name == type_before else f"NO: {vm.checkpoint_type.name}",
        "export": (
            "n/a"
            if not is_chain
            else ("INCOMPLETE" if incomplete else "yes, complete" if complete else "no")
            + (" (STAGING LEFT)" if staging else "")
        ),
        "state": state + (f" ({', '.join(failed)} failed)" if failed else ""),
        "note": "; ".join(notes),
    }

    problems: list[str] = [fired_problem] if fired_problem else []
    if auth_case:
        if rejected != 1:
            problems.append(f"expected exactly one rejected login, counted {rejected}")
        if tries.get(step.task) != 1:
            problems.append(f"{step.task} was retried after a rejected login: try {tries.get(step.task)}")
    if len(made) > 1 or len(left) > 1:
        problems.append(f"two checkpoints for one run: {len(made)} made, {len(left)} on the VM")
    if left and not auth_keeps_checkpoint:
        problems.append(f"checkpoint left behind: {[c.name for c in left]}")
    if vm.checkpoint_type.name != type_before:
        problems.append(f"checkpoint type {vm.checkpoint_type.name}, was {type_before}")
    if incomplete:
        problems.append(f"incomplete export promoted: {incomplete}")
    kept = STAGING_KEPT.get((step.name, fault))
    if kept and staging:
        notes.append(kept)
        row["note"] = "; ".join(notes)
    if staging and (not kept or len(staging) != 1):
        problems.append(f"staging left: {staging}")
    if expected_failed:
        if state != "failed" or expected_failed not in failed:
            problems.append(
                f"expected {expected_failed} to fail the run; state {state}, {dict(sorted(states.items()))}"
            )
    elif state != "success":
        problems.append(f"expected success after retries; state {state}, {dict(sorted(states.items()))}")
    if expected_failed == "merge" and not auth_case:
        if not orphans:
            problems.append("merge failure left no orphaned AVHDX (the fault did not bite?)")
        if "orphan" not in merge_reason.lower():
            problems.append(f"the merge failure does not say the AVHDX is orphaned: {merge_reason!r}")
    elif not auth_keeps_checkpoint:
        if orphans:
            problems.append(f"orphaned AVHDX: {orphans}")
        if [d.disk.path for d in vm.hard_drives] != drives_before:
            problems.append("the VM does not run on its base disks again")
        if merging_at_end:
            problems.append("the run ended while the host was still merging")
    completed_restores = len([r for r in restores if r.outcome == "ok"])
    # The restore DAG restores unless a task up to and including the restore is expected to fail.
    restore_expected = expected_failed in (None, "merge")
    if not is_chain and restore_expected and not completed_restores:
        problems.append("the restore DAG never completed a Restore-VMSnapshot")
    if not is_chain and not restore_expected and completed_restores:
        problems.append(
            f"restored although {expected_failed} failed: {completed_restores} Restore-VMSnapshot"
        )
    if is_chain and state == "success" and len(complete) != 1:
        problems.append(f"a successful run must promote one complete export, found {complete}")
    if problems:
        row["outcome"] = "FAILED"
        row["note"] = "; ".join([*notes, *problems])
    matrix_rows[(step.name, fault)] = row
    if problems and (step.name, fault) in KNOWN_BUGS:
        pytest.xfail(f"{KNOWN_BUGS[(step.name, fault)]}: {problems}")
    assert not problems, problems
