"""A real Airflow deployment on 127.0.0.1, for the end-to-end tests and the benchmarks alike: a
throw-away PostgreSQL cluster (``scripts/postgres.sh``) and the four Airflow processes (scheduler,
dag-processor, api-server, triggerer), each the leader of its own session, with a log file each. The
executor is the LocalExecutor, or with ``executor="CeleryExecutor"`` the CeleryExecutor: a throw-away
Redis broker (``scripts/redis.sh``), the result backend in the same PostgreSQL, and one
``airflow celery worker`` process per :class:`CeleryWorker` (its queues, its concurrency, its own
Celery hostname), each in its own session too. Runs are triggered and watched through the REST API
(v2); the SimpleAuthManager's all-admins mode lets the caller use it without a login.

Used by tests/e2e/test_real_airflow.py (the example DAGs end to end), tests/e2e/test_overlap_matrix.py
(overlapping runs on one VM), tests/e2e/test_celery.py (the nightly DAG on Celery workers per site, one
of them killed mid-run) and bench/fleet_airflow.py (the fleet makespan). The emulator runs in the
caller's process; the Airflow processes reach it on 127.0.0.1.

Everything is bounded in time, and :meth:`AirflowStack.stop` ends every process of every component's
session (task runners take their own process group, not their own session). Failures raise
AssertionError (a test's failure; :class:`RunTimeout`, :class:`PostgresUnavailable` and
:class:`LeftoverProcesses` are kinds of it that a benchmark can catch).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from tests.support.emulated import uri_for
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
REDIS_SH = ROOT / "scripts" / "redis.sh"
COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")
LOCAL, CELERY = "LocalExecutor", "CeleryExecutor"
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
# The queue of every task that names none ([operators] default_queue): the nightly DAG's report.
DEFAULT_QUEUE = "default"
# Each site's workers in the test and in docker/docker-compose.yaml (tests/docker/test_compose.py).
WORKER_CONCURRENCY = 2
STARTUP_TIMEOUT = 180.0
RUN_TIMEOUT = 240.0


class RunTimeout(AssertionError):
    """The run had not ended when its time was up."""


class PostgresUnavailable(AssertionError):
    """PostgreSQL could not be installed or started (the tests skip, a benchmark stops)."""


class LeftoverProcesses(AssertionError):
    """Processes of the deployment survived its cleanup."""


class RedisUnavailable(AssertionError):
    """Redis could not be installed or started (the Celery tests skip)."""


# -- the CeleryExecutor's configuration: the one source of the test and of docker/docker-compose.yaml ---
@dataclass(frozen=True)
class CeleryWorker:
    """One ``airflow celery worker``: the queues it serves, its concurrency, and its name, which is its
    Celery hostname's name part (``<name>@<machine>``) and, in the test, the hostname its tasks report
    (tests/support/worker_hostname.py: two workers on one machine must still be told apart)."""

    name: str
    queues: tuple[str, ...]
    concurrency: int = WORKER_CONCURRENCY

    @property
    def component(self) -> str:
        return f"celery-{self.name}"

    def argv(self) -> list[str]:
        """The arguments of ``airflow``: the same in the test and in docker/docker-compose.yaml."""
        return [
            "celery", "worker", "--queues", ",".join(self.queues),
            "--concurrency", str(self.concurrency), "--celery-hostname", f"{self.name}@%h",
        ]  # fmt: skip

    def node(self) -> str:
        """Its Celery node name on this machine (Celery expands ``%h`` to the host name)."""
        return f"{self.name}@{socket.gethostname()}"


def site_workers(inventory: Path) -> list[CeleryWorker]:
    """A worker per site queue of the inventory (``queue`` of its hosts), named after it; each also
    serves the default queue (the tasks that belong to no host: the report)."""
    import yaml

    queues = sorted({h["queue"] for h in yaml.safe_load(inventory.read_text())["hosts"] if h.get("queue")})
    return [CeleryWorker(f"worker-{q.removeprefix('hyperv-')}", (q, DEFAULT_QUEUE)) for q in queues]


# docs/operations.md, "Task processes that start warm": the LocalExecutor whose workers are forked after
# the provider is imported, so a task process does not import it again.
WARM_TASK_PROCESSES = {
    "AIRFLOW__CORE__EXECUTOR": "airflow_hyperv.executors.local_executor.PreloadingLocalExecutor"
}
# As before: Airflow's own LocalExecutor, every task process imports the provider itself (the bench's
# baseline).
COLD_TASK_PROCESSES = {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}


def celery_settings(broker_url: str, db_url: str) -> dict[str, str]:
    """The CeleryExecutor with a Redis broker and its results in the metadata database (PostgreSQL):
    the settings every component gets, here and in docker/docker-compose.yaml. The result backend
    names its driver: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which Airflow does
    not install (its PostgreSQL driver is psycopg2)."""
    assert db_url.startswith("postgresql+psycopg2://"), db_url
    return {
        "AIRFLOW__CORE__EXECUTOR": CELERY,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"({exc})"
    return "\n".join(text[-lines:])


def parse_time(value: str | None) -> float | None:
    """An API timestamp (ISO 8601, maybe with ``Z``) as seconds since the epoch; None stays None."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def session_members(sid: int) -> list[int]:
    """Every live process in session ``sid``: Airflow's task runners take their own process group
    (``setpgid``), so a component's process group does not reach them, its session does."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session
            members.append(int(entry))
    return members


class Run:
    """A DAG run as last seen through the API: its state, its task instances by (task id, map index),
    every state each task instance was seen in while it was watched, and the run's own record."""

    def __init__(self, dag_id: str, run_id: str) -> None:
        self.dag_id, self.run_id = dag_id, run_id
        self.state = ""
        self.info: dict[str, Any] = {}  # GET /dags/{dag_id}/dagRuns/{run_id}
        self.final: dict[tuple[str, int], dict[str, Any]] = {}
        self.seen: dict[tuple[str, int], set[str | None]] = {}

    def states(self) -> dict[str, str | None]:
        return {f"{t}[{m}]" if m >= 0 else t: ti["state"] for (t, m), ti in sorted(self.final.items())}

    def state_of(self, task_id: str) -> str | None:
        return self.final[(task_id, -1)]["state"]

    def deferred(self) -> set[tuple[str, int]]:
        return {key for key, seen in self.seen.items() if "deferred" in seen}


