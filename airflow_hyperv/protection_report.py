"""Deprecated: the fleet report moved to ``airflow_hyperv.reporting.fleet_report`` (its ``Policy`` is now
``FreshnessPolicy``) and its HTML page to ``airflow_hyperv.reporting.html``. This module only re-exports
them."""

from __future__ import annotations

import warnings

from airflow_hyperv.reporting.fleet_report import (
    LAST_OUTCOMES_VARIABLE,
    FreshnessPolicy,
    VMProtection,
    collect,
    outcome_summary,
    rows_to_dicts,
)
from airflow_hyperv.reporting.html import REPORT_FILE, chart_svg, render_html, report_dir

Policy = FreshnessPolicy  # the old name, which collided with airflow_hyperv.hyperv.verify.Policy

__all__ = [
    "LAST_OUTCOMES_VARIABLE",
    "REPORT_FILE",
    "FreshnessPolicy",
    "Policy",
    "VMProtection",
    "chart_svg",
    "collect",
    "outcome_summary",
    "render_html",
    "report_dir",
    "rows_to_dicts",
]

warnings.warn(
    "airflow_hyperv.protection_report is deprecated: import from airflow_hyperv.reporting.fleet_report "
    "(Policy is now FreshnessPolicy) and airflow_hyperv.reporting.html (render_html, chart_svg, "
    "report_dir, REPORT_FILE)",
    DeprecationWarning,
    stacklevel=2,
)
