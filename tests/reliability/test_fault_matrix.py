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

from airflow_hyperv.emulator.faults import Fault

VM = "web-01"  # Linux with hv_vss_daemon, CheckpointType Production (set to ProductionOnly while we checkpoint)
EXPORT_ROOT = "D:\\Backups"
BASE_DATE = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.timezone.utc)
DOC = Path(__file__).parents[2] / "docs" / "reliability.md"
DEFAULT_ARGS = '{"retries": 2, "retry_delay": dt.timedelta(0)}'

CHAIN_BODY = """
from airflow_hyperv.operators.protect import protect_vm

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={default_args}) as dag:
    protect_vm({vm!r}, policy="require", export_root={root!r}, deferrable={deferrable}, poll_interval=0.1)
"""

RESTORE_BODY = """
from airflow.sdk import TriggerRule
from airflow_hyperv.operators.checkpoint import (
    HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator, HyperVRestoreCheckpointOperator,
)

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={default_args}) as dag:
    checkpoint = HyperVCreateCheckpointOperator(task_id="checkpoint", vm={vm!r}, consistency="application")
    restore = HyperVRestoreCheckpointOperator(task_id="restore", vm={vm!r}, poll_interval=0.1, deferrable=False)
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm={vm!r}, poll_interval=0.1, deferrable=False)
    checkpoint >> restore >> merge
    merge.as_teardown(setups=[checkpoint])
    merge.trigger_rule = TriggerRule.ALL_DONE
"""


@dataclass(frozen=True)
class Step:
    name: str
    cmdlet: str  # where transport faults are armed
    task: str  # the task whose try the fault hits
    dag: str  # which DAG runs the case
    what: str


