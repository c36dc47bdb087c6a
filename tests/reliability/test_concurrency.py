"""Two protections of one VM at once, and a merge racing a new checkpoint.

Hyper-V runs one checkpoint operation per VM at a time and refuses a new checkpoint while a removed one
is merging. Whoever loses must wait or fail clearly (a Hyper-V state error, never "the guest could not
quiesce"), and the disk chain must never be corrupted: every checkpoint's frozen disks exist, the VM's
chain leads back to its base disks, and after every checkpoint is merged nothing is left over.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.errors import (
    HyperVError,
    InvalidStateError,
    OperationInProgressError,
    ProductionCheckpointImpossibleError,
)
from hyperv_emulator.model.clock import ManualClock
from tests.support.emulated import settings_for
from tests.support.waiting import wait_for

VM = "web-01"
CLEAR_ERRORS = (OperationInProgressError, InvalidStateError)


@pytest.fixture
def slow(make_emulator: Any) -> Any:
    """Checkpoints take 0.4 s and merges ~1 s of real time, so the racers really overlap."""
    return make_emulator(checkpoint_seconds=400.0, merge_mb_per_s=0.25).emu


def new_hook(emu: Any) -> Any:
    from airflow_hyperv.hooks.hyperv import HyperVHook

    return HyperVHook(settings=settings_for(emu, "hv-01"))


def model_vm(emu: Any) -> Any:
    return next(v for v in emu.host("hv-01").vms() if v.name == VM)


def assert_chain_consistent(emu: Any) -> None:
    """Every checkpoint's frozen disks and the VM's current chain exist on disk, parents included."""
    host = emu.host("hv-01")
    vm = model_vm(emu)
    with host.lock:
        disks = [d.disk for d in vm.hard_drives] + [d for c in vm.checkpoints for d in c.frozen.values()]
        for disk in disks:
            for link in disk.chain():
                assert host.fs.to_real(link.path).is_file(), f"{link.path} is in a chain but not on disk"
        on_disk = {
            host.fs.to_windows(p).lower()
            for p in host.fs.to_real("C:\\").rglob("*")
            if p.suffix.lower() == ".avhdx" and VM in str(p).lower()
        }
        referenced = {link.path.lower() for disk in disks for link in disk.chain()}
    assert on_disk <= referenced, f"orphaned AVHDX: {sorted(on_disk - referenced)}"


def merge_everything(emu: Any, hook: Any, vm_id: uuid.UUID) -> None:
    for checkpoint in hook.list_checkpoints(vm_id):
        for _ in range(100):
            try:
                hook.remove_checkpoint(checkpoint.id)
                break
            except CLEAR_ERRORS:  # a merge still runs: wait like an operator would
                time.sleep(0.1)
    deadline = time.monotonic() + 20
    while model_vm(emu).merge_until is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def assert_clean(emu: Any, drives_before: list[str]) -> None:
    emu.host("hv-01").settle()
    vm = model_vm(emu)
    assert emu.host("hv-01").snapshots(vm) == []
    assert [d.disk.path for d in vm.hard_drives] == drives_before
    assert_chain_consistent(emu)
    root = emu.host("hv-01").fs.to_real("C:\\")
    assert not [p for p in root.rglob("*") if p.suffix.lower() == ".avhdx"], "AVHDX left after the merges"


def test_two_runs_protect_the_same_vm_one_after_the_other_on_the_host(held: Any) -> None:
    """Two runs' checkpoints of one VM, sequenced on the host: B's Checkpoint-VM while A's is in progress
    is refused with a state error (never "production impossible") and puts the type back; B's retry
    after A's checkpoint succeeds. Then each exports its own checkpoint into its own folder, and both
    merge: the chain ends where it started. (The provider's lease keeps two runs' chains apart on one
    VM; this is the host-level behaviour under it, tests/overlap covers the lease.)"""
    emu, clock = held
    vm_before = model_vm(emu)
    drives_before, type_before = [d.disk.path for d in vm_before.hard_drives], vm_before.checkpoint_type
    names = ["airflow-hyperv 20260301T0100Z 0000000000a1", "airflow-hyperv 20260301T0100Z 0000000000b2"]
    with new_hook(emu) as a, new_hook(emu) as b:
        vm_id = a.get_vm(name=VM).id
        clock.auto_advance = False  # A's checkpoint stays in progress until the test moves the clock
        created: list[Any] = []
        worker = threading.Thread(
            target=lambda: created.append(
                a.create_checkpoint(vm_id, names[0], consistency=Consistency.APPLICATION)
            )
        )
        worker.start()
        wait_for(
            lambda: model_vm(emu).busy == "checkpoint", 30, what="A's Checkpoint-VM in progress on the host"
        )

        with pytest.raises(CLEAR_ERRORS) as refused:
            b.create_checkpoint(vm_id, names[1], consistency=Consistency.APPLICATION)
        assert not isinstance(refused.value, ProductionCheckpointImpossibleError)
        attempt = emu.audit.entries(cmdlet="Checkpoint-VM")[-1]
        assert attempt.outcome != "ok" and any("InvalidState" in e for e in attempt.errors), attempt

        clock.advance(emu.host("hv-01").timing.checkpoint_seconds)
        worker.join(30)
        assert not worker.is_alive() and len(created) == 1 and created[0].created, created
        assert model_vm(emu).checkpoint_type == type_before  # B's refused attempt put its type back too
        clock.auto_advance = True
        second = b.create_checkpoint(vm_id, names[1], consistency=Consistency.APPLICATION)
        assert second.created
        made = {created[0].checkpoint.name: created[0], names[1]: second}
        assert sorted(c.name for c in a.list_checkpoints(vm_id)) == sorted(names)
        assert_chain_consistent(emu)

        # each run exports its own checkpoint into its own folder, one after the other
        paths = ["D:\\Backups\\race-a", "D:\\Backups\\race-b"]
        for hv, name, path in zip((a, b), names, paths, strict=True):
            hv.make_directory(path)
            hv.export_checkpoint(made[name].checkpoint.id, path)
            files = hv.list_files(path)
            assert {f.path.rsplit("\\", 1)[-1].lower() for f in files} >= {"web-01.vhdx"}
            assert all(f.length > 0 for f in files)
        assert_chain_consistent(emu)

        for name in reversed(names):  # each run merges its own, newest first; the host's time moves on
            assert a.remove_checkpoint(made[name].checkpoint.id) is True
            finish_merge(emu, clock)
    assert model_vm(emu).checkpoint_type == type_before
    assert_clean(emu, drives_before)


@pytest.fixture
def held(make_emulator: Any) -> tuple[Any, ManualClock]:
    """A host whose time moves only when the test advances it: a Checkpoint-VM stays in progress and a
    removed checkpoint keeps merging until then, so each order of two operations is set up exactly."""
    clock = ManualClock()  # auto_advance: setup steps run at once; a test turns it off to hold one
    return make_emulator(clock=clock).emu, clock


def finish_merge(emu: Any, clock: ManualClock) -> None:
    """Move the host's time past the merge in progress; the VM is off the merged AVHDX afterwards."""
    vm = model_vm(emu)
    assert vm.merge_until is not None, "no merge in progress"
    clock.advance(vm.merge_until - clock.now())
    emu.host("hv-01").settle()
    assert model_vm(emu).merge_until is None


