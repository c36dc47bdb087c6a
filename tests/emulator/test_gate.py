"""The emulator's gate: a cmdlet call held until the test releases it (faults.Gate), so tests can
order concurrent clients explicitly instead of sleeping."""

from __future__ import annotations

import threading

from airflow_hyperv.hyperv.enums import Consistency


def test_a_gate_holds_the_first_matching_call_before_it_changes_anything(emulator, hook) -> None:
    host = emulator.host("hv-01")
    web = next(vm for vm in host.vms() if vm.name == "web-01")
    sql = next(vm for vm in host.vms() if vm.name == "sql-01")
    gate = emulator.faults.gate("Checkpoint-VM", vm=str(web.id))

    # Another VM's checkpoint passes: the gate is for web-01 only.
    hook.create_checkpoint(sql.id, "other vm", consistency=Consistency.CRASH)
    assert not gate.blocked

    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (hook.create_checkpoint(web.id, "held", consistency=Consistency.CRASH), done.set()),
        daemon=True,
    )
    worker.start()
    assert gate.wait_blocked(30)
    assert "Checkpoint-VM" in gate.held and str(web.id) in gate.held
    assert not host.snapshots(web)  # held before the handler: nothing changed yet
    assert not done.is_set()

    gate.release()
    worker.join(30)
    assert done.is_set()
    assert [c.name for c in host.snapshots(web)] == ["held"]

    # One call per gate: the next checkpoint of web-01 is not held.
    hook.create_checkpoint(web.id, "second", consistency=Consistency.CRASH)
    assert sorted(c.name for c in host.snapshots(web)) == ["held", "second"]
