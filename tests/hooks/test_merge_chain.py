"""A merge is judged from the disk chain, for every place a checkpoint can sit (issue 11 item 6).

The emulator's clock is manual here: a removed checkpoint's merge stays pending until the test
advances the clock, so each test sees the host mid-merge, then after it (docs/emulator.md, Merges).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget, judge
from airflow_hyperv.operators.checkpoint import merge_links
from tests.support.emulated import settings_for

HOUR = 3600.0


@pytest.fixture
def manual(tmp_path: Any) -> Iterator[tuple[Any, Any]]:
    from airflow_hyperv.hooks.hyperv import HyperVHook
    from hyperv_emulator.api import Emulator
    from hyperv_emulator.model.clock import ManualClock

    clock = ManualClock()
    with Emulator(root_dir=tmp_path / "hosts", auth="basic", clock=clock) as emu:
        hv = HyperVHook(settings=settings_for(emu, "hv-01"))
        hv.retry_wait_multiplier, hv.retry_wait_max = 0.01, 0.05
        with hv:
            yield emu, hv


def checkpoints(hv: Any, vm_id: uuid.UUID, *names: str) -> list[Any]:
    return [hv.create_checkpoint(vm_id, n, consistency=Consistency.CRASH).checkpoint for n in names]


def plan(hv: Any, vm_id: uuid.UUID, checkpoint_id: uuid.UUID) -> WaitTarget:
    links = merge_links([d.path for d in hv.checkpoint_drives(checkpoint_id)], hv.disk_chains(vm_id))
    return WaitTarget(WaitFor.MERGE_DONE, str(vm_id), checkpoint_id=str(checkpoint_id), merge_links=links)


def chain_paths(hv: Any, vm_id: uuid.UUID) -> list[list[str]]:
    return [[d.path for d in c.disks] for c in hv.disk_chains(vm_id)]


def test_removing_a_middle_checkpoint_waits_until_its_disk_has_merged_into_its_child(manual: Any) -> None:
    emu, hv = manual
    vm = hv.get_vm(name="web-01")
    _, middle, _ = checkpoints(hv, vm.id, "first", "middle", "last")
    before = chain_paths(hv, vm.id)  # [current, last's disk, middle's disk, base]
    target = plan(hv, vm.id, middle.id)
    own = [d.path for d in hv.checkpoint_drives(middle.id)]
    assert target.merge_links == ((before[0][1], own[0]),) and own[0] == before[0][2]

    hv.remove_checkpoint(middle.id)
    mid_merge = hv.host_state(target.watched_disks)
    assert str(middle.id).lower() not in mid_merge.checkpoint_ids  # the object is gone...
    done, observed = judge(target, mid_merge)
    assert not done, observed  # ...but the disk is still merging
    # The old judgement (no disks for a non-newest checkpoint) called this merged:
    old = WaitTarget(WaitFor.MERGE_DONE, str(vm.id), checkpoint_id=str(middle.id))
    assert judge(old, mid_merge)[0] is True

    emu.host("hv-01").clock.advance(HOUR)
    done, observed = judge(target, hv.host_state(target.watched_disks))
    assert done, observed
    after = chain_paths(hv, vm.id)
    assert after[0] == [before[0][0], before[0][1], before[0][3]]  # the middle disk left; the path stayed
    assert not hv.path_exists(before[0][2])


def test_removing_the_oldest_of_two_folds_the_child_into_the_base_disk(manual: Any) -> None:
    emu, hv = manual
    vm = hv.get_vm(name="web-01")
    oldest, _ = checkpoints(hv, vm.id, "oldest", "newest")
    before = chain_paths(hv, vm.id)
    target = plan(hv, vm.id, oldest.id)
    hv.remove_checkpoint(oldest.id)
    assert not judge(target, hv.host_state(target.watched_disks))[0]
    emu.host("hv-01").clock.advance(HOUR)
    assert judge(target, hv.host_state(target.watched_disks))[0]
    assert chain_paths(hv, vm.id)[0] == [before[0][0], before[0][2]]


def test_removing_the_newest_waits_until_the_drive_is_back_on_the_parent(manual: Any) -> None:
    emu, hv = manual
    vm = hv.get_vm(name="web-01")
    (only,) = checkpoints(hv, vm.id, "only")
    before = chain_paths(hv, vm.id)
    target = plan(hv, vm.id, only.id)
    hv.remove_checkpoint(only.id)
    snapshot = hv.host_state(target.watched_disks)
    assert snapshot.drive_paths[str(vm.id).lower()] == [before[0][0]]  # still on the AVHDX while merging
    assert not judge(target, snapshot)[0]
    emu.host("hv-01").clock.advance(HOUR)
    assert judge(target, hv.host_state(target.watched_disks))[0]
    assert chain_paths(hv, vm.id)[0] == [before[0][1]]


def test_after_a_restore_to_an_older_checkpoint_removing_the_newest_does_not_wait_on_the_running_disk(
    manual: Any,
) -> None:
    emu, hv = manual
    vm = hv.get_vm(name="web-01")
    older, newest = checkpoints(hv, vm.id, "older", "newest")
    newest_disk = hv.checkpoint_drives(newest.id)[0].path
    hv.restore_checkpoint(older.id)
    running_on = chain_paths(hv, vm.id)[0][0]
    target = plan(hv, vm.id, newest.id)
    assert target.merge_links == ()  # the newest checkpoint's disk is on a branch no drive uses now
    hv.remove_checkpoint(newest.id)
    emu.host("hv-01").clock.advance(HOUR)
    snapshot = hv.host_state(target.watched_disks)
    assert judge(target, snapshot)[0]
    # The old judgement waited for the VM to leave the disk it runs on now: never (6 h timeout).
    old = WaitTarget(WaitFor.MERGE_DONE, str(vm.id), checkpoint_id=str(newest.id), avhdx_paths=(running_on,))
    assert judge(old, snapshot)[0] is False
    assert not hv.path_exists(newest_disk)  # nothing depended on it: the host deleted it
    assert chain_paths(hv, vm.id)[0][0] == running_on


def test_a_failed_merge_is_never_done(manual: Any) -> None:
    from hyperv_emulator.faults import Fault

    emu, hv = manual
    vm = hv.get_vm(name="web-01")
    first, _ = checkpoints(hv, vm.id, "first", "second")
    target = plan(hv, vm.id, first.id)
    emu.faults.inject(Fault.MERGE_FAILURE, vm="web-01")
    hv.remove_checkpoint(first.id)
    emu.host("hv-01").clock.advance(HOUR)
    assert emu.faults.count_fired(Fault.MERGE_FAILURE) == 1
    done, observed = judge(target, hv.host_state(target.watched_disks))
    assert not done, observed


def test_a_watched_disk_that_is_gone_is_absent_from_the_snapshot_not_a_failed_poll(manual: Any) -> None:
    """Get-VHD answers ObjectNotFound for a merged-away disk: for a watched path that means 'gone'."""
    _, hv = manual
    from airflow_hyperv.hyperv.errors import HyperVError

    snapshot = hv.host_state(("C:\\nowhere\\gone.avhdx",))
    assert "c:\\nowhere\\gone.avhdx" not in snapshot.disk_parents and snapshot.error is None
    with pytest.raises(HyperVError):
        hv.get_vhds(["C:\\nowhere\\gone.avhdx"])


def test_a_merge_trigger_carries_its_links_and_polls_only_with_waits_on_the_same_disks() -> None:
    from airflow_hyperv.triggers.hyperv import HyperVWaitTrigger

    links = [["C:\\vm\\d_B.avhdx", "C:\\vm\\d_A.avhdx"]]
    merge = HyperVWaitTrigger(
        hyperv_conn_id="hv",
        wait_for=WaitFor.MERGE_DONE.value,
        vm_id="V",
        checkpoint_id="C",
        merge_links=links,
    )
    classpath, kwargs = merge.serialize()
    again = HyperVWaitTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs) and kwargs["target"]["merge_links"] == links
    state = HyperVWaitTrigger(
        hyperv_conn_id="hv", wait_for=WaitFor.VM_STATE.value, vm_id="V", target_state="Off"
    )
    assert state.shared_stream_key() == ("airflow-hyperv-host-state", "hv", 10.0)
    assert merge.shared_stream_key() == (*state.shared_stream_key(), ("c:\\vm\\d_b.avhdx",))
