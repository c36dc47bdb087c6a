"""The run report: one row per VM, from the XComs of one protection run (what each step returned, or
why it failed: ``airflow_hyperv.hyperv.outcomes``), and the fixed-width table a task log prints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_hyperv.hyperv.outcomes import FAILURE_KEY, STEPS
from airflow_hyperv.hyperv.verify import Policy, VerifyReport, decide


def _pull_by_vm(ti: Any, task_id: str, key: str = "return_value") -> dict[str, Any]:
    """Every map index's XCom of ``task_id``, keyed by the VM it is about (each value names its VM)."""
    values = ti.xcom_pull(task_ids=[task_id], key=key) or []
    out: dict[str, Any] = {}
    for value in values:
        if isinstance(value, dict):
            vm = value.get("vm_name") or value.get("vm")
            if vm:
                out[str(vm)] = value
    return out


def row_for(host: str, vm: str, policy: str, pulled: dict[str, Any]) -> dict[str, Any]:
    """One VM's outcome from what its tasks returned (``pulled``: step -> XCom or failure reason)."""
    report = pulled.get("verify")
    made = pulled.get("production_checkpoint") or pulled.get("standard_checkpoint")
    export = pulled.get("export_production") or pulled.get("export_standard")
    merge = pulled.get("merge")
    failures = {k.removesuffix("!"): v for k, v in pulled.items() if k.endswith("!") and v}
    row: dict[str, Any] = {
        "host": host,
        "vm": vm,
        "policy": policy,
        "verdict": report["verdict"] if isinstance(report, dict) else None,
        "consistency": made["consistency"] if made else None,
        "checkpoint": made["checkpoint_name"] if made else None,
        "export_path": export["path"] if export else None,
        "export_bytes": export.get("total_bytes") if export else None,
        # Cleaned up: the merge task ended with no checkpoint of this run left (whichever try removed it).
        "merged": isinstance(merge, dict) and not merge.get("checkpoint_left", True),
        "duration_s": None,
        "outcome": "",
        "reason": "",
    }
    if isinstance(report, dict) and merge and report.get("checked_at") and merge.get("finished_at"):
        started = dt.datetime.fromisoformat(report["checked_at"])
        row["duration_s"] = round(
            (dt.datetime.fromisoformat(merge["finished_at"]) - started).total_seconds(), 1
        )
    if failures:
        step, reason = next(iter(failures.items()))
        row["outcome"], row["reason"] = ("refused" if step == "choose" else f"failed at {step}"), reason
    elif made and (export or not pulled.get("expects_export")):
        kind = (
            "application-consistent"
            if made["consistency"] == "application"
            else "crash-consistent (fallback)"
        )
        row["outcome"] = f"protected, {kind}"
        if made.get("fell_back"):
            row["reason"] = made.get("fallback_reason") or ""
    elif isinstance(report, dict):
        decision = decide(VerifyReport.from_dict(report), Policy.parse(policy))
        row["outcome"] = (
            "skipped" if decision.path == "skip" and not decision.fail_reason else "not protected"
        )
        row["reason"] = "; ".join(VerifyReport.from_dict(report).reasons)
    else:
        row["outcome"] = "not protected"
        row["reason"] = "verification did not run"
    if made and not row["merged"] and "failed" not in row["outcome"]:
        row["outcome"] += " (checkpoint NOT merged)"
    return row


def collect_report(ti: Any, groups: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Rows for every VM of every host group (``(group_id, host name)``) of this DAG run."""
    rows = []
    for group_id, host in groups:
        vms = ti.xcom_pull(task_ids=f"{group_id}_vms") or []
        results = {step: _pull_by_vm(ti, f"{group_id}.{step}") for step in STEPS}
        failures = {step: _pull_by_vm(ti, f"{group_id}.{step}", FAILURE_KEY) for step in STEPS}
        for spec in vms:
            vm = spec["vm"]
            pulled: dict[str, Any] = {"expects_export": True}
            for step in STEPS:
                pulled[step] = results[step].get(vm)
                failure = failures[step].get(vm)
                pulled[step + "!"] = failure["reason"] if failure else None
            rows.append(row_for(host, vm, spec["policy"], pulled))
    return rows


def failed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """VMs the run did not protect as their policy asks (a skip by policy is not a failure)."""
    return [r for r in rows if not (r["outcome"].startswith("protected") or r["outcome"] == "skipped")
            or "NOT merged" in r["outcome"]]  # fmt: skip


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "export_bytes":
        return f"{int(value) / 2**30:.1f} GiB"
    return str(value)


def render_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table a human reads in a terminal or a task log."""
    columns = [("host", "HOST"), ("vm", "VM"), ("policy", "POLICY"), ("outcome", "OUTCOME"),
               ("checkpoint", "CHECKPOINT"), ("export_path", "EXPORT"), ("export_bytes", "SIZE"),
               ("duration_s", "SECONDS")]  # fmt: skip
    cells = [[_cell(k, r.get(k)) for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row, c in zip(rows, cells, strict=True):
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        if row.get("reason"):
            lines.append(f"    why: {row['reason']}")
    return "\n".join(lines)
