"""The protection lease: which DAG run may change a VM's checkpoints right now. Pure: no I/O.

One file per VM on the host (``<lease_folder>\\<vm-id>.lease``), created atomically (``New-Item``
without ``-Force`` fails when it exists), so two runs on one VM never interleave. It records what the
run must put back: the VM's checkpoint type before the run, and the checkpoints that existed before
this run's attempt (a checkpoint that appears later, under any name, is this run's).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_hyperv.hyperv.errors import InvalidInputError
from airflow_hyperv.hyperv.names import join_host_path, require_host_path

DEFAULT_LEASE_FOLDER = "C:\\ProgramData\\airflow-hyperv\\leases"
# A cluster connection's leases must be seen by every node: on a Cluster Shared Volume by default.
DEFAULT_CLUSTER_LEASE_FOLDER = "C:\\ClusterStorage\\Volume1\\airflow-hyperv\\leases"
CLUSTER_STORAGE = "C:\\ClusterStorage\\"


def is_cluster_wide(path: str) -> bool:
    """A folder every node of a cluster reaches at the same path: on a Cluster Shared Volume
    (``C:\\ClusterStorage\\VolumeN\\…``) or an SMB share (``\\\\server\\share\\…``). Text only: a node-local
    drive (``C:\\ProgramData``, ``D:\\``) is never one."""
    low = path.lower()
    if low.startswith("\\\\"):
        return True
    return low.startswith(CLUSTER_STORAGE.lower()) and len(low.rstrip("\\")) > len(CLUSTER_STORAGE)


LEASE_SUFFIX = ".lease"
# Airflow DagRunState values of a run that may still act on its VM (or retry a task that does).
LIVE_RUN_STATES = frozenset({"queued", "running"})


@dataclass(frozen=True)
class Lease:
    """Who holds a VM and what it must restore. No secrets: it is readable on the host."""

    dag_id: str
    run_id: str
    vm_id: str
    checkpoint_name: str
    checkpoint_type_before: str  # a CheckpointType name, recorded once, right after acquiring
    acquired_at: str  # ISO 8601, UTC
    host: str
    existing_checkpoint_ids: tuple[str, ...] = field(default=())  # before this run's attempt

    def encode(self) -> str:
        data = asdict(self)
        data["existing_checkpoint_ids"] = list(self.existing_checkpoint_ids)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Lease:
        try:
            data = json.loads(text)
            return cls(
                dag_id=str(data["dag_id"]),
                run_id=str(data["run_id"]),
                vm_id=str(data["vm_id"]).lower(),
                checkpoint_name=str(data["checkpoint_name"]),
                checkpoint_type_before=str(data["checkpoint_type_before"]),
                acquired_at=str(data["acquired_at"]),
                host=str(data.get("host", "")),
                existing_checkpoint_ids=tuple(
                    str(i).lower() for i in data.get("existing_checkpoint_ids", [])
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"the lease file is not a lease this provider wrote: {exc}") from None

    @property
    def vm_uuid(self) -> uuid.UUID:
        """The VM's Id as the hook takes it (``vm_id`` stays a string: the lease file is JSON)."""
        return uuid.UUID(self.vm_id)

    def same_owner(self, other: Lease) -> bool:
        """The same run's claim on the same VM (a retry of its create task, or its merge)."""
        return (self.dag_id, self.run_id, self.vm_id.lower(), self.checkpoint_name) == (
            other.dag_id,
            other.run_id,
            other.vm_id.lower(),
            other.checkpoint_name,
        )

    def describe(self) -> str:
        return f"DAG {self.dag_id!r} run {self.run_id!r} (since {self.acquired_at}, checkpoint {self.checkpoint_name!r})"


def new_lease(
    *, dag_id: str, run_id: str, vm_id: str, checkpoint_name: str, checkpoint_type_before: str, host: str,
    existing_checkpoint_ids: list[str] | tuple[str, ...] = (),
) -> Lease:  # fmt: skip
    return Lease(
        dag_id=dag_id,
        run_id=run_id,
        vm_id=str(vm_id).lower(),
        checkpoint_name=checkpoint_name,
        checkpoint_type_before=checkpoint_type_before,
        acquired_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        host=host,
        existing_checkpoint_ids=tuple(str(i).lower() for i in existing_checkpoint_ids),
    )


def lease_path(folder: str, vm_id: uuid.UUID | str) -> str:
    """``<folder>\\<vm-id>.lease``; the Id is a GUID, so no user text reaches the path."""
    return join_host_path(require_host_path(folder, "lease folder"), f"{uuid.UUID(str(vm_id))}{LEASE_SUFFIX}")


def is_stale(holder_run_state: str | None) -> bool:
    """A holder whose DAG run is over (success, failed) can no longer retry or merge: its lease may be
    taken over (its checkpoint is never touched). An unknown state (the run is not in this Airflow's
    database, or the lookup failed) is NOT stale: another deployment may share the host."""
    if holder_run_state is None:
        return False
    return str(holder_run_state).strip().lower() not in LIVE_RUN_STATES


def describe_holder(lease: Lease, state: Any) -> str:
    return f"{lease.describe()}, whose run is {state or 'of unknown state'}"