STEPS = [
    Step("verify", "Get-PSDrive", "verify", "rel_chain", "the read-only verify task"),
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
HOST_FAULTS = {
    "guest cannot quiesce": (Fault.GUEST_CANNOT_QUIESCE, "checkpoint"),
    "disk full during export": (Fault.DISK_FULL_DURING_EXPORT, "export"),
    "merge failure": (Fault.MERGE_FAILURE, "merge"),
}
SKIP_REASONS = {
    "guest cannot quiesce": "only Checkpoint-VM asks the guest to quiesce (VSS / fsfreeze)",
    "disk full during export": "only Export-VMSnapshot writes to the backup target",
    "merge failure": "only a removed checkpoint is merged; the merge row covers the restore DAG's merge too",
}


def skip_reason(step: Step, fault: str) -> str | None:
    if fault in HOST_FAULTS and HOST_FAULTS[fault][1] != step.name:
        return SKIP_REASONS[fault]
    if step.name == "set type" and fault == "credentials rejected":
        return (
            "credentials are checked when a connection opens, before any statement; the Set-VM statements "
            "travel in the Checkpoint-VM round trip: the checkpoint row is this case"
        )
    return None


# How each restart lands: the timing that makes the step last, what the watcher waits for, and notes.
RESTART = {
    "verify": dict(
        timing={}, latency=True, note="WinRM restarted while the answer to Get-PSDrive was on its way"
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
]
# Cases that show a bug not fixed yet: the row says FAILED and the test xfails; once fixed, they pass.
KNOWN_BUGS: dict[tuple[str, str], str] = {}
CASES = [(s, f) for s in STEPS for f in FAULTS]


def case_id(step: Step, fault: str) -> str:
    return f"{step.name}|{fault}".replace(" ", "-")


# -- the collector that writes docs/reliability.md ----------------------------------------------------


@pytest.fixture(scope="session")
def matrix_rows() -> Any:
    rows: dict[tuple[str, str], dict[str, str]] = {}
    yield rows
    ran = [c for c in CASES if skip_reason(*c) is None]
    if not all((s.name, f) in rows for s, f in ran):
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
        "Columns: *made* = Checkpoint-VM calls that completed; *left* = checkpoints on the VM after the run "
        "(and orphaned AVHDX files); *type* = the VM's checkpoint type afterwards; *export* = a promoted "
        "export folder and whether every file in it is whole (staging folders must be gone).",
        "",
        "| step | fault | outcome | made | left | type restored | export promoted | DAG state | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step, fault in CASES:
        reason = skip_reason(step, fault)
        if reason:
            lines.append(f"| {step.name} | {fault} | skipped | - | - | - | - | - | {reason} |")
            continue
        r = rows[(step.name, fault)]
        lines.append(
            f"| {step.name} | {fault} | {r['outcome']} | {r['made']} | {r['left']} | {r['type']} | "
            f"{r['export']} | {r['state']} | {r['note']} |"
        )
    lines += ["", "## Notes", "", *DOC_NOTES]
    ran_n, skipped_n = len(ran), len(CASES) - len(ran)
    lines += [
        "",
        f"{len(CASES)} cases: {ran_n} run, {skipped_n} skipped (the fault cannot happen there).",
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
    from airflow_hyperv.emulator.model.paths import read_standin_header, standin_bytes

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
    for vm_dir in sorted(p for p in base.iterdir() if p.is_dir()):
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


def task_states(run: Any) -> dict[str, str]:
    return {ti.task_id.split(".")[-1]: str(ti.state) for ti in run.get_task_instances()}


def failure_reason(run: Any, task_short: str) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_hyperv.report import FAILURE_KEY

    ti = next(t for t in run.get_task_instances() if t.task_id.split(".")[-1] == task_short)
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, key=FAILURE_KEY)
            .one_or_none()
        )
        value = None if row is None else XComModel.deserialize_value(row)
    return str((value or {}).get("reason", ""))


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
        return f"401 on the first connection of {step.task}'s first try", restore_hooks
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


# -- the matrix ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("step", "fault"), CASES, ids=[case_id(s, f) for s, f in CASES])
def test_fault_matrix(
    step: Step, fault: str, make_emulator: Any, dags: dict[str, Any], matrix_rows: Any
) -> None:
    reason = skip_reason(step, fault)
    if reason:
        pytest.skip(reason)
    timing = RESTART[step.name]["timing"] if fault == "emulator restarted" else {}
    holder = make_emulator(**timing)  # type: ignore[arg-type]
    emu = holder.emu
    before = vm_model(emu)
    type_before, drives_before = before.checkpoint_type.name, [d.disk.path for d in before.hard_drives]
    # dag.test() runs a trigger inline without its deferral timeout: the bounded merge wait polls in the worker
    dag = dags["rel_chain" if fault == "merge failure" else step.dag]
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
    expect_fail = {
        ("checkpoint", "guest cannot quiesce"): "production_checkpoint",
        ("merge", "merge failure"): "merge",
    }
    expected_failed = expect_fail.get((step.name, fault))
    fired = [f for f in emu.faults.fired if f.fault is not Fault.LATENCY]
    merge_reason = failure_reason(run, "merge") if expected_failed == "merge" else ""

    notes = [n for n in [note] if n]
    if fault != "emulator restarted" and fault != "credentials rejected" and not fired:
        notes.append("the fault never fired")
    if fault == "disk full during export":
        notes.append(
            "the first try ran out of space half-way; its staging was removed and the retry exported again"
        )
    if expected_failed == "production_checkpoint":
        notes.append("require policy: the run fails, nothing fell back to a standard checkpoint")
    if expected_failed == "merge" and "orphan" in merge_reason.lower():
        notes.append("the merge task fails and names the orphaned AVHDX")
    if merging_at_end:
        notes.append("RUN ENDED WHILE THE HOST WAS STILL MERGING")
    row = {
        "outcome": "ok",
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

    problems: list[str] = []
    if len(made) > 1 or len(left) > 1:
        problems.append(f"two checkpoints for one run: {len(made)} made, {len(left)} on the VM")
    if left:
        problems.append(f"checkpoint left behind: {[c.name for c in left]}")
    if vm.checkpoint_type.name != type_before:
        problems.append(f"checkpoint type {vm.checkpoint_type.name}, was {type_before}")
    if incomplete:
        problems.append(f"incomplete export promoted: {incomplete}")
    if staging:
        problems.append(f"staging left: {staging}")
    if expected_failed:
        if state != "failed" or expected_failed not in failed:
            problems.append(
                f"expected {expected_failed} to fail the run; state {state}, {dict(sorted(states.items()))}"
            )
    elif state != "success":
        problems.append(f"expected success after retries; state {state}, {dict(sorted(states.items()))}")
    if expected_failed == "merge":
        if not orphans:
            problems.append("merge failure left no orphaned AVHDX (the fault did not bite?)")
        if "orphan" not in merge_reason.lower():
            problems.append(f"the merge failure does not say the AVHDX is orphaned: {merge_reason!r}")
    else:
        if orphans:
            problems.append(f"orphaned AVHDX: {orphans}")
        if [d.disk.path for d in vm.hard_drives] != drives_before:
            problems.append("the VM does not run on its base disks again")
        if merging_at_end:
            problems.append("the run ended while the host was still merging")
    if is_chain and state == "success" and len(complete) != 1:
        problems.append(f"a successful run must promote one complete export, found {complete}")
    if problems:
        row["outcome"] = "FAILED"
        row["note"] = "; ".join([*notes, *problems])
    matrix_rows[(step.name, fault)] = row
    if problems and (step.name, fault) in KNOWN_BUGS:
        pytest.xfail(f"{KNOWN_BUGS[(step.name, fault)]}: {problems}")
    assert not problems, problems
