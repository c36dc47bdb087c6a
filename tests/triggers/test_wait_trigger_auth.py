"""A rejected login ends a wait at once, after exactly one rejected login, with an event that fails the
resuming task without retries (a retrying trigger locks the account out)."""

from __future__ import annotations

import asyncio

import pytest

from airflow_hyperv.hooks.disconnected import start_disconnected
from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget
from airflow_hyperv.triggers.hyperv import HyperVHostStateTrigger, HyperVOperationTrigger, LoginRejected
from hyperv_emulator.faults import Fault
from tests.support.emulated import settings_for, uri_for


@pytest.fixture
def rejecting(emulator, monkeypatch):
    """A connection the host accepts, until the test arms REJECT_CREDENTIALS (for every login)."""
    monkeypatch.setenv("AIRFLOW_CONN_HV_AUTH", uri_for(emulator, "hv-01"))
    return emulator


def vm_id(emulator, name: str = "dc-01") -> str:
    return str(next(v for v in emulator.host("hv-01").vms() if v.name == name).id)


def test_a_host_state_wait_ends_at_the_first_rejected_login(rejecting):
    trigger = HyperVHostStateTrigger(
        hyperv_conn_id="hv_auth", target=WaitTarget(WaitFor.VM_STATE, vm_id(rejecting), target_state="Off"),
        poll_interval=0.01,
    )  # fmt: skip
    rejecting.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    event = asyncio.run(asyncio.wait_for(trigger.run().asend(None), 20)).payload
    assert event["status"] == "error" and event["rejected_login"] is True
    assert "rejected the credentials" in event["message"]
    assert rejecting.password not in event["message"]
    assert rejecting.counters.rejected_logins("hv-01") == 1


def test_the_shared_poll_never_logs_in_again_for_later_waiters(rejecting):
    rejecting.faults.inject(Fault.REJECT_CREDENTIALS, times=None)

    async def first_polls(n: int) -> list[object]:
        stream = HyperVHostStateTrigger._poll_host("hv_auth", 0.01)
        got = [await stream.__anext__() for _ in range(n)]
        await stream.aclose()
        return got

    polls = asyncio.run(first_polls(5))
    assert all(isinstance(p, LoginRejected) for p in polls)
    assert rejecting.counters.rejected_logins("hv-01") == 1
    assert rejecting.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1


def test_an_operation_wait_ends_at_the_first_rejected_login(rejecting):
    op = start_disconnected(settings_for(rejecting, "hv-01"), pipelines.host_info())
    trigger = HyperVOperationTrigger(
        hyperv_conn_id="hv_auth", target=WaitTarget(WaitFor.OPERATION_DONE, vm_id(rejecting), operation=op.to_dict()),
        poll_interval=0.01,
    )  # fmt: skip
    rejecting.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    event = asyncio.run(asyncio.wait_for(trigger.run().asend(None), 20)).payload
    assert event["status"] == "error" and event["rejected_login"] is True
    assert rejecting.counters.rejected_logins("hv-01") == 1


def test_a_lease_wait_ends_at_the_first_rejected_login(rejecting):
    from airflow_hyperv.hyperv.lease import new_lease
    from airflow_hyperv.triggers.hyperv import HyperVLeaseTrigger

    web = vm_id(rejecting, "web-01")
    holder = new_lease(
        dag_id="d", run_id="r", vm_id=web, checkpoint_name="c", checkpoint_type_before="", host="h"
    )
    trigger = HyperVLeaseTrigger(
        hyperv_conn_id="hv_auth",
        target=WaitTarget(WaitFor.LEASE_FREE, web, holder=holder),
        poll_interval=0.01,
    )
    rejecting.faults.inject(Fault.REJECT_CREDENTIALS, times=None)

    async def first() -> dict:
        events = trigger.run()
        try:
            return (await asyncio.wait_for(anext(events), 20)).payload
        finally:
            await events.aclose()

    event = asyncio.run(first())
    assert event["status"] == "error" and event["rejected_login"] is True
    assert event["message"].startswith("reading the lease: ")
    assert rejecting.counters.rejected_logins("hv-01") == 1
