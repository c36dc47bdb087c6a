"""How long each VM runs on its checkpoint's AVHDX (issue 13, target 2), from the emulator's audit log.

The AVHDX lives from Checkpoint-VM's end until its merge completes: the export, the merge, and the gaps
between the tasks (checkpoint end -> export start, export end -> merge start). The gaps are what the
provider's scheduling adds; the export and the merge are Hyper-V's work. Real seconds: the emulated
times divided by the emulator's time scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# The target of issue 13 (target 2): at most this many seconds of gaps per VM.
GAP_TARGET_S = 10.0


def timelines(emu: Any, since: float = float("-inf")) -> list[dict[str, Any]]:
    """One row per checkpoint taken since ``since`` (emulated seconds) that was exported and merged:
    its VM and the four spans, in real seconds. A chain not finished is left out (counted by caller)."""
    scale = float(emu.clock.time_scale)
    names = {str(vm.id).lower(): vm.name for host in emu.fleet.hosts.values() for vm in host.vms()}
    done = [e for e in emu.audit.entries() if e.outcome == "ok" and e.ended is not None and e.time >= since]

    def by_checkpoint(cmdlet: str) -> dict[str, Any]:
        first: dict[str, Any] = {}
        for e in done:
            if e.cmdlet == cmdlet and len(e.targets) >= 2:
                first.setdefault(e.targets[1].lower(), e)
        return first

    exports, removes = by_checkpoint("Export-VMSnapshot"), by_checkpoint("Remove-VMSnapshot")
    rows: list[dict[str, Any]] = []
    for cp in done:
        if cp.cmdlet != "Checkpoint-VM" or len(cp.targets) < 2:
            continue
        cp_id, vm = cp.targets[1].lower(), names.get(cp.targets[0].lower(), cp.targets[0])
        export, remove = exports.get(cp_id), removes.get(cp_id)
        if export is None or remove is None:
            continue
        merges = [
            m for m in emu.fleet.hosts[remove.host].merges.history if m[0] == vm and m[1] >= remove.time
        ]
        if not merges:
            continue
        _, merge_start, merge_end = min(merges, key=lambda m: m[1])
        rows.append({
            "vm": vm,
            "gap_checkpoint_to_export_s": (export.time - cp.ended) / scale,
            "export_s": (export.ended - export.time) / scale,
            "gap_export_to_merge_s": (merge_start - export.ended) / scale,
            "merge_s": (merge_end - merge_start) / scale,
            "avhdx_life_s": (merge_end - cp.ended) / scale,
        })  # fmt: skip
    for row in rows:
        row["gaps_s"] = row["gap_checkpoint_to_export_s"] + row["gap_export_to_merge_s"]
    return rows


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


SPANS = (
    "gaps_s",
    "gap_checkpoint_to_export_s",
    "gap_export_to_merge_s",
    "export_s",
    "merge_s",
    "avhdx_life_s",
)


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median, p90 and max of each span over the VMs (one row per span)."""
    out = []
    for span in SPANS:
        values = [r[span] for r in rows]
        if not values:
            continue
        out.append({
            "per VM": span,
            "median": round(percentile(values, 50), 1),
            "p90": round(percentile(values, 90), 1),
            "max": round(max(values), 1),
        })  # fmt: skip
    return out


def verdict(rows: Sequence[dict[str, Any]], vms: int) -> str:
    """One line: the chains measured and whether every VM's gaps met the target."""
    if not rows:
        return f"no VM finished its checkpoint -> export -> merge chain (of {vms})"
    worst = max(r["gaps_s"] for r in rows)
    met = "met" if worst <= GAP_TARGET_S and len(rows) == vms else "NOT met"
    return (
        f"{len(rows)} of {vms} VMs finished the chain; gaps per VM at most {worst:.1f} s against the target of "
        f"<= {GAP_TARGET_S:.0f} s: {met}"
    )
