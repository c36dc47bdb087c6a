"""A distributed run for real, without Docker: the nightly DAG on the CeleryExecutor, one Celery worker
per site, and one of them killed mid-run.

The deployment (tests/support/airflow_stack.py): PostgreSQL (scripts/postgres.sh) for the metadata and
Celery's results, Redis (scripts/redis.sh) as the broker, both Debian's packages on loopback in this
module's work directory; the scheduler, dag-processor, api-server and triggerer; and a worker per site
queue of the shipped inventory (``site_workers``: ``worker-site-a`` serves ``hyperv-site-a,default``,
``worker-site-b`` serves ``hyperv-site-b,default``; the same command lines as
docker/docker-compose.yaml, tests/docker/test_compose.py), each its own process session with its own
Celery hostname.

The run: the shipped nightly DAG over a small part of the example fleet (hv-01 at site a: dc-01 and
web-01; hv-02 at site b: legacy-01), with the shipped inventory's queues; retry delays of seconds and
wait polls of 2 s instead of minutes and 10 s (asserted substitutions). While it runs:

1. an emulator gate holds dc-01's ``Checkpoint-VM`` on hv-01;
2. once the REST API shows that task running on ``worker-site-a``, that worker's whole process session
   is SIGKILLed (its Celery processes and the task's own process: a machine that dies);
3. the gate is released: the host finishes the dead try's checkpoint (the client is gone, the host
   is not), and the test waits for that call to end on the host;
4. a replacement worker (``worker-site-a-2``, the same queues: what a restart policy or a standby
   does) is started. The scheduler fails the silent try when its heartbeat times out (a short
   ``task_instance_heartbeat_timeout`` here), and the retry runs on the replacement, the only live
   worker serving the site's queue.

Checked: the run succeeds; every try of every task ran on a worker serving its queue, and each site's
worker ran its site's tasks (REST API ``hostname`` and ``queue`` of every try); the exports and merges
deferred and were resumed by the triggerer (task logs); the killed try was failed by the heartbeat
timeout (the event log) and retried on the replacement; on the hosts, from the emulator: one
Checkpoint-VM per VM (the retry found the dead try's checkpoint by its name), never two checkpoints of
a VM at once, every checkpoint removed, no checkpoint left, every VM's CheckpointType as before, and
under each export root exactly the verified export of each VM (no staging folder, nothing else);
the broker's password in no log.

Why a replacement worker rather than two workers on one queue: each site keeps exactly one worker, so
"every task ran on a worker serving its queue" stays a sharp check of the routing, and the retry can
only land on the replacement. The tests without Airflow at the end are the positive controls of the
invariants.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from tests.support.airflow_stack import (
    CELERY,
    ROOT,
    AirflowStack,
    CeleryWorker,
    explained,
    redis_or_skip,
    running_airflow,
    site_workers,
)

DAG_ID = "nightly_checkpoint"
SHIPPED_INVENTORY = EXAMPLE_DAGS / "inventory" / "nightly.yaml"
EXAMPLE_FLEET = ROOT / "emulator" / "hyperv_emulator" / "fleets" / "example.yaml"
SITE_VMS = {"hv-01": ["dc-01", "web-01"], "hv-02": ["legacy-01"]}  # map index = position
HELD_VM, HELD_HOST = "dc-01", "hv-01"
HELD_TASK = ("host_hv_01.production_checkpoint", 0)
WORKERS = site_workers(SHIPPED_INVENTORY)
KILLED = next(w for w in WORKERS if "hyperv-site-a" in w.queues)
REPLACEMENT = CeleryWorker(f"{KILLED.name}-2", KILLED.queues, KILLED.concurrency)
HEARTBEAT_TIMEOUT = 20  # seconds without a heartbeat before the scheduler fails a running try
QUEUED_TIMEOUT = 90  # seconds a try may stay queued before the scheduler re-queues it
NEVER_RAN = (None, "skipped", "upstream_failed", "removed", "scheduled", "queued", "none")
RUN_TIMEOUT = 900.0

WORKDIR_PREFIX = "airflow-hyperv-celery-"  # tests/e2e/conftest.py: the module's work directory


# -- the invariants (their positive controls are at the end) ---------------------------------------------
def try_label(t: dict[str, Any]) -> str:
    index = f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""
    return f"{t['task_id']}{index} try {t.get('try_number')}"


def routing_violations(tries: Iterable[dict[str, Any]], workers: Iterable[CeleryWorker]) -> list[str]:
    """Every try that ran did so on a worker of the test that serves the try's queue. An EmptyOperator
    with no hostname ran on no worker: the scheduler marks it successful without an executor."""
    serving = {w.name: set(w.queues) for w in workers}
    problems = []
    for t in tries:
        host = t.get("hostname") or ""
        if t.get("state") in NEVER_RAN or (not host and t.get("operator") == "EmptyOperator"):
            continue
        if host not in serving:
            problems.append(f"{try_label(t)} ran on {host!r}, none of the workers {sorted(serving)}")
        elif t.get("queue") not in serving[host]:
            problems.append(
                f"{try_label(t)} (queue {t.get('queue')}) ran on {host}, serving {sorted(serving[host])}"
            )
    return problems


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def checkpoint_violations(entries: Iterable[Any], vm_id: str) -> list[str]:
    """From a host's audit log: a Checkpoint-VM of the VM while a checkpoint an earlier one made still
    exists (a duplicate), and checkpoints never removed."""
    vm_id = vm_id.lower()
    open_ids: set[str] = set()
    problems = []
    for e in sorted(entries, key=lambda e: e.seq):
        text = (" ".join(e.parameters.values()) + " " + " ".join(e.targets)).lower()
        if e.cmdlet == "Checkpoint-VM" and e.outcome == "ok" and vm_id in text:
            made = set(UUID.findall(text)) - {vm_id}
            if open_ids:
                problems.append(
                    f"a second checkpoint of {vm_id} (seq {e.seq}) while {sorted(open_ids)} exists"
                )
            open_ids |= made
        elif e.cmdlet == "Remove-VMSnapshot" and e.outcome == "ok":
            open_ids -= set(UUID.findall(text))
    if open_ids:
        problems.append(f"checkpoints of {vm_id} never removed: {sorted(open_ids)}")
    return problems


def export_leftovers(found: list[str], verified: str | None) -> list[str]:
    """The folders under a VM's export folder (``<root>\\<host>\\<vm id>``) other than its verified
    export: a staging folder left behind, or an export nobody verified."""
    problems = [f"staging folder left: {n}" for n in found if n.startswith(".staging-")]
    problems += [f"unverified export: {n}" for n in found if not n.startswith(".staging-") and n != verified]
    if verified is not None and verified not in found:
        problems.append(f"the verified export {verified} is missing")
    return problems


# -- the deployment ----------------------------------------------------------------------------------------
def small_fleet() -> dict[str, Any]:
    """The example fleet's hosts with the VMs of SITE_VMS only; exports slow enough (about 4 s of real
    time for dc-01 at x1000) that the triggerer polls a wait more than once."""
    fleet = yaml.safe_load(EXAMPLE_FLEET.read_text())
    fleet["timing"] = {**fleet["timing"], "export_mb_per_s": 5}
    fleet["hosts"] = [
        {**h, "vms": [vm for vm in h["vms"] if vm["name"] in SITE_VMS[h["name"]]]}
        for h in fleet["hosts"]
        if h["name"] in SITE_VMS
    ]
    return fleet


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in the shipped DAG: adapt this test"
    return text.replace(old, new)


def write_dags(dags: Path) -> None:
    """The shipped nightly DAG, with retry delays of seconds and 2 s wait polls, and its shipped
    inventory (queues, pools, export roots) narrowed to SITE_VMS, for manual runs."""
    (dags / "inventory").mkdir(parents=True)
    inventory = yaml.safe_load(SHIPPED_INVENTORY.read_text())
    inventory["schedule"] = None
    inventory["hosts"] = [
        {**h, "vms": [vm for vm in h["vms"] if vm["name"] in SITE_VMS[h["name"]]]}
        for h in inventory["hosts"]
        if h["name"] in SITE_VMS
    ]
    assert [[vm["name"] for vm in h["vms"]] for h in inventory["hosts"]] == list(SITE_VMS.values())
    (dags / "inventory" / "nightly.yaml").write_text(yaml.safe_dump(inventory))
    text = (EXAMPLE_DAGS / f"{DAG_ID}.py").read_text()
    text = replace_once(text, "pendulum.duration(minutes=2)", "pendulum.duration(seconds=2)")
    text = replace_once(
        text,
        "                pool=host.pool,\n",
        "                pool=host.pool,\n                poll_interval=2,\n",
    )
    (dags / f"{DAG_ID}.py").write_text(text)


@pytest.fixture(scope="module")
def broker(workdir: Path) -> Iterator[str]:
    with redis_or_skip(workdir) as url:
        yield url


@pytest.fixture(scope="module")
def fleet(workdir: Path) -> Iterator[Any]:
    from hyperv_emulator.api import Emulator

    with Emulator(small_fleet(), root_dir=workdir / "hosts", auth="basic", time_scale=1000.0) as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow(workdir: Path, postgres: str, broker: str, fleet: Any) -> Iterator[AirflowStack]:
    home = workdir / "airflow"
    write_dags(home / "dags")
    pools = {h["pool"]: h["pool_slots"] for h in yaml.safe_load(SHIPPED_INVENTORY.read_text())["hosts"]}
    env = {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        # A task the killed worker had received but not started (its second slot, e.g. the branch's
        # other checkpoint skipping itself) stays queued: Redis gives an unacknowledged message back
        # only after its visibility timeout (a day), so the scheduler's queued timeout re-queues it,
        # here after QUEUED_TIMEOUT s instead of 600 (a CI run waited 10 min for it, then passed).
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
        # Merges end at once here: 0 makes them defer, so the triggerer resumes them (asserted below).
        "AIRFLOW__HYPERV__MERGE_DEFER_AFTER": "0",
    }
    with running_airflow(
        home, postgres, fleet, dag_ids=[DAG_ID], pools=pools, env=env, parallelism=8,
        executor=CELERY, broker_url=broker, workers=WORKERS, label="celery",
    ) as stack:  # fmt: skip
        yield stack


# -- the test ------------------------------------------------------------------------------------------------
def vm_named(fleet: Any, host: str, name: str) -> Any:
    return next(vm for vm in fleet.host(host).vms() if vm.name == name)


def all_tries(
    stack: AirflowStack, dag_id: str, run_id: str, tis: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every try of every task instance that ran (the try history plus the current try), with the
    task's queue on each."""
    tries = []
    for ti in tis:
        if ti["state"] in NEVER_RAN:
            continue
        suffix = f"/{ti['map_index']}" if ti["map_index"] >= 0 else ""
        history = stack.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}{suffix}/tries"
        )
        by_try = {t["try_number"]: t for t in history["task_instances"]}
        by_try[ti["try_number"]] = ti
        tries += [
            {**t, "queue": t.get("queue") or ti["queue"], "operator": ti["operator"]} for t in by_try.values()
        ]
    return tries