OLD_NAME = "airflow-hyperv 20260301T0100Z 0000000000c3"
NEW_NAME = "airflow-hyperv 20260302T0100Z 0000000000d4"


def test_a_checkpoint_that_reaches_the_host_first_holds_off_the_merge(held: Any) -> None:
    """Checkpoint-VM first: Remove-VMSnapshot of the older checkpoint is refused while it runs, and
    the retry afterwards merges only the older checkpoint (the new one, and its disks, stay)."""
    emu, clock = held
    vm_before = model_vm(emu)
    drives_before, type_before = [d.disk.path for d in vm_before.hard_drives], vm_before.checkpoint_type
    with new_hook(emu) as a, new_hook(emu) as b:
        vm_id = a.get_vm(name=VM).id
        old = a.create_checkpoint(vm_id, OLD_NAME, consistency=Consistency.APPLICATION)
        clock.auto_advance = False  # from here the new checkpoint takes time until the test moves it
        created: list[Any] = []
        worker = threading.Thread(
            target=lambda: created.append(
                b.create_checkpoint(vm_id, NEW_NAME, consistency=Consistency.APPLICATION)
            )
        )
        worker.start()
        wait_for(lambda: model_vm(emu).busy == "checkpoint", 30, what="Checkpoint-VM in progress on the host")

        with pytest.raises(CLEAR_ERRORS) as refused:
            a.remove_checkpoint(old.checkpoint.id)
        assert not isinstance(refused.value, ProductionCheckpointImpossibleError)
        removal = emu.audit.entries(cmdlet="Remove-VMSnapshot")[-1]
        assert removal.outcome != "ok" and any("InvalidState" in e for e in removal.errors), removal
        assert [c.name for c in emu.host("hv-01").snapshots(model_vm(emu))] == [OLD_NAME]
        assert model_vm(emu).merge_until is None  # nothing started merging

        clock.advance(emu.host("hv-01").timing.checkpoint_seconds)
        worker.join(30)
        assert not worker.is_alive() and len(created) == 1, created
        assert created[0].created and created[0].checkpoint.name == NEW_NAME
        assert model_vm(emu).checkpoint_type == type_before
        assert_chain_consistent(emu)

        # the remover's next try merges the older checkpoint only
        assert a.remove_checkpoint(old.checkpoint.id) is True
        finish_merge(emu, clock)
        assert [c.name for c in a.list_checkpoints(vm_id)] == [NEW_NAME]
        assert_chain_consistent(emu)

        assert a.remove_checkpoint(created[0].checkpoint.id) is True
        finish_merge(emu, clock)
    assert_clean(emu, drives_before)


