"""Run every benchmark: ``make bench`` (``python -m bench.run``, a few minutes); the slow ones with
``make bench-slow`` (``python -m bench.run --slow``, about half an hour on 2 cores)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from bench.common import cli

# (module, argv): each module has ``main(argv)``; add new benchmarks here.
MODULES: Sequence[tuple[str, Sequence[str]]] = (
    ("bench.hook_requests", ()),
    ("bench.cycle", ()),
    ("bench.parse", ("--runs", "1", "--no-layers")),  # the quick pass; the full one is slow
)
# Slower than ~2 minutes each on 2 cores: parse with 3 fresh interpreters per file and the layers
# (~3-6 min), 1,000 deferred waits in one loop (~3 min), the fleet makespan (~15 min), the fleet
# makespan on real Airflow (PostgreSQL, scheduler, triggerer: ~15 min), each again with 100 VMs on one host.
SLOW_MODULES: Sequence[tuple[str, Sequence[str]]] = (
    ("bench.parse", ()),
    ("bench.triggerer", ()),
    ("bench.fleet", ()),
    ("bench.fleet_airflow", ()),
    # The waits of issue 13 against a deployment where merges defer at once and exports are handed back
    # only at their end, in the same run (~7 min): makespan, Airflow CPU per VM, AVHDX gaps, ratios.
    ("bench.fleet_airflow", ("--sizes", "10", "--baseline")),
    # 100 VMs on one host: the WinRM quota peaks (docs/performance.md); sequential, then real Airflow
    # cut at 10 min (time_scale 20: Airflow's per-task cost, not Hyper-V, is what runs long).
    ("bench.fleet", ("--single-host",)),
    ("bench.fleet_airflow", ("--single-host", "--time-scale", "20", "--deadline", "600")),
)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slow", action="store_true", help="run the slow benchmarks instead")


def main(argv: Sequence[str] | None = None) -> None:
    args = cli("bench.run", __doc__, argv, options)
    for name, module_argv in SLOW_MODULES if args.slow else MODULES:
        importlib.import_module(name).main(list(module_argv))


if __name__ == "__main__":
    main()
