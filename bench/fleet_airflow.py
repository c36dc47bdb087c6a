"""Fleet makespan of the nightly DAG on REAL Airflow, against the bound the per-host pools allow
(``make bench-slow``; ``.venv/bin/python -m bench.fleet_airflow``).

A real deployment (``tests/support/airflow_stack.py``, the one the e2e tests use): PostgreSQL, scheduler, dag-processor, api-server and triggerer,
LocalExecutor with ``[core] parallelism`` 8, deferrable operators on (exports and merges wait in the
triggerer, and with ``--include-deferred`` pools they keep their pool slot while they wait). The real
``dags/nightly_checkpoint.py`` reads a generated inventory (``AIRFLOW_HYPERV_INVENTORY``): ``--hosts``
hosts, each with its own connection and a pool of ``--pool-slots`` slots. One emulated fleet of the
largest size serves every run; each size's run protects the first VMs of each host (the inventory's
VM list is read when the run starts, so one deployment serves every size).

Emulated operation times (``bench.fleet.TIMING``: 3 s checkpoint, 20 GB exported at 250 MB/s, 1 GB of
churn merged at 150 MB/s) at ``--time-scale`` 2: 45.9 s of real host time per VM, so Hyper-V work
dominates a VM's chain. The bound: per host, ``ceil(VMs / slots)`` VMs pass through each slot one after
the other (identical VMs: the exact bound for that host's Hyper-V work), the slowest host, plus the
unavoidable latency of one VM's chain around it, measured in the same run: its host's VM-list task,
the non-Hyper-V tasks of the fastest VM (verify, choose, retention, cleaned_up) and the report task.

Also printed per size: the WinRM quota peaks per host and user against the host's quotas
(``--single-host``: 100 VMs on one host, the quota check of issue 13) and each VM's time on its
checkpoint's AVHDX (``bench.avhdx``: the gaps between the tasks against the 10 s target).

Every process is ended at the end (their sessions), all traffic stays on 127.0.0.1, and the whole
bench stops itself after ``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from bench import avhdx
from bench.common import (
    cli,
    cpu_busy,
    fleet_options,
    fleet_shape,
    growth,
    header,
    print_table,
    quota_rows,
    tree_cpu_seconds,
    tree_cpu_split,
)
from bench.fleet import CHURN_MB, DISK_FILE_GB, TIMING, fleet, inventory, layout, print_quotas_and_avhdx
from tests.support.airflow_stack import (
    COLD_TASK_PROCESSES,
    AirflowStack,
    LeftoverProcesses,
    RunTimeout,
    explained,
    parse_time,
    postgres_cluster,
    running_airflow,
    work_directory,
)

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "nightly_checkpoint"
HYPERV_TASKS = (
    "production_checkpoint",
    "standard_checkpoint",
    "export_production",
    "export_standard",
    "merge",
)
STARTUP_TIMEOUT = 300.0


def per_vm_seconds(time_scale: float) -> float:
    """Real seconds of Hyper-V work per VM: checkpoint + export of its disk + merge of its churn."""
    emulated = (
        TIMING["checkpoint_seconds"]
        + DISK_FILE_GB * 1024 / TIMING["export_mb_per_s"]
        + CHURN_MB / TIMING["merge_mb_per_s"]
    )
    return emulated / time_scale


def hyperv_bound(hosts: int, vms: int, slots: int, time_scale: float) -> float:
    return max(math.ceil(len(names) / slots) * per_vm_seconds(time_scale) for names in layout(hosts, vms))


def chain_latency(tis: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """Measured non-Hyper-V latency one VM's chain cannot avoid (see the module's doc)."""
    lists = [float(t["duration"] or 0) for t in tis if t["task_id"].endswith("_vms")]
    report = max((float(t["duration"] or 0) for t in tis if t["task_id"] == "report"), default=0.0)
    per_vm: dict[tuple[str, int], float] = {}
    for t in tis:
        if "." not in t["task_id"] or t["state"] != "success":
            continue
        group, task_id = t["task_id"].split(".", 1)
        if task_id not in HYPERV_TASKS:
            key = (group, int(t["map_index"]))
            per_vm[key] = per_vm.get(key, 0.0) + float(t["duration"] or 0)
    parts = {
        "vm_list_s": min(lists, default=0.0),
        "vm_other_tasks_s": min(per_vm.values(), default=0.0),
        "report_s": report,
    }
    return sum(parts.values()), parts


FAILED_STATES = ("failed", "up_for_retry")


def say_why_tasks_failed(
    cluster: AirflowStack, run_id: str, tis: list[dict[str, Any]], lines: int = 6
) -> None:
    """A failed (or retrying) task is part of what the run did: print the error lines of its log, read
    through the API before the deployment is torn down, so the bench's numbers come with their cause."""
    for ti in tis:
        if ti["state"] not in FAILED_STATES:
            continue
        try:
            entries = cluster.task_log(DAG_ID, run_id, ti)
        except Exception as exc:  # the numbers stand without it; say that the log could not be read
            print(
                f"fleet_airflow: {ti['task_id']}[{ti['map_index']}] {ti['state']}: log unreadable: {exc}",
                file=sys.stderr,
            )
            continue
        errors = [e for e in entries if str(e.get("level", "")).lower() in ("error", "critical")]
        shown = [str(e.get("event", ""))[:300] for e in (errors or entries)[-lines:]]
        print(
            f"fleet_airflow: {ti['task_id']}[{ti['map_index']}] {ti['state']} (try {ti['try_number']}):",
            file=sys.stderr,
        )
        for line in shown:
            print(f"    {line}", file=sys.stderr)


