"""The docs' DAG code is the tested example DAGs' code: every marked block equals its region, no DAG
code block is hand-written, and the checker catches a block that drifted (positive controls)."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import doc_snippets

ROOT = doc_snippets.ROOT
MAINTENANCE = "airflow_hyperv/example_dags/maintenance_checkpoint.py"


def test_every_doc_block_matches_its_example_dag_region():
    assert doc_snippets.problems(ROOT) == []


def test_the_docs_pull_regions_from_the_example_dags():
    sources = {b.source for doc in doc_snippets.docs(ROOT) for b in doc_snippets.blocks(doc) if b.source}
    assert f"{MAINTENANCE}#howto_operator_hyperv_verify" in sources
    assert "airflow_hyperv/example_dags/database_vm_protection.py#howto_protect_vm" in sources
    assert len(sources) >= 10, sorted(sources)


def test_the_command_line_check_passes():
    result = subprocess.run(
        [sys.executable, "-m", "scripts.doc_snippets"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_hand_written_python_blocks_are_not_dag_code_and_their_imports_resolve():
    """The Python blocks left hand-written (the import index, the hook's API): each imports what it
    names from where it says."""
    left = [
        b
        for doc in doc_snippets.docs(ROOT)
        for b in doc_snippets.blocks(doc)
        if b.source is None and b.lang == "python"
    ]
    assert left, "expected the hand-written import index and hook example"
    for block in left:
        assert not doc_snippets.looks_like_dag_code(block.body), f"{block.doc}:{block.line}"
        for node in ast.walk(ast.parse(block.body)):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), (
                        f"{block.doc}:{block.line}: {node.module}.{alias.name}"
                    )


# --- positive controls: a copy of the docs and example DAGs, changed on purpose ---------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copy2(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.png"))
    shutil.copytree(
        ROOT / "airflow_hyperv" / "example_dags",
        tmp_path / "airflow_hyperv" / "example_dags",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    assert doc_snippets.problems(tmp_path) == []
    return tmp_path


def test_an_altered_block_fails_naming_the_doc_and_the_region_and_make_docs_restores_it(tree: Path):
    doc = tree / "docs" / "operators.md"
    original = doc.read_text()
    altered = original.replace('CONN, policy="fallback"', 'CONN, policy="require"', 1)
    assert altered != original
    doc.write_text(altered)
    found = doc_snippets.problems(tree)
    assert len(found) == 1, found
    assert found[0].startswith("docs/operators.md:")
    assert f"{MAINTENANCE}#howto_operator_hyperv_create_checkpoint" in found[0]
    assert "differs" in found[0]
    result = subprocess.run(
        [sys.executable, "-m", "scripts.doc_snippets", "--root", str(tree)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "howto_operator_hyperv_create_checkpoint" in result.stderr
    assert doc_snippets.write(tree) == [doc]
    assert doc.read_text() == original
    assert doc_snippets.problems(tree) == []


def test_a_changed_example_dag_makes_the_doc_stale(tree: Path):
    dag = tree / MAINTENANCE
    dag.write_text(dag.read_text().replace("timeout=600", "timeout=900"))
    found = doc_snippets.problems(tree)
    assert len(found) == 1 and "howto_sensor_hyperv_vm_state" in found[0], found
    doc_snippets.write(tree)
    assert "timeout=900" in (tree / "docs" / "operators.md").read_text()
    assert doc_snippets.problems(tree) == []


def test_hand_written_dag_code_is_refused(tree: Path):
    doc = tree / "docs" / "operations.md"
    doc.write_text(
        doc.read_text()
        + '\n```python\nmerge = HyperVMergeCheckpointOperator(task_id="merge", vm="web-01")\n```\n'
    )
    found = doc_snippets.problems(tree)
    assert len(found) == 1 and found[0].startswith("docs/operations.md:") and "DAG code" in found[0], found


def test_a_marker_naming_a_missing_region_or_file_fails(tree: Path):
    doc = tree / "README.md"
    doc.write_text(
        doc.read_text()
        + f"\n<!-- snippet: {MAINTENANCE}#no_such_region -->\n```python\n```\n"
        + "\n<!-- snippet: airflow_hyperv/example_dags/gone.py#x -->\n```python\n```\n"
        + "\n<!-- snippet: airflow_hyperv/example_dags/gone.py#x -->\nno fence here\n"
    )
    found = doc_snippets.problems(tree)
    assert len(found) == 3, found
    assert "no region 'no_such_region'" in found[1] or "no region 'no_such_region'" in found[0]
    assert any("no such example DAG file" in p for p in found)
    assert any("not followed by a code fence" in p for p in found)


def test_unbalanced_region_comments_fail(tree: Path):
    dag = tree / MAINTENANCE
    dag.write_text(dag.read_text().replace("    # [END howto_operator_hyperv_verify]\n", "", 1))
    found = doc_snippets.problems(tree)
    assert len(found) == 1 and "howto_operator_hyperv_verify" in found[0] and "no [END" in found[0], found
