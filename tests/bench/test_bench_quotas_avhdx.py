"""bench.avhdx's arithmetic on a hand-made audit log, and the quota verdict of the fleet benches.

Only the arithmetic and the matching of entries are checked, never measured timings."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from hyperv_emulator.cmdlets.audit import AuditEntry

ROOT = Path(__file__).resolve().parents[2]  # bench/ is not installed: import it from the checkout
VM_A, VM_B = "11111111-0000-0000-0000-000000000001", "11111111-0000-0000-0000-000000000002"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return lambda name: importlib.import_module(f"bench.{name}")


def entry(seq: int, cmdlet: str, vm: str, cp: str, start: float, end: float) -> AuditEntry:
    e = AuditEntry(seq, start, "hv-00", "admin", cmdlet, {}, targets=[vm, cp], outcome="ok")
    e.ended = end
    return e


def fake_emulator(entries: list[AuditEntry], merges: list[tuple[str, float, float]]) -> SimpleNamespace:
    """What bench.avhdx reads of an Emulator: its clock's scale, its VMs, its audit log, its merges."""
    vms = [SimpleNamespace(id=VM_A, name="vm-a"), SimpleNamespace(id=VM_B, name="vm-b")]
    host = SimpleNamespace(vms=lambda: vms, merges=SimpleNamespace(history=merges))
    return SimpleNamespace(
        clock=SimpleNamespace(time_scale=2.0),
        fleet=SimpleNamespace(hosts={"hv-00": host}),
        audit=SimpleNamespace(entries=lambda: entries),
    )


def test_each_vms_gaps_export_and_merge_come_from_its_checkpoints_entries(bench):
    avhdx = bench("avhdx")
    entries = [
        entry(1, "Checkpoint-VM", VM_A, "cp-a", 100, 104),
        entry(2, "Checkpoint-VM", VM_B, "cp-b", 100, 106),
        entry(3, "Export-VMSnapshot", VM_A, "cp-a", 110, 150),  # gap 6 emulated = 3 s
        entry(4, "Export-VMSnapshot", VM_B, "cp-b", 146, 186),  # gap 40 = 20 s: over the target
        entry(5, "Remove-VMSnapshot", VM_A, "cp-a", 154, 154),
        entry(6, "Remove-VMSnapshot", VM_B, "cp-b", 190, 190),
    ]
    emu = fake_emulator(entries, [("vm-a", 10, 20), ("vm-a", 154, 160), ("vm-b", 190, 194)])

    rows = {r["vm"]: r for r in avhdx.timelines(emu)}

    assert rows["vm-a"] == {
        "vm": "vm-a", "gap_checkpoint_to_export_s": 3.0, "export_s": 20.0, "gap_export_to_merge_s": 2.0,
        "merge_s": 3.0, "avhdx_life_s": 28.0, "gaps_s": 5.0,
    }  # fmt: skip
    assert rows["vm-b"]["gaps_s"] == 22.0
    assert "NOT met" in avhdx.verdict(list(rows.values()), 2)  # vm-b's 22 s of gaps
    assert "met" in avhdx.verdict([rows["vm-a"]], 1) and "NOT" not in avhdx.verdict([rows["vm-a"]], 1)
    # a chain not finished (no merge yet) is left out, and the verdict says so
    assert [r["vm"] for r in avhdx.timelines(fake_emulator(entries[:5], [("vm-a", 154, 160)]))] == ["vm-a"]
    assert "1 of 2" in avhdx.verdict([rows["vm-a"]], 2) and "NOT met" in avhdx.verdict([rows["vm-a"]], 2)
    summary = {s["per VM"]: s for s in avhdx.summary(list(rows.values()))}
    assert summary["gaps_s"]["max"] == 22.0 and summary["export_s"]["median"] == 20.0


def test_a_peak_over_a_quota_or_any_quota_fault_is_not_within_the_quotas(bench):
    common = bench("common")
    base = {
        "host": "hv-00", "user": "admin", "peak_shells": 4, "max_shells_per_user": 30,
        "plugin_max_shells_per_user": 25, "peak_operations": 3, "max_operations_per_user": 1500, "quota_faults": 0,
    }  # fmt: skip
    assert common.quota_rows(100, [base])[0]["within_quotas"] == "yes"
    for worse in ({"peak_shells": 26}, {"peak_operations": 1501}, {"quota_faults": 1}):
        assert common.quota_rows(100, [base | worse])[0]["within_quotas"] == "**NO**", worse


def test_single_host_mode_puts_100_vms_on_one_host(bench):
    common = bench("common")
    parser = argparse.ArgumentParser()
    common.fleet_options(parser)
    args = common.fleet_shape(parser.parse_args(["--single-host"]))
    assert (args.hosts, args.sizes) == (1, [100])
    args = common.fleet_shape(parser.parse_args([]))
    assert (args.hosts, args.sizes) == (10, [10, 100])


def test_a_process_trees_cpu_seconds_include_its_waited_children():
    import os
    import subprocess
    import sys

    from bench.common import tree_cpu_seconds

    assert tree_cpu_seconds([2**22 + 7]) == 0.0  # no such process: nothing
    from bench.common import tree_cpu_split

    children_before = os.times().children_user + os.times().children_system
    before = tree_cpu_seconds([os.getpid()])
    reaped_before = tree_cpu_split(os.getpid())[2]
    # A child that works and is waited for: its time moves into this process's cutime/cstime.
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    child = os.times().children_user + os.times().children_system - children_before
    assert child > 0  # positive control: the child's time is visible at all
    assert tree_cpu_seconds([os.getpid()]) >= before + child - 0.05  # counted, to within a few clock ticks
    assert tree_cpu_split(os.getpid())[2] >= reaped_before + child - 0.05  # as an ended child, not as ours
    assert tree_cpu_split(2**22 + 7) == (0.0, 0.0, 0.0)


def test_the_baseline_comparison_puts_each_figure_and_the_gaps_side_by_side():
    from bench.fleet_airflow import BASELINE_CONFIG, compare

    assert BASELINE_CONFIG == {
        "AIRFLOW__HYPERV__MERGE_DEFER_AFTER": "0",
        "AIRFLOW__HYPERV__EXPORT_RESUME_BEFORE_END": "0",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",  # Airflow's own: task processes start cold
    }
    figures = {
        "makespan_s": 100.0,
        "makespan_over_bound": 2.0,
        "airflow_cpu_s_per_vm": 10.0,
        "sum_task_durations_s": 800.0,
    }
    before = {"vms": 10, **figures, "avhdx": [{"gaps_s": g} for g in (10.0, 20.0, 30.0)]}
    now = {
        "vms": 10,
        **{k: v / 2 for k, v in figures.items()},
        "avhdx": [{"gaps_s": g} for g in (5.0, 6.0, 9.0)],
    }
    rows = {r["figure"]: r for r in compare([before], [now])}
    assert rows["makespan_s"] == {
        "vms": 10,
        "figure": "makespan_s",
        "baseline": 100.0,
        "now": 50.0,
        "now / baseline": 0.5,
    }
    assert (
        rows["AVHDX gaps per VM, median s"]["baseline"] == 20.0
        and rows["AVHDX gaps per VM, median s"]["now"] == 6.0
    )
    assert rows["AVHDX gaps per VM, max s"]["now / baseline"] == 0.3
