"""Quiesce-verify: decide, before anything changes, which checkpoint a VM can get and why.

Pure: it takes what the host reported and returns a report a human can act on. Rules follow
Microsoft's "Using checkpoints" (Hyper-V): a production checkpoint needs the guest's VSS / fsfreeze, via the
VSS integration service (found by its component GUID, as names are localized) and a live heartbeat;
an Off VM has nothing to quiesce. A Critical state (health not OK) blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from airflow_hyperv.hyperv.enums import CheckpointType, SnapshotType, VMState
from airflow_hyperv.hyperv.names import is_provider_checkpoint
from airflow_hyperv.hyperv.records import (
    Checkpoint,
    DiskChain,
    IntegrationService,
    ServiceComponent,
    VirtualMachine,
)

MAX_CHAIN_DEPTH = 10  # deeper chains slow every disk read; Hyper-V's hard limit is 50 checkpoints


class Verdict(str, Enum):
    PRODUCTION = "production"  # an application-consistent checkpoint is possible
    STANDARD_ONLY = "standard_only"  # only a crash-consistent (standard) checkpoint is possible
    BLOCKED = "blocked"  # no checkpoint should be taken


class Policy(str, Enum):
    REQUIRE = "require"  # application-consistent or fail
    FALLBACK = "fallback"  # take a standard checkpoint, recorded as crash-consistent
    SKIP = "skip"  # leave the VM alone when production is impossible

    @classmethod
    def parse(cls, value: Any) -> Policy:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"policy must be one of require, fallback, skip; not {value!r}") from None


@dataclass(frozen=True)
class Finding:
    code: str  # stable identifier, e.g. "vss-disabled"
    severity: str  # "blocks", "prevents-production", "warning", "info"
    message: str  # what is wrong and what to do about it


@dataclass(frozen=True)
class SpaceReading:
    """Free bytes of the volume holding ``path`` (``Get-Volume -FilePath``); ``free`` None: unknown
    (a UNC share, or the host could not tell) — never another volume's number."""

    path: str
    free: int | None
    volume: str = ""  # how the host names the volume: a drive, a CSV folder, \\?\Volume{GUID}\


@dataclass(frozen=True)
class VerifyReport:
    vm_id: str
    vm_name: str
    host: str
    state: str
    checkpoint_type: str
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    chain_depths: list[int] = field(default_factory=list)
    disk_paths: list[str] = field(default_factory=list)
    disk_bytes: int = 0
    existing_checkpoints: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [f.message for f in self.findings if f.severity in ("blocks", "prevents-production")]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyReport:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["verdict"] = Verdict(data["verdict"])
        data["findings"] = [Finding(**f) for f in data.get("findings", [])]
        return cls(**data)


