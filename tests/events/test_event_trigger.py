"""The Hyper-V event watcher: real Get-WinEvent through pypsrp against the emulator's event log, a
watermark in an asset state store, and exactly-once delivery across a triggerer restart."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest
from airflow.sdk import Asset, AssetWatcher

from airflow_hyperv.hyperv.events import VMMS_ADMIN, advance, kind_of, xpath_after
from airflow_hyperv.triggers.events import WATERMARK_KEY, HyperVEventTrigger
from hyperv_emulator.model.errors import InvalidQueryError
from hyperv_emulator.model.event_query import parse_xpath
from hyperv_emulator.model.eventlog import WORKER_ADMIN, EventRecord
from tests.support.emulated import uri_for
from tests.support.waiting import wait_for_async


class FakeStateStore:
    """What the triggerer injects (AssetStateStoreAccessors for one watched asset): JSON values."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def aget(self, key, default=None):
        return json.loads(self.data[key]) if key in self.data else default

    async def aset(self, key, value):
        self.data[key] = json.dumps(value)


class Triggerer:
    """Consumes a trigger like the triggerer does: take an event, queue it, ask for the next."""

    def __init__(self, trigger: HyperVEventTrigger) -> None:
        self.trigger = trigger
        self.fired: list[dict] = []
        self.task: asyncio.Task | None = None

    async def _consume(self) -> None:
        async for event in self.trigger.run():
            self.fired.append(event.payload)

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._consume())

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        await wait_for_async(lambda: len(self.fired) >= n, timeout, what=f"{n} events")

    async def stop(self) -> None:  # a triggerer shutting down cancels its trigger tasks
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def make(store=None, **kw) -> HyperVEventTrigger:
    trigger = HyperVEventTrigger(hyperv_conn_id="hv_events", poll_interval=0.05, **kw)
    trigger.asset_state_store = store
    return trigger


def test_kwargs_are_deterministic_and_round_trip():
    a = HyperVEventTrigger(
        hyperv_conn_id="c", channels=[VMMS_ADMIN, WORKER_ADMIN], vm_ids=["B", "a"], kinds=["x", "a"]
    )
    b = HyperVEventTrigger(
        hyperv_conn_id="c", channels=[WORKER_ADMIN, VMMS_ADMIN], vm_ids=["a", "b"], kinds=["a", "x"]
    )
    assert a.serialize() == b.serialize()
    assert HyperVEventTrigger.hash(*a.serialize()) == HyperVEventTrigger.hash(*b.serialize())
    classpath, kwargs = a.serialize()
    module, _, name = classpath.rpartition(".")
    assert getattr(importlib.import_module(module), name)(**kwargs).serialize() == (classpath, kwargs)
    json.dumps(kwargs)
    assert kwargs["event_ids"][WORKER_ADMIN] == [18500, 18502, 18504, 18508, 18512, 18514]
    Asset("hyperv-events/x", watchers=[AssetWatcher(name="w", trigger=a)])  # usable as a watcher


def test_xpath_subset_matches_what_the_client_sends():
    rec = lambda rid, eid: EventRecord(WORKER_ADMIN, rid, eid, 4, 0.0, "m", "G")  # noqa: E731
    query = parse_xpath(xpath_after(5, [18500, 18502]))
    assert [query(rec(r, e)) for r, e in [(5, 18500), (6, 18500), (7, 18504), (9, 18502)]] == [
        False,
        True,
        False,
        True,
    ]
    assert parse_xpath("*")(rec(1, 1))
    for bad in ("*[System[EventRecordID>]]", "Event/System", "*[System[Foo=1]]"):
        with pytest.raises(InvalidQueryError):
            parse_xpath(bad)
    assert kind_of(WORKER_ADMIN, 18502) == "vm_turned_off" and kind_of(WORKER_ADMIN, 1) == "other"
    assert advance({WORKER_ADMIN: 3}, type("E", (), {"channel": WORKER_ADMIN, "record_id": 9})()) == {
        WORKER_ADMIN: 9
    }


