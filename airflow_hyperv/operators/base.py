"""What every Hyper-V operator shares: the connection, the VM reference, and one deferrable contract."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_hyperv.hyperv.errors import (
    AmbiguousVMNameError,
    AuthenticationFailedError,
    CheckpointsDisabledError,
    InvalidInputError,
    ProductionCheckpointImpossibleError,
    VMNotFoundError,
)
from airflow_hyperv.hyperv.names import checkpoint_name
from airflow_hyperv.hyperv.waits import WaitTarget, judge

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_hyperv.hooks.hyperv import HyperVHook

DEFAULT_CONN_ID = "hyperv_default"


# Errors no retry can fix: the task fails at once (no Airflow retries) with the reason.
FINAL_ERRORS = (
    AuthenticationFailedError,  # retrying rejected credentials locks accounts out
    InvalidInputError,
    VMNotFoundError,
    AmbiguousVMNameError,
    CheckpointsDisabledError,
    ProductionCheckpointImpossibleError,
)


class HyperVOperatorMixin:
    """Connection and VM handling; operators and sensors add only what is their own."""

    hyperv_conn_id: str
    vm: str

    def hyperv_hook(self) -> HyperVHook:
        from airflow_hyperv.hooks.hyperv import HyperVHook  # transport code loads at run time only

        return HyperVHook(self.hyperv_conn_id)

    @contextlib.contextmanager
    def final_errors(self) -> Iterator[None]:
        """Bad input and Hyper-V refusals fail the task without retries, with the reason."""
        try:
            yield
        except FINAL_ERRORS as exc:
            raise AirflowFailException(str(exc)) from exc


class DeferrableMixin:
    """One way to wait everywhere: defer to a trigger (no worker slot held) or poll in the worker."""

    deferrable: bool
    poll_interval: float
    wait_timeout: float | None

    def _init_deferrable(
        self, deferrable: bool | None, poll_interval: float, wait_timeout: float | None
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be above 0, not {poll_interval}")
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False)
            if deferrable is None
            else deferrable
        )
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def defer_to(self, trigger: BaseTrigger) -> None:
        """Hand the wait to the triggerer; ``execute_complete(context, event)`` resumes, and finds
        what it needs in ``event["echo"]`` (the trigger's ``echo``)."""
        # The trigger gives up at wait_timeout and says why; Airflow's timeout is only a backstop.
        timeout = dt.timedelta(seconds=self.wait_timeout * 1.1 + 60) if self.wait_timeout else None
        if self.wait_timeout and hasattr(trigger, "give_up_after") and not trigger.give_up_after:
            trigger.give_up_after = float(self.wait_timeout)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)  # type: ignore[attr-defined]

    def wait_in_worker(self, target: WaitTarget, explain: Callable[[str], str] = str) -> None:
        """The non-deferrable path: poll the host until ``target`` is reached, a VM vanishes, or
        ``wait_timeout`` passes (``explain`` turns the timeout text into the task's error)."""
        deadline = time.monotonic() + (self.wait_timeout or float("inf"))
        with self.hyperv_hook() as hv:  # type: ignore[attr-defined]
            while True:
                snapshot = hv.host_state(target.watched_disks)
                done, observed = judge(target, snapshot)
                if done:
                    if target.vm_id.lower() not in snapshot.vms:
                        raise AirflowException(observed)
                    return
                if time.monotonic() > deadline:
                    raise AirflowException(explain(f"not done after {self.wait_timeout:g}s: {observed}"))
                self.log.info("Waiting for %s: %s", target.kind.value, observed)  # type: ignore[attr-defined]
                time.sleep(self.poll_interval)

    @staticmethod
    def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
        if not event:
            raise AirflowException("the trigger ended without an event")
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"the wait failed: {event}")
        return event


class HyperVBaseOperator(HyperVOperatorMixin, BaseOperator):
    template_fields: Sequence[str] = ("vm", "hyperv_conn_id")
    ui_color = "#cfe7fb"

    def __init__(self, *, vm: str, hyperv_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vm = vm
        self.hyperv_conn_id = hyperv_conn_id


def run_checkpoint_name(context: Context, vm_id: str) -> str:
    """The deterministic name this DAG run gives its checkpoint of ``vm_id`` (see names.checkpoint_name)."""
    dag_run = context["dag_run"]
    when = context.get("logical_date") or getattr(dag_run, "run_after", None) or dag_run.start_date
    if when is None:
        raise AirflowException("the DAG run has neither a logical date nor a run_after time")
    return checkpoint_name(dag_id=dag_run.dag_id, run_id=dag_run.run_id, vm_id=vm_id, logical_date=when)
