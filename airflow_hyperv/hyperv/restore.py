"""Restore verification on a host: check an export against its manifest, import it as an isolated
copy, boot it, wait for its heartbeat, and remove it again. Pure: pipeline builders, the records
they answer with, and the rules that judge an export; ``HyperVHook`` runs them (no I/O here).

Real cmdlets only (windows-powershell-docs hyper-v/Import-VM.md, Rename-VM.md, Remove-VM.md,
Get-VMNetworkAdapter.md, Disconnect-VMNetworkAdapter.md): the copy is made with
``Import-VM -Path <vmcx> -Copy -GenerateNewId -VhdDestinationPath -VirtualMachinePath`` into a work
folder of its own, so cleanup can find it by its folder even if the answer to Import-VM was lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_hyperv.hyperv.errors import HyperVError
from airflow_hyperv.hyperv.names import join_host_path
from airflow_hyperv.hyperv.pipelines import SWITCH, Pipeline, bound_command, single_statement
from airflow_hyperv.hyperv.records import FileHash, Props, Record, RemoteFile

VM_TYPE = "Microsoft.HyperV.PowerShell.VirtualMachine"
NETWORK_ADAPTER_TYPE = "Microsoft.HyperV.PowerShell.VMNetworkAdapter"


class RestoreTestError(Exception):
    """The export could not be proven restorable (the message says why)."""


class CopyImportError(RestoreTestError, HyperVError):
    """Import-VM made no copy; the message is the host's reason."""


def config_path(manifest: Mapping[str, Any]) -> str:
    """``<export>\\<VMName>\\Virtual Machines\\<VMID>.vmcx`` (the layout Export-VMSnapshot writes)."""
    return join_host_path(
        manifest["path"], manifest["vm_name"], "Virtual Machines", f"{str(manifest['vm_id']).upper()}.vmcx"
    )


def import_copy(vmcx: str, work: str) -> Pipeline:
    return single_statement(
        bound_command(
            "Import-VM",
            Path=vmcx,
            Copy=SWITCH,
            GenerateNewId=SWITCH,
            VirtualMachinePath=work,
            VhdDestinationPath=join_host_path(work, "Virtual Hard Disks"),
        ),
        label="import-vm",
    )


def list_vms() -> Pipeline:
    return single_statement(bound_command("Get-VM"), label="get-vm")


def rename(vm_id: uuid.UUID, new_name: str) -> Pipeline:
    return single_statement(
        bound_command("Get-VM", Id=vm_id),
        bound_command("Rename-VM", NewName=new_name, Passthru=SWITCH),
        label="rename-vm",
    )


def isolate(vm_id: uuid.UUID) -> Pipeline:
    """Disconnect every adapter, then read them back (one round trip)."""
    return Pipeline(
        (
            (
                bound_command("Get-VM", Id=vm_id),
                bound_command("Get-VMNetworkAdapter"),
                bound_command("Disconnect-VMNetworkAdapter"),
            ),
            (bound_command("Get-VM", Id=vm_id), bound_command("Get-VMNetworkAdapter")),
        ),
        label="isolate-vm",
    )


def remove_copy(vm_id: uuid.UUID) -> Pipeline:
    """Turn the copy off (nothing to preserve) and forget it; its files go with the work folder."""
    return Pipeline(
        (
            (bound_command("Get-VM", Id=vm_id), bound_command("Stop-VM", TurnOff=SWITCH, Force=SWITCH)),
            (bound_command("Get-VM", Id=vm_id), bound_command("Remove-VM", Force=SWITCH)),
        ),
        label="remove-vm",
    )


# --- what the host answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VMLocation:
    """A VM and the folder its configuration lives in: how cleanup recognises a copy by its work folder."""

    id: uuid.UUID
    name: str
    path: str
    state: str

    @classmethod
    def decode(cls, obj: Any) -> VMLocation | None:
        """None for an object without an Id (nothing to act on)."""
        p = Props(obj)
        vm_id = p.guid("Id")
        if vm_id is None:
            return None
        return cls(vm_id, p.text("Name"), p.text("Path"), p.text("State"))


@dataclass(frozen=True)
class NetworkAdapter(Record):
    """A VM's network adapter as Get-VMNetworkAdapter reports it; no switch name: disconnected."""

    name: str
    switch_name: str

    @classmethod
    def decode(cls, obj: Any) -> NetworkAdapter:
        p = Props(obj)
        return cls(name=p.text("Name"), switch_name=p.text("SwitchName"))


@dataclass(frozen=True)
class NetworkIsolation:
    """The copy's adapters read back after Disconnect-VMNetworkAdapter, and the errors of the step."""

    vm_id: uuid.UUID
    adapters: list[NetworkAdapter] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def connected(self) -> list[str]:
        return [a.name for a in self.adapters if a.switch_name]

    @property
    def isolated(self) -> bool:
        """Only a clean answer with no adapter on a switch proves the copy cannot reach the network."""
        return not self.errors and not self.connected


@dataclass(frozen=True)
class CopyRemoval:
    """What Stop-VM/Remove-VM of a copy reported, "not found" left out (a copy already gone is removed)."""

    vm_id: uuid.UUID
    errors: list[str] = field(default_factory=list)


# --- judging an export against its manifest ------------------------------------------------------------


def manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """Why the manifest cannot be checked at all (None: it can)."""
    return None if manifest.get("files") else "the manifest lists no files"


def _expected(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(f["path"]).lower(): f for f in manifest.get("files") or []}


def _relative(folder: str, files: Sequence[RemoteFile]) -> dict[str, RemoteFile]:
    return {f.path[len(folder) :].lstrip("\\").lower(): f for f in files}


def size_problems(manifest: Mapping[str, Any], listed: Sequence[RemoteFile]) -> tuple[list[str], list[str]]:
    """Files the manifest lists that are missing or of another size, and the host paths of those
    present (what is worth hashing)."""
    expected, files = _expected(manifest), _relative(manifest["path"], listed)
    problems = [f"{rel} is missing" for rel in sorted(expected) if rel not in files]
    present = [rel for rel in sorted(expected) if rel in files]
    for rel in present:
        if files[rel].length != int(expected[rel]["length"]):
            problems.append(
                f"{rel} is {files[rel].length} bytes, the manifest says {expected[rel]['length']}"
            )
    return problems, [files[rel].path for rel in present]


def hash_problems(
    manifest: Mapping[str, Any], listed: Sequence[RemoteFile], hashes: Sequence[FileHash]
) -> list[str]:
    """Present files whose SHA-256 differs from the manifest's (or could not be read)."""
    expected, files = _expected(manifest), _relative(manifest["path"], listed)
    by_path = {h.path.lower(): h.hash.upper() for h in hashes}
    problems = []
    for rel in (r for r in sorted(expected) if r in files):
        got = by_path.get(files[rel].path.lower(), "")
        if got != str(expected[rel]["sha256"]).upper():
            problems.append(
                f"{rel}: SHA-256 {got[:16] or 'unreadable'}… differs from the manifest's {str(expected[rel]['sha256'])[:16]}…"
            )
    return problems
