"""A checkpoint that fails on a full volume is the volume's fault, never "the guest could not quiesce".

Real hosts answer both with the same plain failed job (OperationFailed), and the full-disk text does
not always carry the Win32 code (minishift/minishift#1607): the client looks at the volume that holds
the VM's disks before it calls a failed ProductionOnly attempt a quiesce failure (so the fallback policy
never makes a useless standard attempt on a full disk).
"""

from __future__ import annotations

import pytest

from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.errors import ProductionCheckpointImpossibleError, StorageFullError

MiB = 1 << 20


def fill_volume(emulator, host: str, letter: str, leave: int) -> None:
    """Leave ``leave`` bytes free on the volume (the rest reserved, as other files would use it)."""
    fs = emulator.host(host).fs
    volume = fs.volumes[letter]
    volume.reserved += fs.free(letter) - leave
    assert fs.free(letter) == leave


def test_a_checkpoint_on_a_full_volume_fails_as_storage_full_not_as_the_guest(hook, emulator):
    fill_volume(emulator, "hv-01", "C", leave=2 * MiB)  # less than a fresh differencing disk needs
    vm = hook.get_vm(name="dc-01")
    with pytest.raises(StorageFullError, match=r"only 2 MiB free") as info:
        hook.create_checkpoint(
            vm.id, "airflow-hyperv 20260301T0100Z 00000000f001", consistency=Consistency.APPLICATION
        )
    assert not isinstance(info.value, ProductionCheckpointImpossibleError)
    attempts = emulator.audit.entries(cmdlet="Checkpoint-VM")
    assert len(attempts) == 1 and attempts[0].outcome != "ok", attempts  # the host refused it
    # the host's answer is the plain failed job, the same shape as a guest that cannot quiesce
    assert any(e.startswith("OperationFailed") for e in attempts[0].errors), attempts[0].errors
    assert (
        emulator.host("hv-01").snapshots(next(v for v in emulator.host("hv-01").vms() if v.name == "dc-01"))
        == []
    )


def test_with_room_on_the_volume_a_failed_attempt_is_still_the_guests(hook, emulator):
    """Positive control: the same failed job with free space is "production impossible"."""
    from hyperv_emulator.faults import Fault

    emulator.faults.inject(Fault.GUEST_CANNOT_QUIESCE, vm="dc-01")
    vm = hook.get_vm(name="dc-01")
    with pytest.raises(ProductionCheckpointImpossibleError):
        hook.create_checkpoint(
            vm.id, "airflow-hyperv 20260301T0100Z 00000000f002", consistency=Consistency.APPLICATION
        )
    assert emulator.faults.count_fired(Fault.GUEST_CANNOT_QUIESCE) == 1
