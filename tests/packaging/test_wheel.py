"""The published artefacts, as a user gets them: the two wheels built from a clean copy of the sources,
each installed with the project's constraints into a fresh virtualenv of its own, and used there.

- the provider's wheel holds ``airflow_hyperv`` (with its example DAGs and package data) and nothing of
  the emulator; installed without the emulator, Airflow lists the provider, knows the ``hyperv``
  connection type and its form fields, and parses every example DAG;
- the emulator's wheel holds ``hyperv_emulator`` only; installed without the provider (and so without
  Airflow), ``hyperv-emulator --help`` runs.

The two builds run side by side, then the two installs; one virtualenv serves all the provider checks.
Most of the time is pip resolving and unpacking Airflow (about half a minute on the 2-core machine).
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import airflow_hyperv
import hyperv_emulator

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
# what a build of each distribution reads (pyproject's readme and license-files, the package)
PROVIDER_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "airflow_hyperv")
EMULATOR_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "hyperv_emulator")
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
# the dev tools live in the `dev` dependency group: none may reach the published metadata
DEV_TOOLS = ("pytest", "ruff", "mypy", "import-linter", "types-", "psycopg2", "asyncpg", "microsoft-psrp")

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]


@dataclass
class Built:
    provider: Path
    emulator: Path


@dataclass
class Installed:
    provider: Path  # the virtualenv with the provider's wheel (and no emulator)
    emulator: Path  # the virtualenv with the emulator's wheel (and no provider, no Airflow)
    home: Path  # an empty directory for AIRFLOW_HOME and the working directory of every command


def _run_all(commands: dict[str, list[str]], timeout: float, cwd: Path) -> None:
    """Run the commands side by side; fail with the output of any that failed."""
    procs = {
        name: subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, cmd in commands.items()
    }
    failures = []
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            failures.append(f"{name}: {' '.join(commands[name])} exited {proc.returncode}\n{out[-4000:]}")
    assert not failures, "\n\n".join(failures)


def _wheel_in(folder: Path) -> Path:
    wheels = list(folder.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(name))


def _env(home: Path, venv: Path) -> dict[str, str]:
    """The environment of a user's shell with only that virtualenv active: no trace of this checkout,
    of the test session's Airflow settings or of its virtualenv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV")) and k != "PYTEST_CURRENT_TEST"
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["AIRFLOW_HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _in_venv(installed: Installed, venv: Path, *cmd: str, timeout: float = 180) -> str:
    result = subprocess.run(
        list(cmd),
        cwd=installed.home,
        env=_env(installed.home, venv),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Both wheels, built (side by side) from clean copies of the sources, the way `pip wheel` or
    `python -m build` builds them for a release: in an isolated build environment."""
    base = tmp_path_factory.mktemp("wheels")
    sources = {"provider": (ROOT, PROVIDER_SOURCES), "emulator": (ROOT / "emulator", EMULATOR_SOURCES)}
    commands = {}
    for name, (origin, entries) in sources.items():
        src, out = base / f"{name}-src", base / f"{name}-dist"
        src.mkdir()
        for entry in entries:
            path = origin / entry
            if path.is_dir():
                shutil.copytree(path, src / entry, ignore=_JUNK)
            else:
                shutil.copy2(path, src / entry)
        commands[name] = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    _run_all(commands, timeout=300, cwd=base)
    return Built(provider=_wheel_in(base / "provider-dist"), emulator=_wheel_in(base / "emulator-dist"))


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Each wheel in a fresh virtualenv of its own, with `-c constraints.txt` (the two installs run side
    by side). The virtualenvs get no pip of their own: this session's pip installs into them."""
    base = tmp_path_factory.mktemp("venvs")
    venvs = {"provider": base / "provider", "emulator": base / "emulator"}
    wheels = {"provider": built.provider, "emulator": built.emulator}
    for venv in venvs.values():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    commands = {
        name: [
            sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
            "--quiet", "--no-compile", "-c", str(CONSTRAINTS), str(wheels[name]),
        ]
        for name, venv in venvs.items()
    }  # fmt: skip
    _run_all(commands, timeout=600, cwd=base)
    home = base / "home"
    home.mkdir()
    return Installed(provider=venvs["provider"], emulator=venvs["emulator"], home=home)


# --- the wheels' contents ---------------------------------------------------------------------------


def _tracked_files(folder: str) -> list[str]:
    """The files of the checkout under `folder` (git's list; the folder's files outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", folder],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        files = [line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        base = ROOT / folder
        files = [
            str(p.relative_to(ROOT))
            for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    return files


def test_the_provider_wheel_holds_the_provider_and_nothing_of_the_emulator(built: Built):
    with zipfile.ZipFile(built.provider) as zf:
        names = zf.namelist()
    dist_info = f"airflow_hyperv-{airflow_hyperv.__version__}.dist-info/"
    strays = [n for n in names if not n.startswith(("airflow_hyperv/", dist_info))]
    assert not strays, f"outside airflow_hyperv/: {strays}"
    code = [n for n in names if n.endswith(".py")]
    for forbidden in ("hyperv_emulator", "psrpcore", "emulator", "tests"):
        assert not [n for n in names if forbidden in n.split("/")], forbidden
    assert not [n for n in code if n.rsplit("/", 1)[-1] == "server.py"], "a server module in the provider"
    # every file of the package in the checkout is in the wheel: modules, example DAGs, package data
    missing = sorted(set(_tracked_files("airflow_hyperv")) - set(names))
    assert not missing, f"not in the wheel: {missing}"
    example_dags = [n for n in code if n.startswith("airflow_hyperv/example_dags/") and "/_" not in n]
    assert example_dags, "no example DAG in the wheel"
    assert "airflow_hyperv/py.typed" in names
    assert [
        n for n in names if n.startswith("airflow_hyperv/example_dags/inventory/") and n.endswith(".yaml")
    ]
    assert f"{dist_info}licenses/LICENSE" in names


def test_the_provider_wheel_metadata(built: Built):
    meta = _metadata(built.provider)
    assert meta["Name"] == "airflow-hyperv"
    assert meta["Version"] == airflow_hyperv.__version__  # the one version source
    assert meta["License-Expression"] == "Apache-2.0" and meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= set(classifiers)
    assert set(meta.get_all("Provides-Extra") or []) == {"kerberos", "credssp", "emulator", "celery"}
    requires = meta.get_all("Requires-Dist") or []
    assert not [r for r in requires if any(tool in r for tool in DEV_TOOLS)], requires
    names = {
        r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip() for r in requires
    }
    assert {"apache-airflow", "apache-airflow-providers-standard", "pypsrp"} <= names
    assert "pendulum" not in names  # only the example DAGs use it, and it comes with Airflow
    with zipfile.ZipFile(built.provider) as zf:
        entry_points = zf.read(
            f"airflow_hyperv-{airflow_hyperv.__version__}.dist-info/entry_points.txt"
        ).decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_hyperv.get_provider_info:get_provider_info" in entry_points


def test_the_emulator_wheel_holds_the_emulator_only(built: Built):
    with zipfile.ZipFile(built.emulator) as zf:
        names = zf.namelist()
    dist_info = f"airflow_hyperv_emulator-{hyperv_emulator.__version__}.dist-info/"
    strays = [n for n in names if not n.startswith(("hyperv_emulator/", dist_info))]
    assert not strays, f"outside hyperv_emulator/: {strays}"
    missing = sorted(f.removeprefix("emulator/") for f in _tracked_files("emulator/hyperv_emulator"))
    missing = [f for f in missing if f not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert "hyperv_emulator/fleets/example.yaml" in names and f"{dist_info}licenses/LICENSE" in names
    meta = _metadata(built.emulator)
    assert meta["Version"] == hyperv_emulator.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    assert "airflow" not in requires


# --- installed, in fresh virtualenvs ----------------------------------------------------------------

# Run inside the provider's virtualenv: what Airflow's ProvidersManager and DagBag make of the provider.
_PROVIDER_PROBE = textwrap.dedent(
    """
    import importlib, importlib.util, json, pkgutil, sys
    from pathlib import Path

    import airflow_hyperv
    from airflow_hyperv.example_dags import EXAMPLE_DAGS
    from airflow_hyperv.get_provider_info import get_provider_info

    modules = [
        m.name for m in pkgutil.walk_packages(airflow_hyperv.__path__, "airflow_hyperv.")
        if not m.name.startswith("airflow_hyperv.example_dags.")
    ]
    for name in modules:  # each installed module imports with only the declared dependencies
        importlib.import_module(name)

    from airflow.providers_manager import ProvidersManager
    from airflow.dag_processing.dagbag import DagBag

    pm = ProvidersManager()
    ui = {m.connection_type: m for m in pm.iter_connection_type_hook_ui_metadata()}
    hyperv = ui.get("hyperv")
    dags = {}
    for path in sorted(Path(EXAMPLE_DAGS).glob("*.py")):
        if path.name.startswith("_"):
            continue
        bag = DagBag(dag_folder=str(path))
        dags[path.name] = {"dag_ids": sorted(bag.dag_ids), "errors": {str(k): v for k, v in bag.import_errors.items()}}
    info = get_provider_info()
    print(json.dumps({
        "package_file": airflow_hyperv.__file__,
        "modules": modules,
        "emulator_importable": importlib.util.find_spec("hyperv_emulator") is not None,
        "provider": pm.providers["airflow-hyperv"].version if "airflow-hyperv" in pm.providers else None,
        "hook_class_name": hyperv.hook_class_name if hyperv else None,
        "field_behaviour": hyperv.field_behaviour if hyperv else None,
        "form_widgets": sorted(k for k in pm.connection_form_widgets if k.startswith("extra__hyperv__")),
        "conn_fields": sorted(info["connection-types"][0]["conn-fields"]),
        "ui_field_behaviour": info["connection-types"][0]["ui-field-behaviour"],
        "dags": dags,
    }))
    """
)


def test_airflow_lists_the_installed_provider(installed: Installed):
    out = _in_venv(installed, installed.provider, "airflow", "providers", "list", "--output", "json")
    providers = {p["package_name"]: p for p in json.loads(out.strip().splitlines()[-1])}
    assert "airflow-hyperv" in providers, sorted(providers)
    assert providers["airflow-hyperv"]["version"] == airflow_hyperv.__version__


def test_the_installed_provider_brings_its_connection_type_and_parses_its_example_dags(installed: Installed):
    python = str(installed.provider / "bin" / "python")
    out = _in_venv(installed, installed.provider, python, "-c", _PROVIDER_PROBE)
    probe = json.loads(out.strip().splitlines()[-1])
    # the installed copy, not this checkout
    assert Path(probe["package_file"]).is_relative_to(installed.provider), probe["package_file"]
    assert "airflow_hyperv.hooks.hyperv" in probe["modules"] and len(probe["modules"]) > 20
    assert not probe["emulator_importable"], "the provider's install brought the emulator"
    assert probe["provider"] == airflow_hyperv.__version__
    assert probe["hook_class_name"] == "airflow_hyperv.hooks.hyperv.HyperVHook"
    behaviour = probe["ui_field_behaviour"]
    assert probe["field_behaviour"] == {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }
    assert probe["form_widgets"] == sorted(f"extra__hyperv__{name}" for name in probe["conn_fields"])
    assert "extra__hyperv__auth" in probe["form_widgets"]
    assert probe["dags"], "no example DAG in the installed package"
    for name, dag in probe["dags"].items():
        assert not dag["errors"], f"{name}: {dag['errors']}"
        assert dag["dag_ids"], f"{name}: no DAG"


def test_the_installed_dependencies_are_consistent(installed: Installed):
    for venv in (installed.provider, installed.emulator):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "check"],
            capture_output=True, text=True, timeout=120, cwd=installed.home,
        )  # fmt: skip
        assert result.returncode == 0, f"{venv.name}: {result.stdout}{result.stderr}"


def test_the_emulator_runs_without_the_provider(installed: Installed):
    out = _in_venv(
        installed, installed.emulator, str(installed.emulator / "bin" / "hyperv-emulator"), "--help"
    )
    assert "--fleet" in out
    python = str(installed.emulator / "bin" / "python")
    probe = textwrap.dedent(
        """
        import importlib.util, json, sys
        import hyperv_emulator.api, hyperv_emulator.cli, hyperv_emulator.server
        print(json.dumps({
            "file": hyperv_emulator.__file__,
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("airflow", "airflow_hyperv", "pypsrp")),
            "installed": [m for m in ("airflow", "airflow_hyperv") if importlib.util.find_spec(m)],
        }))
        """
    )
    result = json.loads(_in_venv(installed, installed.emulator, python, "-c", probe).strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(installed.emulator), result["file"]
    assert result == {**result, "loaded": [], "installed": []}
