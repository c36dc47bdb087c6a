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

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from airflow_hyperv.hooks.connection import connection_uri

DEMO = Path(".demo").resolve()
HOME = DEMO / "airflow"
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
    shutil.copytree(
        EXAMPLE_DAGS,
        home / "dags",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__init__.py", "__pycache__"),
    )
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

    from hyperv_emulator.api import Emulator

    with Emulator(auth="ntlm", root_dir=DEMO / "hosts", time_scale=300.0) as emulator:
        _say(
            f"emulated Hyper-V hosts {', '.join(emulator.host_names)} listening on {emulator.url} (NTLM, encrypted)"
        )
        set_connections(emulator)
        dag = load_dag("nightly_checkpoint")
        _say("running the nightly_checkpoint DAG (verify, checkpoint, export, verify export, merge) ...")
        with _quiet(log):
            dag_run = dag.test()
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
    from airflow_hyperv.reporting.run_report import render_table

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
        os.environ[f"AIRFLOW_CONN_HYPERV_{host.upper().replace('-', '_')}"] = connection_uri(
            **emulator.client_connection(host).as_fields()
        )


def load_dag(dag_id: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(dag_id, HOME / "dags" / f"{dag_id}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


UI_HOME = Path(".airflow").resolve()  # apart from the demo's home: the UI does not open on the demo's run
UI_STARTUP_SECONDS = 240.0


def run_airflow_ui(port: int = 8080) -> int:
    """``make airflow``: the real Airflow (standalone) with the emulator and the DAGs, until Ctrl-C.

    Airflow's standalone starts its components by running ``airflow`` from PATH, so this interpreter's
    scripts folder goes first on PATH (a plain shell has no activated venv). The emulator's hosts are
    stored as real connections (visible and editable in the UI). It fails loudly, with the log's tail,
    if standalone or one of its components does not come up or dies later.
    """
    import signal

    UI_HOME.mkdir(parents=True, exist_ok=True)
    log = UI_HOME / "airflow.log"
    prepare_airflow_home(UI_HOME)
    _airflow("db", "migrate", log=log)
    for pool, slots in POOLS.items():
        _airflow("pools", "set", pool, str(slots), "one Hyper-V host", "--include-deferred", log=log)
    from hyperv_emulator.api import Emulator

    with Emulator(auth="ntlm", root_dir=UI_HOME / "hosts", time_scale=60.0) as emulator:
        names = store_connections(emulator, log)
        env = {
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            # docs/operations.md, "Task processes that start warm": a task process finds the provider
            # imported (the LocalExecutor's workers are forked after it is).
            "AIRFLOW__CORE__EXECUTOR": "airflow_hyperv.executors.local_executor.PreloadingLocalExecutor",
        }
        _say(f"starting Airflow in {UI_HOME} (log: {log}) ...")
        with log.open("a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"], env=env, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
            try:
                problem = _wait_until_healthy(proc, port, UI_STARTUP_SECONDS)
                if problem:
                    _fail_loudly(problem, log)
                    return 1
                _say(f"Airflow UI: http://127.0.0.1:{port}")
                _say(login_hint(UI_HOME))
                _say(
                    f"emulated Hyper-V hosts on {emulator.url} (NTLM) as connections {', '.join(names)}; "
                    f"user {emulator.username}, password in {emulator.write_credentials_file()}"
                )
                _say("Ctrl-C stops everything")
                while proc.poll() is None:
                    problem = _health_problem(port)
                    if problem:
                        _fail_loudly(f"an Airflow component stopped: {problem}", log)
                        return 1
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
                _fail_loudly(f"airflow standalone exited with code {proc.returncode}", log)
                return 1
            except KeyboardInterrupt:
                return 0
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def store_connections(emulator: Any, log: Path) -> list[str]:
    """One real connection per emulated host (``hyperv_hv_01`` ...), replaced at every start: the
    emulator's password is new each time."""
    names = []
    for host in emulator.host_names:
        conn_id = f"hyperv_{host.replace('-', '_')}"
        with contextlib.suppress(subprocess.CalledProcessError):  # absent on the first start
            _airflow("connections", "delete", conn_id, log=log)
        _airflow(
            "connections",
            "add",
            conn_id,
            "--conn-uri",
            connection_uri(**emulator.client_connection(host).as_fields()),
            log=log,
        )
        names.append(conn_id)
    return names


def login_hint(home: Path) -> str:
    """How to log in: standalone's simple auth manager keeps the generated password in a file."""
    import json

    path = home / "simple_auth_manager_passwords.json.generated"
    try:
        users = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"log in as admin; the password is in {path} once Airflow has generated it"
    user, password = next(iter(users.items()), ("admin", "?"))
    return f"log in as {user} with password {password} (kept in {path})"


def _health_problem(port: int) -> str | None:
    """None when the API server answers and the scheduler, dag-processor and triggerer are healthy."""
    import requests

    try:
        health = requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError) as exc:
        return f"the API server does not answer ({type(exc).__name__})"
    unhealthy = [
        name
        for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        if (health.get(name) or {}).get("status") != "healthy"
    ]
    return f"not healthy: {', '.join(unhealthy)}" if unhealthy else None


def _wait_until_healthy(proc: subprocess.Popen, port: int, seconds: float) -> str | None:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + seconds
    problem: str | None = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"airflow standalone exited with code {proc.returncode}"
        problem = _health_problem(port)
        if problem is None:
            return None
        time.sleep(2)
    return f"Airflow did not come up within {seconds:.0f}s ({problem})"


def _fail_loudly(problem: str, log: Path) -> None:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:] if log.exists() else []
    print("\n".join(lines), file=sys.stderr)
    _say(f"FAILED: {problem}; the last lines of {log} are above")


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
