"""The base of every Hyper-V operator: the connection, the VM reference (``airflow_hyperv.mixins``),
and this run's checkpoint name."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from airflow_hyperv.hyperv.names import checkpoint_name

# The shared mixins live in airflow_hyperv.mixins; their names stay importable from here (DAGs use them).
from airflow_hyperv.mixins import (
    DEFAULT_CONN_ID,
    FINAL_ERRORS,
    REJECTED_LOGIN_REASON,
    DeferrableMixin,
    HyperVConnectionMixin,
    HyperVOperatorMixin,
    NeverRetryRejectedLoginsMixin,
    is_rejected_login,
)

with contextlib.suppress(ImportError):  # older Airflow has no retry policies
    from airflow_hyperv.mixins import NeverRetryRejectedLogins

if TYPE_CHECKING:
    from airflow.sdk import Context


class HyperVBaseOperator(HyperVOperatorMixin, BaseOperator):
    """The base of the Hyper-V operators that act on one VM: its connection and its VM reference.

    Rejected credentials fail the task at once, without retries (``HyperVOperatorMixin``): every retry
    would be one more rejected login towards the account's lockout.

    .. seealso::
        docs/operators.md (every operator) and docs/connection.md (the ``hyperv`` connection).

    :param vm: The VM's exact name, or its Id (a GUID). Wildcard characters (``* ? [ ]`` and the
        backtick) are refused before the host is contacted; the name is resolved once, and every
        later call acts on the Id. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id")
    ui_color = "#cfe7fb"

    def __init__(self, *, vm: str, hyperv_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vm = vm
        self.hyperv_conn_id = hyperv_conn_id


def run_checkpoint_name(context: Context, vm_id: str) -> str:
    """The deterministic name this DAG run gives its checkpoint of ``vm_id`` (see names.checkpoint_name).

    :param context: The task's context (its DAG run and logical date or run-after time).
    :param vm_id: The VM's Id.
    :return: ``airflow-hyperv <UTC time> <hash>``; every try of the run computes the same name.
    """
    dag_run = context["dag_run"]
    when = context.get("logical_date") or getattr(dag_run, "run_after", None) or dag_run.start_date
    if when is None:
        raise AirflowException("the DAG run has neither a logical date nor a run_after time")
    return checkpoint_name(dag_id=dag_run.dag_id, run_id=dag_run.run_id, vm_id=vm_id, logical_date=when)


__all__ = [
    "DEFAULT_CONN_ID",
    "FINAL_ERRORS",
    "REJECTED_LOGIN_REASON",
    "DeferrableMixin",
    "HyperVBaseOperator",
    "HyperVConnectionMixin",
    "HyperVOperatorMixin",
    "NeverRetryRejectedLogins",
    "NeverRetryRejectedLoginsMixin",
    "is_rejected_login",
    "run_checkpoint_name",
]
