"""``make demo``: the nightly DAG against the embedded emulator, end to end, with a readable report.

Everything lives under ``.demo/`` in the working directory: an Airflow home with a migrated SQLite
metadata DB, the example DAGs, the emulated hosts' files, and the full log of the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEMO = Path(".demo").resolve()
HOME = DEMO / "airflow"
PROJECT = Path(__file__).resolve().parents[2]
POOLS = {"hyperv_hv_01": 2, "hyperv_hv_02": 1}


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def prepare_airflow_home(home: Path = HOME) -> dict[str, str]:
    """Environment for an Airflow home of our own (set before Airflow is imported)."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    os.environ.update(env)
    shutil.copytree(PROJECT / "dags", home / "dags", dirs_exist_ok=True)
    return env


def _airflow(*args: str, log: Path) -> None:
    with log.open("a") as out:
        subprocess.run(
            [sys.executable, "-m", "airflow", *args], check=True, stdout=out, stderr=out, timeout=600
        )


@contextlib.contextmanager
def _quiet(log: Path) -> Iterator[None]:
    """Send everything the run prints (Airflow logs a lot) to the log file; restore after."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_demo() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    log = DEMO / "demo.log"
    prepare_airflow_home()
    _say(f"preparing an Airflow home in {HOME} (metadata DB, pools)")
    _airflow("db", "migrate", log=log)
    for pool, slots in POOLS.items():
        _airflow("pools", "set", pool, str(slots), "one Hyper-V host", "--include-deferred", log=log)

    from airflow_hyperv.emulator.api import Emulator

    with Emulator(auth="ntlm", root_dir=DEMO / "hosts", time_scale=300.0) as emulator:
        _say(
            f"emulated Hyper-V hosts {', '.join(emulator.host_names)} listening on {emulator.url} (NTLM, encrypted)"
        )
        for host in emulator.host_names:
            os.environ[f"AIRFLOW_CONN_HYPERV_{host.upper().replace('-', '_')}"] = emulator.connection_uri(
                host
            )
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "nightly_checkpoint", HOME / "dags" / "nightly_checkpoint.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _say("running the nightly_checkpoint DAG (verify, checkpoint, export, verify export, merge) ...")
        with _quiet(log):
            dag_run = module.dag.test()
        rows = _report(dag_run)
        leftovers = [
            f"{host}/{vm.name}"
            for host in emulator.host_names
            for vm in emulator.host(host).vms()
            if emulator.host(host).snapshots(vm)
        ]
        requests = emulator.counters.snapshot()
    if rows is None:
        _say(f"the run produced no report; see {log}")
        return 1
    from airflow_hyperv.report import render_table

    print()
    print(render_table(rows))
    print()
    _say(f"DAG run {dag_run.run_id}: {dag_run.state}")
    _say(f"{requests.wsman_requests} WS-Man requests, {requests.pools_opened} runspace pools, "
         f"{requests.pipelines_run} pipelines")  # fmt: skip
    _say("checkpoints left on any VM: " + (", ".join(leftovers) if leftovers else "none"))
    _say(f"full log: {log}")
    outcomes = [r["outcome"] for r in rows]
    shown = (
        any(o == "protected, application-consistent" for o in outcomes)
        and any("crash-consistent (fallback)" in o for o in outcomes)
        and any(o == "refused" for o in outcomes)
    )
    if str(dag_run.state) == "failed":
        _say("the run is marked failed because a VM was refused under policy 'require' -- that is the point:")
        _say("a backup that did not happen is never reported as success.")
    return 0 if shown and not leftovers else 1


def set_connections(emulator: Any) -> None:
    """``AIRFLOW_CONN_HYPERV_HV_01`` ... for every emulated host, as the inventory names them."""
    for host in emulator.host_names:
        os.environ[f"AIRFLOW_CONN_HYPERV_{host.upper().replace('-', '_')}"] = emulator.connection_uri(host)


def load_dag(dag_id: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(dag_id, HOME / "dags" / f"{dag_id}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_airflow_ui(port: int = 8080) -> int:
    """``make airflow``: the real Airflow (standalone) with the emulator and the DAGs, until Ctrl-C."""
    import signal

    DEMO.mkdir(parents=True, exist_ok=True)
    log = DEMO / "airflow.log"
    prepare_airflow_home()
    _airflow("db", "migrate", log=log)
    for pool, slots in POOLS.items():
        _airflow("pools", "set", pool, str(slots), "one Hyper-V host", "--include-deferred", log=log)
    from airflow_hyperv.emulator.api import Emulator

    with Emulator(auth="ntlm", root_dir=DEMO / "ui-hosts", time_scale=60.0) as emulator:
        set_connections(emulator)
        env = {
            **os.environ,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        }
        _say(
            f"emulator on {emulator.url}; Airflow UI on http://127.0.0.1:{port} (login printed by standalone)"
        )
        _say(f"logs: {log}; Ctrl-C stops everything")
        with log.open("a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"], env=env, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
            try:
                proc.wait()
            except KeyboardInterrupt:
                pass
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    return 0


def _report(dag_run) -> list[dict] | None:  # type: ignore[no-untyped-def, type-arg]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="report", key="report")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)  # type: ignore[no-any-return]
