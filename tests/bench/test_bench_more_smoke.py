"""Tiny runs of bench.cycle, bench.triggerer, bench.parse and bench.fleet's arithmetic.

Only shapes and counts are checked, never timings (they belong to docs/performance.md)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # bench/ is not installed: import it from the checkout


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return lambda name: importlib.import_module(f"bench.{name}")


def test_cycle_counts_every_variant_and_step(bench):
    cycle = bench("cycle")

    rows = cycle.measure("basic", iterations=1, warmup=0)

    assert [r["variant"] for r in rows] == ["hyperv_operators", "psrp_operators", "pypsrp_floor"]
    by_variant = {r["variant"]: r for r in rows}
    for row in rows:
        for key in ("pools", "pipelines", "wsman_requests", "http_requests"):
            assert isinstance(row[key], int) and row[key] > 0, (row["variant"], key, row[key])
        assert all(isinstance(row[f"{step}_wsman"], int) and row[f"{step}_wsman"] > 0 for step in cycle.STEPS)
        assert row["wsman_vs_floor"] > 0 and row["wsman_vs_psrp"] > 0
        for step in cycle.STEPS:  # the itemisation lists every pipeline the step ran, one line each
            assert len(row["pipelines_by_step"][step]) == int(row[f"{step}_pools_pipelines"].split("/")[1])
    assert by_variant["pypsrp_floor"]["pools"] == 1 and by_variant["pypsrp_floor"]["pipelines"] == 4
    assert by_variant["psrp_operators"]["pools"] == 4  # one PsrpHook per operator


def test_triggerer_runs_every_path_and_every_wait_fires(bench):
    triggerer = bench("triggerer")

    rows = triggerer.measure(
        waits=10, hosts=2, vms_per_host=5, poll_interval=0.2, settle=0.3, window=0.8, deadline=15
    )

    assert [r["path"] for r in rows] == ["shared", "lockstep", "standalone"]
    for row in rows:
        assert row["fired"] == "10/10", row
        assert row["host_polls_per_s"] > 0
        assert math.isfinite(row["loop_lag_p99_ms"]), row  # NaN: the loop-lag ticker never measured
        assert isinstance(row["poll_gap_min_ms"], float), row  # host poll starts were noted
        assert isinstance(row["fire_p99_s"], float), row
    shared, lockstep, alone = rows
    assert shared["poll_loops"] == lockstep["poll_loops"] == 2 and alone["poll_loops"] == 10
    assert shared["pools_opened"] == lockstep["pools_opened"] == 2 and alone["pools_opened"] == 10
    ratios = triggerer.add_ratios(rows)
    assert {r["measure"] for r in ratios} >= {"host_polls_per_s", "loop_lag_p99_ms", "poll_gap_min_ms"}
    assert all({"shared_vs_lockstep", "shared_vs_standalone"} <= set(r) for r in ratios)


def test_parse_measures_a_dag_file_and_reports_transport_imports(bench):
    parse = bench("parse")

    with parse.baseline_file() as baseline:
        rows = parse.add_ratios(parse.measure_files([baseline], repeat=1, runs=1))

    (row,) = rows
    assert row["dag_file"] == parse.BASELINE_NAME and row["new_modules"] > 0
    assert row["in_process_ms"] > 0 and row["fresh_ms"] > 0 and row["in_process_vs_baseline"] == 1.0
    assert row["transport_imported"] == "none"


def test_fleet_bounds_arithmetic(bench):
    fleet = bench("fleet")

    assert [len(names) for names in fleet.layout(10, 100)] == [10] * 10
    assert sum(len(h["vms"]) for h in fleet.fleet(3, 10)["hosts"]) == 10
    assert fleet.hyperv_bound(10, 100, 2) == pytest.approx(5 * fleet.hyperv_bound(10, 10, 1) / 1)
    tasks = [
        {"task_id": "host_hv_00.verify", "map_index": i, "pool": "p0", "duration": 1.0, "state": "success"}
        for i in range(4)
    ] + [{"task_id": "host_hv_00_vms", "map_index": -1, "pool": "default_pool", "duration": 0.5, "state": "success"},
         {"task_id": "report", "map_index": -1, "pool": "default_pool", "duration": 0.25, "state": "success"}]  # fmt: skip
    assert fleet.measured_bound(tasks, 2) == pytest.approx(4 / 2 + 0.5 + 0.25)


def test_fleet_cluster_mode_builds_one_cluster_and_its_migrator_moves_vms(bench, tmp_path):
    from airflow_hyperv.authoring.inventory import parse
    from hyperv_emulator.api import Emulator
    from hyperv_emulator.model import ManualClock

    fleet = bench("fleet")
    inventory = parse(fleet.cluster_inventory(10, 4))
    assert [(h.name, h.conn_id, h.pool, h.pool_slots) for h in inventory.hosts] == [
        ("hvc-01", "hyperv_hvc_01", "hyperv_hvc_01", 4)
    ]
    emu = Emulator(fleet.cluster_fleet(10), root_dir=tmp_path / "hosts", clock=ManualClock())  # not started
    cluster = emu.cluster()
    assert sorted(g.name for g in cluster.groups.values()) == sorted(v["vm"] for v in inventory.hosts[0].vms)
    assert sorted({g.owner for g in cluster.groups.values()}) == list(fleet.NODES)
    # The emulated clock never moves: each migration stays in flight, so the next turn's VM is another.
    with fleet.Migrator(emu, every=0.0, limit=3) as migrator:
        migrator.thread.join()
    moving = [g.name for g in cluster.groups.values() if g.migration is not None]
    assert migrator.made == 3 and migrator.refused == 0 and len(moving) == 3
    # A VM still moving is not moved again: the next one is (positive control for "refused").
    with fleet.Migrator(emu, every=0.0, limit=7) as more:
        more.thread.join()
    assert more.made == 7 and more.refused == 3
    assert all(g.migration is not None for g in cluster.groups.values())
