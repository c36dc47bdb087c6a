"""The fleet protection report: per VM the last application-consistent checkpoint, the last verified
export and its age, the last successful restore test, and whether the VM is out of policy — as one
self-contained HTML page with an inline SVG chart (no scripts, no downloads).

Sources are the provider's own asset events (no guessing from the hosts): export events of the
``hyperv-exports`` alias (extra = the verified export's manifest) and restore-test events of the
``hyperv-restore-tests`` alias (extra = the test's result). Pure: no Airflow or transport imports.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_FILE = "protection-report.html"
# What the newest nightly run did with each VM (written by nightly_checkpoint's report task, read here):
# a Variable, because a failed report task publishes no asset event and every component reads Variables.
LAST_OUTCOMES_VARIABLE = "hyperv_last_protection_outcomes"
_STAMP = re.compile(r"\b(\d{8}T\d{4}Z)\b")


@dataclass(frozen=True)
class Policy:
    max_export_age_hours: float = 26.0  # a daily export, with slack
    max_app_consistent_age_hours: float = 7 * 24.0
    max_restore_test_age_days: float = 7.0


@dataclass
class VMProtection:
    host: str
    vm_name: str
    vm_id: str
    last_app_consistent: dt.datetime | None = None
    last_export: dt.datetime | None = None
    last_export_path: str = ""
    last_export_consistency: str = ""
    last_export_bytes: int = 0
    last_restore_test: dt.datetime | None = None
    problems: list[str] = field(default_factory=list)

    def export_age_hours(self, now: dt.datetime) -> float | None:
        return None if self.last_export is None else (now - self.last_export).total_seconds() / 3600

    @property
    def in_policy(self) -> bool:
        return not self.problems


def report_dir() -> Path:
    """Where the report task writes and the plugin view reads: ``$AIRFLOW_HYPERV_REPORT_DIR`` or
    ``$AIRFLOW_HOME/hyperv-reports``."""
    if os.environ.get("AIRFLOW_HYPERV_REPORT_DIR"):
        return Path(os.environ["AIRFLOW_HYPERV_REPORT_DIR"])
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "hyperv-reports"


def _when(event: Any, extra: dict[str, Any]) -> dt.datetime:
    """The checkpoint's time from its provider name (``airflow-hyperv 20260101T0100Z …``), else the
    event's timestamp, else an explicit ``tested_at``."""
    for text in (extra.get("checkpoint_name", ""), extra.get("path", "")):
        m = _STAMP.search(str(text))
        if m:
            return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%MZ").replace(tzinfo=dt.timezone.utc)
    value = extra.get("tested_at") or getattr(event, "timestamp", None)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if value:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def collect(
    export_events: Iterable[Any],
    restore_events: Iterable[Any],
    *,
    now: dt.datetime,
    policy: Policy = Policy(),
    expected_vms: Iterable[tuple[str, str]] = (),
    last_outcomes: Iterable[dict[str, Any]] = (),
) -> list[VMProtection]:
    """One row per VM seen in any event or listed in ``expected_vms`` as (host, name), sorted: a VM
    that was never protected is in the report, with why. ``last_outcomes`` (the nightly report's rows:
    host, vm, outcome, reason) says what its last protection run did when that was not a protection."""
    rows: dict[str, VMProtection] = {}

    def row(extra: dict[str, Any]) -> VMProtection:
        # Per host: a VM Id is not unique across hosts (an import without -GenerateNewId, a replica),
        # and one host's export says nothing about the other host's VM.
        vm_key = str(extra.get("vm_id") or extra.get("vm_name")).lower()
        key = f"{str(extra.get('host', '')).lower()}|{vm_key}"
        if key not in rows:
            rows[key] = VMProtection(str(extra.get("host", "")), str(extra.get("vm_name", "")), vm_key)
        return rows[key]

    for event in export_events:
        extra = dict(getattr(event, "extra", None) or {})
        if not extra.get("files"):
            continue
        r, when = row(extra), _when(event, extra)
        if r.last_export is None or when > r.last_export:
            r.last_export, r.last_export_path = when, str(extra.get("path", ""))
            r.last_export_consistency = str(extra.get("consistency", ""))
            r.last_export_bytes = int(extra.get("total_bytes") or 0)
        if extra.get("consistency") == "application" and (
            r.last_app_consistent is None or when > r.last_app_consistent
        ):
            r.last_app_consistent = when
    for event in restore_events:
        extra = dict(getattr(event, "extra", None) or {})
        if extra.get("outcome") != "restorable":
            continue
        r, when = row(extra), _when(event, {"tested_at": extra.get("tested_at")})
        if r.last_restore_test is None or when > r.last_restore_test:
            r.last_restore_test = when
    for host, name in expected_vms:
        if not any(_same_vm(r, host, name) for r in rows.values()):
            rows[f"{host.lower()}|{name.lower()}"] = VMProtection(host, name, "")
    for r in rows.values():
        for last in last_outcomes:
            outcome = str(last.get("outcome") or "")
            if _same_vm(r, str(last.get("host") or ""), str(last.get("vm") or "")) and not outcome.startswith(
                "protected"
            ):
                reason = str(last.get("reason") or "").strip()
                r.problems.append(f"last protection run: {outcome}" + (f" ({reason})" if reason else ""))
        age = r.export_age_hours(now)
        if age is None:
            r.problems.append("no verified export")
        elif age > policy.max_export_age_hours:
            r.problems.append(f"newest export is {age:.0f} h old (policy {policy.max_export_age_hours:g} h)")
        if r.last_app_consistent is None:
            r.problems.append("no application-consistent checkpoint")
        elif (now - r.last_app_consistent).total_seconds() / 3600 > policy.max_app_consistent_age_hours:
            r.problems.append("application-consistent checkpoint too old")
        if r.last_restore_test is None:
            r.problems.append("never restore-tested")
        elif (now - r.last_restore_test).days > policy.max_restore_test_age_days:
            r.problems.append(f"last restore test {(now - r.last_restore_test).days} days ago")
    return sorted(rows.values(), key=lambda r: (r.in_policy, r.host, r.vm_name.lower()))


