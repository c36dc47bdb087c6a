"""A restore test takes the newest export of *its* host: VM names and even Ids repeat across hosts."""

from __future__ import annotations

import types

from airflow_hyperv.operators.restore_verification import newest_export


def event(host: str, path: str, ts: str) -> types.SimpleNamespace:
    extra = {"vm_id": "6f1f2b52-43d5-4c55-9d36-1b2a0e9a7c01", "vm_name": "twin", "host": host, "path": path,
             "files": [{"path": "x", "length": 1, "sha256": "AA"}]}  # fmt: skip
    return types.SimpleNamespace(extra=extra, timestamp=ts)


def test_newest_export_of_one_host():
    events = [event("hv-01", "p-hv-01", "2026-03-10T01:00"), event("hv-02", "p-hv-02", "2026-03-10T02:00")]
    assert newest_export(events, "twin")["path"] == "p-hv-02"
    assert newest_export(events, "twin", "HV-01")["path"] == "p-hv-01"
    assert newest_export(events, "twin", "hv-03") is None