def verify(
    vm: VirtualMachine,
    services: list[IntegrationService],
    checkpoints: list[Checkpoint],
    chains: list[DiskChain],
    *,
    host: str,
    disk_space: Sequence[SpaceReading] = (),
    export_space: SpaceReading | None = None,
    own_checkpoint_name: str | None = None,
    max_chain_depth: int = MAX_CHAIN_DEPTH,
    lease_holder: str | None = None,  # another run holding the VM's lease, described
) -> VerifyReport:
    findings: list[Finding] = []

    def add(code: str, severity: str, message: str) -> None:
        findings.append(Finding(code, severity, message))

    if vm.checkpoint_type is CheckpointType.Disabled:
        add("checkpoints-disabled", "blocks", f"Checkpoints are disabled on {vm.name}: Set-VM -CheckpointType "
            "Production to allow them, or give this VM the skip policy.")  # fmt: skip
    if vm.state.is_critical:
        add("vm-critical", "blocks", f"{vm.name} is {vm.state.name}: Hyper-V reports its health is not OK "
            "(e.g. the storage under its files is full or unreachable). Fix the host side first; a "
            "checkpoint now would add a differencing disk to failing storage.")  # fmt: skip
    elif not vm.state.is_known:
        add("vm-state-unknown", "blocks", f"{vm.name} reports state {int(vm.state)}, which this provider "
            "does not know (a newer Hyper-V?): it is left alone until its state is understood.")  # fmt: skip
    elif vm.state not in (VMState.Running, VMState.Off):
        add("vm-state", "blocks", f"{vm.name} is {vm.state.name}; checkpoint it Running or Off.")
    if vm.automatic_checkpoints:
        add("automatic-checkpoints", "warning", f"{vm.name} takes automatic checkpoints at start; they add "
            "chain depth nobody merges. Consider Set-VM -AutomaticCheckpointsEnabled $false.")  # fmt: skip

    if vm.state is VMState.Running:
        vss = [s for s in services if s.is_backup_service]
        if not vss:
            add("vss-missing", "prevents-production", f"{vm.name} has no VSS (backup) integration service.")
        elif not vss[0].enabled:
            # By its component GUID, never its Name: the name is localized ("Sicherung (Volumeschattenkopie)")
            # and differs between Windows versions, so a -Name fix fails on another host.
            add("vss-disabled", "prevents-production", f"The VSS (backup) integration service of {vm.name} "
                f"('{vss[0].name}') is disabled: Get-VM -Id {vm.id} | Get-VMIntegrationService | Where-Object Id "
                f"-like '*\\{ServiceComponent.VSS}' | Enable-VMIntegrationService.")  # fmt: skip
        elif not vss[0].healthy:
            status = vss[0].primary_status.name if vss[0].primary_status else "unknown"
            add("vss-unhealthy", "prevents-production", f"The guest's VSS / fsfreeze service of {vm.name} does not "
                f"answer (status {status}): start vmicvss (Windows) or hv_vss_daemon (Linux) in the guest.")  # fmt: skip
        if vm.heartbeat is None or not vm.heartbeat.is_ok:
            beat = vm.heartbeat.name if vm.heartbeat else "none"
            add("no-heartbeat", "prevents-production", f"{vm.name} has no healthy heartbeat ({beat}); the guest "
                "cannot be asked to quiesce.")  # fmt: skip
    elif vm.state is VMState.Off:
        add("offline", "info", f"{vm.name} is Off: the checkpoint holds its disks as they were at shutdown.")

    leftovers = [c for c in checkpoints if is_provider_checkpoint(c.name) and c.name != own_checkpoint_name]
    if leftovers:
        add("leftover-ours", "warning", f"{len(leftovers)} checkpoint(s) of other runs are on {vm.name} "
            f"({', '.join(c.name for c in leftovers)}): each belongs to another run, which may still use it; this run "
            "will not touch them. If that run is over, its merge failed: merge it by name "
            "(HyperVMergeCheckpointOperator(checkpoint_name=...)).")  # fmt: skip
    if lease_holder:
        add("lease-held", "info", f"{vm.name} is being protected by {lease_holder}; this run's checkpoint "
            "waits for it (or skips, with on_busy='skip').")  # fmt: skip
    recovery = [c for c in checkpoints if c.snapshot_type is SnapshotType.Recovery]
    if recovery:
        add("recovery-checkpoints", "warning", f"{vm.name} has {len(recovery)} recovery checkpoint(s) left by a "
            "backup tool; they hold AVHDX chains and may mean a backup is running.")  # fmt: skip

    depths = [c.depth for c in chains]  # checkpoint disks (.avhdx), not golden-image parents
    if not checkpoints and any(depths):
        add("orphaned-avhdx", "blocks", f"{vm.name} runs on checkpoint disks ({', '.join(c.current_path for c in chains if c.depth)}) "
            "but has no checkpoint: a merge is still running or has failed. Wait for it, or see docs/operators.md "
            "(When a merge fails); never delete AVHDX files by hand.")  # fmt: skip
    golden = [c for c in chains if c.differencing_depth > c.depth]
    if golden:
        add("differencing-base", "info", f"{vm.name} is built on differencing disks over a parent image "
            f"({', '.join(c.disks[-1].path for c in golden if c.disks)}): a normal setup; keep the parent.")  # fmt: skip
    if depths and max(depths) >= max_chain_depth:
        add("chain-depth", "blocks", f"{vm.name}'s disk chain is {max(depths)} checkpoints deep (limit {max_chain_depth}): "
            "merge old checkpoints first.")  # fmt: skip
    disk_bytes = sum(c.disks[-1].file_size for c in chains if c.disks)
    headroom = max(disk_bytes // 10, 1 << 30)  # a new AVHDX grows with guest writes
    for reading in disk_space:
        where = reading.volume or reading.path
        if reading.free is None:
            add("checkpoint-space-unknown", "warning", f"The free space of the volume holding {reading.path} "
                f"is unknown (a share, or the host could not tell): make sure it has about {headroom >> 20} MiB "
                f"for {vm.name}'s differencing disks.")  # fmt: skip
        elif reading.free < headroom:
            add("checkpoint-space", "blocks", f"Only {reading.free >> 20} MiB free on {where}, where {vm.name}'s disks live; "
                f"a checkpoint needs about {headroom >> 20} MiB for its differencing disks.")  # fmt: skip
    if export_space is not None and export_space.free is None:
        add("export-space-unknown", "warning", f"The free space of the export target {export_space.path} is "
            f"unknown (a share, or the host could not tell); exporting {vm.name} needs about {disk_bytes >> 20} MiB.")  # fmt: skip
    elif export_space is not None and export_space.free is not None and export_space.free < disk_bytes:
        add("export-space", "blocks", f"The export target has {export_space.free >> 20} MiB free; exporting {vm.name} "
            f"needs about {disk_bytes >> 20} MiB.")  # fmt: skip

    if any(f.severity == "blocks" for f in findings):
        verdict = Verdict.BLOCKED
    elif any(f.severity == "prevents-production" for f in findings):
        verdict = Verdict.STANDARD_ONLY
    else:
        verdict = Verdict.PRODUCTION
    return VerifyReport(
        vm_id=str(vm.id),
        vm_name=vm.name,
        host=host,
        state=vm.state.name,
        checkpoint_type=vm.checkpoint_type.name,
        verdict=verdict,
        findings=findings,
        chain_depths=depths,
        disk_paths=[c.current_path for c in chains],
        disk_bytes=disk_bytes,
        existing_checkpoints=[c.name for c in checkpoints],
    )


@dataclass(frozen=True)
class Decision:
    path: str  # "production", "standard" or "skip"
    fail_reason: str | None = None  # set when the policy says this run must fail


def decide(report: VerifyReport, policy: Policy) -> Decision:
    """The branch a policy takes for a verdict."""
    if report.verdict is Verdict.PRODUCTION:
        return Decision("production")
    reasons = "; ".join(report.reasons) or report.verdict.value
    if policy is Policy.SKIP:
        return Decision("skip")
    if report.verdict is Verdict.BLOCKED:
        return Decision("skip", fail_reason=f"{report.vm_name} cannot be checkpointed: {reasons}")
    if policy is Policy.REQUIRE:
        return Decision("skip", fail_reason=f"{report.vm_name} needs an application-consistent checkpoint "
                        f"(policy require), which is impossible now: {reasons}")  # fmt: skip
    return Decision("standard")
