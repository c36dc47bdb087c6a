"""DAG parse time of the example DAGs, and import time of ``airflow_hyperv`` and each of its layers.

Measured three ways, each against a trivial baseline DAG file (one ``EmptyOperator``) measured the
same way in the same run:

* **in-process**: this process imports ``airflow.sdk`` once, then executes each DAG file
  (``runpy.run_path``, as the DAG processor executes a file) ``--repeat`` times; the median is
  reported. Modules the file imports are cached after the first run, so this is the cost of building
  the DAG objects.
* **fresh interpreter**: ``--runs`` subprocesses per file, each ``import airflow.sdk`` (timed apart,
  not counted) and then the file once: what a cold parse of the file costs beyond Airflow itself,
  imports of this provider included. Median of the runs.
* **importtime**: one more subprocess per file under ``python -X importtime``; the sum of the
  "self" times of every module imported while the file ran (after ``airflow.sdk``).

Layers: each module below imported alone in a fresh interpreter after ``airflow.sdk`` (median of
``--runs``). And, with no assertion: the transport modules (pypsrp, the hooks, the emulator, ...)
any DAG file pulls in at parse time, printed.

Run: ``.venv/bin/python -m bench.parse`` (``--repeat``, ``--runs``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from bench.common import cli, header, median, print_table

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted(p for p in EXAMPLE_DAGS.glob("*.py") if p.name != "__init__.py")
BASELINE_NAME = "baseline_empty_dag.py"
BASELINE_DAG = '''"""The baseline: one DAG, one EmptyOperator."""
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="baseline_empty", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    EmptyOperator(task_id="nothing")
'''
LAYERS = (
    "airflow_hyperv",
    "airflow_hyperv.hyperv.records",
    "airflow_hyperv.hyperv.pipelines",
    "airflow_hyperv.hyperv.verify",
    "airflow_hyperv.authoring.inventory",
    "airflow_hyperv.authoring.protect",
    "airflow_hyperv.sensors.vm",
    "airflow_hyperv.triggers.hyperv",
    "airflow_hyperv.hooks.hyperv",
    "airflow_hyperv.hooks.async_hyperv",
    "hyperv_emulator.api",
)
# Transport (and emulator) modules no DAG file should need at parse time.
TRANSPORT = (
    "pypsrp",
    "spnego",
    "requests",
    "airflow_hyperv.hooks.transport",
    "airflow_hyperv.hooks.base",
    "airflow_hyperv.hooks.hyperv",
    "airflow_hyperv.hooks.disconnected",
    "hyperv_emulator",
)

# Runs in the fresh interpreter: time ``import airflow.sdk`` and then the file (or module), report JSON.
CHILD = r"""
import json, runpy, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
before = set(sys.modules)
sys.stderr.write("-- bench.parse: airflow.sdk imported --\n")
sys.stderr.flush()
kind, target = sys.argv[1], sys.argv[2]
if kind == "file":
    runpy.run_path(target, run_name="bench_parse_dag")
else:
    __import__(target)
