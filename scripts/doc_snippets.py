"""Keep the DAG code in the Markdown docs identical to regions of the tested example DAGs.

An example DAG marks a region the way first-party Airflow providers do (their docs include it with
Sphinx ``exampleinclude``)::

    # [START howto_operator_hyperv_verify]
    verify = HyperVVerifyOperator(...)
    # [END howto_operator_hyperv_verify]

A Markdown file (README.md, docs/*.md) pulls a region with an HTML comment right before a fence::

    <!-- snippet: airflow_hyperv/example_dags/maintenance_checkpoint.py#howto_operator_hyperv_verify -->
    ```python
    ...the region, dedented...
    ```

``python -m scripts.doc_snippets`` checks (exit status 1 and one line per problem, naming the doc,
its line, the file and the region); ``--write`` (``make docs``) rewrites every marked block from its
region. A Python block without a marker that looks like DAG code (an operator or a DAG built, ``>>``,
``@task``, ``protect_vm(``...) is a problem too: DAG code in the docs comes from a tested DAG.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION_DIRS = ("airflow_hyperv/example_dags",)

_START = re.compile(r"^\s*# \[START (?P<name>[A-Za-z0-9_]+)\]\s*$")
_END = re.compile(r"^\s*# \[END (?P<name>[A-Za-z0-9_]+)\]\s*$")
_MARKER = re.compile(r"^<!-- snippet: (?P<path>[^#\s]+)#(?P<region>[A-Za-z0-9_]+) -->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>```+)(?P<lang>[\w+-]*)\s*$")
# What makes a Python block DAG code: a DAG, an operator, a sensor or a task group built, a
# dependency, a task decorator, the provider's authoring helpers.
_DAG_CODE = re.compile(
    r"\bDAG\(|\b\w+(?:Operator|Sensor)\(|>>|<<|@task|\bprotect_vm\(|\bbuild_protection_chain\("
    r"|\.as_teardown\(|\bAssetWatcher\("
)


class SnippetError(Exception):
    """A region marked wrongly in an example DAG."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    body: str  # the text between the fences, ending with a newline (or empty)
    start: int  # index (0-based) of the first body line
    end: int  # index of the closing fence
    source: str | None  # "path#region" of the marker right before the fence


def docs(root: Path = ROOT) -> list[Path]:
    """The Markdown files whose blocks are checked: README.md and docs/*.md."""
    found = [root / "README.md"] if (root / "README.md").exists() else []
    return found + sorted((root / "docs").glob("*.md"))


def regions(path: Path) -> dict[str, str]:
    """The ``# [START name]`` / ``# [END name]`` regions of one file, each dedented."""
    found: dict[str, str] = {}
    open_: dict[str, tuple[int, list[str]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if m := _START.match(line):
            name = m["name"]
            if name in open_ or name in found:
                raise SnippetError(f"{path}:{number}: region {name!r} started twice")
            open_[name] = (number, [])
            continue
        if m := _END.match(line):
            name = m["name"]
            if name not in open_:
                raise SnippetError(f"{path}:{number}: [END {name}] without its [START {name}]")
            _, lines = open_.pop(name)
            found[name] = textwrap.dedent("".join(lines))
            continue
        for _, lines in open_.values():
            lines.append(line + "\n")
    if open_:
        name, (number, _) = next(iter(open_.items()))
        raise SnippetError(f"{path}:{number}: region {name!r} has no [END {name}]")
    return {name: text.strip("\n") + "\n" for name, text in found.items()}


def all_regions(root: Path = ROOT) -> dict[str, dict[str, str]]:
    """Every region of the example DAGs, by file path relative to ``root``."""
    out: dict[str, dict[str, str]] = {}
    for folder in REGION_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[path.relative_to(root).as_posix()] = regions(path)
    return out


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, with the snippet marker that precedes each, if any."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        close = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == m["ticks"]),
            None,
        )
        if close is None:
            break  # an unclosed fence: nothing after it is a block
        source = None
        if i > 0 and (marker := _MARKER.match(lines[i - 1])):
            source = f"{marker['path']}#{marker['region']}"
        body = "".join(line + "\n" for line in lines[i + 1 : close])
        found.append(Block(doc, i + 1, m["lang"], body, i + 1, close, source))
        i = close + 1
    return found


def looks_like_dag_code(body: str) -> bool:
    return bool(_DAG_CODE.search(body))


def problems(root: Path = ROOT) -> list[str]:
    """Every way the docs and the example DAGs disagree, one line each (empty: all in step)."""
    try:
        known = all_regions(root)
    except SnippetError as e:
        return [str(e)]
    out: list[str] = []
    for doc in docs(root):
        rel = doc.relative_to(root).as_posix()
        text = doc.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(text, 1):
            if _MARKER.match(line) and not (number < len(text) and _FENCE.match(text[number])):
                out.append(f"{rel}:{number}: a snippet marker not followed by a code fence")
        for block in blocks(doc):
            where = f"{rel}:{block.line}"
            if block.source is None:
                if block.lang in ("python", "py") and looks_like_dag_code(block.body):
                    out.append(
                        f"{where}: DAG code not pulled from an example DAG (mark a region in "
                        f"airflow_hyperv/example_dags/ and put <!-- snippet: <file>#<region> --> before the fence)"
                    )
                continue
            path, region = block.source.split("#", 1)
            if path not in known:
                out.append(f"{where}: {block.source}: no such example DAG file")
            elif region not in known[path]:
                out.append(f"{where}: {block.source}: no region {region!r} in {path}")
            elif block.body != known[path][region]:
                out.append(
                    f"{where}: differs from {block.source} (run `make docs` to rewrite it from the region)"
                )
    return out


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite every marked block from its region; returns the docs that changed."""
    known = all_regions(root)
    changed: list[Path] = []
    for doc in docs(root):
        lines = doc.read_text(encoding="utf-8").splitlines(keepends=True)
        edits = []
        for block in blocks(doc):
            if block.source is None:
                continue
            path, region = block.source.split("#", 1)
            text = known.get(path, {}).get(region)
            if text is None:
                raise SnippetError(f"{doc}:{block.line}: {block.source}: no such region")
            if block.body != text:
                edits.append((block.start, block.end, text))
        for start, end, text in reversed(edits):
            lines[start:end] = [text]
        if edits:
            doc.write_text("".join(lines), encoding="utf-8")
            changed.append(doc)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the marked blocks from their regions")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write:
        for doc in write(args.root):
            print(f"rewrote {doc.relative_to(args.root)}")
    found = problems(args.root)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