@pytest.fixture
def events_conn(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HV_EVENTS", uri_for(emulator, "hv-01"))
    return emulator.host("hv-01")


def test_fires_once_per_event_across_a_triggerer_restart(events_conn):
    host = events_conn
    vms = {v.name: v for v in host.vms()}
    web, app = vms["web-01"], vms["app-01"]
    store = FakeStateStore()
    host.stop_vm(web)  # before the watch starts: history, not fired with start_from="latest"

    async def scenario() -> list[dict]:
        first = Triggerer(make(store))
        first.start()
        while WATERMARK_KEY not in store.data:
            await asyncio.sleep(0.01)
        host.start_vm(web)
        host.stop_vm(web, turn_off=True)
        await first.wait_for(2)
        await asyncio.sleep(0.2)  # a few idle polls: nothing new may fire
        await first.stop()
        host.start_vm(web)  # while no triggerer runs
        host.stop_vm(app)
        second = Triggerer(make(store))  # new instance, same state store
        second.start()
        await second.wait_for(2)
        host.start_vm(app)
        await second.wait_for(3)
        await asyncio.sleep(0.2)
        await second.stop()
        return first.fired + second.fired

    fired = asyncio.run(scenario())
    assert [(e["event_id"], e["kind"]) for e in fired] == [
        (18500, "vm_started"),
        (18502, "vm_turned_off"),
        (18500, "vm_started"),
        (18504, "vm_shut_down"),
        (18500, "vm_started"),
    ]
    ids = [(e["channel"], e["record_id"]) for e in fired]
    assert len(ids) == len(set(ids))  # exactly once each
    assert [e["vm_id"] for e in fired] == [str(web.id)] * 3 + [str(app.id)] * 2
    assert json.loads(store.data[WATERMARK_KEY])[WORKER_ADMIN] == max(r for _, r in ids)


def test_an_event_in_flight_at_shutdown_is_fired_again_not_lost(events_conn):
    host = events_conn
    web = next(v for v in host.vms() if v.name == "web-01")
    store = FakeStateStore()

    async def scenario() -> tuple[dict, dict]:
        gen = make(store).run()
        task = asyncio.ensure_future(gen.__anext__())
        while WATERMARK_KEY not in store.data:
            await asyncio.sleep(0.01)
        host.stop_vm(web)
        first = (await task).payload
        await gen.aclose()  # stopped before the triggerer took it: never queued
        gen2 = make(store).run()
        again = (await asyncio.wait_for(gen2.__anext__(), 10)).payload
        await gen2.aclose()
        return first, again

    first, again = asyncio.run(scenario())
    assert first["record_id"] == again["record_id"] and again["kind"] == "vm_shut_down"


def test_filters_and_checkpoint_failures_from_the_vmms_log(events_conn, hook):
    host = events_conn
    from airflow_hyperv.hyperv.enums import Consistency
    from airflow_hyperv.hyperv.errors import ProductionCheckpointImpossibleError

    vms = {v.name: v for v in host.vms()}
    target = next(v for v in vms.values() if v.state.name == "Running" and not v.production_available())
    store = FakeStateStore()

    async def scenario() -> list[dict]:
        t = Triggerer(
            make(
                store,
                kinds=["production_checkpoint_impossible", "checkpoint_failed"],
                vm_ids=[str(target.id)],
            )
        )
        t.start()
        while WATERMARK_KEY not in store.data:
            await asyncio.sleep(0.01)
        host.stop_vm(vms["web-01"])  # not wanted: skipped, but the watermark moves past it
        with pytest.raises(ProductionCheckpointImpossibleError):
            await asyncio.to_thread(
                hook.create_checkpoint, target.id, "x", consistency=Consistency.APPLICATION
            )
        await t.wait_for(2)
        await asyncio.sleep(0.2)
        await t.stop()
        return t.fired

    fired = asyncio.run(scenario())
    assert [e["kind"] for e in fired] == ["production_checkpoint_impossible", "checkpoint_failed"]
    assert all(e["channel"] == VMMS_ADMIN and e["vm_id"] == str(target.id) for e in fired)
    assert json.loads(store.data[WATERMARK_KEY])[WORKER_ADMIN] >= 1
