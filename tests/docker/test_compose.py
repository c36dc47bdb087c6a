"""The Docker deployment (docker/) checked without Docker: no engine, no network, a few seconds.

What these tests cannot tell: whether the images build and the containers start. See docker/README.md.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from tests.support.airflow_stack import CELERY, CeleryWorker, celery_settings, site_workers

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
INVENTORY = EXAMPLE_DAGS / "inventory" / "nightly.yaml"
# The Celery workers of the distributed end-to-end test (tests/e2e/test_celery.py): one per site queue.
WORKERS = site_workers(INVENTORY)
WORKER_SERVICES = {f"airflow-{w.name}": w for w in WORKERS}
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    *WORKER_SERVICES,
}
# ${VAR}, ${VAR:-default}, ${VAR:?message}; $$ is an escaped dollar for the container's shell.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _interpolate(text: str, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op and op.endswith("-"):
            return default
        raise AssertionError(f"${{{name}}} has no value in docker/.env.example")

    return _INTERPOLATION.sub(value, text)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _init_script(services: dict[str, dict[str, Any]]) -> str:
    command = services["airflow-init"]["command"]
    return command if isinstance(command, str) else "\n".join(command)


def test_compose_parses_and_has_the_expected_services(services):
    expected = AIRFLOW_SERVICES | {"postgres", "redis", "emulator"}
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"


# -- the CeleryExecutor: the same configuration as tests/e2e/test_celery.py ----------------------------------
def worker_drift(services: dict[str, dict[str, Any]], workers: list[CeleryWorker]) -> list[str]:
    """How the compose file's Celery workers differ from ``workers`` (the test's): a worker service per
    worker, named ``airflow-<name>``, with the test's command line, the worker's name as its hostname,
    and a healthcheck that pings that node; and no other worker."""
    problems = []
    running = {n for n, s in services.items() if list(s.get("command") or [])[:2] == ["celery", "worker"]}
    wanted = {f"airflow-{w.name}": w for w in workers}
    problems += [f"{n}: a worker the test does not run" for n in sorted(running - set(wanted))]
    for name, worker in wanted.items():
        service = services.get(name)
        if service is None:
            problems.append(f"{name}: missing")
            continue
        if list(service.get("command") or []) != worker.argv():
            problems.append(f"{name}: command {service.get('command')} is not the test's {worker.argv()}")
        if service.get("hostname") != worker.name:
            problems.append(f"{name}: hostname {service.get('hostname')!r} is not {worker.name!r}")
        ping = " ".join(service.get("healthcheck", {}).get("test") or [])
        if f'inspect ping -d "{worker.name}@$${{HOSTNAME}}"' not in ping:
            problems.append(f"{name}: the healthcheck does not ping {worker.name}@$HOSTNAME: {ping}")
    return problems


def test_the_workers_are_the_celery_tests_workers(services):
    assert not worker_drift(services, WORKERS), worker_drift(services, WORKERS)
    for service in WORKER_SERVICES:
        assert "deploy" not in services[service], f"{service}: one worker per site, its hostname fixed"


def test_the_worker_check_catches_drift(services):
    """Positive control: a changed concurrency, a queue missing, a worker too many are each caught."""
    first = WORKERS[0]
    busier = [CeleryWorker(first.name, first.queues, first.concurrency + 1), *WORKERS[1:]]
    assert any("is not the test's" in p for p in worker_drift(services, busier))
    fewer_queues = [CeleryWorker(first.name, first.queues[:1], first.concurrency), *WORKERS[1:]]
    assert any("is not the test's" in p for p in worker_drift(services, fewer_queues))
    assert any("does not run" in p for p in worker_drift(services, WORKERS[1:]))


def test_every_site_queue_has_exactly_one_worker_and_default_has_all(services):
    queues = {h["queue"] for h in yaml.safe_load(INVENTORY.read_text())["hosts"]}
    served = {n: services[n]["command"][services[n]["command"].index("--queues") + 1].split(",")
              for n in WORKER_SERVICES}  # fmt: skip
    for queue in queues:
        assert len([n for n, qs in served.items() if queue in qs]) == 1, (queue, served)
    assert all("default" in qs for qs in served.values()), served


def test_the_executor_broker_and_result_backend_are_the_celery_tests(services, env_example):
    """The same settings as tests/support/airflow_stack.py's ``celery_settings``: the keys, the executor,
    a Redis broker, and the results in the metadata database through the same driver."""
    for name in AIRFLOW_SERVICES:
        env = {k: _interpolate(v, env_example) for k, v in _environment(services[name]).items()}
        mine = {
            k: v
            for k, v in env.items()
            if k.startswith("AIRFLOW__CELERY__") or k == "AIRFLOW__CORE__EXECUTOR"
        }
        theirs = celery_settings(
            env["AIRFLOW__CELERY__BROKER_URL"], env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        )
        assert mine == theirs, name
        assert env["AIRFLOW__CORE__EXECUTOR"] == CELERY
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:"), name  # with its password


def test_every_service_has_an_image_or_a_build(services):
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"service {name} has neither image nor build"


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name == "airflow-init":
            continue
        assert service.get("healthcheck", {}).get("test"), f"service {name} has no healthcheck"


def test_every_referenced_path_exists(services):
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (DOCKER / (build if isinstance(build, str) else build.get("context", "."))).resolve()
            assert context.is_dir(), f"{name}: build context {context} does not exist"
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            # .env holds the secrets and is not in the repository: its template must be.
            target = DOCKER / path
            assert target.is_file() or (target.name == ".env" and ENV_EXAMPLE.is_file()), (
                f"{name}: env_file {path} (or docker/.env.example for .env) does not exist"
            )
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: mounted path {source} does not exist"


def test_the_dockerfile_copies_what_exists_and_builds_from_the_pinned_image():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11(\s+AS\s+\w+)?\s*$", text, re.M)
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        sources = [w for w in shlex.split(line) if not w.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_the_emulator_serves_the_packaged_fleet(services):
    command = services["emulator"]["command"]
    fleet = command[command.index("--fleet") + 1]
    prefix = "/opt/airflow-hyperv/"
    assert fleet.startswith(prefix)
    assert (ROOT / fleet[len(prefix) :]).is_file(), f"{fleet} is not in the project"
    assert "AIRFLOW_HYPERV_EMULATOR_PASSWORD" in _environment(services["emulator"])


def test_every_secret_in_the_compose_file_has_a_template_value(env_example):
    names = {m.group(1) for m in _INTERPOLATION.finditer(COMPOSE.read_text())}
    optional = {
        m.group(1) for m in _INTERPOLATION.finditer(COMPOSE.read_text()) if (m.group(2) or "").endswith("-")
    }
    missing = names - optional - set(env_example)
    assert not missing, f"docker/.env.example lacks {sorted(missing)}"


def test_airflow_settings_the_provider_needs(services):
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled", name
        assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"].lower() == "true", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert {"AIRFLOW_CONN_HYPERV_HV_01", "AIRFLOW_CONN_HYPERV_HV_02"} <= set(env), name


def test_every_connection_parses_into_connection_settings(services, env_example):
    from airflow.sdk import Connection

    from airflow_hyperv.hooks.connection import ConnectionSettings

    emulator = services["emulator"]["command"]
    port = int(emulator[emulator.index("--port") + 1])
    auth = emulator[emulator.index("--auth") + 1]
    fleet_path = ROOT / emulator[emulator.index("--fleet") + 1].removeprefix("/opt/airflow-hyperv/")
    fleet_hosts = {h["name"] for h in yaml.safe_load(fleet_path.read_text())["hosts"]}
    seen = set()
    for name in AIRFLOW_SERVICES:
        for key, raw in _environment(services[name]).items():
            if not key.startswith("AIRFLOW_CONN_"):
                continue
            conn_id = key.removeprefix("AIRFLOW_CONN_").lower()
            conn = Connection.from_uri(_interpolate(raw, env_example), conn_id=conn_id)
            assert conn.conn_type == "hyperv", key
            settings = ConnectionSettings.from_connection(
                host=conn.host, port=conn.port, login=conn.login, password=conn.password, extra=conn.extra
            )
            assert settings.host == "emulator" and settings.port == port, key
            assert settings.auth == auth, key
            assert settings.password == env_example["AIRFLOW_HYPERV_EMULATOR_PASSWORD"], key
            assert settings.host_label in fleet_hosts, f"{key}: {settings.wsman_path} is not a fleet host"
            seen.add((conn_id, settings.host_label))
    assert seen == {("hyperv_hv_01", "hv-01"), ("hyperv_hv_02", "hv-02")}


def test_airflow_init_creates_every_inventory_pool_with_include_deferred(services):
    from airflow_hyperv.authoring.inventory import load

    inventory = load(INVENTORY)
    created = {}
    for line in _init_script(services).splitlines():
        words = shlex.split(line)
        if words[:3] == ["airflow", "pools", "set"]:
            created[words[3]] = (int(words[4]), "--include-deferred" in words)
    wanted = {h.pool: (h.pool_slots, True) for h in inventory.hosts}
    assert created == wanted
    env = _environment(services["airflow-init"])
    for host in inventory.hosts:
        assert f"AIRFLOW_CONN_{host.conn_id.upper()}" in env, f"no connection for {host.name}"


def _pip_install(words: list[str]) -> dict[str, Any]:
    """The arguments of one `pip install` that decide what gets installed."""
    start = next(i for i in range(len(words) - 1) if words[i].endswith("pip") and words[i + 1] == "install")
    args = words[start + 2 :]
    constraints, requirement, editable = None, None, False
    groups: set[str] = set()  # PEP 735 dependency groups of the pyproject.toml in the working directory
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--constraint"):
            constraints, i = args[i + 1], i + 2
            continue
        if arg == "--group" or arg.startswith("--group="):
            groups.add(arg.split("=", 1)[1] if "=" in arg else args[i + 1])
            i += 1 if "=" in arg else 2
            continue
        if arg in ("-e", "--editable"):
            editable, requirement, i = True, args[i + 1], i + 2
            continue
        if not arg.startswith("-"):
            requirement = arg
        i += 1
    assert requirement, f"no requirement in {words}"
    match = re.fullmatch(r"(?P<path>[^\[]+)(\[(?P<extras>[^\]]*)\])?", requirement)
    assert match, requirement
    extras = {e.strip() for e in (match["extras"] or "").split(",") if e.strip()}
    return {
        "constraints": constraints,
        "path": match["path"],
        "extras": extras,
        "groups": groups,
        "editable": editable,
    }


@dataclass
class Stage:
    name: str
    parent: str  # the image or stage it is FROM
    lines: list[str] = field(default_factory=list)


def _stages() -> dict[str, Stage]:
    """The Dockerfile's build stages in order, each with its instruction lines."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in DOCKERFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.I)
        if m:
            current = Stage(m[2] or f"stage{len(stages)}", m[1])
            stages[current.name] = current
        else:
            assert current is not None, f"instruction before FROM: {line}"
            current.lines.append(line)
    return stages