def how_waits_ended(
    cluster: AirflowStack, run_id: str, tis: list[dict[str, Any]], sample: int = 20
) -> dict[str, str]:
    """From the logs of (at most ``sample`` of each) successful merges and exports: how many merges ended
    while the task waited in the worker (not deferred), and how many exports the trigger handed back
    before their end (``resume_before_end``). Evidence that the two mechanisms ran, not a timing."""
    kinds = {
        "merges_in_worker": ("merge", "Done while waiting in the worker"),
        "exports_handed_back_early": ("export_", "waiting for its end in the worker"),
    }
    found: dict[str, str] = {}
    for key, (task, line) in kinds.items():
        chosen = [
            t for t in tis if t["state"] == "success" and t["task_id"].rsplit(".", 1)[-1].startswith(task)
        ]
        chosen = chosen[:sample]
        seen = unread = 0
        for ti in chosen:
            try:
                entries = cluster.task_log(DAG_ID, run_id, ti)
            except Exception as exc:  # said, and counted apart: not "not seen"
                print(
                    f"fleet_airflow: {ti['task_id']}[{ti['map_index']}]: log unreadable: {exc}",
                    file=sys.stderr,
                )
                unread += 1
                entries = []
            seen += any(line in str(e.get("event", "")) for e in entries)
        found[key] = f"{seen} of {len(chosen) - unread}" + (f" ({unread} logs unreadable)" if unread else "")
    return found


