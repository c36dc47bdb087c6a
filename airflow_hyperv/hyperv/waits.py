"""What a deferred wait waits for, judged from one snapshot of a host. Pure: no I/O.

One snapshot answers every wait on that host, which is what lets the triggerer poll per host, not
per VM (Airflow's shared trigger streams).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from airflow_hyperv.hyperv.enums import HeartbeatStatus, VMState
from airflow_hyperv.hyperv.lease import Lease
from airflow_hyperv.hyperv.progress import OutputProgress
from airflow_hyperv.hyperv.records import Props, has_type


class WaitFor(str, Enum):
    VM_STATE = "vm_state"  # the VM reaches a state (and, if asked, a healthy heartbeat)
    MERGE_DONE = "merge_done"  # a removed checkpoint's differencing disks are merged away
    OPERATION_DONE = "operation_done"  # a pipeline started in a disconnected session has ended
    LEASE_FREE = "lease_free"  # another run's protection lease on the VM is gone (or changed hands)


@dataclass(frozen=True)
class HostSnapshot:
    """Plain data so it can be broadcast to many triggers and logged."""

    vms: dict[str, dict[str, Any]] = field(default_factory=dict)  # vm id -> {"name","state","heartbeat_ok"}
    checkpoint_ids: list[str] = field(default_factory=list)
    drive_paths: dict[str, list[str]] = field(default_factory=dict)  # vm id -> current disk paths
    # Only the disks a merge wait asked for (host_state(disk_paths=...)): path (lower) -> its parent
    # path (lower, "" for a base disk). A path that is not there is no disk any more.
    disk_parents: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the poll failed; waits keep waiting up to their error budget


# The objects of a host poll (pipelines.host_state) and the only properties a wait judges of them: a
# VM's Id, name, state and heartbeat; a checkpoint's Id; a drive's VM and path; a disk's parent. The
# transport converts only these (``clixml.lean_object``); ``host_snapshot`` reads them.
HOST_STATE_TYPES = (
    VM_TYPE := "Microsoft.HyperV.PowerShell.VirtualMachine",
    SNAPSHOT_TYPE := "Microsoft.HyperV.PowerShell.VMSnapshot",
    DRIVE_TYPE := "Microsoft.HyperV.PowerShell.HardDiskDrive",
    VHD_TYPE := "Microsoft.Vhd.PowerShell.VirtualHardDisk",
)
HOST_STATE_PROPERTIES = frozenset(
    {"Id", "VMId", "Name", "VMName", "State", "Heartbeat", "Path", "ParentPath"}
)


def host_snapshot(objects: Iterable[Any]) -> HostSnapshot:
    """The snapshot a host poll's objects make, read for ``HOST_STATE_PROPERTIES`` only (from lean
    objects or fully deserialized ones alike: ``records.Props``).

    :param objects: The output of ``pipelines.host_state``: VMs, checkpoints, drives, watched disks.
    :return: Per VM Id (lower case) its name, state and heartbeat; the checkpoint Ids; each VM's
        current disk paths; each watched disk's parent.
    """
    snapshot = HostSnapshot()
    for obj in objects:
        if has_type(obj, VM_TYPE):
            p = Props(obj)
            vm_id = p.guid("Id") or p.guid("VMId")
            if vm_id is None:
                raise ValueError("a VirtualMachine object without an Id")
            heartbeat = p.raw("Heartbeat")
            snapshot.vms[str(vm_id).lower()] = {
                "name": p.text("Name") or p.text("VMName"),
                "state": VMState.parse(p.raw("State")).name,
                "heartbeat_ok": heartbeat not in (None, "") and HeartbeatStatus.parse(heartbeat).is_ok,
            }
        elif has_type(obj, SNAPSHOT_TYPE):
            checkpoint_id = Props(obj).guid("Id")
            if checkpoint_id is None:
                raise ValueError("a VMSnapshot object without an Id")
            snapshot.checkpoint_ids.append(str(checkpoint_id).lower())
        elif has_type(obj, DRIVE_TYPE):
            p = Props(obj)
            drive_vm = p.guid("VMId")
            snapshot.drive_paths.setdefault(str(drive_vm).lower(), []).append(p.text("Path"))
        elif has_type(obj, VHD_TYPE):
            p = Props(obj)
            snapshot.disk_parents[p.text("Path").lower()] = (p.optional_text("ParentPath") or "").lower()
    return snapshot


@dataclass(frozen=True)
class WaitTarget:
    """What one wait waits for: the one form every wait uses, in the worker, in a sensor and in a
    trigger (``to_dict``/``from_dict`` at the trigger boundary)."""

    kind: WaitFor
    vm_id: str
    target_state: str | None = None
    require_heartbeat: bool = False
    checkpoint_id: str | None = None
    avhdx_paths: tuple[str, ...] = ()  # disks the VM must no longer run on
    # (disk, parent) links of the removed checkpoint's chain: the merge has ended when none is left.
    # Hyper-V folds one of the two into the other (which one survives depends on where the checkpoint
    # sits), so the link itself, not a file name, says whether the merge is done.
    merge_links: tuple[tuple[str, str], ...] = ()
    # OPERATION_DONE: the disconnected operation (``DisconnectedOperation.to_dict()``: ids and a label).
    operation: Mapping[str, Any] | None = field(default=None, hash=False)
    holder: Lease | None = None  # LEASE_FREE: the lease whose end is waited for
    # OPERATION_DONE: the folder the operation writes and what it should hold at the end, so the wait
    # can say how far it has got (an export's staging folder and its checkpoint's disks). Optional.
    progress: OutputProgress | None = None

    def __post_init__(self) -> None:
        if self.kind is WaitFor.OPERATION_DONE and not self.operation:
            raise ValueError("waiting for an operation needs the operation")
        if self.kind is WaitFor.LEASE_FREE and not self.holder:
            raise ValueError("waiting for a lease needs its holder")

    @property
    def watched_disks(self) -> tuple[str, ...]:
        """The disks whose parent the host snapshot must report for this wait."""
        return tuple(disk for disk, _ in self.merge_links)

    @property
    def on_host_state(self) -> bool:
        """Judged from a host snapshot (``judge``), so it can share the host's one poll."""
        return self.kind in (WaitFor.VM_STATE, WaitFor.MERGE_DONE)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for trigger kwargs. The keys are those the trigger's kwargs had before there was
        a ``WaitTarget`` there, so ``from_dict`` also reads a trigger serialized back then."""
        return {
            "wait_for": self.kind.value,
            "vm_id": self.vm_id,
            "target_state": self.target_state,
            "require_heartbeat": self.require_heartbeat,
            "checkpoint_id": self.checkpoint_id,
            "avhdx_paths": list(self.avhdx_paths),
            "merge_links": [[disk, parent] for disk, parent in self.merge_links],
            "operation": dict(self.operation) if self.operation else None,
            "holder": self.holder.encode() if self.holder else None,
            "progress": self.progress.to_dict() if self.progress else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WaitTarget:
        """The target ``to_dict`` wrote (ids lower-cased, as the host reports them)."""
        checkpoint_id = data.get("checkpoint_id")
        holder = data.get("holder")
        progress = data.get("progress")
        return cls(
            kind=WaitFor(data["wait_for"]),
            vm_id=str(data["vm_id"]).lower(),
            target_state=data.get("target_state"),
            require_heartbeat=bool(data.get("require_heartbeat")),
            checkpoint_id=str(checkpoint_id).lower() if checkpoint_id else None,
            avhdx_paths=tuple(data.get("avhdx_paths") or ()),
            merge_links=tuple((str(disk), str(parent)) for disk, parent in data.get("merge_links") or ()),
            operation=dict(data["operation"]) if data.get("operation") else None,
            holder=Lease.decode(holder) if holder else None,
            progress=OutputProgress.from_dict(progress) if progress else None,
        )


# The keys of ``WaitTarget.to_dict``: flat in the kwargs of triggers serialized before ``target``.
TARGET_KEYS = frozenset(
    {"wait_for", "vm_id", "target_state", "require_heartbeat", "checkpoint_id", "avhdx_paths", "merge_links",
     "operation", "holder", "progress"}
)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """One judged poll: whether the wait is over, what was seen, and whether it ended badly."""

    done: bool
    observed: str
    failed: bool = False  # over, but not as hoped (the VM vanished, the operation failed)
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)  # extra event fields


def host_verdict(target: WaitTarget, snapshot: HostSnapshot) -> Verdict:
    """``judge`` with its one rule for a VM that left the host: the wait is over, and it failed."""
    done, observed = judge(target, snapshot)
    return Verdict(done, observed, failed=done and target.vm_id.lower() not in snapshot.vms)


def judge(target: WaitTarget, snapshot: HostSnapshot) -> tuple[bool, str]:
    """(done, what was observed). A VM that disappeared is 'done' (``host_verdict``: failed)."""
    vm = snapshot.vms.get(target.vm_id.lower())
    if vm is None:
        return True, f"VM {target.vm_id} is no longer on the host"
    if target.kind is WaitFor.VM_STATE:
        reached = vm["state"].lower() == (target.target_state or "").lower()
        if reached and target.require_heartbeat and not vm["heartbeat_ok"]:
            return False, f"{vm['name']} is {vm['state']}, waiting for a healthy heartbeat"
        return reached, f"{vm['name']} is {vm['state']}"
    if target.kind is WaitFor.MERGE_DONE:
        if target.checkpoint_id and target.checkpoint_id.lower() in snapshot.checkpoint_ids:
            return False, f"checkpoint {target.checkpoint_id} is still on {vm['name']}"
        on_disk = {p.lower() for p in snapshot.drive_paths.get(target.vm_id.lower(), [])}
        pending = [p for p in target.avhdx_paths if p.lower() in on_disk]
        if pending:
            return False, f"{vm['name']} still runs on {', '.join(pending)} (merging)"
        linked = [
            disk
            for disk, parent in target.merge_links
            if snapshot.disk_parents.get(disk.lower()) == parent.lower()
        ]
        if linked:
            return False, f"{', '.join(linked)} of {vm['name']} still sits on the checkpoint's disk (merging)"
        return True, f"the checkpoint's differencing disks of {vm['name']} have left its chain"
    raise ValueError(f"{target.kind} is not judged from a host snapshot")


def lease_released(holder: Lease, current: Lease | None) -> tuple[bool, str]:
    """(done, observed) for a LEASE_FREE wait: done once ``holder`` no longer holds the VM (the
    waiting task then tries to acquire it; another waiter may have been faster)."""
    if current is None:
        return True, f"the lease of VM {holder.vm_id} was released by {holder.describe()}"
    if not current.same_owner(holder):
        return True, f"the lease of VM {holder.vm_id} passed to {current.describe()}"
    return False, f"VM {holder.vm_id} is held by {holder.describe()}"


def lease_verdict(holder: Lease, current: Lease | None) -> Verdict:
    return Verdict(*lease_released(holder, current))
