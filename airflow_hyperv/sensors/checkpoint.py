"""Wait until a removed checkpoint is really merged on the host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget
from airflow_hyperv.sensors.base import HyperVHostWaitSensor


class HyperVCheckpointMergedSensor(HyperVHostWaitSensor):
    """Succeeds when checkpoint ``checkpoint_id`` is gone and the VM no longer runs on any of
    ``avhdx_paths`` (the differencing disks it created; the create task's XCom lists them).

    HyperVMergeCheckpointOperator waits by itself; use this sensor to wait on a merge that something
    else started (e.g. a Remove-VMSnapshot by an admin or another tool).

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
    :param checkpoint_id: The Id of the removed checkpoint. (templated)
    :param avhdx_paths: The differencing disks the checkpoint created (the create task's XCom
        ``avhdx_paths``): the VM must no longer run on any of them. Default None: only the checkpoint's
        absence is checked. (templated)
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "checkpoint_id", "avhdx_paths")
    template_fields_renderers = {"avhdx_paths": "json"}  # a list of paths

    def __init__(self, *, checkpoint_id: str, avhdx_paths: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint_id = checkpoint_id
        self.avhdx_paths = avhdx_paths

    def wait_target(self, vm_id: str) -> WaitTarget:
        return WaitTarget(
            WaitFor.MERGE_DONE,
            vm_id,
            checkpoint_id=str(self.checkpoint_id),
            avhdx_paths=tuple(self.avhdx_paths or ()),
        )