def outcome_summary(rows: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The part of the nightly report's rows the fleet report needs (no paths, no sizes)."""
    return [
        {k: str(r.get(k) or "") for k in ("host", "vm", "outcome", "reason")} for r in rows if r.get("vm")
    ]


def _same_vm(row: VMProtection, host: str, name: str) -> bool:
    return row.vm_name.lower() == name.lower() and (
        not row.host or not host or row.host.lower() == host.lower()
    )


# --- HTML ------------------------------------------------------------------------------------------------


def _fmt(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return '<span class="none">never</span>'
    hours = (now - when).total_seconds() / 3600
    ago = f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} d ago"
    return (
        f'<time datetime="{when.isoformat()}">{when:%Y-%m-%d %H:%M}Z</time> <span class="ago">({ago})</span>'
    )


def chart_svg(rows: list[VMProtection], now: dt.datetime, policy: Policy) -> str:
    """Horizontal bars: age of each VM's newest verified export, with the policy limit as a line."""
    bar_h, gap, left, width = 22, 8, 150, 520
    ages = [r.export_age_hours(now) for r in rows]
    scale_max = max([policy.max_export_age_hours * 1.5, *[a for a in ages if a is not None]])
    height = max(1, len(rows)) * (bar_h + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{left + width + 90}" '
        f'height="{height}" viewBox="0 0 {left + width + 90} {height}">',
        "<title>Age of each VM's newest verified export (hours)</title>",
    ]
    for i, (r, age) in enumerate(zip(rows, ages, strict=True)):
        y = 10 + i * (bar_h + gap)
        label = html.escape(f"{r.vm_name} ({r.host})" if r.host else r.vm_name)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h * 0.7:.0f}" text-anchor="end" class="label">{label}</text>'
        )
        if age is None:
            parts.append(f'<text x="{left + 4}" y="{y + bar_h * 0.7:.0f}" class="missing">no export</text>')
            continue
        w = max(2.0, min(width, width * age / scale_max))
        cls = "bar ok" if age <= policy.max_export_age_hours else "bar late"
        parts.append(f'<rect class="{cls}" x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3"/>')
        parts.append(
            f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.7:.0f}" class="value">{age:.1f} h</text>'
        )
    limit_x = left + width * policy.max_export_age_hours / scale_max
    parts.append(
        f'<line class="limit" x1="{limit_x:.1f}" y1="4" x2="{limit_x:.1f}" y2="{height - 24}"/>'
        f'<text x="{limit_x:.1f}" y="{height - 8}" text-anchor="middle" class="limit-label">'
        f"policy {policy.max_export_age_hours:g} h</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:22px;margin:0 0 4px} .sub{color:#5b6b7c;margin:0 0 18px}
.summary{display:flex;gap:12px;margin-bottom:18px} .card{border:1px solid #d8e0e8;border-radius:6px;padding:10px 16px}
.card b{display:block;font-size:22px} .card.bad b{color:#b3261e} .card.good b{color:#1e7d32}
table{border-collapse:collapse;width:100%;margin-top:18px;font-size:14px}
th,td{border-bottom:1px solid #e3e8ee;padding:7px 9px;text-align:left;vertical-align:top}
th{background:#f4f7fa} tr.out td{background:#fff4f2} .none{color:#b3261e} .ago{color:#6b7785}
.status-ok{color:#1e7d32;font-weight:600} .status-out{color:#b3261e;font-weight:600}
.chart .bar.ok{fill:#4c9f70} .chart .bar.late{fill:#d9534f} .chart .limit{stroke:#333;stroke-dasharray:4 3}
.chart text{font-size:12px;fill:#1d2733} .chart .missing{fill:#b3261e}
"""


def render_html(rows: list[VMProtection], *, now: dt.datetime, policy: Policy = Policy()) -> str:
    out_of_policy = [r for r in rows if not r.in_policy]
    body = []
    for r in rows:
        status = (
            '<span class="status-ok">in policy</span>'
            if r.in_policy
            else '<span class="status-out">OUT OF POLICY</span><br>'
            + "<br>".join(html.escape(p) for p in r.problems)
        )
        export = _fmt(r.last_export, now)
        if r.last_export_path:
            export += (
                f"<br><code>{html.escape(r.last_export_path)}</code> {html.escape(r.last_export_consistency)}"
            )
        body.append(
            f'<tr class="{"ok" if r.in_policy else "out"}" data-vm="{html.escape(r.vm_name)}">'
            f"<td>{html.escape(r.host)}</td><td>{html.escape(r.vm_name)}</td>"
            f"<td>{_fmt(r.last_app_consistent, now)}</td><td>{export}</td>"
            f"<td>{_fmt(r.last_restore_test, now)}</td><td>{status}</td></tr>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Hyper-V protection report</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>"
        "<h1>Hyper-V protection report</h1>"
        f'<p class="sub">Generated {now:%Y-%m-%d %H:%M}Z from the provider\'s export and restore-test asset '
        f"events. Policy: export within {policy.max_export_age_hours:g} h, application-consistent within "
        f"{policy.max_app_consistent_age_hours / 24:g} d, restore test within {policy.max_restore_test_age_days:g} d.</p>"
        '<div class="summary">'
        f'<div class="card"><b id="vm-count">{len(rows)}</b>VMs</div>'
        f'<div class="card good"><b>{len(rows) - len(out_of_policy)}</b>in policy</div>'
        f'<div class="card bad"><b id="out-count">{len(out_of_policy)}</b>out of policy</div></div>'
        f"<h2>Age of the newest verified export</h2>{chart_svg(rows, now, policy)}"
        '<table id="vms"><thead><tr><th>Host</th><th>VM</th><th>Last application-consistent checkpoint</th>'
        "<th>Last verified export</th><th>Last successful restore test</th><th>Policy</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></body></html>\n"
    )


def rows_to_dicts(rows: list[VMProtection], now: dt.datetime) -> list[dict[str, Any]]:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v else None

    return [
        {
            "host": r.host,
            "vm": r.vm_name,
            "vm_id": r.vm_id,
            "last_app_consistent": iso(r.last_app_consistent),
            "last_export": iso(r.last_export),
            "export_age_hours": None
            if r.export_age_hours(now) is None
            else round(r.export_age_hours(now) or 0, 2),
            "last_restore_test": iso(r.last_restore_test),
            "in_policy": r.in_policy,
            "problems": list(r.problems),
        }
        for r in rows
    ]