def _lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it builds on, the base first."""
    chain = [stages[name]]
    while chain[0].parent in stages:
        chain.insert(0, stages[chain[0].parent])
    return chain


def _installs(stage: Stage) -> list[dict[str, Any]]:
    return [
        _pip_install(shlex.split(line[4:]))
        for line in stage.lines
        if line.startswith("RUN ") and "pip install" in line
    ]


def _copies_into(chain: list[Stage]) -> list[tuple[list[str], str]]:
    copies = []
    for stage in chain:
        for line in stage.lines:
            if line.startswith("COPY "):
                words = [w for w in shlex.split(line[5:]) if not w.startswith("--")]
                copies.append((words[:-1], words[-1]))
    return copies


def _workdir(chain: list[Stage], before: str) -> str:
    workdir = "/"
    for stage in chain:
        for line in stage.lines:
            if line == before:
                return workdir
            if line.startswith("WORKDIR "):
                workdir = line.split(None, 1)[1].strip()
    return workdir


def _make_constraints() -> str:
    make_lines = [
        line.replace("$(PIP)", "pip").strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "$(PIP) install" in line and " -c " in line
    ]
    assert len(make_lines) == 1, make_lines
    constraints = _pip_install(shlex.split(make_lines[0]))["constraints"]
    assert constraints
    return str(constraints)


def test_the_provider_image_is_a_normal_install_with_the_projects_constraints_and_no_dev_tools():
    stages = _stages()
    assert list(stages)[-1] == "provider", "the provider must be the last stage: the default target"
    chain = _lineage(stages, "provider")
    (install,) = [i for stage in chain for i in _installs(stage)]
    assert install == {
        "constraints": _make_constraints(),
        "path": ".",
        "extras": set(),
        "groups": set(),
        "editable": False,
    }
    # the constraints file pip reads is the project's own, copied into the directory pip runs in
    run = next(line for line in stages["provider"].lines if "pip install" in line)
    workdir = _workdir(chain, run).rstrip("/")
    assert any(
        install["constraints"] in sources and dest.rstrip("/") == workdir
        for sources, dest in _copies_into(chain)
    ), "constraints.txt is not copied into the directory pip runs in"
    copied = {source for sources, _ in _copies_into(chain) for source in sources}
    assert "emulator" not in copied and "tests" not in copied, copied
    assert {"pyproject.toml", "airflow_hyperv"} <= copied


def test_no_dev_tool_goes_into_any_image():
    dev = {"pytest", "pytest-timeout", "ruff", "mypy", "types-pyyaml", "types-requests"}
    text = DOCKERFILE.read_text().lower()
    for stage in _stages().values():
        for install in _installs(stage):
            assert "dev" not in install["extras"] and not install["editable"], (stage.name, install)
        runs = " ".join(line for line in stage.lines if line.startswith("RUN ")).lower()
        assert not [tool for tool in dev if re.search(rf"(^|[\s\[,]){re.escape(tool)}([\s\],=<>]|$)", runs)]
    assert "-e " not in text and "--editable" not in text and "[dev" not in text


def test_the_emulator_has_its_own_target_with_the_same_constraints():
    stages = _stages()
    chain = _lineage(stages, "emulator")
    (install,) = [i for stage in chain for i in _installs(stage)]
    assert install == {
        "constraints": _make_constraints(),
        "path": "./emulator",
        "extras": set(),
        "groups": set(),
        "editable": False,
    }
    assert (["emulator"], "/opt/airflow-hyperv/emulator") in _copies_into(chain)
    run = next(line for line in stages["emulator"].lines if "pip install" in line)
    assert _workdir(chain, run) == "/opt/airflow-hyperv"
    assert "provider" not in [s.name for s in chain], "the emulator image does not need the provider"


def test_each_service_builds_its_own_target(services):
    stages = _stages()
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"]["target"] == "provider", name
    assert services["emulator"]["build"]["target"] == "emulator"
    assert services["emulator"]["image"] != services[next(iter(WORKER_SERVICES))]["image"]
    for name, service in services.items():
        if isinstance(service.get("build"), dict) and "target" in service["build"]:
            assert service["build"]["target"] in stages, f"{name}: no stage {service['build']['target']}"


def test_the_emulator_starts_only_with_its_profile(services):
    assert services["emulator"]["profiles"] == ["emulator"]
    for name, service in services.items():
        if name != "emulator":
            assert not service.get("profiles"), f"{name} would not start with a plain `docker compose up`"
            assert "emulator" not in (service.get("depends_on") or {}), f"{name} depends on the emulator"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Target path -> source of every volume of a service (short and long syntax)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        mounts[target] = source
    return mounts


def test_every_airflow_component_shares_the_protection_report_volume(compose, services, monkeypatch):
    from airflow_hyperv.reporting.html import report_dir

    where = set()
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert "AIRFLOW_HYPERV_REPORT_DIR" in env, f"{name}: no AIRFLOW_HYPERV_REPORT_DIR"
        path = env["AIRFLOW_HYPERV_REPORT_DIR"]
        # the variable is the one the provider reads: with it set, report_dir() is that path
        monkeypatch.setenv("AIRFLOW_HYPERV_REPORT_DIR", path)
        assert str(report_dir()) == path
        source = _mounts(services[name]).get(path)
        assert source and not source.startswith((".", "/")), f"{name}: {path} is not on a named volume"
        where.add((source, path))
    assert len(where) == 1, f"the components do not share one report volume: {where}"
    ((volume, path),) = where
    assert volume in (compose.get("volumes") or {}), f"volume {volume} is not declared"
    # Docker initialises a new named volume from the image's directory, so the airflow user owns it
    assert f"RUN mkdir -p {path}" in _stages()["provider"].lines


def test_the_dockerignore_keeps_local_state_out_and_every_copy_in():
    ignore = ROOT / ".dockerignore"  # the build context is the project root
    patterns = [
        line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for required in (".venv", ".git", ".demo", ".airflow", ".e2e", "bench/results", "docker/.env"):
        assert required in patterns, f".dockerignore lacks {required}"
    assert any("__pycache__" in p for p in patterns) and any("_cache" in p for p in patterns)
    for stage in _stages().values():
        for sources, _ in _copies_into([stage]):
            for source in sources:
                hit = [p for p in patterns if fnmatch.fnmatch(source, p.removeprefix("**/"))]
                assert not hit, f"{stage.name} copies {source}, which .dockerignore excludes ({hit})"


def _compose_cli() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(
    _compose_cli() is None, reason="neither `docker compose` nor `docker-compose` is installed"
)
def test_docker_compose_config_accepts_the_file(tmp_path):
    """The Compose implementation's own validation, offline (no engine needed): schema, anchors,
    interpolation. docker/.env is the template, in a copy of docker/ (the real .env is never read)."""
    cli = _compose_cli()
    assert cli
    copy = tmp_path / "docker"
    copy.mkdir()
    shutil.copy(COMPOSE, copy / COMPOSE.name)
    shutil.copy(ENV_EXAMPLE, copy / ".env")
    base = [*cli, "-f", str(copy / COMPOSE.name), "--project-directory", str(copy)]
    run = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    volumes = subprocess.run([*base, "config", "--volumes"], capture_output=True, text=True, timeout=120)
    assert "hyperv-reports" in volumes.stdout.split(), volumes.stdout