def export_xcom(stack: AirflowStack, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    entry = stack.api(
        "GET",
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": "true"},
    )
    value = entry["value"]
    return value if isinstance(value, dict) else yaml.safe_load(value)


@pytest.mark.e2e
@pytest.mark.celery
@pytest.mark.timeout(1800)
def test_nightly_on_celery_workers_per_site_survives_a_worker_killed_mid_checkpoint(
    airflow: AirflowStack, fleet: Any, broker: str
) -> None:
    started = time.monotonic()
    with explained(airflow):
        vms = {name: vm_named(fleet, host, name) for host, names in SITE_VMS.items() for name in names}
        types_before = {name: vm.checkpoint_type.name for name, vm in vms.items()}
        held_vm_id = str(vms[HELD_VM].id)

        # 1-2. Hold dc-01's Checkpoint-VM; kill its worker once the API shows the task running there.
        gate = fleet.faults.gate("Checkpoint-VM", vm=held_vm_id)
        try:
            run_id = airflow.trigger(DAG_ID)

            def held() -> bool:
                state = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
                assert state not in ("success", "failed"), f"the run ended ({state}) before the gate held"
                return gate.wait_blocked(0.5)

            airflow.wait_for(f"{HELD_VM}'s Checkpoint-VM to reach the gate", held, timeout=RUN_TIMEOUT)

            def held_task_running() -> dict[str, Any] | None:
                tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG_ID, run_id)}
                ti = tis[HELD_TASK]
                return ti if ti["state"] == "running" and ti["hostname"] else None

            ti = airflow.wait_for("the held task to show as running", held_task_running)
            assert ti["hostname"] == KILLED.name, ti
            assert ti["queue"] == "hyperv-site-a", ti
            killed = airflow.kill(KILLED.component)
            airflow.say(f"killed {KILLED.component}: {len(killed)} processes (the task's pid {ti['pid']})")
            assert ti["pid"] in killed, (ti["pid"], killed)  # the task's own process died with the worker
            assert KILLED.node() not in airflow.celery_nodes()
        finally:
            gate.release()

        # 3. The host finishes what the dead try started.
        def held_call_ended() -> Any:
            calls = [e for e in fleet.audit.entries(host=HELD_HOST, cmdlet="Checkpoint-VM")
                     if held_vm_id in " ".join(e.targets).lower()]  # fmt: skip
            return calls[0] if calls and calls[0].outcome != "running" else None

        held_call = airflow.wait_for("the held Checkpoint-VM to end on the host", held_call_ended)
        assert held_call.outcome == "ok", held_call
        assert fleet.host(HELD_HOST).snapshots(vms[HELD_VM]), "the dead try's call made no checkpoint"

        # 4. A replacement worker for site a; the scheduler fails the silent try and retries it there.
        airflow.start(airflow.add_worker(REPLACEMENT))
        airflow.wait_workers(REPLACEMENT.component)
        run = airflow.wait_for_run(DAG_ID, run_id, timeout=RUN_TIMEOUT)
        states = run.states()
        assert run.state == "success", states

        # Routing: every try on a worker serving its queue, each site's worker ran its site's tasks.
        tries = all_tries(airflow, DAG_ID, run_id, run.final.values())
        everyone = [*WORKERS, REPLACEMENT]
        assert not routing_violations(tries, everyone), routing_violations(tries, everyone)
        expected_queue = {"host_hv_01": "hyperv-site-a", "host_hv_02": "hyperv-site-b", "report": "default"}
        for t in tries:
            assert t["queue"] == expected_queue[t["task_id"].split(".")[0].removesuffix("_vms")], try_label(t)
        ran_on: dict[str, set[str]] = {}
        for t in tries:
            ran_on.setdefault(t["hostname"], set()).add(t["queue"])
        print("celery: queues each worker ran:", {k: sorted(v) for k, v in sorted(ran_on.items())})
        assert "hyperv-site-a" in ran_on.get(KILLED.name, set()), ran_on
        assert "hyperv-site-b" in ran_on.get(WORKERS[1].name, set()), ran_on
        assert "hyperv-site-a" in ran_on.get(REPLACEMENT.name, set()), ran_on

        # The killed try: failed by the heartbeat timeout, retried on the replacement.
        held_tries = sorted((t for t in tries if (t["task_id"], t["map_index"]) == HELD_TASK),
                            key=lambda t: t["try_number"])  # fmt: skip
        print(
            "celery: the held task's tries:",
            [(t["try_number"], t["state"], t["hostname"]) for t in held_tries],
        )
        assert len(held_tries) >= 2, held_tries
        assert held_tries[0]["hostname"] == KILLED.name and held_tries[0]["state"] != "success", held_tries
        assert held_tries[-1]["hostname"] == REPLACEMENT.name and held_tries[-1]["state"] == "success", (
            held_tries
        )
        timeouts = airflow.api(
            "GET", "/eventLogs", params={"dag_id": DAG_ID, "event": "heartbeat timeout", "limit": 100}
        )["event_logs"]
        assert any(
            (e["task_id"], e["map_index"], e["try_number"]) == (*HELD_TASK, held_tries[0]["try_number"])
            for e in timeouts
        ), timeouts

        # Exports and merges deferred and the triggerer resumed them.
        waits = [(f"{group}.{task}", index) for group, names in (("host_hv_01", SITE_VMS["hv-01"]),
                 ("host_hv_02", SITE_VMS["hv-02"])) for index in range(len(names))
                 for task in ("export_production", "merge")]  # fmt: skip
        assert all(run.final[key]["state"] == "success" for key in waits), states
        airflow.assert_waited_in_the_triggerer(run, waits)

        # The hosts: one Checkpoint-VM per VM, never two at once, none left, types back, exports clean.
        inventory = {h["name"]: h for h in yaml.safe_load(SHIPPED_INVENTORY.read_text())["hosts"]}
        problems: list[str] = []
        for host_name, names in SITE_VMS.items():
            host = fleet.host(host_name)
            host.settle()
            entries = fleet.audit.entries(host=host_name)
            group = "host_" + host_name.replace("-", "_")
            for index, name in enumerate(names):
                vm = vms[name]
                made = [e for e in entries if e.cmdlet == "Checkpoint-VM" and str(vm.id).lower() in
                        " ".join(e.targets).lower()]  # fmt: skip
                if len(made) != 1:
                    problems.append(f"{name}: {len(made)} Checkpoint-VM calls, not one")
                problems += checkpoint_violations(entries, str(vm.id))
                if host.snapshots(vm):
                    problems.append(f"{name}: checkpoints left {[c.name for c in host.snapshots(vm)]}")
                if vm.checkpoint_type.name != types_before[name]:
                    problems.append(
                        f"{name}: CheckpointType {types_before[name]} -> {vm.checkpoint_type.name}"
                    )
                export = export_xcom(airflow, run_id, f"{group}.export_production", index)
                folder = host.fs.to_real(f"{inventory[host_name]['export_root']}\\{host_name}\\{vm.id}")
                found = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
                verified = export["path"].rsplit("\\", 1)[-1]
                problems += [f"{name}: {p}" for p in export_leftovers(found, verified)]
        assert not problems, problems

        # The broker's password: in no process or task log. The worker's log does show the broker,
        # masked by Celery: the search reads the files the URL would be in.
        password = urllib.parse.urlsplit(broker).password
        assert password and len(password) >= 16
        files = [p for p in (airflow.home / "logs").rglob("*") if p.is_file()] + list(
            airflow.logs.glob("*.log")
        )
        assert [p for p in files if password in p.read_text(errors="replace")] == []
        worker_log = (airflow.logs / f"{WORKERS[1].component}.log").read_text(errors="replace")
        assert "redis://:**@127.0.0.1" in worker_log, worker_log[-3000:]
    airflow.say(f"the distributed run and its checks took {time.monotonic() - started:.0f}s "
                f"(Airflow was ready in {airflow.ready_seconds:.0f}s)")  # fmt: skip


