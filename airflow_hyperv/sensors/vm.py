"""Wait for a VM to reach a state (e.g. Running with a healthy heartbeat)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_hyperv.hyperv.enums import VMState
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget, judge
from airflow_hyperv.operators.base import DEFAULT_CONN_ID, DeferrableMixin, HyperVOperatorMixin

if TYPE_CHECKING:
    from airflow.sdk import Context


class HyperVVMStateSensor(DeferrableMixin, HyperVOperatorMixin, BaseSensorOperator):
    """Succeeds when the VM is in ``target_state`` (and, with ``require_heartbeat``, its guest
    answers the heartbeat). Deferrable: all such waits on one host share one poll per interval."""

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "target_state")

    def __init__(
        self,
        *,
        vm: str,
        target_state: str = "Running",
        require_heartbeat: bool = True,
        hyperv_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.vm = vm
        self.hyperv_conn_id = hyperv_conn_id
        self.target_state = target_state
        self.require_heartbeat = require_heartbeat
        self._init_deferrable(deferrable, poll_interval, self.timeout)
        self._vm_id: str | None = None

    def _target(self) -> WaitTarget:
        state = VMState.parse(self.target_state).name
        return WaitTarget(
            WaitFor.VM_STATE, str(self._vm_id), target_state=state, require_heartbeat=self.require_heartbeat
        )

    def _resolve(self) -> None:
        if self._vm_id is None:
            with self.hyperv_hook() as hv, self.final_errors():
                self._vm_id = str(hv.resolve_vm(self.vm).id)

    def execute(self, context: Context) -> Any:
        try:
            VMState.parse(self.target_state)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        self._resolve()
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        from airflow_hyperv.triggers.hyperv import HyperVWaitTrigger

        target = self._target()
        self.defer_to(
            HyperVWaitTrigger(
                hyperv_conn_id=self.hyperv_conn_id,
                wait_for=WaitFor.VM_STATE.value,
                vm_id=target.vm_id,
                target_state=target.target_state,
                require_heartbeat=target.require_heartbeat,
                poll_interval=self.poll_interval,
            )
        )

    def poke(self, context: Context) -> bool:
        self._resolve()
        with self.hyperv_hook() as hv:
            snapshot = hv.host_state()
        done, observed = judge(self._target(), snapshot)
        if done and str(self._vm_id).lower() not in snapshot.vms:
            raise AirflowException(observed)
        self.log.info("%s", observed)
        return done

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        self.check_event(event)
