"""The protection report keeps two hosts' VMs apart even when they share a VM Id."""

from __future__ import annotations

import datetime as dt
import types

from airflow_hyperv.reporting.fleet_report import collect

NOW = dt.datetime(2026, 3, 10, 8, 0, tzinfo=dt.timezone.utc)


def export_event(host: str) -> types.SimpleNamespace:
    extra = {
        "vm_id": "6f1f2b52-43d5-4c55-9d36-1b2a0e9a7c01", "vm_name": "twin", "host": host,
        "consistency": "application", "total_bytes": 10, "tested_at": None,
        "checkpoint_name": "airflow-hyperv 20260310T0100Z 0123456789ab",
        "path": f"\\\\backup01\\exports\\{host}\\6f1f2b52-43d5-4c55-9d36-1b2a0e9a7c01\\20260310T0100Z-0123456789ab",
        "files": [{"path": "x", "length": 1, "sha256": "AA"}],
    }  # fmt: skip
    return types.SimpleNamespace(extra=extra, timestamp=NOW - dt.timedelta(hours=2))


def test_same_vm_id_on_two_hosts_is_two_rows():
    rows = collect([export_event("hv-01")], [], now=NOW, expected_vms=[("hv-01", "twin"), ("hv-02", "twin")])
    by_host = {r.host: r for r in rows}
    assert set(by_host) == {"hv-01", "hv-02"}
    assert by_host["hv-01"].last_export is not None
    assert by_host["hv-02"].last_export is None and "no verified export" in by_host["hv-02"].problems