# -- positive controls: the invariants fail when they should (no Airflow) -------------------------------------
def test_routing_catches_a_task_on_a_worker_that_does_not_serve_its_queue() -> None:
    a, b = (
        CeleryWorker("worker-site-a", ("hyperv-site-a", "default")),
        CeleryWorker("worker-site-b", ("hyperv-site-b",)),
    )
    ok = {"task_id": "host_hv_01.verify", "map_index": 0, "try_number": 1, "state": "success",
          "hostname": "worker-site-a", "queue": "hyperv-site-a"}  # fmt: skip
    assert routing_violations([ok, {**ok, "state": "skipped", "hostname": ""}], [a, b]) == []
    wrong = routing_violations([{**ok, "hostname": "worker-site-b"}], [a, b])
    assert wrong and "serving ['hyperv-site-b']" in wrong[0], wrong
    assert "none of the workers" in routing_violations([{**ok, "hostname": "elsewhere"}], [a, b])[0]
    empty = {**ok, "operator": "EmptyOperator", "hostname": ""}
    assert routing_violations([empty], [a, b]) == []  # finished by the scheduler, on no worker
    assert routing_violations([{**empty, "hostname": "worker-site-b"}], [a, b])
    assert routing_violations([{**ok, "hostname": ""}], [a, b])  # any other task ran on some worker


