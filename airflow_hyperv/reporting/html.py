"""The fleet report as one self-contained HTML page with an inline SVG chart (no scripts, no
downloads), and where that page lives: the ``protection_report`` DAG writes it, the plugin view
(``airflow_hyperv.plugins.report_view``) serves it."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from airflow_hyperv.reporting.fleet_report import FreshnessPolicy, VMProtection

REPORT_FILE = "protection-report.html"


def report_dir() -> Path:
    """Where the report task also writes the page as a file: ``[hyperv] report_dir``, else
    ``$AIRFLOW_HYPERV_REPORT_DIR``, else ``$AIRFLOW_HOME/hyperv-reports`` (``airflow_hyperv.config``).
    The plugin view does not read it: it renders the rows the task stored in the metadata database."""
    from airflow_hyperv.config import report_dir as configured

    return configured()


def _fmt(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return '<span class="none">never</span>'
    hours = (now - when).total_seconds() / 3600
    ago = f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} d ago"
    return (
        f'<time datetime="{when.isoformat()}">{when:%Y-%m-%d %H:%M}Z</time> <span class="ago">({ago})</span>'
    )


def chart_svg(rows: list[VMProtection], now: dt.datetime, policy: FreshnessPolicy) -> str:
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


def render_html(
    rows: list[VMProtection],
    *,
    now: dt.datetime,
    policy: FreshnessPolicy = FreshnessPolicy(),  # noqa: B008 (a frozen dataclass)
) -> str:
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
