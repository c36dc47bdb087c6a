"""Deprecated: the run report moved to ``airflow_hyperv.reporting.run_report``; the failure callback to
``airflow_hyperv.operators.failures``; ``FAILURE_KEY`` and ``STEPS`` to ``airflow_hyperv.hyperv.outcomes``.
This module only re-exports them."""

from __future__ import annotations

import warnings

from airflow_hyperv.hyperv.outcomes import FAILURE_KEY, STEPS
from airflow_hyperv.operators.failures import record_failure
from airflow_hyperv.reporting.run_report import collect_report, failed_rows, render_table, row_for

__all__ = [
    "FAILURE_KEY",
    "STEPS",
    "collect_report",
    "failed_rows",
    "record_failure",
    "render_table",
    "row_for",
]

warnings.warn(
    "airflow_hyperv.report is deprecated: import from airflow_hyperv.reporting.run_report "
    "(record_failure: airflow_hyperv.operators.failures; FAILURE_KEY, STEPS: airflow_hyperv.hyperv.outcomes)",
    DeprecationWarning,
    stacklevel=2,
)
