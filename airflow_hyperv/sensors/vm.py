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
    answers the heartbeat; by default only when waiting for Running, as only a running guest can).

    An unknown state, or a heartbeat required of a state other than Running, fails the task before
    the host is contacted, without retries. No XCom.

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
    :param target_state: The VM state to wait for (a ``VMState`` name such as ``Running`` or ``Off``).
        Default ``Running``. (templated)
    :param require_heartbeat: Also require a healthy heartbeat from the guest. Default None: only when
        ``target_state`` is Running.
    """

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
