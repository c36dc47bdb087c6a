"""One base for sensors that wait on a host's state: poke in the worker (one round of the shared wait:
the same host verdict as every wait), or defer to the host-state trigger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from airflow_hyperv.hyperv.waits import WaitTarget, host_verdict
from airflow_hyperv.mixins import DEFAULT_CONN_ID, DeferrableMixin, HyperVOperatorMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


class HyperVHostWaitSensor(DeferrableMixin, HyperVOperatorMixin, BaseSensorOperator):
    """Subclasses say what they wait for (``wait_target``); polling and deferring are shared.

    Deferred, every wait on the same host and interval shares one poll (one round trip per interval).
    A VM that disappears fails the sensor; a rejected login fails it without retries.

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param deferrable: Wait in the triggerer instead of poking in the worker. Default None: Airflow's
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between two looks at the host; also the default ``poke_interval``.
        Default 10; must be above 0.
    :param timeout: (BaseSensorOperator's) Seconds before the sensor fails; deferred, also the
        trigger's own deadline (the failure then says what was last seen). Default: Airflow's
        ``[sensors] default_timeout`` (7 days).
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id")

    def __init__(
        self,
        *,
        vm: str,
        hyperv_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.vm = vm
        self.hyperv_conn_id = hyperv_conn_id
        self._init_deferrable(deferrable, poll_interval, self.timeout)
        self._vm_id: str | None = None

    def wait_target(self, vm_id: str) -> WaitTarget:
        """What this sensor waits for (each subclass says).

        :param vm_id: The VM's Id, resolved once from ``vm``.
        :return: The wait's target.
        """
        raise NotImplementedError

    def validate(self) -> None:
        """Check the sensor's own arguments before anything is contacted."""

    def _target(self) -> WaitTarget:
        if self._vm_id is None:
            with self.final_errors(), self.hyperv_hook() as hv:
                self._vm_id = str(hv.resolve_vm(self.vm).id)
        return self.wait_target(self._vm_id)

    def execute(self, context: Context) -> Any:
        with self.final_errors():
            self.validate()
        target = self._target()
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self.defer_for_host_state(target)

    def poke(self, context: Context) -> bool:
        """One round of the wait (Airflow's sensor loop sleeps and times out between them)."""
        target = self._target()
        with self.final_errors(), self.hyperv_hook() as hv:
            snapshot = hv.host_state(target.watched_disks)
        verdict = host_verdict(target, snapshot)
        if verdict.failed:
            raise AirflowException(verdict.observed)
        self.log.info("%s", verdict.observed)
        return verdict.done

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        self.check_event(event)