def test_a_merge_that_reaches_the_host_first_holds_off_the_new_checkpoint(held: Any) -> None:
    """Remove-VMSnapshot first: Checkpoint-VM is refused with a state error (never "the guest could not
    quiesce") while the host merges, the VM's type is put back, and the checkpoint succeeds after."""
    emu, clock = held
    vm_before = model_vm(emu)
    drives_before, type_before = [d.disk.path for d in vm_before.hard_drives], vm_before.checkpoint_type
    with new_hook(emu) as a, new_hook(emu) as b:
        vm_id = a.get_vm(name=VM).id
        old = a.create_checkpoint(vm_id, OLD_NAME, consistency=Consistency.APPLICATION)
        clock.auto_advance = False
        assert a.remove_checkpoint(old.checkpoint.id) is True
        assert model_vm(emu).merge_until is not None  # merging until the test moves the clock

        with pytest.raises(CLEAR_ERRORS) as refused:
            b.create_checkpoint(vm_id, NEW_NAME, consistency=Consistency.APPLICATION)
        assert not isinstance(refused.value, ProductionCheckpointImpossibleError)
        attempt = emu.audit.entries(cmdlet="Checkpoint-VM")[-1]  # the host refused it, made nothing
        assert attempt.outcome != "ok" and any("InvalidState" in e for e in attempt.errors), attempt
        assert model_vm(emu).checkpoint_type == type_before
        assert a.list_checkpoints(vm_id) == []
        assert_chain_consistent(emu)

        finish_merge(emu, clock)
        assert [d.disk.path for d in model_vm(emu).hard_drives] == drives_before
        clock.auto_advance = True
        created = b.create_checkpoint(vm_id, NEW_NAME, consistency=Consistency.APPLICATION)
        assert created.created
        assert [c.name for c in a.list_checkpoints(vm_id)] == [NEW_NAME]
        assert_chain_consistent(emu)

        assert a.remove_checkpoint(created.checkpoint.id) is True
        finish_merge(emu, clock)
    assert_clean(emu, drives_before)


def test_the_losing_error_is_a_hyperv_error_not_a_transport_one(slow: Any) -> None:
    """A checkpoint during another's checkpoint answers at once with a state error (no retry storm)."""
    emu = slow
    with new_hook(emu) as a, new_hook(emu) as b:
        vm_id = a.get_vm(name=VM).id
        started = threading.Event()

        def long_checkpoint() -> Any:
            started.set()
            return a.create_checkpoint(
                vm_id, "airflow-hyperv 20260301T0100Z 0000000000e5", consistency="crash"
            )

        thread_result: list[Any] = []
        thread = threading.Thread(target=lambda: thread_result.append(long_checkpoint()))
        thread.start()
        started.wait(5)
        deadline = time.monotonic() + 5
        while not any(e.outcome == "running" for e in emu.audit.entries(cmdlet="Checkpoint-VM")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(HyperVError) as info:
            b.create_checkpoint(vm_id, "airflow-hyperv 20260301T0100Z 0000000000f6", consistency="crash")
        thread.join(30)
        assert isinstance(info.value, CLEAR_ERRORS), repr(info.value)
        assert len(emu.audit.entries(cmdlet="Checkpoint-VM")) == 2
        merge_everything(emu, a, vm_id)
