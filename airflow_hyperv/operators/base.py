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
REJECTED_LOGIN_REASON = (
    "the Hyper-V host rejected the credentials: failing without retries, since every retry is one more "
    "rejected login towards the account's lockout"
)

try:  # Airflow 3.3+: per-exception retry decisions, made in the worker with the real exception
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
except ImportError:  # pragma: no cover - older Airflow: AirflowFailException below is the guard
    RetryPolicy = None  # type: ignore[assignment,misc]


def is_rejected_login(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, is a rejected login."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, AuthenticationFailedError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if RetryPolicy is not None:

    class NeverRetryRejectedLogins(RetryPolicy):
        """FAIL (no task retry) when the host rejected the credentials anywhere in the exception's chain;
        otherwise ask ``inner`` (the user's own policy), or Airflow's standard retries.

        Every Hyper-V operator and sensor carries it: a user's ``retry_policy`` is wrapped, not replaced.
        """

        def __init__(self, inner: RetryPolicy | None = None) -> None:
            self.inner = inner

        def evaluate(
            self, exception: BaseException, try_number: int, max_tries: int, context: Any = None
        ) -> RetryDecision:
            if is_rejected_login(exception):
                return RetryDecision.fail(REJECTED_LOGIN_REASON)
            if self.inner is not None:
                return self.inner.evaluate(exception, try_number, max_tries, context)
            return RetryDecision.default()

        def serialize(self) -> dict[str, Any]:
            return {
                "__type": "NeverRetryRejectedLogins",
                "inner": self.inner.serialize() if self.inner is not None else None,
            }


def _fail_task(error: AuthenticationFailedError) -> AirflowFailException:
    return AirflowFailException(str(error))


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
    """Connection and VM handling; operators and sensors add only what is their own.

    Rejected credentials fail the task at once, wherever they surface: the task's ``retry_policy``
    FAILs on them (``NeverRetryRejectedLogins``, wrapping any policy the user gives), and the hook an
    operator opens raises AirflowFailException when the host rejects the login, even where that
    happens before an operator's ``final_errors`` guard.
    """

    hyperv_conn_id: str
    vm: str

    def _convert_retry_policy(self, policy: Any) -> Any:
        """BaseOperator.__setattr__ passes every ``retry_policy`` assignment through this."""
        if RetryPolicy is None or isinstance(policy, NeverRetryRejectedLogins):
            return policy
        return NeverRetryRejectedLogins(policy)

    def hyperv_hook(self) -> HyperVHook:
        from airflow_hyperv.hooks.hyperv import HyperVHook  # transport code loads at run time only

        hook = HyperVHook(self.hyperv_conn_id)
        hook.on_rejected = _fail_task
        return hook

    @contextlib.contextmanager
    def final_errors(self) -> Iterator[None]:
        """Bad input, rejected credentials and Hyper-V refusals fail the task without retries."""
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

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A wait that ended because the host rejected the trigger's login fails the task here, before
        ``execute_complete`` could log in again with the same credentials (one more rejected login)."""
        event = (next_kwargs or {}).get("event")
        if isinstance(event, dict) and event.get("rejected_login"):
            raise AirflowFailException(event.get("message") or REJECTED_LOGIN_REASON)
        return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]

    @staticmethod
    def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
        if not event:
            raise AirflowException("the trigger ended without an event")
        if event.get("rejected_login"):  # the trigger's login was refused: retrying locks accounts out
            raise AirflowFailException(event.get("message") or REJECTED_LOGIN_REASON)
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
