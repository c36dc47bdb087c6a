"""WS-Man round trips and wall time per full VM protection cycle: verify -> production checkpoint ->
export -> merge, for one VM (``dc-01`` on ``hv-01`` of the example fleet).

Variants, each on a fresh emulator (same starting state; starting it is not timed):

* ``hyperv_operators``  this project's operators, run the way a worker runs them: one operator
  instance per task of ``protect_vm`` (``HyperVVerifyOperator`` -> ``HyperVCheckpointBranchOperator``
  -> ``HyperVCreateCheckpointOperator(consistency="application")`` ->
  ``HyperVExportCheckpointOperator(deferrable=False)`` -> ``HyperVMergeCheckpointOperator(deferrable=False)``),
  each ``execute(context)`` called in turn with a minimal context (a DAG run id and logical date, the
  verify report handed to the branch as its XCom would be). Every operator opens its own hook (its
  own runspace pool) through a ``hyperv`` connection in ``AIRFLOW_CONN_HYPERV_BENCH``, exactly as in a
  task. Not run: retention (``keep_exports``), Airflow's scheduling, XCom storage and task start-up.
  The non-deferrable waits poll in the worker (``poll_interval`` 0.05 s here).
* ``psrp_operators``    the same four steps written with the ``microsoft-psrp`` provider as its users
  would: one ``PsrpOperator`` per step, each with a ``cmdlet`` and ``parameters`` (no script text; the
  emulated host is a NoLanguage endpoint like JEA): ``Get-VMIntegrationService -VMName``,
  ``Checkpoint-VM -Name -SnapshotName`` (the VM's own checkpoint type: ProductionOnly for dc-01),
  ``Export-VMSnapshot -VMName -Name -Path``, ``Remove-VMSnapshot -VMName -Name``. ``do_xcom_push=False``:
  with XCom on, PsrpOperator appends ``ConvertTo-Json`` to the pipeline, a cmdlet the emulator does
  not model (on a real host it rides in the same pipeline and costs no request). Each operator opens
  its own ``PsrpHook`` (pool + PSRP key exchange). It does not wait for the merge, nor check the
  export, the integration services or the checkpoint type: it does what the cmdlets do.
* ``pypsrp_floor``      a bare pypsrp script, the floor: one ``WSMan`` and one ``RunspacePool`` for the
  whole cycle, the same four cmdlet pipelines as ``psrp_operators``, no key exchange, nothing else.

Counted: the emulator's counter difference over the cycle (every pool open and close included;
HTTP authentication legs under NTLM included). Timed: the cycle only. Run:
``.venv/bin/python -m bench.cycle`` (``--iterations``, ``--warmup``, ``--auth``).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from bench.common import (
    Auth,
    add_ratios,
    interleaved,
    median,
    median_count,
    print_table,
    request_bench,
    start_emulator,
)
from bench.hook_requests import (
    PSRP_CONN_ID,
    _env,
    psrp_connection_uri,
    psrp_wsman_options,
    pypsrp_wsman_kwargs,
)
from hyperv_emulator.api import Emulator
from hyperv_emulator.counters import CountersSnapshot
from tests.support.emulated import uri_for

HOST = "hv-01"
VM_NAME = "dc-01"
EXPORT_ROOT = "D:\\Backups\\bench"
HYPERV_CONN_ID = "hyperv_bench"
STEPS = ("verify", "checkpoint", "export", "merge")


@dataclass
class CycleSample:
    counters: CountersSnapshot
    seconds: float
    steps: dict[str, CountersSnapshot] = field(default_factory=dict)
    cmdlets: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> cmdlet -> runs
    pipelines: dict[str, list[str]] = field(default_factory=dict)  # step -> one line per pipeline


class StepMeter:
    """Counter differences per step of one cycle."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.steps: dict[str, CountersSnapshot] = {}
        self.cmdlets: dict[str, dict[str, int]] = {}
        self.pipelines: dict[str, list[str]] = {}
        self._last = emu.counters.snapshot()
        self._seen = len(emu.audit.entries())

    def done(self, step: str) -> None:
        now = self.emu.counters.snapshot()
        self.steps[step] = now - self._last
        self._last = now
        entries = self.emu.audit.entries()
        self.cmdlets[step] = dict(Counter(e.cmdlet for e in entries[self._seen :]))
        self.pipelines[step] = itemize(entries[self._seen :])
        self._seen = len(entries)


def itemize(entries: Sequence[Any]) -> list[str]:
    """One line per pipeline, in the order run: each call's cmdlet and the names of the parameters
    it bound (what the request was for), from the emulator's audit log."""
    calls: dict[str, list[str]] = {}
    for e in entries:
        calls.setdefault(e.pipeline or str(e.seq), []).append(
            f"{e.cmdlet}({','.join(sorted(e.parameters))})" if e.parameters else e.cmdlet
        )
    return [" ; ".join(line) for line in calls.values()]


Variant = Callable[[Emulator, StepMeter, str], None]


