"""End to end on real Airflow: scheduler, dag-processor, api-server and triggerer (LocalExecutor) on a
PostgreSQL metadata database, running the example DAGs against the emulated fleet.

The emulator runs in this process (the Airflow processes reach it on 127.0.0.1), so the tests read the
hosts' final state from its model. Runs are triggered and watched through the public REST API (v2);
the SimpleAuthManager's all-admins mode lets the test call it without a login.

PostgreSQL comes from ``scripts/postgres.sh`` (Debian's packages, a throw-away cluster); if it cannot
be installed or started the module is skipped, and says why.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from tests.support.airflow_stack import AirflowStack, explained, running_airflow

DAG_IDS = ("nightly_checkpoint", "pre_deployment_snapshot")
# The Asset-driven DAGs (docs/events.md): paused until their test, so the events and exports of the
# tests before it do not schedule them.
EVENT_DAG_IDS = ("protect_on_change", "verify_new_export")
WATCHED_ASSET = "hyperv-events/hv-01"
WATCHER_POLL_INTERVAL = 2  # seconds; the DAG's 30 would make this test wait longer for nothing
# The nightly DAG's mapped groups: (group, map index) of each VM of dags/inventory/nightly.yaml.
NIGHTLY_VMS = {
    "dc-01": ("host_hv_01", 0), "sql-01": ("host_hv_01", 1), "web-01": ("host_hv_01", 2),
    "app-01": ("host_hv_01", 3), "build-01": ("host_hv_02", 0), "legacy-01": ("host_hv_02", 1),
    "file-01": ("host_hv_02", 2),
}  # fmt: skip

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
WORKDIR_PREFIX = "airflow-hyperv-e2e-"  # tests/e2e/conftest.py: the module's work directory


# -- fixtures (workdir and postgres: tests/e2e/conftest.py) ------------------------------------------
@pytest.fixture(scope="module")
def fleet(workdir: Path) -> Iterator[Any]:
    from hyperv_emulator.api import Emulator

    # HTTPS: the server's TLS private key is one of the secrets the task logs must never hold.
    with Emulator(root_dir=workdir / "hosts", auth="basic", tls=True, time_scale=1000.0) as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow(workdir: Path, postgres: str, fleet: Any) -> Iterator[AirflowStack]:
    home = workdir / "airflow"
    # The DAGs under test and their inventory (not every example DAG: less to parse on a small machine).
    shutil.copytree(EXAMPLE_DAGS / "inventory", home / "dags" / "inventory")
    for dag_id in DAG_IDS + EVENT_DAG_IDS:
        shutil.copy2(EXAMPLE_DAGS / f"{dag_id}.py", home / "dags" / f"{dag_id}.py")
    # The watcher polls the event log every WATCHER_POLL_INTERVAL seconds instead of 30.
    watched = home / "dags" / "protect_on_change.py"
    source = watched.read_text()
    assert source.count("poll_interval=30,") == 1, "dags/protect_on_change.py changed: adapt this test"
    watched.write_text(source.replace("poll_interval=30,", f"poll_interval={WATCHER_POLL_INTERVAL},"))
    # Manual runs only: a cron schedule would add a scheduled run as soon as the DAG is unpaused.
    inventory_file = home / "dags" / "inventory" / "nightly.yaml"
    inventory = yaml.safe_load(inventory_file.read_text())
    inventory["schedule"] = None
    inventory_file.write_text(yaml.safe_dump(inventory))

    pools = {"hyperv_hv_01": 2, "hyperv_hv_02": 1}
    # At time_scale 1000 a merge ends at once, so with the default [hyperv] merge_defer_after it would end
    # in the worker: 0 keeps this run proving the triggerer's side of merges (the worker-first wait is
    # tests/lifecycle/test_merge_defer_after.py, and bench.fleet_airflow runs the default).
    env = {"AIRFLOW__HYPERV__MERGE_DEFER_AFTER": "0"}
    with running_airflow(
        home, postgres, fleet, dag_ids=DAG_IDS + EVENT_DAG_IDS, pools=pools, env=env
    ) as stack:
        yield stack


def assert_no_checkpoint_left(fleet: Any) -> None:
    for name in fleet.host_names:
        host = fleet.host(name)
        host.settle()
        left = {vm.name: [s.name for s in host.snapshots(vm)] for vm in host.vms() if host.snapshots(vm)}
        assert not left, f"checkpoints left on {name}: {left}"


def exported_vms(fleet: Any) -> set[str]:
    """VMs with a finished export under their host's export root (dags/inventory/nightly.yaml):
    an export is a folder per host and VM Id (``<root>\\<host>\\<vm id>``) holding the machine's files."""
    inventory = yaml.safe_load((EXAMPLE_DAGS / "inventory" / "nightly.yaml").read_text())
    names = {str(vm.id).lower(): vm.name for h in fleet.host_names for vm in fleet.host(h).vms()}
    found = set()
    for entry in inventory["hosts"]:
        root = fleet.host(entry["name"]).fs.to_real(entry["export_root"])
        for path in root.rglob("*") if root.exists() else ():
            if path.is_file():
                found.add(names.get(path.relative_to(root).parts[1].lower(), str(path)))
    return found


