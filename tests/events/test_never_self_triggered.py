"""protect_on_change never reacts to the provider's own doing (issue 10 item 9; docs/events.md).

Each test does its host operations first, then starts protect_on_change's own watcher (its shipped
kwargs, pointed at the emulator) from the beginning of the log: the order is fixed, nothing races.
A positive control (an ordinary VM shut down) must fire, so "nothing fired" cannot pass by accident.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from airflow_hyperv.hyperv.events import RESTORE_COPY_NAME_PREFIX
from airflow_hyperv.triggers.events import HyperVEventTrigger
from hyperv_emulator.model.eventlog import VMMS_ADMIN, WORKER_ADMIN
from tests.support.dags import import_file
from tests.support.emulated import uri_for

DAG_FILE = EXAMPLE_DAGS / "protect_on_change.py"


@pytest.fixture
def host(emulator: Any, monkeypatch: Any) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_HV_EVENTS", uri_for(emulator, "hv-01"))
    return emulator.host("hv-01")


def shipped_watcher() -> HyperVEventTrigger:
    """The trigger protect_on_change ships, on the test connection, polling fast, from the beginning."""
    module = import_file(DAG_FILE, "protect_on_change_under_test")
    _, kwargs = module.hv01_changes.watchers[0].trigger.serialize()
    kwargs.update(hyperv_conn_id="hv_events", poll_interval=0.05, start_from="beginning")
    trigger = HyperVEventTrigger(**kwargs)
    trigger.asset_state_store = None
    return trigger


def fired_by(trigger: HyperVEventTrigger, expected: int) -> list[dict[str, Any]]:
    """Run the watcher until ``expected`` events fired, then a little longer to catch any extra."""

    async def scenario() -> list[dict[str, Any]]:
        fired: list[dict[str, Any]] = []

        async def consume() -> None:
            async for event in trigger.run():
                fired.append(event.payload)

        task = asyncio.ensure_future(consume())
        try:
            await asyncio.wait_for(_until(lambda: len(fired) >= expected), 20.0)
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return fired

    return asyncio.run(scenario())


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def event_ids(host: Any, channel: str, vm: Any) -> list[int]:
    return [r.event_id for r in host.events.records(channel) or [] if str(vm.id).upper() in r.message.upper()]


def test_the_providers_own_failed_production_checkpoint_does_not_trigger_a_run(host: Any, hook: Any) -> None:
    from airflow_hyperv.hyperv.enums import Consistency
    from airflow_hyperv.hyperv.errors import ProductionCheckpointImpossibleError

    vms = {v.name: v for v in host.vms()}
    cannot_quiesce = vms["app-01"]  # Linux without hv_vss_daemon
    with pytest.raises(ProductionCheckpointImpossibleError):  # what a run's ProductionOnly attempt does
        hook.create_checkpoint(cannot_quiesce.id, "attempt", consistency=Consistency.APPLICATION)
    assert event_ids(host, VMMS_ADMIN, cannot_quiesce) == [18016, 18012]  # the events were emitted
    host.stop_vm(vms["web-01"])  # positive control: maintenance on an ordinary VM

    fired = fired_by(shipped_watcher(), 1)
    assert [(e["kind"], e["vm_id"]) for e in fired] == [("vm_shut_down", str(vms["web-01"].id).lower())]


def test_the_restore_tests_copy_and_vms_that_are_gone_do_not_trigger_a_run(host: Any, hook: Any) -> None:
    vms = {v.name: v for v in host.vms()}
    copy, deleted, control = vms["app-01"], vms["dc-01"], vms["web-01"]
    # The restore test's isolated copy, turned off by its teardown (still there when the watcher reads)
    hook.rename_vm(copy.id, f"{RESTORE_COPY_NAME_PREFIX}app-01 0123456789ab")
    hook.stop_vm(copy.id, turn_off=True)
    # A copy already removed by the time the watcher reads (its turn-off names a VM that is gone)
    hook.stop_vm(deleted.id, turn_off=True)
    host.remove_vm(deleted)
    assert event_ids(host, WORKER_ADMIN, copy) == [18502] and event_ids(host, WORKER_ADMIN, deleted) == [
        18502
    ]
    host.stop_vm(control)  # positive control

    fired = fired_by(shipped_watcher(), 1)
    assert [(e["kind"], e["vm_id"]) for e in fired] == [("vm_shut_down", str(control.id).lower())]


def test_the_restore_copy_name_prefix_is_the_one_the_restore_test_uses() -> None:
    from airflow_hyperv.operators.restore_verification import COPY_PREFIX

    assert f"{COPY_PREFIX} " == RESTORE_COPY_NAME_PREFIX