def _context(run_id: str) -> Any:
    """What the operators read from a task's context (all of it, for these four steps)."""
    when = dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.timezone.utc)
    dag_run = SimpleNamespace(
        dag_id="bench_cycle", run_id=run_id, logical_date=when, run_after=when, start_date=when
    )
    return {"dag_run": dag_run, "logical_date": when, "ti": None, "outlet_events": None}


# -- (a) this provider's operators --------------------------------------------------------------------
def run_hyperv_operators(emu: Emulator, meter: StepMeter, run_id: str) -> None:
    from airflow_hyperv.operators.checkpoint import (
        HyperVCreateCheckpointOperator,
        HyperVMergeCheckpointOperator,
    )
    from airflow_hyperv.operators.export import HyperVExportCheckpointOperator
    from airflow_hyperv.operators.verify import HyperVCheckpointBranchOperator, HyperVVerifyOperator

    common: dict[str, Any] = {"vm": VM_NAME, "hyperv_conn_id": HYPERV_CONN_ID}
    context = _context(run_id)
    with _env(f"AIRFLOW_CONN_{HYPERV_CONN_ID.upper()}", uri_for(emu, HOST)):
        report = HyperVVerifyOperator(task_id="verify", export_path=EXPORT_ROOT, **common).execute(context)
        branch = HyperVCheckpointBranchOperator(
            task_id="choose", report=report, vm=VM_NAME, policy="require",
            production_task_id="production_checkpoint", standard_task_id="standard_checkpoint",
        )  # fmt: skip
        if branch.choose_branch(context) != "production_checkpoint":
            raise RuntimeError(f"{VM_NAME} was not cleared for a production checkpoint: {report}")
        meter.done("verify")
        made = HyperVCreateCheckpointOperator(
            task_id="production_checkpoint", consistency="application", policy="require", **common
        ).execute(context)
        if made["consistency"] != "application" or not made["created"]:
            raise RuntimeError(f"unexpected checkpoint: {made}")
        meter.done("checkpoint")
        manifest = HyperVExportCheckpointOperator(
            task_id="export_production", export_root=EXPORT_ROOT, deferrable=False, **common
        ).execute(context)
        if not manifest["files"]:
            raise RuntimeError("the export lists no files")
        meter.done("export")
        merged = HyperVMergeCheckpointOperator(
            task_id="merge", deferrable=False, poll_interval=0.05, **common
        ).execute(context)
        if not merged["merged"]:
            raise RuntimeError(f"nothing was merged: {merged}")
        meter.done("merge")


# -- (b) the microsoft-psrp provider: one PsrpOperator per step ---------------------------------------
def run_psrp_operators(emu: Emulator, meter: StepMeter, run_id: str) -> None:
    from airflow.providers.microsoft.psrp.operators.psrp import PsrpOperator

    name = f"bench {run_id}"
    common: dict[str, Any] = {
        "psrp_conn_id": PSRP_CONN_ID,
        "wsman_options": psrp_wsman_options(emu),  # the port PsrpHook drops (see hook_requests)
        "do_xcom_push": False,  # ConvertTo-Json is not modelled by the emulator
    }
    steps = [
        ("verify", "Get-VMIntegrationService", {"VMName": VM_NAME}),
        ("checkpoint", "Checkpoint-VM", {"Name": VM_NAME, "SnapshotName": name}),
        ("export", "Export-VMSnapshot", {"VMName": VM_NAME, "Name": name, "Path": EXPORT_ROOT}),
        ("merge", "Remove-VMSnapshot", {"VMName": VM_NAME, "Name": name}),
    ]
    context = _context(run_id)
    with _env(f"AIRFLOW_CONN_{PSRP_CONN_ID.upper()}", psrp_connection_uri(emu)):
        for step, cmdlet, parameters in steps:
            PsrpOperator(task_id=step, cmdlet=cmdlet, parameters=parameters, **common).execute(context)  # type: ignore[arg-type]
            meter.done(step)


# -- (c) bare pypsrp: the floor -----------------------------------------------------------------------
def run_pypsrp_floor(emu: Emulator, meter: StepMeter, run_id: str) -> None:
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import WSMan

    name = f"bench {run_id}"
    steps = [
        ("verify", "Get-VMIntegrationService", {"VMName": VM_NAME}),
        ("checkpoint", "Checkpoint-VM", {"Name": VM_NAME, "SnapshotName": name}),
        ("export", "Export-VMSnapshot", {"VMName": VM_NAME, "Name": name, "Path": EXPORT_ROOT}),
        ("merge", "Remove-VMSnapshot", {"VMName": VM_NAME, "Name": name}),
    ]
    with WSMan(**pypsrp_wsman_kwargs(emu)) as wsman, RunspacePool(wsman) as pool:
        for step, cmdlet, parameters in steps:
            ps = PowerShell(pool)
            ps.add_cmdlet(cmdlet).add_parameters(parameters)
            ps.invoke()
            if ps.had_errors:
                raise RuntimeError(f"{cmdlet} failed: {ps.streams.error}")
            if step != "merge":
                meter.done(step)
    meter.done("merge")  # the pool's Delete is booked on the last step


