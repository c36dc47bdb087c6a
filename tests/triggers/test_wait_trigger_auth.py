"""A rejected login ends a wait at once, after exactly one rejected login, with an event that fails the
resuming task without retries (a retrying trigger locks the account out)."""

from __future__ import annotations

import asyncio

import pytest

from airflow_hyperv.hooks.disconnected import start_disconnected
from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.triggers.hyperv import HyperVWaitTrigger, LoginRejected
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
    trigger = HyperVWaitTrigger(
        hyperv_conn_id="hv_auth", wait_for="vm_state", vm_id=vm_id(rejecting), target_state="Off",
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
        stream = HyperVWaitTrigger._poll_host("hv_auth", 0.01)
        got = [await stream.__anext__() for _ in range(n)]
        await stream.aclose()
        return got

    polls = asyncio.run(first_polls(5))
    assert all(isinstance(p, LoginRejected) for p in polls)
    assert rejecting.counters.rejected_logins("hv-01") == 1
    assert rejecting.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1


def test_an_operation_wait_ends_at_the_first_rejected_login(rejecting):
    op = start_disconnected(settings_for(rejecting, "hv-01"), pipelines.host_info())
    trigger = HyperVWaitTrigger(
        hyperv_conn_id="hv_auth", wait_for="operation_done", vm_id=vm_id(rejecting), poll_interval=0.01,
        operation=op.to_dict(),
    )  # fmt: skip
    rejecting.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    event = asyncio.run(asyncio.wait_for(trigger.run().asend(None), 20)).payload
    assert event["status"] == "error" and event["rejected_login"] is True
    assert rejecting.counters.rejected_logins("hv-01") == 1