def deployment_pids(cluster: AirflowStack, workdir: Path) -> dict[str, int]:
    """Each Airflow component's process and the PostgreSQL postmaster (from its postmaster.pid)."""
    pids = {name: proc.pid for name, proc in cluster.procs.items()}
    for pidfile in (workdir / "postgres").rglob("postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids["postgres"] = int(pidfile.read_text().splitlines()[0])
    return pids


def run_size(
    emu: Any,
    cluster: AirflowStack,
    inv_path: Path,
    hosts: int,
    vms: int,
    slots: int,
    time_scale: float,
    timeout: float,
) -> dict[str, Any]:
    inv_path.write_text(yaml.safe_dump(inventory(hosts, vms, slots)))  # read by each host's VM-list task
    emu.counters.reset()  # the quota peaks of this size only
    since = emu.clock.now()
    busy0, total0 = cpu_busy()
    deployment = deployment_pids(cluster, inv_path.parent)
    cpu0 = {name: tree_cpu_seconds([pid]) for name, pid in deployment.items()}
    scheduler0 = tree_cpu_split(deployment["scheduler"]) if "scheduler" in deployment else (0.0, 0.0, 0.0)
    wall0 = time.time()
    run_id = cluster.trigger(DAG_ID)
    try:
        run = cluster.wait_for_run(DAG_ID, run_id, timeout, poll=2.0, watch_tasks=False).info
    except RunTimeout as exc:  # the deadline: report how far it got (its makespan is at least the wall time)
        print(f"fleet_airflow: {str(exc).splitlines()[0]}", file=sys.stderr)
        run = {"state": "unfinished at the deadline", "start_date": None, "end_date": None}
    wall = time.time() - wall0
    busy1, total1 = cpu_busy()
    by_component = {name: tree_cpu_seconds([pid]) - cpu0[name] for name, pid in deployment.items()}
    airflow_cpu = sum(by_component.values())
    scheduler1 = tree_cpu_split(deployment["scheduler"]) if "scheduler" in deployment else (0.0, 0.0, 0.0)
    own, workers, tasks = (b - a for a, b in zip(scheduler0, scheduler1, strict=True))
    tis = cluster.task_instances(DAG_ID, run_id)
    say_why_tasks_failed(cluster, run_id, tis)
    waits = how_waits_ended(cluster, run_id, tis)
    start, end = parse_time(run.get("start_date")), parse_time(run.get("end_date"))
    makespan = (end - start) if start and end else wall
    states: dict[str, int] = {}
    for t in tis:
        states[str(t["state"])] = states.get(str(t["state"]), 0) + 1
    ran = [t for t in tis if t["state"] == "success"]
    # Start-up latency of each task: queued -> started (the executor forks a task runner).
    lags = [
        s - q
        for t in ran
        if (q := parse_time(t.get("queued_when"))) and (s := parse_time(t.get("start_date"))) and s >= q
    ]
    hv = hyperv_bound(hosts, vms, slots, time_scale)
    latency, parts = chain_latency(tis)
    bound = hv + latency
    return {
        "vms": vms,
        "hosts": hosts,
        "pool_slots": slots,
        "dag_run": run["state"],
        "task_instances": len(tis),
        "states": ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
        "makespan_s": round(makespan, 1),
        "wall_s": round(wall, 1),
        "hyperv_bound_s": round(hv, 1),
        "chain_latency_s": round(latency, 1),
        **{k: round(v, 1) for k, v in parts.items()},
        "lower_bound_s": round(bound, 1),
        "makespan_over_bound": round(makespan / bound, 2),
        "sum_task_durations_s": round(sum(float(t["duration"] or 0) for t in tis), 1),
        "mean_task_s": round(sum(float(t["duration"] or 0) for t in ran) / len(ran), 2) if ran else 0.0,
        "mean_queued_to_start_s": round(sum(lags) / len(lags), 2) if lags else 0.0,
        "cpu_busy_pct": round(100.0 * (busy1 - busy0) / max(1.0, total1 - total0), 1),
        # Issue 13 target 3: what Airflow (its components, task processes and PostgreSQL; not the
        # emulator, which runs in this process) spent per protected VM.
        "task_instances_per_vm": round(len(tis) / vms, 1),
        "executed_tasks_per_vm": round(len(ran) / vms, 1),
        "airflow_cpu_s": round(airflow_cpu, 1),
        "airflow_cpu_s_per_vm": round(airflow_cpu / vms, 2),
        # Where it went (a component's tree: the scheduler's holds the LocalExecutor's task processes).
        "airflow_cpu_by_component": ", ".join(f"{k} {v:.1f} s" for k, v in sorted(by_component.items()))
        + f" (the scheduler's: itself {own:.1f} s, its live children {workers:.1f} s, ended task processes "
        f"{tasks:.1f} s)",
        **waits,
        "quota": quota_rows(vms, emu.quota_usage()),
        "avhdx": avhdx.timelines(emu, since),
    }


def measure(
    sizes: Sequence[int],
    *,
    hosts: int,
    slots: int,
    time_scale: float,
    parallelism: int,
    deadline: float,
    config: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], float]:
    from hyperv_emulator.api import Emulator

    stop_at = time.monotonic() + deadline
    biggest = max(sizes)
    rows: list[dict[str, Any]] = []
    ready_s = 0.0
    try:
        with (
            work_directory("bench-fleet-airflow-", label="fleet_airflow", stream=sys.stderr) as tmp,
            postgres_cluster(tmp) as db_url,
            Emulator(
                fleet=fleet(hosts, biggest), root_dir=tmp / "hosts", auth="basic", time_scale=time_scale
            ) as emu,
        ):
            home = tmp / "airflow"
            (home / "dags").mkdir(parents=True)
            shutil.copy2(EXAMPLE_DAGS / f"{DAG_ID}.py", home / "dags" / f"{DAG_ID}.py")
            inv_path = tmp / "inventory.yaml"  # outside the DAGs folder
            inv_path.write_text(yaml.safe_dump(inventory(hosts, biggest, slots)))
            env = {
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1024",
                "AIRFLOW_HYPERV_INVENTORY": str(inv_path),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
            }
            env.update(config or {})  # the baseline deployment's [hyperv] options
            with running_airflow(
                home, db_url, emu, dag_ids=(DAG_ID,), env=env, parallelism=parallelism,
                pools={f"hyperv_hv_{h:02d}": slots for h in range(hosts)},
                startup_timeout=min(STARTUP_TIMEOUT, stop_at - time.monotonic()),
                label="fleet_airflow", stream=sys.stderr, api_timeout=60.0,
            ) as cluster, explained(cluster, 30):  # fmt: skip
                ready_s = cluster.ready_seconds
                for n in sizes:
                    remaining = stop_at - time.monotonic()
                    if remaining < 30:
                        print(f"fleet_airflow: deadline reached, {n} VMs not run", file=sys.stderr)
                        break
                    row = run_size(emu, cluster, inv_path, min(hosts, n), n, slots, time_scale, remaining)
                    brief = {k: v for k, v in row.items() if k not in ("quota", "avhdx")}
                    print(f"fleet_airflow: {brief}", file=sys.stderr)
                    rows.append(row)
    except LeftoverProcesses as exc:  # the rows stand; say what escaped the cleanup
        print(f"fleet_airflow: {exc}", file=sys.stderr)
    return rows, ready_s


