"""The provider's ``[hyperv]`` configuration section: what used to be module constants or environment
variables only. Declared (with descriptions and defaults) in the provider metadata's ``config``
(``get_provider_info.CONFIG``), so ``airflow config list`` shows it; set like any Airflow option
(``airflow.cfg`` or ``AIRFLOW__HYPERV__<OPTION>``). Read at use time, never at import time.

Not in a layer of its own: every layer may read it, and it imports nothing of the provider.
"""

from __future__ import annotations

import os
from pathlib import Path

SECTION = "hyperv"
# The defaults, one place: the provider metadata shows them, the readers below fall back to them.
DEFAULT_ASYNC_MAX_THREADS = 8
DEFAULT_WAIT_ERROR_BUDGET = 5
DEFAULT_MERGE_DEFER_AFTER = 30.0
DEFAULT_EXPORT_RESUME_BEFORE_END = 10.0
DEFAULT_REPORT_DAG_ID = "protection_report"
REPORT_DIR_ENV = "AIRFLOW_HYPERV_REPORT_DIR"  # the 0.1 name, still honoured


def _get(option: str, fallback: str) -> str:
    from airflow.sdk import conf

    return str(conf.get(SECTION, option, fallback=fallback) or fallback)


def _positive_int(option: str, default: int) -> int:
    text = _get(option, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"[{SECTION}] {option} must be a whole number, not {text!r}") from None
    if value < 1:
        raise ValueError(f"[{SECTION}] {option} must be 1 or more, not {value}")
    return value


def async_max_threads() -> int:
    """``[hyperv] async_max_threads``: threads all async hooks (triggers) of one process may hold."""
    return _positive_int("async_max_threads", DEFAULT_ASYNC_MAX_THREADS)


def wait_error_budget() -> int:
    """``[hyperv] wait_error_budget``: failed polls in a row a wait tolerates before it gives up."""
    return _positive_int("wait_error_budget", DEFAULT_WAIT_ERROR_BUDGET)


def _seconds(option: str, default: float) -> float:
    text = _get(option, str(default))
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"[{SECTION}] {option} must be a number of seconds, not {text!r}") from None
    if value < 0:
        raise ValueError(f"[{SECTION}] {option} must be 0 or more, not {value:g}")
    return value


def merge_defer_after() -> float:
    """``[hyperv] merge_defer_after``: seconds a deferrable merge first waits in the worker."""
    return _seconds("merge_defer_after", DEFAULT_MERGE_DEFER_AFTER)


def export_resume_before_end() -> float:
    """``[hyperv] export_resume_before_end``: how long before an export's predicted end its trigger hands
    the wait back to the task."""
    return _seconds("export_resume_before_end", DEFAULT_EXPORT_RESUME_BEFORE_END)


def report_dag_id() -> str:
    """``[hyperv] report_dag_id``: the DAG whose ``report`` task's rows the report view shows."""
    return _get("report_dag_id", DEFAULT_REPORT_DAG_ID)


def report_dir() -> Path:
    """``[hyperv] report_dir``, else ``$AIRFLOW_HYPERV_REPORT_DIR``, else ``$AIRFLOW_HOME/hyperv-reports``:
    where the ``protection_report`` DAG also writes its page as a file (the report view does not
    read it: it reads the metadata database)."""
    configured = _get("report_dir", "") or os.environ.get(REPORT_DIR_ENV, "")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "hyperv-reports"
