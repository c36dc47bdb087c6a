"""The event watcher stops logging in at the first rejected login, says why in its log, and does not end
(the triggerer would start an ended watcher again, i.e. log in again); it watches again once the
connection's credentials change."""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_hyperv.triggers.events import HyperVEventTrigger
from hyperv_emulator.faults import Fault
from tests.support.emulated import uri_for


@pytest.fixture
def watched(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HV_WATCHED", uri_for(emulator, "hv-01"))
    return emulator


def test_the_watcher_stands_by_after_one_rejected_login_and_resumes_on_new_credentials(
    watched, monkeypatch, caplog
):
    host = watched.host("hv-01")
    web = next(v for v in host.vms() if v.name == "web-01")
    # The password was changed in AD and not yet in Airflow: the host rejects the connection's login.
    right = watched.password
    watched.password = "stale-password"  # only to build the stale connection URI
    monkeypatch.setenv("AIRFLOW_CONN_HV_WATCHED", uri_for(watched, "hv-01"))
    watched.password = right
    trigger = HyperVEventTrigger(hyperv_conn_id="hv_watched", poll_interval=0.02)
    trigger._log = logging.getLogger("test.event_watcher")  # a stdlib logger, so caplog sees its lines
    fired: list[dict] = []

    async def scenario() -> None:
        async def consume() -> None:
            async for event in trigger.run():
                fired.append(event.payload)

        task = asyncio.ensure_future(consume())
        while watched.counters.rejected_logins("hv-01") == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # 25 poll intervals: a retrying watcher would log in again meanwhile
        assert watched.counters.rejected_logins("hv-01") == 1
        assert not task.done()  # standing by, not ended: an ended watcher is restarted by the triggerer
        # The operator fixes the connection; the watcher notices without any login and watches again.
        monkeypatch.setenv("AIRFLOW_CONN_HV_WATCHED", uri_for(watched, "hv-01"))
        while not any(r.getMessage().startswith("Connection 'hv_watched' changed") for r in caplog.records):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # its first read sets the watermark ("latest")
        host.stop_vm(web)
        while not fired:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Stopped watching the Hyper-V event log of connection 'hv_watched'" in m for m in errors)
    assert any("does not log in again" in m for m in errors)
    assert not any(watched.password in m or "stale-password" in m for m in errors)
    assert [e["kind"] for e in fired] == ["vm_shut_down"]
    assert watched.counters.rejected_logins("hv-01") == 1


def test_the_reject_fault_counts_once_however_long_the_watcher_waits(watched):
    watched.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    trigger = HyperVEventTrigger(hyperv_conn_id="hv_watched", poll_interval=0.02)

    async def scenario() -> bool:
        gen = trigger.run()
        task = asyncio.ensure_future(gen.__anext__())
        while watched.counters.rejected_logins("hv-01") == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        running = not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) is True
    assert watched.counters.rejected_logins("hv-01") == 1
    assert watched.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1