COLUMNS = (
    "vms", "hosts", "pool_slots", "dag_run", "task_instances", "makespan_s", "hyperv_bound_s",
    "chain_latency_s", "lower_bound_s", "makespan_over_bound", "sum_task_durations_s", "mean_task_s",
    "mean_queued_to_start_s", "cpu_busy_pct", "executed_tasks_per_vm", "airflow_cpu_s", "airflow_cpu_s_per_vm",
)  # fmt: skip


GROWTH_KEYS = (
    "vms", "task_instances", "makespan_s", "lower_bound_s", "hyperv_bound_s", "makespan_over_bound",
    "sum_task_durations_s", "mean_queued_to_start_s", "airflow_cpu_s_per_vm",
)  # fmt: skip


def options(parser: argparse.ArgumentParser) -> None:
    fleet_options(parser)
    parser.add_argument("--time-scale", type=float, default=2.0, help="emulated seconds per real second")
    parser.add_argument("--parallelism", type=int, default=8, help="Airflow [core] parallelism")
    parser.add_argument("--deadline", type=float, default=2400.0, help="stop after this many seconds")
    parser.add_argument(
        "--baseline", action="store_true",
        help="first run the same sizes on a deployment as before issue 13's changes (merges defer at once, "
        "exports are handed back only at their end, task processes start cold), and print the ratios",
    )  # fmt: skip