# -- the tests ------------------------------------------------------------------------------------
def test_nightly_checkpoint_protects_the_fleet_through_the_triggerer(
    airflow: AirflowStack, fleet: Any
) -> None:
    with explained(airflow):
        run = airflow.wait_for_run("nightly_checkpoint", airflow.trigger("nightly_checkpoint"))
        states = run.states()
        assert run.state == "failed", states  # file-01 (policy require, VSS disabled) is refused
        assert run.state_of("report") == "failed", states

        # The report task's table, read back from its log through the API.
        outcomes = {}
        for entry in airflow.task_log(run.dag_id, run.run_id, run.final[("report", -1)]):
            parts = str(entry.get("event", "")).split()
            if len(parts) > 3 and parts[0] in ("hv-01", "hv-02"):
                outcomes[parts[1]] = " ".join(parts[3:6])
        assert set(outcomes) == set(NIGHTLY_VMS), outcomes
        for vm in ("dc-01", "sql-01", "web-01", "legacy-01"):
            assert outcomes[vm].startswith("protected, application-consistent"), (vm, outcomes)
        assert outcomes["app-01"].startswith("protected, crash-consistent (fallback)"), outcomes
        assert outcomes["build-01"].startswith("skipped"), outcomes
        assert outcomes["file-01"].startswith("refused"), outcomes

        # The hosts, from the emulator's model: no checkpoint anywhere, an export of each protected VM.
        assert_no_checkpoint_left(fleet)
        exported = exported_vms(fleet)
        assert exported == {"dc-01", "sql-01", "web-01", "app-01", "legacy-01"}, exported
        checkpointed = {fleet.host(e.host).vm_by_id(uuid.UUID(e.targets[0])).name
                        for e in fleet.audit.entries(cmdlet="Checkpoint-VM")}  # fmt: skip
        assert checkpointed == exported, checkpointed

        # Exports and merges waited in the triggerer, not in a worker slot.
        waits = [
            (f"{group}.{task}", index)
            for vm, (group, index) in NIGHTLY_VMS.items()
            if vm in exported
            for task in ("export_standard" if vm == "app-01" else "export_production", "merge")
        ]
        assert all(run.final[key]["state"] == "success" for key in waits), states
        airflow.assert_waited_in_the_triggerer(run, waits)
        seen = run.deferred()
        print("e2e: seen in state deferred through the API:", sorted(seen))
        assert seen and seen <= set(waits), seen


