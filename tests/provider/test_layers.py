"""The layers import one way: the domain (hyperv/) <- hooks/ <- operators/, sensors/, triggers/ <- the
authoring and reporting helpers. Read from the source (every import, also those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airflow_hyperv

PACKAGE = Path(airflow_hyperv.__file__).parent
# What sits above the faces: DAG-authoring and reporting helpers, the deprecated modules that re-export
# them, and the things built from them.
TOP = ("authoring", "reporting", "protect", "inventory", "report", "protection_report", "example_dags",
       "plugins", "cli")  # fmt: skip
# What each lower layer may import of the provider.
ALLOWED = {
    "hyperv": {"hyperv"},
    "hooks": {"hyperv", "hooks"},
    "operators": {"hyperv", "hooks", "operators", "sensors", "triggers"},
    "sensors": {"hyperv", "hooks", "operators", "sensors", "triggers"},
    "triggers": {"hyperv", "hooks", "operators", "sensors", "triggers"},
}


def provider_imports(path: Path) -> list[str]:
    """The first component under ``airflow_hyperv`` of every import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            modules = [f"{node.module}.{alias.name}" if node.module == "airflow_hyperv" else str(node.module)
                       for alias in node.names]  # fmt: skip
        else:
            continue
        found += [m.split(".")[1] for m in modules if m.startswith("airflow_hyperv.")]
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_lower_layer_imports_nothing_above_it(layer):
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    wrong = {
        f"{path.relative_to(PACKAGE)} imports airflow_hyperv.{sub}"
        for path in files
        for sub in provider_imports(path)
        if sub not in ALLOWED[layer]
    }
    assert not wrong, sorted(wrong)
    assert not set(TOP) & set().union(*ALLOWED.values())


def test_the_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from airflow_hyperv.reporting.run_report import row_for\n")
    assert provider_imports(sample) == ["reporting"]
