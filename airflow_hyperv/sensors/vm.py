"""Wait for a VM to reach a state (e.g. Running with a healthy heartbeat)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_hyperv.hyperv.enums import VMState
from airflow_hyperv.hyperv.errors import InvalidInputError
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget
from airflow_hyperv.sensors.base import HyperVHostWaitSensor


class HyperVVMStateSensor(HyperVHostWaitSensor):
    """Succeeds when the VM is in ``target_state`` (and, with ``require_heartbeat``, its guest
    answers the heartbeat; by default only when waiting for Running, as only a running guest can)."""

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "target_state")

    def __init__(
        self, *, target_state: str = "Running", require_heartbeat: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target_state = target_state
        self.require_heartbeat = require_heartbeat

    def validate(self) -> None:
        try:
            state = VMState.parse(self.target_state)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        if self.require_heartbeat and state is not VMState.Running:
            raise InvalidInputError(
                f"a heartbeat can only be required of a Running VM, not of one {state.name}"
            )

    def wait_target(self, vm_id: str) -> WaitTarget:
        return WaitTarget(
            WaitFor.VM_STATE,
            vm_id,
            target_state=VMState.parse(self.target_state).name,
            require_heartbeat=self._heartbeat,
        )

    @property
    def _heartbeat(self) -> bool:
        if self.require_heartbeat is None:
            return VMState.parse(self.target_state) is VMState.Running
        return self.require_heartbeat