def test_the_checkpoint_invariant_catches_a_duplicate_and_a_checkpoint_left() -> None:
    from hyperv_emulator.cmdlets.audit import AuditEntry

    vm, first, second = (str(uuid.uuid4()) for _ in range(3))

    def call(seq: int, cmdlet: str, *targets: str) -> AuditEntry:
        return AuditEntry(seq, 0.0, "hv-01", "u", cmdlet, {}, list(targets), outcome="ok")

    clean = [call(1, "Checkpoint-VM", vm, first), call(2, "Remove-VMSnapshot", first)]
    assert checkpoint_violations(clean, vm) == []
    retried_after_removal = [
        *clean,
        call(3, "Checkpoint-VM", vm, second),
        call(4, "Remove-VMSnapshot", second),
    ]
    assert checkpoint_violations(retried_after_removal, vm) == []
    duplicate = [call(1, "Checkpoint-VM", vm, first), call(2, "Checkpoint-VM", vm, second),
                 call(3, "Remove-VMSnapshot", first), call(4, "Remove-VMSnapshot", second)]  # fmt: skip
    assert "a second checkpoint" in checkpoint_violations(duplicate, vm)[0]
    assert "never removed" in checkpoint_violations([call(1, "Checkpoint-VM", vm, first)], vm)[0]


def test_the_export_check_catches_a_staging_folder_and_an_unverified_export() -> None:
    assert export_leftovers(["20261129T0400Z-abc"], "20261129T0400Z-abc") == []
    assert (
        "staging folder left"
        in export_leftovers(["20261129T0400Z-abc", ".staging-20261129T0400Z-abc-x1"], "20261129T0400Z-abc")[0]
    )
    assert (
        "unverified export"
        in export_leftovers(["20261129T0400Z-abc", "20261129T0400Z-def"], "20261129T0400Z-abc")[0]
    )
    assert "missing" in export_leftovers([], "20261129T0400Z-abc")[0]


def test_the_workers_serve_each_site_queue_of_the_shipped_inventory_and_the_default_queue() -> None:
    queues = {h.get("queue") for h in yaml.safe_load(SHIPPED_INVENTORY.read_text())["hosts"]}
    assert {q for w in WORKERS for q in w.queues} == queues | {"default"}
    assert all(len([w for w in WORKERS if q in w.queues]) == 1 for q in queues), WORKERS
    assert REPLACEMENT.queues == KILLED.queues and REPLACEMENT.name != KILLED.name