class AirflowStack:
    """The four Airflow processes, each the leader of its own session, with a log file each.

    ``label`` prefixes what it prints and the run ids it makes (``e2e``, ``bench``); ``stream`` is
    where it prints (standard output when None); ``api_timeout`` bounds each REST call."""

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        api_url: str,
        *,
        label: str = "e2e",
        stream: TextIO | None = None,
        api_timeout: float = 30.0,
    ) -> None:
        self.home, self.env, self.api_url = home, env, api_url
        self.label, self.stream, self.api_timeout = label, stream, api_timeout
        self.logs = home / "process-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # What each component runs (arguments of ``airflow``) and its own environment on top of ``env``.
        self.commands: dict[str, list[str]] = {c: [c] for c in COMPONENTS}
        self.component_env: dict[str, dict[str, str]] = {}
        self.workers: dict[str, CeleryWorker] = {}  # by component
        self.http = requests.Session()
        self.ready_seconds = 0.0  # how long running_airflow took to bring it up

    def say(self, message: str) -> None:
        print(f"{self.label}: {message}", file=self.stream or sys.stdout, flush=True)

    # -- processes --------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout,
            start_new_session=True,
        )  # fmt: skip
        with (self.logs / f"cli-{args[0]}.log").open("a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def add_worker(self, worker: CeleryWorker) -> str:
        """Register a Celery worker as a component (started by ``start``); its component name. It gets a
        log server port of its own (two workers on one machine) and reports ``worker.name`` as the
        hostname of the tasks it runs (the REST API's ``hostname``)."""
        component = worker.component
        assert component not in self.commands, f"a worker named {worker.name} already exists"
        self.commands[component] = worker.argv()
        self.component_env[component] = {
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.support.worker_hostname.hostname",
            "AIRFLOW_HYPERV_WORKER_HOSTNAME": worker.name,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH", "")) if p),
        }
        self.workers[component] = worker
        return component

    def start(self, *components: str) -> None:
        """Start the given components (default: every registered one, the Celery workers too), each in
        its own session; a component started again appends to its log."""
        for component in components or list(self.commands):
            with (self.logs / f"{component}.log").open("ab") as log:
                self.procs[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *self.commands[component]],
                    env={**self.env, **self.component_env.get(component, {})},
                    cwd=self.home, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own session and process group: stop() ends all of it
                )  # fmt: skip

    def kill(self, component: str) -> list[int]:
        """SIGKILL every process of the component's session, as when its machine dies: for a Celery
        worker, its main process, its pool, and the supervisors and task processes of the tasks it runs
        (they take their own process group, so the group alone would leave them running). Returns the
        processes killed; the component is no longer watched by ``check_alive``."""
        proc = self.procs.pop(component)
        killed: set[int] = set()
        for _ in range(100):
            members = session_members(proc.pid)
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.update(members)
            time.sleep(0.1)  # until the kernel has ended them: not sequencing, a bounded reap
        proc.wait(timeout=10)
        if left := session_members(proc.pid):
            raise LeftoverProcesses(f"{component}: processes survived SIGKILL: {left}")
        return sorted(killed)

    def celery_nodes(self) -> set[str]:
        """The Celery nodes that answer a ping (``celery inspect ping``, as the compose healthcheck)."""
        result = subprocess.run(
            [sys.executable, "-m", "celery", "--app", CELERY_APP, "inspect", "ping", "--timeout", "5"],
            env=self.env, cwd=self.home, capture_output=True, text=True, timeout=120, start_new_session=True,
        )  # fmt: skip
        return {line.split("->", 1)[1].split(":", 1)[0].strip() for line in result.stdout.splitlines()
                if line.strip().startswith("->") and line.rstrip().endswith("OK")}  # fmt: skip

    def wait_workers(self, *components: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until each given Celery worker (default: all) answers a ping."""
        nodes = {self.workers[c].node() for c in components or list(self.workers)}
        self.wait_for(
            f"the Celery workers {sorted(nodes)} to answer", lambda: nodes <= self.celery_nodes(), timeout
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}\n{self.tails()}")

    def stop(self, *components: str) -> list[int]:
        """SIGTERM the given components' groups (default: all), then SIGKILL whatever is left in their
        sessions. Returns the processes still alive afterwards (none, unless something escaped)."""
        procs = [self.procs[c] for c in components] if components else list(self.procs.values())
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        left: list[int] = []
        for _ in range(50):
            left = [pid for proc in procs for pid in session_members(proc.pid)]
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return left

    def tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {path.name} (last {lines} lines) -----\n{tail(path, lines)}"
            for path in sorted(self.logs.glob("*.log"))
        )

    def wait_ready(self, dag_ids: Iterable[str], timeout: float = STARTUP_TIMEOUT) -> None:
        """The API answers, the DAGs are parsed, and the scheduler, triggerer and dag-processor report
        healthy."""
        dag_ids = list(dag_ids)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                health = self.api("GET", "/monitor/health")
                for dag_id in dag_ids:
                    self.api("GET", f"/dags/{dag_id}")
                unhealthy = [
                    name
                    for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if (health.get(name) or {}).get("status") != "healthy"
                ]
                if not unhealthy:
                    return
                last = f"not yet healthy: {unhealthy}"
            except (requests.RequestException, AssertionError) as exc:
                last = str(exc)[:300]
            time.sleep(1)
        raise AssertionError(f"Airflow was not ready within {timeout:.0f}s ({last})\n{self.tails()}")

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
        """Poll ``probe()`` until it returns something truthy, and return that (while every
        component stays alive; their logs if the time runs out)."""
        return wait_for(probe, timeout, what=what, interval=0.5, check=self.check_alive, explain=self.tails)

    # -- REST API ---------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(
            method, f"{self.api_url}/api/v2{path}", timeout=self.api_timeout, **kwargs
        )
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

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
        run_id = f"{self.label}__{dag_id}__{secrets.token_hex(4)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = RUN_TIMEOUT,
        *,
        poll: float = 0.3,
        watch_tasks: bool = True,
    ) -> Run:
        """Poll the run until it ends (RunTimeout after ``timeout``). With ``watch_tasks`` every poll
        also reads the task instances, recording each state they were seen in; without it (a run of
        thousands of tasks) only the run is read, and ``final`` stays empty."""
        run = Run(dag_id, run_id)
        started = time.monotonic()
        deadline = started + timeout
        while True:
            self.check_alive()
            run.info = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            state = run.info["state"]
            if watch_tasks:
                run.final = {
                    (ti["task_id"], ti["map_index"]): ti for ti in self.task_instances(dag_id, run_id)
                }
                for key, ti in run.final.items():
                    run.seen.setdefault(key, set()).add(ti["state"])
            if state in ("success", "failed"):
                run.state = state
                self.say(f"{dag_id} {run_id} {state} in {time.monotonic() - started:.1f}s")
                return run
            if time.monotonic() > deadline:
                states = {f"{k[0]}[{k[1]}]": v["state"] for k, v in run.final.items()}
                raise RunTimeout(
                    f"{dag_id} {run_id} still {state} after {timeout:.0f}s: {states}\n{self.tails()}"
                )
            time.sleep(poll)

    def task_log(self, dag_id: str, run_id: str, ti: dict[str, Any]) -> list[dict[str, Any]]:
        """The task's log as structured entries (``event``, ``logger``, ...), through the API."""
        content = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}",
            params={"map_index": ti["map_index"], "full_content": "true"},
            headers={"Accept": "application/json"},
        )["content"]
        return [e if isinstance(e, dict) else {"event": str(e)} for e in content]

    def assert_waited_in_the_triggerer(self, run: Run, keys: Iterable[tuple[str, int]]) -> None:
        """Each task deferred (its worker part logged the deferral) and the triggerer ran its trigger to
        an event (the triggerer's part of the same task log), read through the API."""
        for key in keys:
            events = [str(e.get("event", "")) for e in self.task_log(run.dag_id, run.run_id, run.final[key])]
            last = (key, events[-40:])
            assert any(e.startswith("Pausing task as DEFERRED") for e in events), last
            assert any(e.startswith("trigger ") and e.endswith("starting") for e in events), last
            assert "Trigger fired event" in events and "trigger completed" in events, last


