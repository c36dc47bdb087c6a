"""Restore verification on a host: check an export against its manifest, import it as an isolated
copy, boot it, wait for its heartbeat, and remove it again. Pure pipeline builders plus steps that
take any object with the hook's ``read`` / ``run_pipeline`` (no transport import here).

Real cmdlets only (windows-powershell-docs hyper-v/Import-VM.md, Rename-VM.md, Remove-VM.md,
Get-VMNetworkAdapter.md, Disconnect-VMNetworkAdapter.md): the copy is made with
``Import-VM -Path <vmcx> -Copy -GenerateNewId -VhdDestinationPath -VirtualMachinePath`` into a work
folder of its own, so cleanup can find it by its folder even if the answer to Import-VM was lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from airflow_hyperv.hyperv.names import join_host_path
from airflow_hyperv.hyperv.pipelines import SWITCH, Pipeline, cmd, one
from airflow_hyperv.hyperv.records import Props

VM_TYPE = "Microsoft.HyperV.PowerShell.VirtualMachine"


class RestoreTestError(Exception):
    """The export could not be proven restorable (the message says why)."""


def _is(obj: Any, type_name: str) -> bool:
    return any(t.removeprefix("Deserialized.") == type_name for t in getattr(obj, "types", None) or [])


def config_path(manifest: dict[str, Any]) -> str:
    """``<export>\\<VMName>\\Virtual Machines\\<VMID>.vmcx`` (the layout Export-VMSnapshot writes)."""
    return join_host_path(
        manifest["path"], manifest["vm_name"], "Virtual Machines", f"{str(manifest['vm_id']).upper()}.vmcx"
    )


def import_copy(vmcx: str, work: str) -> Pipeline:
    return one(
        cmd(
            "Import-VM",
            Path=vmcx,
            Copy=SWITCH,
            GenerateNewId=SWITCH,
            VirtualMachinePath=work,
            VhdDestinationPath=join_host_path(work, "Virtual Hard Disks"),
        ),
        label="import-vm",
    )


def rename(vm_id: uuid.UUID, new_name: str) -> Pipeline:
    return one(
        cmd("Get-VM", Id=vm_id), cmd("Rename-VM", NewName=new_name, Passthru=SWITCH), label="rename-vm"
    )


def isolate(vm_id: uuid.UUID) -> Pipeline:
    """Disconnect every adapter, then read them back (one round trip)."""
    return Pipeline(
        (
            (cmd("Get-VM", Id=vm_id), cmd("Get-VMNetworkAdapter"), cmd("Disconnect-VMNetworkAdapter")),
            (cmd("Get-VM", Id=vm_id), cmd("Get-VMNetworkAdapter")),
        ),
        label="isolate-vm",
    )


def remove_copy(vm_id: uuid.UUID) -> Pipeline:
    """Turn the copy off (nothing to preserve) and forget it; its files go with the work folder."""
    return Pipeline(
        (
            (cmd("Get-VM", Id=vm_id), cmd("Stop-VM", TurnOff=SWITCH, Force=SWITCH)),
            (cmd("Get-VM", Id=vm_id), cmd("Remove-VM", Force=SWITCH)),
        ),
        label="remove-vm",
    )


@dataclass(frozen=True)
class VMLocation:
    id: uuid.UUID
    name: str
    path: str
    state: str


def all_vms(hv: Any) -> list[VMLocation]:
    result = hv.read(one(cmd("Get-VM"), label="get-vm"))
    out = []
    for obj in result.output:
        p = Props(obj)
        vm_id = p.guid("Id")
        if vm_id is not None:
            out.append(VMLocation(vm_id, p.text("Name"), p.text("Path"), p.text("State")))
    return out


def verify_against_manifest(hv: Any, manifest: dict[str, Any]) -> list[str]:
    """Problems of the export on disk compared with its manifest (empty: intact)."""
    folder = manifest["path"]
    expected = {str(f["path"]).lower(): f for f in manifest.get("files") or []}
    if not expected:
        return ["the manifest lists no files"]
    if not hv.path_exists(folder):
        return [f"the export folder {folder} does not exist"]
    files = {f.path[len(folder) :].lstrip("\\").lower(): f for f in hv.list_files(folder)}
    problems = [f"{rel} is missing" for rel in sorted(expected) if rel not in files]
    present = [rel for rel in sorted(expected) if rel in files]
    for rel in present:
        if files[rel].length != int(expected[rel]["length"]):
            problems.append(
                f"{rel} is {files[rel].length} bytes, the manifest says {expected[rel]['length']}"
            )
    hashes = {h.path.lower(): h.hash.upper() for h in hv.file_hashes([files[r].path for r in present])}
    for rel in present:
        got = hashes.get(files[rel].path.lower(), "")
        if got != str(expected[rel]["sha256"]).upper():
            problems.append(
                f"{rel}: SHA-256 {got[:16] or 'unreadable'}… differs from the manifest's {str(expected[rel]['sha256'])[:16]}…"
            )
    return problems
