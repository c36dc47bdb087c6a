"""What Hyper-V operators and sensors share, one mixin per concern:

* ``HyperVConnectionMixin``: the connection, the hook it opens, and the errors no retry can fix;
* ``NeverRetryRejectedLoginsMixin``: the task's retry policy never retries a rejected login;
* ``HyperVOperatorMixin``: both of the above, what every operator and sensor carries;
* ``DeferrableMixin``: the one deferrable contract (defer to a trigger, or wait in the worker with
  the waiter every trigger uses too).

``airflow_hyperv.operators.base`` re-exports these names (DAGs import them from there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from airflow.sdk import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_hyperv.hyperv.errors import (
    AmbiguousVMNameError,
    AuthenticationFailedError,
    CheckpointsDisabledError,
    InvalidInputError,
    ProductionCheckpointImpossibleError,
    VMNotFoundError,
    is_rejected_login,
)
from airflow_hyperv.hyperv.waits import WaitTarget

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from airflow_hyperv.hooks.hyperv import HyperVHook

DEFAULT_CONN_ID = "hyperv_default"
REJECTED_LOGIN_REASON = (
    "the Hyper-V host rejected the credentials: failing without retries, since every retry is one more "
    "rejected login towards the account's lockout"
)
# Where a trigger's event carries what the resuming task needs (``resume_state``); events fired
# before the rename carry it under "echo".
RESUME_STATE_KEYS = ("resume_state", "echo")

try:  # Airflow 3.3+: per-exception retry decisions, made in the worker with the real exception
    from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
except ImportError:  # pragma: no cover - older Airflow: AirflowFailException below is the guard
    RetryPolicy = None  # type: ignore[assignment,misc]


if RetryPolicy is not None:

    class NeverRetryRejectedLogins(RetryPolicy):
        """FAIL (no task retry) when the host rejected the credentials anywhere in the exception's chain;
        otherwise ask ``inner`` (the user's own policy), or Airflow's standard retries.

        Every Hyper-V operator and sensor carries it: a user's ``retry_policy`` is wrapped, not replaced.

        :param inner: The user's own retry policy, asked about every error that is not a rejected login.
            Default None: Airflow's standard retries (``retries``, ``retry_delay``).
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


class NeverRetryRejectedLoginsMixin:
    """The task's ``retry_policy`` FAILs on a rejected login (``NeverRetryRejectedLogins``, wrapping
    any policy the user gives).

    Every retry of a rejected login is one more bad-password count towards the account's lockout, so
    none is made, whatever ``retries`` says.

    :param retry_policy: (BaseOperator's) A ``RetryPolicy`` of your own: kept, and asked about every
        error that is not a rejected login (Airflow 3.3+; older Airflow has no retry policies).
    """

    def _convert_retry_policy(self, policy: Any) -> Any:
        """BaseOperator.__setattr__ passes every ``retry_policy`` assignment through this."""
        if RetryPolicy is None or isinstance(policy, NeverRetryRejectedLogins):
            return policy
        return NeverRetryRejectedLogins(policy)


class HyperVConnectionMixin:
    """The connection and the hook. The hook raises AirflowFailException when the host rejects the
    login, even where that happens before an operator's ``final_errors`` guard.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param vm: The VM's exact name, or its Id (a GUID). Wildcard characters (``* ? [ ]`` and the
        backtick) are refused before the host is contacted; the name is resolved once, and every
        later call acts on the Id. (templated)
    """

    hyperv_conn_id: str
    vm: str

    def hyperv_hook(self) -> HyperVHook:
        """A new ``HyperVHook`` on ``hyperv_conn_id`` (use it in a ``with`` block: one runspace pool).

        :return: The hook; a rejected login raises AirflowFailException from it, so no retry follows.
        """
        from airflow_hyperv.hooks.hyperv import HyperVHook  # transport code loads at run time only

        hook = HyperVHook(self.hyperv_conn_id)
        hook.on_rejected = _fail_task
        return hook

    @contextlib.contextmanager
    def final_errors(self) -> Iterator[None]:
        """Bad input, rejected credentials and Hyper-V refusals fail the task without retries.

        A context manager: ``FINAL_ERRORS`` raised inside it become AirflowFailException (the original
        is its cause); anything else passes unchanged, to Airflow's retries.
        """
        try:
            yield
        except FINAL_ERRORS as exc:
            raise AirflowFailException(str(exc)) from exc


class HyperVOperatorMixin(NeverRetryRejectedLoginsMixin, HyperVConnectionMixin):
    """Connection and VM handling; operators and sensors add only what is their own.

    Rejected credentials fail the task at once, wherever they surface: the task's ``retry_policy``
    FAILs on them, and the hook an operator opens raises AirflowFailException when the host rejects
    the login.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the
        host is contacted. (templated)
    :param retry_policy: (BaseOperator's) A ``RetryPolicy`` of your own: wrapped, never replaced, so a
        rejected login still fails without retries.
    """


class DeferrableMixin:
    """One way to wait everywhere: defer to a trigger (no worker slot held) or poll in the worker,
    with the one wait loop the triggers use (``airflow_hyperv.hooks.waiter``).

    Both paths follow the same rules: a rejected login ends the wait at once and fails the task
    without retries; other failed polls count against ``[hyperv] wait_error_budget`` (5 in a row by
    default); past ``wait_timeout`` the wait fails saying what it last saw. Deferred, Airflow's own
    deferral timeout is set a little later (``wait_timeout`` x 1.1 + 60 s) as a backstop only.

    :param deferrable: Wait in the triggerer (the task gives up its worker slot) instead of polling
        in the worker. Default None: Airflow's ``[operators] default_deferrable`` (False unless set).
    :param poll_interval: Seconds between two looks at the host while waiting. Must be above 0.
    :param wait_timeout: Seconds the wait may last before the task fails; None: no limit.
    """

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
        what it needs in ``resume_state(event)`` (the trigger's ``resume_state``).

        :param trigger: The trigger to wait in. When ``wait_timeout`` is set and the trigger has no
            ``give_up_after`` of its own, it gets ``wait_timeout``.
        """
        # The trigger gives up at wait_timeout and says why; Airflow's timeout is only a backstop.
        timeout = dt.timedelta(seconds=self.wait_timeout * 1.1 + 60) if self.wait_timeout else None
        if self.wait_timeout and hasattr(trigger, "give_up_after") and not trigger.give_up_after:
            trigger.give_up_after = float(self.wait_timeout)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)  # type: ignore[attr-defined]

    def defer_for_host_state(
        self, target: WaitTarget, resume_state: dict[str, Any] | None = None, *, waited: float = 0.0
    ) -> None:
        """Defer to the host-state trigger (a VM state or a finished merge), whose polls are shared
        with every other wait on the same host.

        :param target: What to wait for (a VM state, a finished merge).
        :param resume_state: What the trigger hands back in its event for ``execute_complete``.
        :param waited: Seconds this task already waited in the worker: the trigger gives up that much
            sooner, so ``wait_timeout`` bounds the whole wait.
        """
        from airflow_hyperv.triggers.hyperv import HyperVHostStateTrigger

        give_up_after = max(self.wait_timeout - waited, self.poll_interval) if self.wait_timeout else None
        self.defer_to(
            HyperVHostStateTrigger(
                hyperv_conn_id=self.hyperv_conn_id,  # type: ignore[attr-defined]
                target=target,
                poll_interval=self.poll_interval,
                resume_state=resume_state,
                give_up_after=give_up_after,
            )
        )

    def wait_for_host_state(
        self,
        target: WaitTarget,
        *,
        resume_state: dict[str, Any] | None = None,
        explain: Callable[[str], str] = str,
        hook: Any = None,
        defer_after: float = 0.0,
    ) -> None:
        """The one deferrable contract for host-state waits: defer (resuming in ``execute_complete``
        with ``resume_state``) when the task is deferrable, else wait here in the worker.

        :param target: What to wait for (a VM state, a finished merge).
        :param resume_state: Deferred: what the trigger hands back in its event for ``execute_complete``.
        :param explain: Turns the timeout text into the task's error message (worker path).
        :param hook: The task's open ``HyperVHook`` to poll on (worker path): no pool of its own.
            Default None: open one for the wait.
        :param defer_after: Deferrable: first wait up to this many seconds in the worker, polling
            sooner at first (``HostStateWait(ramp=True)``), and defer only if the host is not there yet.
            A wait that usually ends in seconds then costs no deferral, no resumed task and no second
            pool. Default 0: defer at once.
        """
        if self.deferrable:
            waited = 0.0
            if defer_after > 0:
                started = time.monotonic()
                budget = min(defer_after, self.wait_timeout) if self.wait_timeout else defer_after
                try:
                    outcome = self._wait_here(target, hook, give_up_after=budget, ramp=True)
                except Exception as exc:  # a transient fault past the hook's retries: the trigger's
                    if is_rejected_login(exc):  # error budget takes the wait over (never a login again)
                        raise
                    self.log.warning(  # type: ignore[attr-defined]
                        "Looking at the host failed (%s); deferring the wait", exc
                    )
                    outcome = None
                waited = time.monotonic() - started
                if outcome is not None and not outcome.timed_out:
                    self._end_wait(outcome, explain)
                    self.log.info(  # type: ignore[attr-defined]
                        "Done while waiting in the worker (%.0fs): not deferred", waited
                    )
                    return
                if outcome is not None:
                    self.log.info(  # type: ignore[attr-defined]
                        "Not done after %.0fs in the worker; deferring the rest of the wait", waited
                    )
            self.defer_for_host_state(target, resume_state, waited=waited)
        self.wait_in_worker(target, explain=explain, hook=hook)

    def wait_in_worker(
        self, target: WaitTarget, explain: Callable[[str], str] = str, hook: Any = None
    ) -> None:
        """The non-deferrable path: poll the host until ``target`` is reached, a VM vanishes, or
        ``wait_timeout`` passes (``explain`` turns the timeout text into the task's error).

        :param target: What to wait for.
        :param explain: Turns the timeout text into the task's error message.
        :param hook: The task's open ``HyperVHook`` to poll on, so the wait costs no pool of its own.
            Default None: open one for the wait.
        """
        self._end_wait(self._wait_here(target, hook, give_up_after=self.wait_timeout), explain)

    def _wait_here(
        self, target: WaitTarget, hook: Any, *, give_up_after: float | None, ramp: bool = False
    ) -> Any:
        """Poll the host in this worker (on ``hook``, or a pool opened for it) until the wait ends."""
        from airflow_hyperv.hooks.waiter import HostStateWait, wait

        with contextlib.nullcontext(hook) if hook is not None else self.hyperv_hook() as hv:  # type: ignore[attr-defined]
            return wait(
                HostStateWait(target, ramp=ramp),
                lambda: hv.host_state(target.watched_disks),
                interval=self.poll_interval,
                give_up_after=give_up_after,
                log=self.log,  # type: ignore[attr-defined]
            )

    @staticmethod
    def _end_wait(outcome: Any, explain: Callable[[str], str]) -> None:
        """A wait's outcome as the task sees it: nothing when it reached its target, else the error."""
        if outcome.rejected_login:
            raise AirflowFailException(outcome.message) from outcome.cause
        if outcome.timed_out:
            raise AirflowException(explain(outcome.message))
        if not outcome.ok:
            raise AirflowException(outcome.message)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A wait that ended because the host rejected the trigger's login fails the task here, before
        ``execute_complete`` could log in again with the same credentials (one more rejected login).

        :param next_method: The method Airflow resumes (``execute_complete``, or ``__fail__``).
        :param next_kwargs: Its kwargs, with the trigger's ``event``.
        :param context: The task's context.
        :return: What the resumed method returns.
        """
        event = (next_kwargs or {}).get("event")
        if isinstance(event, dict) and event.get("rejected_login"):
            raise AirflowFailException(event.get("message") or REJECTED_LOGIN_REASON)
        return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]

    @staticmethod
    def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
        """The trigger's event if it reports success; else the task fails with its message (without
        retries when the trigger's login was rejected).

        :param event: The trigger's event.
        :return: ``event``, when its ``status`` is ``success``.
        """
        if not event:
            raise AirflowException("the trigger ended without an event")
        if event.get("rejected_login"):  # the trigger's login was refused: retrying locks accounts out
            raise AirflowFailException(event.get("message") or REJECTED_LOGIN_REASON)
        if event.get("status") != "success":
            raise AirflowException(event.get("message") or f"the wait failed: {event}")
        return event

    @staticmethod
    def resume_state(event: dict[str, Any] | None) -> dict[str, Any]:
        """What the task handed its trigger to get back (``resume_state``; "echo" before the rename).

        :param event: The trigger's event (None or empty: nothing).
        :return: A copy of the state, empty when the event carries none.
        """
        for key in RESUME_STATE_KEYS:
            state = (event or {}).get(key)
            if state:
                return dict(state)
        return {}


__all__ = [
    "DEFAULT_CONN_ID",
    "FINAL_ERRORS",
    "REJECTED_LOGIN_REASON",
    "DeferrableMixin",
    "HyperVConnectionMixin",
    "HyperVOperatorMixin",
    "NeverRetryRejectedLogins",
    "NeverRetryRejectedLoginsMixin",
    "is_rejected_login",
]