def child_env(
    home: Path,
    db_url: str,
    api_port: int,
    fleet: Any,
    overrides: dict[str, str] | None = None,
    *,
    parallelism: int = 4,
    broker_url: str | None = None,
) -> dict[str, str]:
    """The Airflow processes' environment: nothing of the caller's Airflow config (tests/conftest.py
    points it at SQLite), everything of theirs explicit; a ``hyperv_<host>`` connection per emulated
    host of ``fleet``; the CeleryExecutor's settings with ``broker_url`` (else the LocalExecutor);
    ``overrides`` last."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    api = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # Every component signs or checks the same JWTs (the api-server and the executor).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            # A task's supervisor notices its process ended only when its select() times out, after
            # up to this many seconds (default 5). A deferred task whose trigger fires sooner than
            # that is resumed while the executor has not reported its first part yet, and the
            # scheduler then kills the resumed part as "changed externally" (Airflow 3.3.2 race).
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
            # The LocalExecutor docs/operations.md recommends (the CeleryExecutor's settings replace it)
            **WARM_TASK_PROCESSES,
        }
    )
    for host in fleet.host_names:  # hyperv_hv_01, ...: the example DAGs' connection ids
        env[f"AIRFLOW_CONN_HYPERV_{host.upper().replace('-', '_')}"] = uri_for(fleet, host)
    if broker_url:
        env.update(celery_settings(broker_url, db_url))
    env.update(overrides or {})
    return env


@contextlib.contextmanager
def explained(stack: AirflowStack, lines: int = 80) -> Iterator[None]:
    """On any failure, show the processes' logs with the caller's output."""
    try:
        yield
    except BaseException:
        print(stack.tails(lines), file=stack.stream or sys.stdout)
        if "task-state-changed-externally" in (stack.logs / "scheduler.log").read_text(errors="replace"):
            stack.say("the scheduler killed a task as changed externally (see the scheduler log): the race")
            stack.say(
                "of a deferred task resumed before its first part was reported (MIN_HEARTBEAT_INTERVAL)"
            )
        raise


# -- the building blocks of a deployment --------------------------------------------------------------
@contextlib.contextmanager
def work_directory(
    prefix: str, *, request: Any = None, label: str = "e2e", stream: TextIO | None = None
) -> Iterator[Path]:
    """A temporary directory, removed afterwards unless something failed: an exception out of the
    block, or (``request``, a pytest FixtureRequest) a test of the session failing meanwhile. A kept
    directory is named."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # the postgres user must reach the cluster directory inside it
    failed_before = request.session.testsfailed if request is not None else 0
    keep = False
    try:
        yield path
    except BaseException:
        keep = True
        raise
    finally:
        if keep or (request is not None and request.session.testsfailed > failed_before):
            print(
                f"{label}: kept {path} (logs in airflow/process-logs and airflow/logs)",
                file=stream or sys.stdout,
            )
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scripted_server(
    script: Path, directory: Path, what: str, unavailable: type[AssertionError]
) -> Iterator[str]:
    """``script start directory <free port>`` (scripts/postgres.sh, scripts/redis.sh), the URL it
    prints, and ``script stop directory`` afterwards; ``unavailable``, saying why, when it fails."""
    try:
        result = subprocess.run(
            ["bash", str(script), "start", str(directory), str(free_port())],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        result = subprocess.CompletedProcess([], 1, "", str(exc))
    if result.returncode != 0:
        subprocess.run(["bash", str(script), "stop", str(directory)], capture_output=True, timeout=120)
        raise unavailable(f"{what} could not be installed or started: {result.stderr.strip()[-800:]}")
    try:
        yield result.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(script), "stop", str(directory)], capture_output=True, timeout=120)


