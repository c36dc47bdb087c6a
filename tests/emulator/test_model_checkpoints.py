"""Checkpoint-type rules, silent fallback, offline checkpoints, restore, timing — the pure model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hyperv_emulator.faults import Fault, FaultPlan
from hyperv_emulator.model import Fleet, ManualClock
from hyperv_emulator.model.enums import CheckpointType, SnapshotType, VMState
from hyperv_emulator.model.errors import (
    CheckpointsDisabledError,
    InvalidStateError,
    ProductionCheckpointError,
)
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.vm import VirtualMachine


def _fleet(
    tmp_path: Path,
    vms: list[dict[str, Any]],
    clock: ManualClock | None = None,
    faults: FaultPlan | None = None,
) -> tuple[HostModel, ManualClock, FaultPlan]:
    clock = clock or ManualClock()
    faults = faults or FaultPlan()
    fleet = Fleet.load(
        {"hosts": [{"name": "hv-t", "volumes": {"C": {"capacity_gb": 500}}, "vms": vms}]},
        root_dir=tmp_path,
        clock=clock,
        faults=faults,
    )
    return fleet.hosts["hv-t"], clock, faults


def _vm(host: HostModel, name: str) -> VirtualMachine:
    return host.find_vms(name)[0]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"guest": "windows"}, "production"),
        ({"guest": "linux", "vss": True}, "production"),
        ({"guest": "linux", "vss": False}, "standard"),  # no hv_vss_daemon: silent fallback
        ({"integration_services": {"VSS": False}}, "standard"),  # VSS service disabled on the host
        ({"heartbeat": False}, "standard"),  # guest not answering
    ],
)
def test_production_falls_back_silently(tmp_path: Path, spec: dict[str, Any], expected: str) -> None:
    host, _, _ = _fleet(tmp_path, [{"name": "vm1", "checkpoint_type": "Production", **spec}])
    cp = host.checkpoint_vm(_vm(host, "vm1"), "c1")
    assert cp is not None
    assert cp.consistency == expected
    assert cp.snapshot_type is SnapshotType.Standard  # a checkpoint carries no production marker
    assert cp.state is (VMState.Off if expected == "production" else VMState.Saved)


def test_production_only_fails_when_guest_cannot_quiesce(tmp_path: Path) -> None:
    host, _, _ = _fleet(
        tmp_path, [{"name": "lx", "guest": "linux", "vss": False, "checkpoint_type": "ProductionOnly"}]
    )
    vm = _vm(host, "lx")
    with pytest.raises(ProductionCheckpointError) as info:
        host.checkpoint_vm(vm, "c1")
    assert "Production checkpoints cannot be created" in info.value.message
    spec = info.value.to_spec("Checkpoint-VM", "Microsoft.HyperV.PowerShell.Commands.CheckpointVM")
    assert spec.exception_type == "Microsoft.HyperV.PowerShell.VirtualizationException"
    assert host.snapshots(vm) == []
    assert vm.hard_drives[0].disk.depth == 0  # nothing was created


def test_guest_fault_makes_production_only_fail_and_production_fall_back(tmp_path: Path) -> None:
    faults = FaultPlan()
    host, _, _ = _fleet(
        tmp_path,
        [{"name": "a", "checkpoint_type": "ProductionOnly"}, {"name": "b", "checkpoint_type": "Production"}],
        faults=faults,
    )
    faults.inject(Fault.GUEST_CANNOT_QUIESCE, vm="a")
    with pytest.raises(ProductionCheckpointError):
        host.checkpoint_vm(_vm(host, "a"), "x")
    faults.inject(Fault.GUEST_CANNOT_QUIESCE, vm="b")
    cp = host.checkpoint_vm(_vm(host, "b"), "y")
    assert cp is not None and cp.consistency == "standard" and cp.state is VMState.Saved
    assert faults.count_fired(Fault.GUEST_CANNOT_QUIESCE) == 2


def test_disabled_fails_with_the_real_text(tmp_path: Path) -> None:
    host, _, _ = _fleet(tmp_path, [{"name": "build", "checkpoint_type": "Disabled"}])
    with pytest.raises(CheckpointsDisabledError) as info:
        host.checkpoint_vm(_vm(host, "build"), "x")
    assert "Checkpoints have been disabled" in info.value.message


def test_standard_always_saves_memory(tmp_path: Path) -> None:
    host, _, _ = _fleet(tmp_path, [{"name": "s", "checkpoint_type": "Standard"}])
    cp = host.checkpoint_vm(_vm(host, "s"), "x")
    assert cp is not None and cp.consistency == "standard" and cp.state is VMState.Saved


def test_offline_vm_only_gets_a_differencing_disk(tmp_path: Path) -> None:
    host, _, _ = _fleet(tmp_path, [{"name": "off", "state": "Off", "checkpoint_type": "ProductionOnly"}])
    vm = _vm(host, "off")
    cp = host.checkpoint_vm(vm, "x")
    assert cp is not None and cp.consistency == "offline" and cp.state is VMState.Off
    assert vm.hard_drives[0].disk.path.endswith(f"_{str(cp.id).upper()}.avhdx")
    assert vm.hard_drives[0].disk.file_size == 4 * 1024 * 1024  # metadata only
    assert vm.state is VMState.Off


def test_set_vm_changes_the_rule(tmp_path: Path) -> None:
    host, _, _ = _fleet(tmp_path, [{"name": "v", "checkpoint_type": "Disabled"}])
    vm = _vm(host, "v")
    host.set_vm(vm, checkpoint_type=CheckpointType.Production, automatic_checkpoints=True)
    assert host.checkpoint_vm(vm, "x") is not None and vm.automatic_checkpoints_enabled


def test_restore_production_leaves_vm_off_and_standard_saved(tmp_path: Path) -> None:
    host, _, _ = _fleet(tmp_path, [{"name": "p"}, {"name": "s", "checkpoint_type": "Standard"}])
    p, s = _vm(host, "p"), _vm(host, "s")
    cp_p = host.checkpoint_vm(p, "prod")
    cp_s = host.checkpoint_vm(s, "std")
    assert cp_p is not None and cp_s is not None
    before = p.hard_drives[0].disk
    assert host.restore_snapshot(p, cp_p)
    assert p.state is VMState.Off
    assert p.hard_drives[0].disk is not before and p.hard_drives[0].disk.parent is cp_p.frozen[0]
    assert not host.fs.to_real(before.path).exists()  # changes since the checkpoint discarded
    assert host.restore_snapshot(s, cp_s)
    assert s.state is VMState.Saved


def test_checkpoint_takes_time_and_blocks_a_second_one(tmp_path: Path) -> None:
    clock = ManualClock(auto_advance=False)
    host, _, _ = _fleet(tmp_path, [{"name": "v"}], clock=clock)
    vm = _vm(host, "v")
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(host.checkpoint_vm(vm, "slow")))
    worker.start()
    for _ in range(100):
        if vm.busy:
            break
        threading.Event().wait(0.01)
    assert vm.busy == "checkpoint" and host.snapshots(vm) == []
    with pytest.raises(InvalidStateError):
        host.checkpoint_vm(vm, "second")
    clock.advance(host.timing.checkpoint_seconds)
    worker.join(5)
    assert result and result[0] is not None and result[0].name == "slow"


def test_cancelled_checkpoint_creates_nothing(tmp_path: Path) -> None:
    clock = ManualClock(auto_advance=False)
    host, _, _ = _fleet(tmp_path, [{"name": "v"}], clock=clock)
    cancelled = threading.Event()
    cancelled.set()
    assert host.checkpoint_vm(_vm(host, "v"), "x", cancelled) is None
    assert host.snapshots(_vm(host, "v")) == []


def test_default_name_and_parent_links(tmp_path: Path) -> None:
    host, clock, _ = _fleet(tmp_path, [{"name": "v"}])
    vm = _vm(host, "v")
    a = host.checkpoint_vm(vm)
    clock.advance(60)
    b = host.checkpoint_vm(vm, "b")
    assert a is not None and b is not None
    assert a.name.startswith("v - (")
    assert b.parent_id == a.id and b.parent_name == a.name
    assert [c.name for c in host.snapshots(vm)] == [a.name, "b"]
    assert vm.hard_drives[0].disk.depth == 2
