"""The request-count bench runs: one iteration of the hook and of the pypsrp floor, Basic auth.

Only shapes and counts are checked here, never timings (they belong to docs/performance.md)."""

from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # bench/ is not installed: import it from the checkout

EXPECTED_KEYS = {
    "auth", "variant", "runs", "pools", "pipelines", "cmdlets",
    "wsman_requests", "http_requests", "by_action", "wall_ms_median",
    "wsman_vs_floor", "http_vs_floor", "wall_vs_floor",
}  # fmt: skip


def test_hook_and_floor_are_measured(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    hook_requests = importlib.import_module("bench.hook_requests")

    rows = hook_requests.measure("basic", variants=("hyperv_hook", "pypsrp_floor"), iterations=1, warmup=0)

    assert [r["variant"] for r in rows] == ["hyperv_hook", "pypsrp_floor"]
    for row in rows:
        assert set(row) >= EXPECTED_KEYS, EXPECTED_KEYS - set(row)
        assert row["auth"] == "basic" and row["runs"] == 1
        for key in ("pools", "pipelines", "cmdlets", "wsman_requests", "http_requests"):
            assert isinstance(row[key], int) and row[key] > 0, (key, row[key])