def test_pre_deployment_snapshot_merges_on_success_and_rolls_back_on_failure(
    airflow: AirflowStack, fleet: Any
) -> None:
    with explained(airflow):
        restores_before = len(fleet.audit.entries(cmdlet="Restore-VMSnapshot"))
        ok = airflow.wait_for_run(
            "pre_deployment_snapshot",
            airflow.trigger("pre_deployment_snapshot", {"vm": "web-01", "simulate_failure": False}),
        )
        assert ok.state == "success", ok.states()
        assert ok.state_of("rollback") == "skipped" and ok.state_of("merge") == "success", ok.states()
        assert len(fleet.audit.entries(cmdlet="Restore-VMSnapshot")) == restores_before
        assert_no_checkpoint_left(fleet)
        airflow.assert_waited_in_the_triggerer(ok, [("merge", -1)])  # the VM was healthy: no wait

        bad = airflow.wait_for_run(
            "pre_deployment_snapshot",
            airflow.trigger("pre_deployment_snapshot", {"vm": "web-01", "simulate_failure": True}),
        )
        states = bad.states()
        assert bad.state == "failed" and bad.state_of("deploy") == "failed", states
        assert bad.state_of("health_check") == "upstream_failed", states
        assert bad.state_of("rollback") == "success" and bad.state_of("merge") == "success", states
        assert bad.state_of("outcome") == "failed", states
        restores = fleet.audit.entries(cmdlet="Restore-VMSnapshot")
        assert len(restores) == restores_before + 1, restores
        web = next(v for v in fleet.host("hv-01").vms() if v.name == "web-01")
        assert web.state.name == "Running"  # started again after the production checkpoint left it Off
        assert_no_checkpoint_left(fleet)
        # The rollback waited for the heartbeat of the restarted VM in the triggerer.
        airflow.assert_waited_in_the_triggerer(bad, [("rollback", -1), ("merge", -1)])


# -- the Asset-driven DAGs, scheduled from a real event ----------------------------------------------
def dag_runs(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    return list(stack.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])


def watcher_events(stack: AirflowStack, asset_id: int) -> list[dict[str, Any]]:
    return list(
        stack.api("GET", "/assets/events", params={"asset_id": asset_id, "limit": 100})["asset_events"]
    )


def watermark(stack: AirflowStack, asset_id: int) -> Any:
    entries = stack.api("GET", f"/assets/{asset_id}/state-store")["asset_state_store"]
    return next((e["value"] for e in entries if e["key"] == "hyperv-event-watermark"), None)


def event_log_reads(fleet: Any) -> int:
    """How many times the watcher read hv-01's event log (Get-WinEvent, one call per channel)."""
    return len([e for e in fleet.audit.entries(cmdlet="Get-WinEvent") if e.host == "hv-01"])


