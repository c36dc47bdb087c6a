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
