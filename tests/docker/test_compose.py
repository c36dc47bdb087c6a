"""The Docker deployment (docker/) checked without Docker: no engine, no network, a few seconds.

What these tests cannot tell: whether the images build and the containers start. See docker/README.md.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_hyperv.example_dags import EXAMPLE_DAGS

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
INVENTORY = EXAMPLE_DAGS / "inventory" / "nightly.yaml"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
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
    assert services["airflow-worker"]["deploy"]["replicas"] == 2


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
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11\s*$", text, re.M)
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


def test_the_dockerfile_installs_like_make_setup():
    make_lines = [
        line.replace("$(PIP)", "pip").strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "$(PIP) install" in line and " -c " in line
    ]
    assert len(make_lines) == 1, make_lines
    make = _pip_install(shlex.split(make_lines[0]))
    text = DOCKERFILE.read_text()
    runs = [r for r in re.findall(r"^RUN\s+(.+)$", text, re.M) if "pip install" in r]
    assert len(runs) == 1, runs
    docker = _pip_install(shlex.split(runs[0]))
    assert docker == make
    # The constraints file the image uses is the project's own, copied into the install directory.
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", text[: text.index(runs[0])], re.M)
    copies = [shlex.split(c) for c in re.findall(r"^COPY\s+(.+)$", text, re.M)]
    assert any(
        docker["constraints"] in c and c[-1].rstrip("/") == workdirs[-1].rstrip("/") for c in copies
    ), "constraints.txt is not copied into the directory pip runs in"