VARIANTS: dict[str, Variant] = {
    "hyperv_operators": run_hyperv_operators,
    "psrp_operators": run_psrp_operators,
    "pypsrp_floor": run_pypsrp_floor,
}
FLOOR, PEER = "pypsrp_floor", "psrp_operators"


REFERENCES = ((FLOOR, "floor"), (PEER, "psrp"))  # the ratios' denominators: (variant, suffix)


def run_once(variant: str, auth: Auth) -> CycleSample:
    run_id = f"bench__{uuid.uuid4().hex[:12]}"
    with start_emulator(auth) as emu:
        meter = StepMeter(emu)
        before = emu.counters.snapshot()
        started = time.perf_counter()
        VARIANTS[variant](emu, meter, run_id)
        seconds = time.perf_counter() - started
        return CycleSample(
            emu.counters.snapshot() - before, seconds, meter.steps, meter.cmdlets, meter.pipelines
        )


def summarize(variant: str, auth: Auth, samples: Sequence[CycleSample]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "auth": auth,
        "variant": variant,
        "runs": len(samples),
        "pools": median_count(samples, lambda c: c.pools_opened),
        "pipelines": median_count(samples, lambda c: c.pipelines_run),
        "cmdlets": median_count(samples, lambda c: c.cmdlets_run),
        "wsman_requests": median_count(samples, lambda c: c.wsman_requests),
        "http_requests": median_count(samples, lambda c: c.http_requests),
        "wall_ms_median": round(median(s.seconds for s in samples) * 1000.0, 1),
    }
    for step in STEPS:
        wsman = sorted(s.steps[step].wsman_requests for s in samples if step in s.steps)
        pools = sorted(s.steps[step].pools_opened for s in samples if step in s.steps)
        pipes = sorted(s.steps[step].pipelines_run for s in samples if step in s.steps)
        row[f"{step}_wsman"] = wsman[len(wsman) // 2] if wsman else 0
        row[f"{step}_pools_pipelines"] = (
            f"{pools[len(pools) // 2]}/{pipes[len(pipes) // 2]}" if pools and pipes else ""
        )
    row["cmdlets_by_step"] = {
        step: ", ".join(f"{c} {n}" for c, n in sorted(samples[-1].cmdlets.get(step, {}).items()))
        for step in STEPS
    }
    row["pipelines_by_step"] = {step: samples[-1].pipelines.get(step, []) for step in STEPS}
    return row


def measure(
    auth: Auth = "basic", *, variants: Sequence[str] = tuple(VARIANTS), iterations: int = 5, warmup: int = 1
) -> list[dict[str, Any]]:
    """Rows (one per variant); variants interleaved in a rotating order so machine drift spreads evenly."""
    samples = interleaved(
        lambda variant: run_once(variant, auth), variants, VARIANTS, iterations=iterations, warmup=warmup
    )
    return add_ratios([summarize(v, auth, samples[v]) for v in variants], REFERENCES)


COUNT_COLUMNS = (
    "auth", "variant", "runs", "pools", "pipelines", "cmdlets", "wsman_requests", "http_requests",
    "wall_ms_median",
)  # fmt: skip
STEP_COLUMNS = (
    "auth", "variant",
    *(c for s in STEPS for c in (f"{s}_wsman", f"{s}_pools_pipelines")),
)  # fmt: skip
RATIO_COLUMNS = (
    "auth", "variant", "wsman_vs_floor", "http_vs_floor", "wall_vs_floor",
    "wsman_vs_psrp", "http_vs_psrp", "wall_vs_psrp",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    rows = request_bench(
        "bench.cycle", __doc__, argv, unit="cycle", variants=tuple(VARIANTS), measure=measure,
        title="WS-Man requests per full VM protection cycle",
        what=f"Cycle: verify -> production checkpoint -> export -> merge of {VM_NAME} on {HOST}",
    )  # fmt: skip
    print_table(rows, COUNT_COLUMNS, title="Per cycle (median of the runs; a range when runs differed)")
    print_table(rows, STEP_COLUMNS, title="Per step: WS-Man requests, pools/pipelines")
    print_table(rows, [c for c in RATIO_COLUMNS if any(c in r for r in rows)], title="Ratios")
    print("\nCmdlets run per step (last cycle; the emulator's audit log):")
    for row in rows:
        print(f"* {row['auth']} {row['variant']}:")
        for step, cmdlets in row["cmdlets_by_step"].items():
            print(f"  * {step}: {cmdlets}")
    print("\nPipelines per step (last cycle, in order; each call's cmdlet and its bound parameters):")
    for row in rows:
        print(f"* {row['auth']} {row['variant']}:")
        for step, lines in row["pipelines_by_step"].items():
            print(f"  * {step} ({len(lines)}):")
            for line in lines:
                print(f"    - {line}")
    return rows


if __name__ == "__main__":
    main()
