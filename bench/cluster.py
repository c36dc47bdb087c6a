"""A real Airflow deployment for the benchmarks: a throw-away PostgreSQL cluster (``scripts/postgres.sh``)
and scheduler, dag-processor, api-server and triggerer (LocalExecutor), each in its own session, all on
127.0.0.1. Runs are triggered and watched through the REST API (v2, SimpleAuthManager all-admins).

The same set-up as ``tests/e2e/test_real_airflow.py`` (kept separate: the bench owns its copy).
Everything is bounded in time, and :meth:`AirflowCluster.stop` ends every process of every
component's session (task runners take their own process group, not their own session).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def session_members(sid: int) -> list[int]:
    """Every live process in session ``sid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class RunTimeout(RuntimeError):
    """The run had not ended when its time was up."""


class Postgres:
    """``scripts/postgres.sh start DIR PORT`` / ``stop DIR``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""

    def start(self) -> str:
        self.directory.parent.chmod(0o755)  # the postgres user must reach the cluster directory
        result = subprocess.run(
            ["bash", str(POSTGRES_SH), "start", str(self.directory), str(free_port())],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()[-800:]}")
        self.url = result.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(POSTGRES_SH), "stop", str(self.directory)], capture_output=True, timeout=120
        )


def airflow_env(
    home: Path, db_url: str, api_port: int, *, parallelism: int, extra: dict[str, str]
) -> dict[str, str]:
    """The Airflow processes' environment: nothing inherited from ours that starts with AIRFLOW."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    api = f"http://127.0.0.1:{api_port}"
    env.update({
        "PYTHONUNBUFFERED": "1",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "1024",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        # See tests/e2e/test_real_airflow.py: a deferred task resumed before its first part was
        # reported is killed as "changed externally" unless the supervisor notices its exit quickly.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
    })  # fmt: skip
    env.update(extra)
    return env


class AirflowCluster:
    """The four Airflow processes, each the leader of its own session, with a log file each."""

    def __init__(self, home: Path, env: dict[str, str], api_url: str) -> None:
        self.home, self.env, self.api_url = home, env, api_url
        self.logs = home / "process-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.http = requests.Session()

    def cli(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout, start_new_session=True,
        )  # fmt: skip
        with (self.logs / f"cli-{args[0]}.log").open("a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
        return result.stdout

    def start(self) -> None:
        for component in COMPONENTS:
            with (self.logs / f"{component}.log").open("wb") as log:
                self.procs[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", component],
                    env=self.env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}\n{self.tails()}")

    def stop(self) -> list[int]:
        """SIGTERM every component's group, then SIGKILL whatever is left in their sessions; returns
        the processes still alive afterwards (none, unless something escaped)."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        left: list[int] = []
        for _ in range(50):
            left = [pid for proc in self.procs.values() for pid in session_members(proc.pid)]
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return left

    def tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {p.name} (last {lines} lines) -----\n{tail(p, lines)}"
            for p in sorted(self.logs.glob("*.log"))
        )

    # -- REST API ---------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.api_url}/api/v2{path}", timeout=60, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    def wait_ready(self, dag_ids: tuple[str, ...], timeout: float) -> None:
        """The API answers, the DAGs are parsed, scheduler, triggerer and dag-processor are healthy."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                health = self.api("GET", "/monitor/health")
                for dag_id in dag_ids:
                    self.api("GET", f"/dags/{dag_id}")
                unhealthy = [
                    n
                    for n in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if (health.get(n) or {}).get("status") != "healthy"
                ]
                if not unhealthy:
                    return
                last = f"not yet healthy: {unhealthy}"
            except (requests.RequestException, RuntimeError) as exc:
                last = str(exc)[:300]
            time.sleep(1)
        raise RuntimeError(f"Airflow was not ready within {timeout:.0f}s ({last})\n{self.tails()}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": len(out)},
            )
            out += page["task_instances"]
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run_id = f"bench__{dag_id}__{secrets.token_hex(4)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 2.0) -> dict[str, Any]:
        """Poll the run until it ends (or ``timeout``: RunTimeout); returns the run as the API gives it."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            run: dict[str, Any] = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise RunTimeout(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll)
