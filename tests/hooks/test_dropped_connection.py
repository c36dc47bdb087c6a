"""A transient fault must not stop host work: the hook abandons its pool (no WS-Man Delete) and the host
runs the pipeline to its end, as a real host does for a client that vanished.

The checkpoint pipeline is ``Set-VM -CheckpointType ProductionOnly; Checkpoint-VM; Set-VM -CheckpointType
<the VM's own type>``. A Delete while Checkpoint-VM runs would stop the pipeline before its last
statement and leave the VM's checkpoint type changed. A ManualClock holds Checkpoint-VM until the test
lets it finish, so the order "connection lost -> hook gives up -> host finishes" is explicit.
"""

from __future__ import annotations

import pytest

from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.errors import TransientTransportError
from hyperv_emulator.api import Emulator
from hyperv_emulator.faults import Fault
from hyperv_emulator.model.clock import ManualClock
from hyperv_emulator.wsman.shell import ShellState
from tests.support.emulated import settings_for
from tests.support.waiting import wait_for

VM = "sql-01"  # CheckpointType Production: the pipeline sets ProductionOnly, then puts Production back
NAME = "airflow-hyperv 20261129T0300Z 222222222222"


def fast(hook: HyperVHook) -> HyperVHook:
    hook.retry_wait_multiplier, hook.retry_wait_max = 0.01, 0.05
    return hook


@pytest.fixture
def held(tmp_path):
    """An emulator whose Checkpoint-VM waits until the test advances the clock."""
    clock = ManualClock(auto_advance=False)
    with Emulator(root_dir=tmp_path / "hosts", auth="basic", clock=clock) as emu:
        yield emu, clock


def test_a_connection_lost_mid_pipeline_leaves_the_host_to_restore_the_type(held):
    emu, clock = held
    model = emu.host("hv-01")
    vm = next(v for v in model.vms() if v.name == VM)
    original = vm.checkpoint_type.name
    emu.faults.inject(Fault.DROP_WHILE_RUNNING, cmdlet="Checkpoint-VM")
    hv = fast(HyperVHook(settings=settings_for(emu, "hv-01", retry_attempts=1)))
    try:
        with pytest.raises(TransientTransportError):
            hv.create_checkpoint(vm.id, NAME, consistency=Consistency.APPLICATION)
        # The answer was lost while Checkpoint-VM still ran, and the hook sent no Delete.
        assert emu.faults.count_fired(Fault.DROP_WHILE_RUNNING) == 1
        assert emu.counters.snapshot().by_action.get("Delete", 0) == 0
        assert vm.checkpoint_type.name == "ProductionOnly"  # the first statement ran; the rest waits

        clock.advance(emu.fleet.timing.checkpoint_seconds + 1)  # Hyper-V finishes the checkpoint

        def restored() -> bool:
            set_vm = emu.audit.entries(cmdlet="Set-VM")
            return len(set_vm) == 2 and set_vm[-1].outcome == "ok"

        wait_for(restored, 10, what="the pipeline's last Set-VM ran on the host")
    finally:
        hv.close()
    checkpoint_vm = emu.audit.entries(cmdlet="Checkpoint-VM")
    set_vm = emu.audit.entries(cmdlet="Set-VM")
    assert [e.outcome for e in checkpoint_vm] == ["ok"]
    assert [e.parameters.get("CheckpointType") for e in set_vm] == ["ProductionOnly", original]
    assert set_vm[-1].seq > checkpoint_vm[0].seq
    assert vm.checkpoint_type.name == original
    assert [c.name for c in model.snapshots(vm)] == [NAME]


def test_an_abandoned_shell_lives_until_the_idle_timeout(held):
    emu, clock = held
    model = emu.host("hv-01")
    vm = next(v for v in model.vms() if v.name == VM)
    emu.faults.inject(Fault.DROP_WHILE_RUNNING, cmdlet="Checkpoint-VM")
    hv = fast(HyperVHook(settings=settings_for(emu, "hv-01", retry_attempts=1)))
    with pytest.raises(TransientTransportError):
        hv.create_checkpoint(vm.id, NAME, consistency=Consistency.APPLICATION)
    hv.close()  # nothing left to delete: the pool was abandoned
    assert emu.faults.count_fired(Fault.DROP_WHILE_RUNNING) == 1
    service = emu.server.service
    (shell,) = service.shells("hv-01")
    assert shell.state is ShellState.OPENED
    # While the pipeline runs the shell is kept however long it is quiet.
    assert service.reap(now=shell.last_activity + shell.idle_timeout * 10) == []
    clock.advance(emu.fleet.timing.checkpoint_seconds + 1)
    wait_for(
        lambda: all(p.state.value == "Done" for p in shell.pipelines.values()), 10, what="the pipeline ended"
    )
    # Then it stays until its idle timeout (WinRM IdleTimeout), and goes after it.
    assert service.reap(now=shell.last_activity + shell.idle_timeout - 1) == []
    assert service.reap(now=shell.last_activity + shell.idle_timeout + 1) == [shell.shell_id]
    assert emu.counters.snapshot().by_action.get("Delete", 0) == 0


def test_a_retry_after_a_transient_fault_opens_a_fresh_pool_without_deleting_the_old(emulator):
    emulator.faults.inject(Fault.DROP_BEFORE_RUN, cmdlet="Get-VM")
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        assert hv.get_vm(name="dc-01").name == "dc-01"
        during = emulator.counters.snapshot()
    assert emulator.faults.count_fired(Fault.DROP_BEFORE_RUN) == 1
    assert during.pools_opened == 2
    assert during.by_action.get("Delete", 0) == 0  # the first pool was abandoned, not deleted
    assert emulator.counters.snapshot().by_action.get("Delete", 0) == 1  # the second, closed by `with`