@contextlib.contextmanager
def postgres_cluster(workdir: Path) -> Iterator[str]:
    """A throw-away PostgreSQL cluster in ``workdir/postgres`` (scripts/postgres.sh); its SQLAlchemy
    URL. PostgresUnavailable, saying why, when it cannot be installed or started."""
    workdir.chmod(0o755)  # the postgres user must reach the cluster directory
    with scripted_server(POSTGRES_SH, workdir / "postgres", "PostgreSQL", PostgresUnavailable) as url:
        yield url


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throw-away Redis server in ``workdir/redis`` (scripts/redis.sh), loopback only, stopped
    afterwards; its broker URL (with its password). RedisUnavailable, saying why, when it cannot be
    installed or started."""
    with scripted_server(REDIS_SH, workdir / "redis", "Redis", RedisUnavailable) as url:
        yield url


@contextlib.contextmanager
def postgres_or_skip(workdir: Path) -> Iterator[str]:
    """``postgres_cluster`` for a test module: skips it, and says why, without PostgreSQL."""
    import pytest

    with contextlib.ExitStack() as cleanup:
        try:
            url = cleanup.enter_context(postgres_cluster(workdir))
        except PostgresUnavailable as exc:
            print(exc)
            pytest.skip(str(exc))
        yield url


@contextlib.contextmanager
def redis_or_skip(workdir: Path) -> Iterator[str]:
    """``redis_server`` for a test module: skips it, and says why, without Redis."""
    import pytest

    with contextlib.ExitStack() as cleanup:
        try:
            url = cleanup.enter_context(redis_server(workdir))
        except RedisUnavailable as exc:
            print(exc)
            pytest.skip(str(exc))
        yield url


@contextlib.contextmanager
def running_airflow(
    home: Path,
    db_url: str,
    fleet: Any,
    *,
    dag_ids: Iterable[str],
    pools: dict[str, int],
    env: dict[str, str] | None = None,
    parallelism: int = 4,
    startup_timeout: float = STARTUP_TIMEOUT,
    label: str = "e2e",
    stream: TextIO | None = None,
    api_timeout: float = 30.0,
    executor: str = LOCAL,
    broker_url: str | None = None,
    workers: Sequence[CeleryWorker] = (),
) -> Iterator[AirflowStack]:
    """Migrate the database, create the pools (deferred tasks count), start the four processes (and,
    with the CeleryExecutor, a worker per ``workers`` on the Redis of ``broker_url``) and wait until
    the DAGs in ``home/dags`` named ``dag_ids`` are parsed and every worker answers; stop everything
    afterwards (an AssertionError if any process survived that)."""
    if executor not in (LOCAL, CELERY):
        raise ValueError(f"executor {executor!r}: {LOCAL} or {CELERY}")
    if (executor == CELERY) != bool(broker_url and workers):
        raise ValueError("the CeleryExecutor, and only it, needs a broker_url and workers")
    api_port = free_port()
    stack = AirflowStack(
        home,
        child_env(home, db_url, api_port, fleet, env, parallelism=parallelism, broker_url=broker_url),
        f"http://127.0.0.1:{api_port}",
        label=label, stream=stream, api_timeout=api_timeout,
    )  # fmt: skip
    for worker in workers:
        stack.add_worker(worker)
    started = time.monotonic()
    try:
        stack.cli("db", "migrate", timeout=600)
        for pool, slots in pools.items():
            stack.cli("pools", "set", pool, str(slots), "Hyper-V host", "--include-deferred", timeout=120)
        stack.start()
        stack.wait_ready(dag_ids, startup_timeout)
        if workers:
            stack.wait_workers(timeout=startup_timeout)
        stack.ready_seconds = time.monotonic() - started
        stack.say(f"Airflow ready in {stack.ready_seconds:.1f}s")
        yield stack
    finally:
        if left := stack.stop():
            raise LeftoverProcesses(f"processes survived the cleanup: {left}")
