"""The layering check can fail: the project's own import-linter contracts (``[tool.importlinter]`` in
pyproject.toml, run by ``make layers``) applied to a tiny stand-in tree of both root packages, with
every layer the contracts name. The tree as it is keeps every contract; each single wrong-way import
added to it breaks exactly the contract that forbids it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.packaging

# The stand-in tree: module -> its source. Every layer a contract requires exists; each imports only
# what the target layout allows (the demo CLI reaches the emulator, as the real one does, lazily).
TREE = {
    "airflow_hyperv/__init__.py": "",
    "airflow_hyperv/get_provider_info.py": "import airflow_hyperv.hyperv.defaults\n",
    "airflow_hyperv/cli/__init__.py": "",
    "airflow_hyperv/cli/demo.py": (
        "import airflow_hyperv.example_dags\n"
        "import airflow_hyperv.reporting.run_report\n"
        "def demo():\n    import hyperv_emulator.api\n"
    ),
    "airflow_hyperv/plugins/__init__.py": "",
    "airflow_hyperv/plugins/report_view.py": "import airflow\nimport airflow_hyperv.reporting.html\n",
    "airflow_hyperv/executors/__init__.py": "",
    "airflow_hyperv/executors/local_executor.py": "import airflow\n",
    # the real one imports its list by name (importlib); the stand-in shows the layer may import them
    "airflow_hyperv/preload.py": "import airflow_hyperv.authoring.protect\nimport airflow_hyperv.hooks.hyperv\n",
    "airflow_hyperv/example_dags/__init__.py": "",
    "airflow_hyperv/example_dags/nightly.py": (
        "import airflow_hyperv.authoring.protect\nimport airflow_hyperv.sensors.vm\n"
    ),
    "airflow_hyperv/authoring/__init__.py": "",
    "airflow_hyperv/authoring/protect.py": (
        "import airflow_hyperv.operators.checkpoint\nimport airflow_hyperv.reporting.run_report\n"
    ),
    "airflow_hyperv/authoring/inventory.py": "import airflow_hyperv.hyperv.defaults\n",
    "airflow_hyperv/reporting/__init__.py": "",
    "airflow_hyperv/reporting/run_report.py": "import airflow_hyperv.hyperv.records\n",
    "airflow_hyperv/reporting/html.py": "",
    "airflow_hyperv/operators/__init__.py": "",
    "airflow_hyperv/operators/base.py": "import airflow\nimport airflow_hyperv.mixins\n",
    "airflow_hyperv/mixins.py": "import airflow\nimport airflow_hyperv.hooks.hyperv\nimport airflow_hyperv.triggers.hyperv\n",
    "airflow_hyperv/operators/checkpoint.py": (
        "import airflow_hyperv.operators.base\nimport airflow_hyperv.triggers.hyperv\n"
    ),
    "airflow_hyperv/sensors/__init__.py": "",
    "airflow_hyperv/sensors/vm.py": "import airflow\nimport airflow_hyperv.triggers.hyperv\n",
    "airflow_hyperv/triggers/__init__.py": "",
    "airflow_hyperv/triggers/hyperv.py": "import airflow\nimport airflow_hyperv.hooks.hyperv\n",
    "airflow_hyperv/hooks/__init__.py": "",
    "airflow_hyperv/hooks/hyperv.py": "import pypsrp\nimport airflow_hyperv.hyperv.records\n",
    "airflow_hyperv/hyperv/__init__.py": "",
    "airflow_hyperv/hyperv/defaults.py": "",
    "airflow_hyperv/hyperv/records.py": "import airflow_hyperv.hyperv.defaults\n",
    "hyperv_emulator/__init__.py": "",
    "hyperv_emulator/cli.py": "import hyperv_emulator.api\n",
    "hyperv_emulator/api.py": "import hyperv_emulator.server\nimport hyperv_emulator.cmdlets.vm\n",
    "hyperv_emulator/server.py": "import hyperv_emulator.wsman.shell\n",
    "hyperv_emulator/wsman/__init__.py": "",
    "hyperv_emulator/wsman/shell.py": "import psrpcore\nimport hyperv_emulator.host_runtime\n",
    "hyperv_emulator/cmdlets/__init__.py": "",
    "hyperv_emulator/cmdlets/vm.py": "import hyperv_emulator.model.vm\nimport hyperv_emulator.host_runtime\n",
    "hyperv_emulator/model/__init__.py": "",
    "hyperv_emulator/model/vm.py": "import hyperv_emulator.host_runtime\n",
    "hyperv_emulator/host_runtime.py": "",
}

CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
NAMES = [c["name"] for c in CONTRACTS]


def _contract(fragment: str) -> str:
    (name,) = [n for n in NAMES if fragment in n]
    return name


# One wrong-way import per case (appended to a module of the tree) and the contracts it must break.
WRONG_WAY = {
    "the emulator imports the provider": ("hyperv_emulator/server.py", "import airflow_hyperv.hyperv", "stands alone"),
    "the emulator imports Airflow": ("hyperv_emulator/model/vm.py", "import airflow", "stands alone"),
    "a hook imports the emulator": ("airflow_hyperv/hooks/hyperv.py", "import hyperv_emulator.api", "needs no emulator"),
    "a sensor imports an operator": ("airflow_hyperv/sensors/vm.py", "import airflow_hyperv.operators.base", "Provider layers"),
    "an operator imports the reporting": ("airflow_hyperv/operators/checkpoint.py", "import airflow_hyperv.reporting.run_report", "Provider layers"),
    "an operator imports an optional layer": ("airflow_hyperv/operators/base.py", "import airflow_hyperv.authoring.inventory", "Provider layers"),
    "a trigger imports an operator": ("airflow_hyperv/triggers/hyperv.py", "import airflow_hyperv.operators.base", "Provider layers"),
    "the mixins import a sensor": ("airflow_hyperv/mixins.py", "import airflow_hyperv.sensors.vm", "Provider layers"),
    "a trigger imports the mixins": ("airflow_hyperv/triggers/hyperv.py", "import airflow_hyperv.mixins", "Provider layers"),
    "a hook imports a trigger": ("airflow_hyperv/hooks/hyperv.py", "import airflow_hyperv.triggers.hyperv", "Provider layers"),
    # and through the hook, pypsrp: an indirect import breaks the domain's contract too
    "the domain imports a hook": ("airflow_hyperv/hyperv/records.py", "import airflow_hyperv.hooks.hyperv", "Provider layers", "domain is pure"),
    "example DAGs import the CLI": ("airflow_hyperv/example_dags/nightly.py", "import airflow_hyperv.cli.demo", "Provider layers"),
    "the domain imports Airflow": ("airflow_hyperv/hyperv/defaults.py", "import airflow.sdk", "domain is pure"),
    "the domain imports pypsrp": ("airflow_hyperv/hyperv/records.py", "import pypsrp.wsman", "domain is pure"),
    "provider info imports a hook": ("airflow_hyperv/get_provider_info.py", "import airflow_hyperv.hooks.hyperv", "Provider info"),
    "the model imports the cmdlets": ("hyperv_emulator/model/vm.py", "import hyperv_emulator.cmdlets.vm", "Emulator layers"),
    "WS-Man imports the server": ("hyperv_emulator/wsman/shell.py", "import hyperv_emulator.server", "Emulator layers"),
    "the server imports the cmdlets": ("hyperv_emulator/server.py", "import hyperv_emulator.cmdlets.vm", "Emulator layers"),
    # a module in no layer passes the import on: model -> host runtime -> cmdlets goes up
    "the host runtime imports the cmdlets": ("hyperv_emulator/host_runtime.py", "import hyperv_emulator.cmdlets.vm", "Emulator layers"),
}  # fmt: skip


def _lint(tmp_path: Path, extra: tuple[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """lint-imports with the project's contracts on the stand-in tree; its status and each contract's
    verdict (KEPT / BROKEN)."""
    tree = tmp_path / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    for module, source in TREE.items():
        path = tree / module
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    if extra:
        module, line = extra
        with (tree / module).open("a") as f:
            f.write(line + "\n")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    # the stand-in packages come first on the path, ahead of the installed (editable) real ones
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert "Analyzed" in out, out
    analyzed = int(re.search(r"Analyzed (\d+) files", out).group(1))  # type: ignore[union-attr]
    # the tree's modules and the few external packages they import, not the real project (~150)
    assert len(TREE) <= analyzed <= len(TREE) + 5, f"not the stand-in tree: {analyzed} files\n{out}"
    # a long name wraps onto two lines in the report: join them again before reading the verdicts
    flat = " ".join(out.split())
    verdicts = {}
    for name in NAMES:
        match = re.search(re.escape(" ".join(name.split())) + r" (KEPT|BROKEN)", flat)
        assert match, f"no verdict for {name!r}\n{out}"
        verdicts[name] = match.group(1)
    return result.returncode, verdicts


def test_the_stand_in_tree_keeps_every_contract(tmp_path):
    status, verdicts = _lint(tmp_path)
    assert verdicts == dict.fromkeys(NAMES, "KEPT")
    assert status == 0


@pytest.mark.parametrize("case", sorted(WRONG_WAY))
def test_one_wrong_way_import_breaks_its_contract(tmp_path, case):
    module, line, *contracts = WRONG_WAY[case]
    status, verdicts = _lint(tmp_path, (module, line))
    assert status != 0, f"{case}: lint-imports passed"
    broken = {name for name, verdict in verdicts.items() if verdict == "BROKEN"}
    assert broken == {_contract(c) for c in contracts}, f"{case}: {verdicts}"  # those, and only those
