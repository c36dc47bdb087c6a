"""Fleet makespan of the nightly DAG: 10 VMs vs 100 VMs (``make bench-slow``).

What it is, exactly: NOT a real Airflow deployment (no scheduler, no executor, no triggerer). The
real ``dags/nightly_checkpoint.py`` is parsed with a generated inventory (``AIRFLOW_HYPERV_INVENTORY``:
``--hosts`` hosts, each with its own connection and pool of ``--pool-slots`` slots, ``--vms`` VMs
spread evenly) and run with ``dag.test()``, against an emulated fleet of the same shape (every VM a
Windows guest with VSS healthy, ProductionOnly: every VM takes the full chain verify -> choose ->
production checkpoint -> export -> retention -> merge). ``dag.test()`` runs one task at a time in
this process, so **pools do not limit anything and nothing runs in parallel**: the measured
makespan is the sum of the task times (the sequential makespan).

From the same run, two lower bounds a real deployment with per-host pools could reach:

* ``pool_bound_measured_s``: from the measured task durations. Per host, the pooled tasks'
  durations summed and divided by the pool's slots, or the longest single VM chain if that is longer;
  the fleet's bound is the slowest host plus the unpooled tasks on the critical path (each host's
  VM-list task and the final report). Task start-up of a real worker (process fork, DB round trips:
  typically seconds per task) is not in it.
* ``pool_bound_hyperv_s``: from the emulated operation times at real Hyper-V speed (the fleet's
  ``timing``: checkpoint seconds, export MB/s over each VM's disk, merge MB/s over its AVHDX churn),
  summed per host, divided by the slots; the time the hosts themselves need.

Each size runs in a child process with its own Airflow home (a SQLite metadata DB migrated once and
copied). Emulator time_scale 1000. Run: ``.venv/bin/python -m bench.fleet`` (``--sizes``, ``--hosts``,
``--pool-slots``).

**Cluster mode** (``--cluster``): one four-node failover cluster ``hvc-01`` instead of ``--hosts``
hosts, every VM a clustered role on a CSV spread evenly over the nodes, exports to a second CSV; the
inventory has one entry, the cluster connection, with one pool of ``--pool-slots`` slots. While the
run goes, a migrator thread live-migrates a VM every ``--migrate-every`` seconds (wall; at most
``--migrations`` moves), round robin over the VMs to the next node; each migration takes the
cluster's 20 emulated seconds (20 ms here), so a task may meet a VM mid-move. A VM that is busy (a
checkpoint, export or merge) is not moved (the emulator refuses it): the next one is. Reported: the
makespan, the migrations made and refused, how many VMs the run's report says are protected and the
checkpoints left on any node. The hook's poll while a VM moves is 0.05 s (``ClusterRouter.poll_interval``;
5 s by default, for migrations of real seconds). Run: ``.venv/bin/python -m bench.fleet --cluster
--sizes 20``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from bench import avhdx
from bench.common import (
    QUOTA_COLUMNS,
    cli,
    fleet_options,
    fleet_shape,
    growth,
    header,
    print_table,
    quota_rows,
)
from tests.support.emulated import uri_for

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"checkpoint_seconds": 3, "restore_seconds": 2, "export_mb_per_s": 250, "merge_mb_per_s": 150}
DISK_FILE_GB = 20
CHURN_MB = 1024
UNPOOLED = ("_vms", "report")  # task ids of the tasks without a host pool (suffixes)
CLUSTER, NODES = "hvc-01", ("hv-n1", "hv-n2", "hv-n3", "hv-n4")
CSV_VMS, CSV_BACKUPS = "C:\\ClusterStorage\\Volume1", "C:\\ClusterStorage\\Volume2"


def layout(hosts: int, vms: int) -> list[list[str]]:
    """VM names per host: ``vms`` spread as evenly as possible over ``hosts``."""
    return [[f"vm-{h:02d}-{v:03d}" for v in range(vms) if v % hosts == h] for h in range(hosts)]


def fleet(hosts: int, vms: int) -> dict[str, Any]:
    return {
        "timing": TIMING,
        "hosts": [
            {
                "name": f"hv-{h:02d}",
                "volumes": {"C": {"capacity_gb": 8000, "used_gb": 100}, "D": {"capacity_gb": 20000, "used_gb": 100}},
                "vms": [
                    {"name": name, "guest": "windows", "checkpoint_type": "ProductionOnly", "churn_mb": CHURN_MB,
                     "disks": [{"size_gb": 60, "file_gb": DISK_FILE_GB}]}
                    for name in names
                ],
            }
            for h, names in enumerate(layout(hosts, vms))
        ],
    }  # fmt: skip


def inventory(hosts: int, vms: int, slots: int) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "schedule": None,
        "keep_exports": 3,
        "hosts": [
            {
                "name": f"hv-{h:02d}", "conn_id": f"hyperv_hv_{h:02d}", "pool": f"hyperv_hv_{h:02d}",
                "pool_slots": slots, "export_root": "D:\\Backups",
                "vms": [{"name": name, "policy": "require"} for name in names],
            }
            for h, names in enumerate(layout(hosts, vms))
        ],
    }  # fmt: skip


def cluster_fleet(vms: int) -> dict[str, Any]:
    """One four-node cluster: ``vms`` clustered VMs on the first CSV, spread evenly over the nodes."""
    names = layout(len(NODES), vms)
    return {
        "timing": TIMING,
        "clusters": [{
            "name": CLUSTER, "nodes": list(NODES), "live_migration_seconds": 20,
            "shared_volumes": {CSV_VMS: {"capacity_gb": 100000, "used_gb": 100, "label": "CSV-VMs"},
                               CSV_BACKUPS: {"capacity_gb": 200000, "used_gb": 100, "label": "CSV-Backups"}},
        }],
        "hosts": [
            {
                "name": node,
                "vms": [
                    {"name": name, "path": f"{CSV_VMS}\\{name}", "guest": "windows",
                     "checkpoint_type": "ProductionOnly", "churn_mb": CHURN_MB,
                     "disks": [{"size_gb": 60, "file_gb": DISK_FILE_GB}]}
                    for name in names[n]
                ],
            }
            for n, node in enumerate(NODES)
        ],
    }  # fmt: skip


def cluster_inventory(vms: int, slots: int) -> dict[str, Any]:
    return {
        "timezone": "UTC", "schedule": None, "keep_exports": 3,
        "hosts": [{
            "name": CLUSTER, "conn_id": "hyperv_hvc_01", "pool": "hyperv_hvc_01", "pool_slots": slots,
            "export_root": f"{CSV_BACKUPS}\\Backups",
            "vms": [{"name": name, "policy": "require"}
                    for names in layout(len(NODES), vms) for name in names],
        }],
    }  # fmt: skip


class Migrator:
    """Live-migrates a VM of the cluster every ``every`` seconds, round robin to the next node, at most
    ``limit`` times; a busy VM is skipped (the emulator refuses to move it) for the next one."""

    def __init__(self, emu: Any, every: float, limit: int):
        self.cluster = emu.cluster()
        self.every, self.limit = every, limit
        self.vm_ids = sorted(self.cluster.groups, key=lambda i: self.cluster.groups[i].name)
        self.made = 0
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="migrator", daemon=True)

    def _run(self) -> None:
        nodes = list(self.cluster.nodes)
        turn = 0
        while self.made < self.limit and not self.stop.wait(self.every):
            for _ in range(len(self.vm_ids)):
                vm_id = self.vm_ids[turn % len(self.vm_ids)]
                turn += 1
                owner = self.cluster.owner_of(vm_id)
                target = nodes[(nodes.index(owner) + 1) % len(nodes)]
                try:
                    self.cluster.start_live_migration(vm_id, target)
                except ValueError:  # busy, merging or already moving: not this one now
                    self.refused += 1
                    continue
                self.made += 1
                break

    def __enter__(self) -> Migrator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def hyperv_bound(hosts: int, vms: int, slots: int) -> float:
    """Seconds the hosts need at real Hyper-V speed, with ``slots`` VMs at a time per host."""
    per_vm = (
        TIMING["checkpoint_seconds"]
        + DISK_FILE_GB * 1024 / TIMING["export_mb_per_s"]
        + CHURN_MB / TIMING["merge_mb_per_s"]
    )
    return max(len(names) * per_vm / slots if names else 0.0 for names in layout(hosts, vms))


# -- the child: one size, one Airflow home --------------------------------------------------------------
def _child(home: Path, hosts: int, vms: int, slots: int) -> dict[str, Any]:
    import contextlib
    import io
    import logging

    from airflow.models.pool import Pool

    for h in range(hosts):
        Pool.create_or_update_pool(f"hyperv_hv_{h:02d}", slots, "one Hyper-V host", include_deferred=True)

    from hyperv_emulator.api import Emulator

    with Emulator(fleet=fleet(hosts, vms), root_dir=home / "hosts", time_scale=1000.0) as emu:
        for name in emu.host_names:
            os.environ[f"AIRFLOW_CONN_HYPERV_{name.upper().replace('-', '_')}"] = uri_for(emu, name)
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "nightly_checkpoint", EXAMPLE_DAGS / "nightly_checkpoint.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sink = io.StringIO()
        if not os.environ.get("BENCH_FLEET_DEBUG"):
            logging.disable(logging.INFO)
        started = time.perf_counter()
        with contextlib.redirect_stdout(sink if not os.environ.get("BENCH_FLEET_DEBUG") else sys.stderr):
            dag_run = module.dag.test()
        makespan = time.perf_counter() - started
        counters = emu.counters.snapshot()
        quota_usage, timelines = emu.quota_usage(), avhdx.timelines(emu)
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        tasks = [
            {"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state), "pool": ti.pool,
             "duration": float(ti.duration or 0.0)}
            for ti in tis
        ]  # fmt: skip
    return {
        "state": str(dag_run.state),
        "makespan_s": makespan,
        "tasks": tasks,
        "wsman_requests": counters.wsman_requests,
        "pools_opened": counters.pools_opened,
        "pipelines": counters.pipelines_run,
        "quota_usage": quota_usage,
        "avhdx": timelines,
    }


def _cluster_child(home: Path, vms: int, slots: int, every: float, limit: int) -> dict[str, Any]:
    import contextlib
    import io
    import logging

    from airflow.models.pool import Pool

    from airflow_hyperv.hooks.cluster import ClusterRouter
    from airflow_hyperv.hooks.connection import connection_uri

    Pool.create_or_update_pool("hyperv_hvc_01", slots, "one Hyper-V cluster", include_deferred=True)
    ClusterRouter.poll_interval = 0.05  # a migration lasts 20 ms here (see the module docstring)

    from hyperv_emulator.api import Emulator

    with Emulator(fleet=cluster_fleet(vms), root_dir=home / "hosts", time_scale=1000.0) as emu:
        os.environ["AIRFLOW_CONN_HYPERV_HVC_01"] = connection_uri(**emu.cluster_connection().as_fields())
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "nightly_checkpoint", EXAMPLE_DAGS / "nightly_checkpoint.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sink = io.StringIO()
        if not os.environ.get("BENCH_FLEET_DEBUG"):
            logging.disable(logging.INFO)
        started = time.perf_counter()
        with (
            contextlib.redirect_stdout(sink if not os.environ.get("BENCH_FLEET_DEBUG") else sys.stderr),
            Migrator(emu, every, limit) as migrator,
        ):
            dag_run = module.dag.test()
        makespan = time.perf_counter() - started
        counters = emu.counters.snapshot()
        checkpoints_left = sum(len(vm.checkpoints) for host in emu.fleet.hosts.values() for vm in host.vms())
        steps = [e for e in emu.audit.entries() if e.outcome == "ok"
                 and e.cmdlet in ("Checkpoint-VM", "Export-VMSnapshot", "Remove-VMSnapshot")]  # fmt: skip
        nodes_used = {e.host for e in steps}
        # A VM "moved during the run" when its checkpoint, export and merge did not all run on one node.
        step_nodes: dict[str, set[str]] = {}
        for e in steps:
            for vm_id in emu.cluster().groups:
                if str(vm_id) in e.targets:
                    step_nodes.setdefault(str(vm_id), set()).add(e.host)
        moved_between_steps = sum(1 for nodes in step_nodes.values() if len(nodes) > 1)
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        tasks = [
            {"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state), "pool": ti.pool,
             "duration": float(ti.duration or 0.0), "try_number": ti.try_number}
            for ti in tis
        ]  # fmt: skip
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="report", key="report")
            .one_or_none()
        )
        rows = [] if row is None else XComModel.deserialize_value(row)
    return {
        "state": str(dag_run.state),
        "makespan_s": makespan,
        "tasks": tasks,
        "wsman_requests": counters.wsman_requests,
        "pools_opened": counters.pools_opened,
        "pipelines": counters.pipelines_run,
        "migrations": migrator.made,
        "migrations_refused": migrator.refused,
        "protected": sum(1 for r in rows if str(r.get("outcome", "")).startswith("protected")),
        "checkpoints_left": checkpoints_left,
        "nodes_used": sorted(nodes_used),
        "vms_moved_between_steps": moved_between_steps,
    }


def run_cluster(template: Path, base: Path, vms: int, slots: int, every: float, limit: int) -> dict[str, Any]:
    import yaml

    home = base / f"cluster-{vms}"
    shutil.copytree(template, home)
    (home / "airflow.cfg").unlink(missing_ok=True)
    shutil.copytree(EXAMPLE_DAGS, home / "dags", dirs_exist_ok=True)
    inv_path = home / "inventory.yaml"
    inv_path.write_text(yaml.safe_dump(cluster_inventory(vms, slots)))
    env = {**airflow_env(home), "AIRFLOW_HYPERV_INVENTORY": str(inv_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--cluster-child", str(home), str(vms), str(slots), str(every),
         str(limit)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cluster, {vms} VMs: the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    tasks = result["tasks"]
    states: dict[str, int] = {}
    for t in tasks:
        states[t["state"]] = states.get(t["state"], 0) + 1
    return {
        "vms": vms,
        "nodes": len(NODES),
        "pool_slots": slots,
        "dag_run": result["state"],
        "task_instances": len(tasks),
        "states": ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
        "retried_tasks": sum(1 for t in tasks if t["try_number"] > 1),
        "sequential_makespan_s": round(result["makespan_s"], 1),
        "migrations": result["migrations"],
        "migrations_refused": result["migrations_refused"],
        "vms_moved_between_steps": f"{result['vms_moved_between_steps']} of {vms}",
        "protected": f"{result['protected']} of {vms}",
        "checkpoints_left": result["checkpoints_left"],
        "nodes_used": ", ".join(result["nodes_used"]),
        "wsman_requests": result["wsman_requests"],
        "wsman_per_vm": round(result["wsman_requests"] / vms, 1),
    }


CLUSTER_COLUMNS = (
    "vms", "nodes", "pool_slots", "dag_run", "task_instances", "retried_tasks", "sequential_makespan_s",
    "migrations", "migrations_refused", "vms_moved_between_steps", "protected", "checkpoints_left",
    "wsman_requests", "wsman_per_vm",
)  # fmt: skip


def measured_bound(tasks: list[dict[str, Any]], slots: int) -> float:
    """Seconds a deployment with per-host pools of ``slots`` could not beat, from task durations."""
    per_host: dict[str, float] = {}
    chains: dict[tuple[str, str, int], float] = {}
    unpooled: dict[str, float] = {}
    for t in tasks:
        if t["task_id"].endswith(UNPOOLED):
            unpooled[t["task_id"]] = max(unpooled.get(t["task_id"], 0.0), t["duration"])
            continue
        group = t["task_id"].split(".", 1)[0]
        per_host[group] = per_host.get(group, 0.0) + t["duration"]
        key = (group, t["pool"], t["map_index"])
        chains[key] = chains.get(key, 0.0) + t["duration"]
    host_bound = max(
        (max(total / slots, max((d for (g, _, _), d in chains.items() if g == group), default=0.0))
         for group, total in per_host.items()),
        default=0.0,
    )  # fmt: skip
    lists = max((d for k, d in unpooled.items() if k.endswith("_vms")), default=0.0)
    return host_bound + lists + unpooled.get("report", 0.0)


def migrated_home(base: Path) -> Path:
    """An Airflow home with a migrated SQLite DB, made once per bench run."""
    home = base / "template"
    (home / "dags").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=airflow_env(home),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip
    return home


def airflow_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    })  # fmt: skip
    return env


def run_size(template: Path, base: Path, hosts: int, vms: int, slots: int) -> dict[str, Any]:
    import yaml

    home = base / f"size-{vms}"
    shutil.copytree(template, home)
    (home / "airflow.cfg").unlink(missing_ok=True)  # it names the template's folders; the env says the rest
    # dag.test() serializes the DAG from the DAGs folder (its bundle), as make demo does.
    shutil.copytree(EXAMPLE_DAGS, home / "dags", dirs_exist_ok=True)
    inv_path = home / "inventory.yaml"
    inv_path.write_text(yaml.safe_dump(inventory(hosts, vms, slots)))
    env = {**airflow_env(home), "AIRFLOW_HYPERV_INVENTORY": str(inv_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--child", str(home), str(hosts), str(vms), str(slots)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{vms} VMs: the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    tasks = result["tasks"]
    states: dict[str, int] = {}
    for t in tasks:
        states[t["state"]] = states.get(t["state"], 0) + 1
    ran = [t for t in tasks if t["state"] == "success"]
    return {
        "vms": vms,
        "hosts": hosts,
        "pool_slots": slots,
        "dag_run": result["state"],
        "task_instances": len(tasks),
        "states": ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
        "sequential_makespan_s": round(result["makespan_s"], 1),
        "sum_task_durations_s": round(sum(t["duration"] for t in tasks), 1),
        "mean_task_s": round(sum(t["duration"] for t in ran) / len(ran), 3) if ran else 0.0,
        "pool_bound_measured_s": round(measured_bound(tasks, slots), 1),
        "pool_bound_hyperv_s": round(hyperv_bound(hosts, vms, slots), 1),
        "wsman_requests": result["wsman_requests"],
        "wsman_per_vm": round(result["wsman_requests"] / vms, 1),
        "pools_opened": result["pools_opened"],
        "quota": quota_rows(vms, result["quota_usage"]),
        "avhdx": result["avhdx"],
    }


GROWTH_KEYS = (
    "vms", "task_instances", "sequential_makespan_s", "pool_bound_measured_s", "pool_bound_hyperv_s",
    "wsman_requests", "wsman_per_vm",
)  # fmt: skip


def measure(sizes: Sequence[int] = (10, 100), *, hosts: int = 10, slots: int = 2) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        base = Path(tmp)
        template = migrated_home(base)
        return [run_size(template, base, min(hosts, n), n, slots) for n in sizes]


COLUMNS = (
    "vms", "hosts", "pool_slots", "dag_run", "task_instances", "sequential_makespan_s", "sum_task_durations_s",
    "mean_task_s", "pool_bound_measured_s", "pool_bound_hyperv_s", "wsman_requests", "wsman_per_vm", "pools_opened",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        home, hosts, vms, slots = Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
        print(json.dumps(_child(home, hosts, vms, slots)))
        return []
    if argv[:1] == ["--cluster-child"]:
        home, vms, slots, every, limit = (
            Path(argv[1]),
            int(argv[2]),
            int(argv[3]),
            float(argv[4]),
            int(argv[5]),
        )
        print(json.dumps(_cluster_child(home, vms, slots, every, limit)))
        return []
    args = fleet_shape(cli("bench.fleet", __doc__, argv, fleet_options, cluster_options))
    if args.cluster:
        header("Fleet makespan of the nightly DAG on a 4-node cluster, VMs moving (dag.test(): sequential)")
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            template = migrated_home(Path(tmp))
            rows = [run_cluster(template, Path(tmp), n, args.pool_slots, args.migrate_every, args.migrations)
                    for n in args.sizes]  # fmt: skip
        print_table(rows, CLUSTER_COLUMNS, title="One cluster, VMs live-migrating during the run")
        for row in rows:
            print(f"* {row['vms']} VMs: {row['states']}; steps ran on {row['nodes_used']}")
        return rows
    header("Fleet makespan of the nightly DAG (dag.test(): sequential, pools not enforced)")
    rows = measure(args.sizes, hosts=args.hosts, slots=args.pool_slots)
    print_table(rows, COLUMNS, title="Per fleet size")
    for row in rows:
        print(f"* {row['vms']} VMs: {row['states']}")
    print_quotas_and_avhdx(rows)
    if grown := growth(rows, GROWTH_KEYS):
        print_table(grown, title="Growth")
    return rows


def print_quotas_and_avhdx(rows: Sequence[dict[str, Any]]) -> None:
    """The WinRM quota headroom of each size (peaks per host and user against the host's quotas), and
    each VM's time on its checkpoint's AVHDX (``bench.avhdx``)."""
    print_table(
        [q for row in rows for q in row["quota"]],
        QUOTA_COLUMNS,
        title="WinRM quotas: peaks per host and user",
    )
    for row in rows:
        print_table(avhdx.summary(row["avhdx"]), title=f"{row['vms']} VMs: seconds on the checkpoint's AVHDX")
        print(f"* {avhdx.verdict(row['avhdx'], row['vms'])}")


def cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--cluster``, ``--migrate-every``, ``--migrations``: the cluster mode (module docstring)."""
    parser.add_argument(
        "--cluster", action="store_true", help="one 4-node cluster, VMs moving during the run"
    )
    parser.add_argument(
        "--migrate-every", type=float, default=1.0, help="seconds between migrations (default 1)"
    )
    parser.add_argument(
        "--migrations", type=int, default=100, help="at most this many migrations (default 100)"
    )


if __name__ == "__main__":
    main()
