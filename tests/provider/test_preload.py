"""``airflow_hyperv.preload``: a task process forked from a worker that preloaded it imports nothing more
of the provider or its client to run a whole protection cycle (docs/operations.md, "Task processes
that start warm"). The check can fail: the same cycle without the preload imports from every one of
those packages (the positive control), and a module the preload forgot shows up by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The packages a task of this provider loads; Airflow's own are in the worker already.
CLIENT_PACKAGES = ("airflow_hyperv", "pypsrp", "spnego", "requests", "urllib3", "cryptography")

# What a LocalExecutor worker holds before it forks a task (the supervisor and the task runner), then,
# in a fork of it as Airflow makes one, the nightly DAG's file is parsed and one VM goes through
# verify -> production checkpoint -> export -> merge over NTLM. Prints the modules the task imported.
TASK = r"""
import datetime as dt, importlib, importlib.util, json, os, sys
from types import SimpleNamespace
import airflow.sdk.execution_time.supervisor, airflow.sdk.execution_time.task_runner
if sys.argv[1] == "preload":
    import airflow_hyperv.preload
read, write = os.pipe()
if os.fork() == 0:
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("nightly_dag_file", sys.argv[2])
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    from airflow_hyperv.operators.checkpoint import (
        HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator)
    from airflow_hyperv.operators.export import HyperVExportCheckpointOperator
    from airflow_hyperv.operators.verify import HyperVVerifyOperator
    when = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.timezone.utc)
    run = SimpleNamespace(dag_id="preload", run_id=f"preload_{sys.argv[1]}", logical_date=when, run_after=when,
                          start_date=when)
    context = {"dag_run": run, "logical_date": when, "ti": None, "outlet_events": None}
    common = {"vm": "dc-01", "hyperv_conn_id": "hyperv_preload"}
    report = HyperVVerifyOperator(task_id="verify", export_path="D:\\Backups\\bench", **common).execute(context)
    assert report["verdict"] == "production", report
    made = HyperVCreateCheckpointOperator(task_id="production_checkpoint", consistency="application",
                                          policy="require", **common).execute(context)
    assert made["created"], made
    manifest = HyperVExportCheckpointOperator(task_id="export_production", export_root="D:\\Backups\\bench",
                                              deferrable=False, **common).execute(context)
    assert manifest["files"], manifest
    merged = HyperVMergeCheckpointOperator(task_id="merge", deferrable=False, poll_interval=0.05,
                                           **common).execute(context)
    assert merged["merged"], merged
    os.write(write, json.dumps(sorted(set(sys.modules) - before)).encode())
    os._exit(0)
os.close(write)
chunks = []
while chunk := os.read(read, 1 << 16):
    chunks.append(chunk)
_, status = os.wait()
assert status == 0, f"the task process failed ({status})"
print(json.dumps(json.loads(b"".join(chunks))))
"""


def run_python(code: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with none of this session's Airflow settings, this repository
    importable, and ``env``; it must exit 0."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env={**clean, "PYTHONPATH": str(ROOT), **env}, cwd=cwd,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture
def ntlm_emulator() -> Any:
    from hyperv_emulator.api import EXAMPLE_FLEET, Emulator

    # As bench.cycle runs it: the example fleet, NTLM with message encryption as a real host.
    with Emulator(fleet=EXAMPLE_FLEET, auth="ntlm", time_scale=1000.0) as emu:
        yield emu


def modules_a_task_imports(emu: Any, tmp_path: Path, *, preload: bool) -> dict[str, list[str]]:
    from airflow_hyperv.example_dags import EXAMPLE_DAGS
    from tests.support.emulated import uri_for

    dag_file = EXAMPLE_DAGS / "nightly_checkpoint.py"
    mode = "preload" if preload else "cold"  # also the run's id: each run its own checkpoint and export
    done = run_python(
        TASK, mode, str(dag_file), cwd=tmp_path,
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_HYPERV_PRELOAD=uri_for(emu, "hv-01"),
        AIRFLOW_HYPERV_INVENTORY=str(EXAMPLE_DAGS / "inventory" / "nightly.yaml"),
    )  # fmt: skip
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    by_package: dict[str, list[str]] = {}
    for name in imported:
        top = name.split(".", 1)[0]
        if top in CLIENT_PACKAGES:
            by_package.setdefault(top, []).append(name)
    return by_package


def test_a_task_forked_after_the_preload_imports_nothing_of_the_provider_or_its_client(
    ntlm_emulator: Any, tmp_path: Path
) -> None:
    cold = modules_a_task_imports(ntlm_emulator, tmp_path, preload=False)
    # The positive control: without the preload the task imports from every one of these packages.
    assert sorted(cold) == sorted(CLIENT_PACKAGES), cold
    assert "spnego._ntlm" in cold["spnego"], cold["spnego"]  # the NTLM code, loaded on first auth

    warm = modules_a_task_imports(ntlm_emulator, tmp_path, preload=True)
    assert warm == {}, f"the preload misses what a task imports: {warm}"


def test_the_preload_starts_no_thread(tmp_path: Path) -> None:
    """Safe to import in the scheduler before it forks: nothing but imports (a thread would not survive
    the fork)."""
    code = (
        "import threading, airflow_hyperv.preload as p; "
        "assert threading.active_count() == 1, threading.enumerate(); print(len(p.TASK_MODULES))"
    )
    done = run_python(code, cwd=tmp_path, AIRFLOW_HOME=str(tmp_path))
    assert int(done.stdout.strip().splitlines()[-1]) > 0


# PreloadingLocalExecutor in a fresh interpreter: it imports the preload before it forks its workers,
# and only when they are forked (the start method is the first argument).
EXECUTOR = r"""
import multiprocessing, sys
multiprocessing.set_start_method(sys.argv[1], force=True)
from airflow_hyperv.executors.local_executor import PreloadingLocalExecutor
assert "airflow_hyperv.preload" not in sys.modules
executor = PreloadingLocalExecutor(parallelism=2)
executor.start()
try:
    print("result:", "preloaded" if "airflow_hyperv.preload" in sys.modules else "not preloaded",
          len(executor.workers), flush=True)
finally:
    executor.end()
"""


@pytest.mark.parametrize(
    ("method", "said"), [("fork", "preloaded 2"), ("spawn", "not preloaded 0")]
)  # fmt: skip
def test_the_executor_imports_the_preload_before_it_forks_its_workers(
    method: str, said: str, tmp_path: Path
) -> None:
    done = run_python(EXECUTOR, method, cwd=tmp_path, AIRFLOW_HOME=str(tmp_path))
    results = [line for line in done.stdout.splitlines() if line.startswith("result: ")]
    assert results == [f"result: {said}"], done.stdout
    output = done.stdout + done.stderr
    if method == "fork":
        assert "imported airflow_hyperv.preload before forking 2 workers" in output, output[-2000:]
    else:  # spawn: the workers start lazily, and would not inherit it: the executor says so
        assert "do not inherit airflow_hyperv.preload" in output, output[-2000:]