t2 = time.perf_counter()
watch = json.loads(sys.argv[3])
new = set(sys.modules) - before
print(json.dumps({
    "sdk_s": t1 - t0,
    "target_s": t2 - t1,
    "new_modules": len(new),
    "transport": sorted(m for m in watch if any(n == m or n.startswith(m + ".") for n in new)),
}))
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_child(kind: str, target: str, *, importtime: bool = False) -> tuple[dict[str, Any], str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CHILD, kind, target,
           json.dumps(TRANSPORT)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {target} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def importtime_total(stderr: str) -> float:
    """Seconds: the sum of "self" import times after the marker (modules the target imported)."""
    after = stderr.split("-- bench.parse: airflow.sdk imported --", 1)[-1]
    total_us = 0
    for line in after.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us = line.split(":", 1)[1].split("|", 1)[0].strip()
            if self_us.isdigit():
                total_us += int(self_us)
    return total_us / 1e6


@contextlib.contextmanager
def baseline_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        path = Path(tmp) / BASELINE_NAME
        path.write_text(BASELINE_DAG)
        yield path


def in_process(path: Path, repeat: int) -> float:
    """Median seconds to execute the file, after one unmeasured run (imports cached)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        runpy.run_path(str(path), run_name="bench_parse_dag")
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            runpy.run_path(str(path), run_name="bench_parse_dag")
            times.append(time.perf_counter() - started)
    return median(times)


def measure_files(files: Sequence[Path], *, repeat: int = 20, runs: int = 5) -> list[dict[str, Any]]:
    import airflow.sdk  # noqa: F401  (in-process numbers start after Airflow is imported)

    rows = []
    for path in files:
        fresh = [run_child("file", str(path))[0] for _ in range(runs)]
        _, stderr = run_child("file", str(path), importtime=True)
        rows.append({
            "dag_file": path.name,
            "in_process_ms": round(in_process(path, repeat) * 1000.0, 2),
            "fresh_ms": round(median(r["target_s"] for r in fresh) * 1000.0, 1),
            "importtime_ms": round(importtime_total(stderr) * 1000.0, 1),
            "airflow_sdk_ms": round(median(r["sdk_s"] for r in fresh) * 1000.0, 1),
            "new_modules": fresh[0]["new_modules"],
            "transport_imported": ", ".join(fresh[0]["transport"]) or "none",
        })  # fmt: skip
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = next((r for r in rows if r["dag_file"] == BASELINE_NAME), None)
    if base is None:
        return rows
    for row in rows:
        for key in ("in_process_ms", "fresh_ms", "importtime_ms"):
            ref = base[key]
            row[key.replace("_ms", "_vs_baseline")] = round(row[key] / ref, 2) if ref else "n/a"
    return rows


def measure_layers(layers: Sequence[str] = LAYERS, *, runs: int = 5) -> list[dict[str, Any]]:
    rows = []
    for module in layers:
        fresh = [run_child("module", module)[0] for _ in range(runs)]
        _, stderr = run_child("module", module, importtime=True)
        rows.append({
            "module": module,
            "import_ms": round(median(r["target_s"] for r in fresh) * 1000.0, 1),
            "importtime_ms": round(importtime_total(stderr) * 1000.0, 1),
            "new_modules": fresh[0]["new_modules"],
            "transport_imported": ", ".join(fresh[0]["transport"]) or "none",
        })  # fmt: skip
    return rows


FILE_COLUMNS = (
    "dag_file", "in_process_ms", "in_process_vs_baseline", "fresh_ms", "fresh_vs_baseline",
    "importtime_ms", "importtime_vs_baseline", "airflow_sdk_ms", "new_modules",
)  # fmt: skip


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=20, help="in-process parses per file (median)")
    parser.add_argument("--runs", type=int, default=3, help="fresh interpreters per file / layer (median)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer import times")


def main(argv: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    args = cli("bench.parse", __doc__, argv, options)
    header("DAG parse time and import time")
    print(
        f"In-process: median of {args.repeat} after one unmeasured run; fresh interpreter: median of {args.runs}."
    )
    with baseline_file() as baseline:
        files = add_ratios(measure_files([baseline, *DAG_FILES], repeat=args.repeat, runs=args.runs))
    print_table(files, FILE_COLUMNS, title="DAG files (ratios vs the one-EmptyOperator baseline)")
    print("\nTransport modules imported while parsing (none expected; printed, not asserted):")
    for row in files:
        print(f"* {row['dag_file']}: {row['transport_imported']}")
    layers: list[dict[str, Any]] = []
    if not args.no_layers:
        layers = measure_layers(runs=args.runs)
        print_table(layers, title="Import time of each layer, alone, after airflow.sdk")
    return files, layers


if __name__ == "__main__":
    main()
