"""A host poll decodes only what a wait judges (``Pipeline.decode_only``, ``clixml.lean_object``), and
the snapshot it makes is the one a full decoding of the same objects makes."""

from __future__ import annotations

import dataclasses

from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.clixml import EnumValue, LeanObject, lean_object
from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.records import Checkpoint, HardDiskDrive, VirtualDisk, VirtualMachine, has_type
from airflow_hyperv.hyperv.waits import (
    DRIVE_TYPE,
    HOST_STATE_PROPERTIES,
    SNAPSHOT_TYPE,
    VHD_TYPE,
    VM_TYPE,
    HostSnapshot,
    host_snapshot,
)

VM_XML = (
    '<Obj RefId="0"><TN RefId="0"><T>Microsoft.HyperV.PowerShell.VirtualMachine</T><T>System.Object</T></TN>'
    '<Props><S N="Name">dc-01</S><G N="Id">D2594E9A-7087-52F5-A7B4-4D1DA0D5A060</G>'
    '<Obj RefId="1" N="State"><I32>2</I32><TN RefId="1"><T>Microsoft.HyperV.PowerShell.VMState</T></TN>'
    "<ToString>Running</ToString></Obj>"
    '<Obj RefId="2" N="Heartbeat"><I32>2</I32><TNRef RefId="1" /><ToString>OkApplicationsUnknown</ToString></Obj>'
    '<I64 N="MemoryStartup">4294967296</I64><Nil N="ParentSnapshotId" />'
    '<Obj RefId="3" N="HardDrives"><TN RefId="2"><T>System.Collections.ArrayList</T></TN><LST><S>a</S></LST></Obj>'
    '</Props><MS><S N="Notes">extended</S><B N="IsClustered">true</B></MS></Obj>'
)


def test_lean_object_reads_only_the_properties_asked_for():
    obj = lean_object(VM_XML, {"name", "ID", "State", "Heartbeat", "IsClustered", "HardDrives"})

    assert isinstance(obj, LeanObject)
    assert obj.types == ["Microsoft.HyperV.PowerShell.VirtualMachine", "System.Object"]
    assert obj.adapted_properties == {
        "Name": "dc-01",
        "Id": "D2594E9A-7087-52F5-A7B4-4D1DA0D5A060",
        "State": EnumValue("Running", [2]),
        "Heartbeat": EnumValue("OkApplicationsUnknown", [2]),
        "HardDrives": ["a"],
    }  # MemoryStartup, ParentSnapshotId: not asked for, not read
    assert obj.extended_properties == {"IsClustered": True}
    vm = host_snapshot([obj]).vms["d2594e9a-7087-52f5-a7b4-4d1da0d5a060"]
    assert vm == {"name": "dc-01", "state": "Running", "heartbeat_ok": True}
    assert lean_object("<S>plain</S>", ()) == "plain" and lean_object("<I32>7</I32>", ()) == 7


def _reference(objects: list[object]) -> HostSnapshot:
    """The snapshot as the hook made it before the lean reading: every object decoded whole."""
    snapshot = HostSnapshot()
    for obj in objects:
        if has_type(obj, VM_TYPE):
            vm = VirtualMachine.decode(obj)
            snapshot.vms[str(vm.id).lower()] = {
                "name": vm.name, "state": vm.state.name, "heartbeat_ok": bool(vm.heartbeat and vm.heartbeat.is_ok),
            }  # fmt: skip
        elif has_type(obj, SNAPSHOT_TYPE):
            snapshot.checkpoint_ids.append(str(Checkpoint.decode(obj).id).lower())
        elif has_type(obj, DRIVE_TYPE):
            drive = HardDiskDrive.decode(obj)
            snapshot.drive_paths.setdefault(str(drive.vm_id).lower(), []).append(drive.path)
        elif has_type(obj, VHD_TYPE):
            disk = VirtualDisk.decode(obj)
            snapshot.disk_parents[disk.path.lower()] = (disk.parent_path or "").lower()
    return snapshot


def test_a_lean_host_poll_sees_what_a_full_decoding_sees(hook):
    dc = hook.get_vm(name="dc-01")
    made = hook.create_checkpoint(
        dc.id, "airflow-hyperv 20261125T0100Z leanleanlean", consistency=Consistency.APPLICATION
    )
    avhdx = [d.path for d in hook.vm_overview(dc.id).drives]
    watched = (*avhdx, "C:\\no\\such.vhdx")

    lean_pipeline = pipelines.host_state(watched)
    lean = hook.run_repeatable(lean_pipeline).output
    full = hook.run_repeatable(dataclasses.replace(lean_pipeline, decode_only=frozenset())).output

    assert lean and all(isinstance(o, LeanObject) for o in lean)  # the lean path was taken
    assert not any(isinstance(o, LeanObject) for o in full)  # ... and the reference is pypsrp's own
    snapshot = host_snapshot(lean)
    assert snapshot == _reference(full) == hook.host_state(watched)
    # What the comparison covers: a checkpoint, a VM on its .avhdx, a watched disk's parent, a VM whose
    # heartbeat is healthy.
    assert str(made.checkpoint.id).lower() in snapshot.checkpoint_ids
    assert any(p.lower().endswith(".avhdx") for p in snapshot.drive_paths[str(dc.id).lower()])
    assert {p.lower() for p in avhdx} <= set(snapshot.disk_parents)
    assert any(vm["heartbeat_ok"] for vm in snapshot.vms.values())

    # Positive control: a reading that skips a property a wait judges does not match.
    without_heartbeat = dataclasses.replace(lean_pipeline, decode_only=HOST_STATE_PROPERTIES - {"Heartbeat"})
    assert host_snapshot(hook.run_repeatable(without_heartbeat).output) != snapshot
