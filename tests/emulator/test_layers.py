"""The emulator's layers import one way only (emulator/README.md): the model never reaches up, the cmdlets
never reach the protocol, the protocol reaches a host only through the host runtime seam."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "emulator" / "hyperv_emulator"
# layer -> the layers it must never import (a layer is a top-level module or subpackage)
FORBIDDEN = {
    "host_runtime": {"model", "cmdlets", "wsman", "server", "api", "cli"},
    "model": {"cmdlets", "wsman", "server", "api", "cli"},
    "cmdlets": {"wsman", "server", "api", "cli"},
    "wsman": {"model", "cmdlets", "server", "api", "cli"},
    "server": {"model", "cmdlets", "api", "cli"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [name for name in found if name.startswith("hyperv_emulator.")]


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_a_module_imports_no_layer_above_it(path: Path) -> None:
    module = ".".join(("hyperv_emulator", *path.relative_to(PACKAGE).with_suffix("").parts))
    forbidden = FORBIDDEN.get(_layer(module), set())
    wrong = [name for name in _imports(path) if _layer(name) in forbidden]
    assert not wrong, f"{module} imports {wrong} (layers: emulator/README.md)"


def test_the_layer_check_sees_the_package() -> None:
    assert {
        _layer("hyperv_emulator." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)) for p in FILES
    } >= {
        "host_runtime",
        "model",
        "cmdlets",
        "wsman",
        "server",
    }