def test_a_vm_stop_on_the_host_runs_protect_on_change_through_the_asset_watcher_and_its_export_is_verified(
    airflow: AirflowStack, fleet: Any
) -> None:
    with explained(airflow):
        host = fleet.host("hv-01")
        web = next(v for v in host.vms() if v.name == "web-01")
        checkpoints_before = len(fleet.audit.entries(cmdlet="Checkpoint-VM"))
        assert not dag_runs(airflow, "protect_on_change") and not dag_runs(airflow, "verify_new_export")

        # Unpausing does not start the watcher: the dag-processor registers an asset's watchers only
        # when it parses the file of an unpaused DAG (Airflow 3.3, add_asset_trigger_references). So,
        # as an operator would: unpause, then ask for a reparse (REST parseDagFile).
        airflow.api("PATCH", "/dags/verify_new_export", json={"is_paused": False})
        dag = airflow.api("PATCH", "/dags/protect_on_change", json={"is_paused": False})
        airflow.api("PUT", f"/parseDagFile/{dag['file_token']}")
        started = time.monotonic()

        def asset_with_watcher() -> dict[str, Any] | None:
            assets = airflow.api("GET", "/assets", params={"name_pattern": WATCHED_ASSET})["assets"]
            return next((a for a in assets if a["name"] == WATCHED_ASSET and a["watchers"]), None)

        asset = airflow.wait_for("the watcher to be registered", asset_with_watcher)
        assert [w["name"] for w in asset["watchers"]] == ["hv-01-vm-changes"], asset["watchers"]
        # The triggerer runs it: it wrote its starting watermark (the newest records) to the asset's
        # state store in Airflow's database.
        start_mark = airflow.wait_for(
            "the watcher's first watermark", lambda: watermark(airflow, asset["id"])
        )
        print(f"e2e: watcher running {time.monotonic() - started:.1f}s after the unpause: {start_mark}")
        assert not watcher_events(airflow, asset["id"])

        # The real event: maintenance shuts web-01 down (the model writes 18504 to its event log).
        assert host.stop_vm(web)
        stopped = time.monotonic()
        runs = airflow.wait_for("a protect_on_change run", lambda: dag_runs(airflow, "protect_on_change"))
        print(f"e2e: protect_on_change run created {time.monotonic() - stopped:.1f}s after the VM stopped")
        assert len(runs) == 1, runs
        assert runs[0]["run_type"] == "asset_triggered", runs[0]
        run = airflow.wait_for_run("protect_on_change", runs[0]["dag_run_id"])
        assert run.state == "success", run.states()

        # The asset event the triggerer created from the watcher's TriggerEvent, and the run it created.
        events = watcher_events(airflow, asset["id"])
        assert len(events) == 1, events
        event = events[0]
        assert event["source_dag_id"] is None and (event["extra"] or {}).get("from_trigger") is True, event
        payload = event["extra"]["payload"]
        assert payload["vm_id"] == str(web.id) and payload["kind"] == "vm_shut_down", payload
        assert (payload["event_id"], payload["host"]) == (18504, "hv-01"), payload
        assert [r["run_id"] for r in event["created_dagruns"]] == [run.run_id], event["created_dagruns"]

        # The host: one new checkpoint, of web-01, merged back; its export under the DAG's root.
        new = fleet.audit.entries(cmdlet="Checkpoint-VM")[checkpoints_before:]
        assert [e.targets[0].lower() for e in new] == [str(web.id).lower()], new
        assert_no_checkpoint_left(fleet)
        exports = host.fs.to_real("D:\\Backups\\on-change\\hv-01")  # <root>\<host>\<vm id>
        assert [p.name.lower() for p in exports.iterdir()] == [str(web.id).lower()], list(exports.iterdir())

        # No repeat: the watcher keeps reading the event log past that record and fires nothing more.
        reads = event_log_reads(fleet)
        airflow.wait_for("three more polls", lambda: event_log_reads(fleet) >= reads + 6, timeout=60)
        assert len(watcher_events(airflow, asset["id"])) == 1
        assert len(dag_runs(airflow, "protect_on_change")) == 1
        mark = watermark(airflow, asset["id"])
        assert mark != start_mark, (start_mark, mark)

        # ... not even from a new triggerer: the watermark is in Airflow's database, not in the process.
        assert not airflow.stop("triggerer")
        airflow.start("triggerer")
        restarted = time.monotonic()
        reads = event_log_reads(fleet)
        airflow.wait_for("the new triggerer's polls", lambda: event_log_reads(fleet) >= reads + 6)
        print(f"e2e: the new triggerer polled again {time.monotonic() - restarted:.1f}s after its start")
        assert len(watcher_events(airflow, asset["id"])) == 1
        assert len(dag_runs(airflow, "protect_on_change")) == 1
        assert watermark(airflow, asset["id"]) == mark

        # The export's asset event (through the hyperv-exports alias) scheduled verify_new_export.
        verify_runs = airflow.wait_for(
            "a verify_new_export run", lambda: dag_runs(airflow, "verify_new_export")
        )
        assert len(verify_runs) == 1 and verify_runs[0]["run_type"] == "asset_triggered", verify_runs
        verified = airflow.wait_for_run("verify_new_export", verify_runs[0]["dag_run_id"])
        lines = [str(e.get("event", "")) for e in airflow.task_log(
            verified.dag_id, verified.run_id, verified.final[("verify", -1)])]  # fmt: skip
        on_change = [line for line in lines if line.startswith("web-01") and "\\on-change\\" in line]
        assert on_change and all(line.endswith("intact") for line in on_change), lines[-30:]
        assert verified.state == "success", (
            verified.states(),
            [ln for ln in lines if ln.endswith(("intact", "DAMAGED"))],
        )


