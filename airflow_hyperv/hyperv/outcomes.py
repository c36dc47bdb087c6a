"""What a protection chain leaves behind for its report: the task ids of its steps, and how a failed
step records why it failed (an XCom under ``FAILURE_KEY``, naming its VM).

Pure: the callback that pushes the record is ``airflow_hyperv.operators.failures.record_failure``; the
report that reads it is ``airflow_hyperv.reporting.run_report``.
"""

from __future__ import annotations

from typing import Any

FAILURE_KEY = "hyperv_failure"

# The chain's task ids (airflow_hyperv.authoring.protect.build_protection_chain), in chain order.
STEPS = ("verify", "choose", "production_checkpoint", "standard_checkpoint", "export_production",
         "export_standard", "retention_production", "retention_standard", "merge")  # fmt: skip


def failure_reason(exception: BaseException | None) -> str:
    """``Type: message`` of the exception that failed a task (``failed`` when there is none)."""
    return f"{type(exception).__name__}: {exception}" if exception is not None else "failed"


def failure_record(vm: Any, reason: str) -> dict[str, str]:
    """The XCom value of a failure: the VM it is about and the reason's first line, capped at 500."""
    return {"vm": str(vm), "reason": reason.splitlines()[0][:500]}
