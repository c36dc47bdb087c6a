"""The chain's on_failure_callback: keep a failed task's reason where the run report can read it."""

from __future__ import annotations

import contextlib
from typing import Any

from airflow_hyperv.hyperv.outcomes import FAILURE_KEY, failure_reason, failure_record


def record_failure(context: Any) -> None:
    """on_failure_callback: keep the reason where the report can read it (an XCom of the task)."""
    exc = context.get("exception")
    ti = context["ti"]
    reason = failure_reason(exc)
    vm = getattr(context.get("task"), "vm", None)
    with contextlib.suppress(Exception):  # a report detail must never mask the task's own failure
        ti.xcom_push(key=FAILURE_KEY, value=failure_record(vm, reason))