# -- secrets: every real task log file --------------------------------------------------------------
def secret_needles(fleet: Any) -> dict[str, str]:
    """The connection's password and the emulator's TLS private key, as they would look if leaked."""
    password = fleet.password
    key_pem = Path(fleet.server.ca_cert_path).with_name("key.pem").read_text()
    needles = {
        "password": password,
        "password (URL-quoted)": urllib.parse.quote(password, safe=""),
        "Basic credentials": base64.b64encode(f"{fleet.username}:{password}".encode()).decode(),
        "TLS key header": "PRIVATE KEY",
    }
    body = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    needles.update({f"TLS key line {i}": line for i, line in enumerate(body)})
    return needles


def searchable_text(path: Path) -> str:
    """A log file as written, plus every string inside its JSON lines decoded (task logs are JSON
    lines: a secret with a backslash or a quote would be escaped in the raw text)."""
    raw = path.read_text(errors="replace")
    decoded: list[str] = []

    def strings(value: Any) -> None:
        if isinstance(value, str):
            decoded.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    for line in raw.splitlines():
        with contextlib.suppress(ValueError):
            strings(json.loads(line))
    return raw + "\n" + "\n".join(decoded)


def test_the_executor_workers_are_forked_after_the_provider_was_imported(airflow: AirflowStack) -> None:
    """docs/operations.md, "Task processes that start warm": the deployment runs PreloadingLocalExecutor,
    which imported the preload before it forked its workers (it says so; it warns instead when the
    workers would not inherit it)."""
    log = (airflow.logs / "scheduler.log").read_text(errors="replace")
    assert "PreloadingLocalExecutor" in log, log[-3000:]
    assert "imported airflow_hyperv.preload before forking" in log, log[-3000:]
    assert "do not inherit airflow_hyperv.preload" not in log, log[-3000:]


def test_no_secret_in_any_task_log_file(airflow: AirflowStack, fleet: Any) -> None:
    """Runs last: every task (and trigger) log file of every run so far, and the Airflow processes'
    own logs, are searched for the password and the TLS key. Positive control: a run whose VM name is
    a fresh secret-shaped marker fails at verify, and the same search finds the marker in its task log."""
    with explained(airflow):
        marker = f"planted-{secrets.token_hex(12)}"
        planted = airflow.wait_for_run(
            "pre_deployment_snapshot",
            airflow.trigger("pre_deployment_snapshot", {"vm": marker, "simulate_failure": False}),
        )
        assert planted.state == "failed" and planted.state_of("verify") == "failed", planted.states()

        task_logs = sorted(p for p in (airflow.home / "logs").rglob("*") if p.is_file())
        process_logs = sorted(airflow.logs.glob("*.log"))
        texts = {p: searchable_text(p) for p in task_logs + process_logs}
        holding_marker = [p for p in task_logs if marker in texts[p]]
        assert holding_marker, "the search misses what a task log holds: " + str(
            [str(p.relative_to(airflow.home)) for p in task_logs][-20:]
        )
        print(
            "e2e: the planted marker was found in", [str(p.relative_to(airflow.home)) for p in holding_marker]
        )
        print(f"e2e: searched {len(task_logs)} task log files and {len(process_logs)} process logs")

        needles = secret_needles(fleet)
        found = {
            f"{name} in {path.relative_to(airflow.home)}"
            for path, text in texts.items()
            for name, needle in needles.items()
            if needle in text
        }
        assert not found, sorted(found)