# The deployment as it ran before issue 13: a merge defers at once, an export's trigger hands back only
# at the end (the export's polls at its predicted end stay: they have no option), and every task
# process imports the provider itself (Airflow's own LocalExecutor, not PreloadingLocalExecutor).
BASELINE_CONFIG = {
    "AIRFLOW__HYPERV__MERGE_DEFER_AFTER": "0",
    "AIRFLOW__HYPERV__EXPORT_RESUME_BEFORE_END": "0",
    **COLD_TASK_PROCESSES,
}
COMPARED = ("makespan_s", "makespan_over_bound", "airflow_cpu_s_per_vm", "sum_task_durations_s")


def compare(baseline: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: each compared figure and the AVHDX gaps (median and max per VM), baseline against now."""
    out = []
    for before, now in zip(baseline, rows, strict=False):
        for key in COMPARED:
            out.append({"vms": now["vms"], "figure": key, "baseline": before[key], "now": now[key],
                        "now / baseline": round(now[key] / before[key], 2) if before[key] else ""})  # fmt: skip
        for stat, pick in (("median", 50.0), ("max", 100.0)):
            gaps_before = [r["gaps_s"] for r in before["avhdx"]]
            gaps_now = [r["gaps_s"] for r in now["avhdx"]]
            if not gaps_before or not gaps_now:
                continue
            b, n = avhdx.percentile(gaps_before, pick), avhdx.percentile(gaps_now, pick)
            out.append({"vms": now["vms"], "figure": f"AVHDX gaps per VM, {stat} s", "baseline": round(b, 1),
                        "now": round(n, 1), "now / baseline": round(n / b, 2) if b else ""})  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = fleet_shape(cli("bench.fleet_airflow", __doc__, argv, options))
    header("Fleet makespan of the nightly DAG on real Airflow (LocalExecutor, PostgreSQL, triggerer)")
    print(
        f"\nparallelism {args.parallelism}, pools of {args.pool_slots} slots (include deferred), time_scale "
        f"{args.time_scale}: {per_vm_seconds(args.time_scale):.1f} s of Hyper-V work per VM\n"
    )
    shape = dict(hosts=args.hosts, slots=args.pool_slots, time_scale=args.time_scale,
                 parallelism=args.parallelism, deadline=args.deadline)  # fmt: skip
    baseline: list[dict[str, Any]] = []
    if args.baseline:
        baseline, _ = measure(args.sizes, config=BASELINE_CONFIG, **shape)  # type: ignore[arg-type]
        print_table(baseline, COLUMNS, title=f"Baseline: {BASELINE_CONFIG}")
    rows, ready_s = measure(args.sizes, **shape)  # type: ignore[arg-type]
    print(f"Airflow start-up (migrate, pools, four components healthy, DAG parsed): {ready_s:.1f} s\n")
    print_table(rows, COLUMNS, title="Per fleet size")
    for row in rows:
        print(
            f"* {row['vms']} VMs: {row['states']}; chain latency = VM list {row['vm_list_s']} s + the VM's "
            f"other tasks {row['vm_other_tasks_s']} s + report {row['report_s']} s; wall {row['wall_s']} s; "
            f"merges that ended in the worker (not deferred): {row.get('merges_in_worker')}; exports handed "
            f"back before their end: {row.get('exports_handed_back_early')} (a sample of the logs); Airflow CPU "
            f"by component: {row.get('airflow_cpu_by_component')}"
        )
    print_quotas_and_avhdx(rows)
    if grown := growth(rows, GROWTH_KEYS):
        print_table(grown, title="Growth")
    if baseline:
        print_table(compare(baseline, rows), title="Against the baseline deployment of the same run")
    return rows


if __name__ == "__main__":
    main()
