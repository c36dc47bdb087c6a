"""The one wait trigger: serialisation, shared per-host polling, and each kind of wait."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.lease import new_lease
from airflow_hyperv.hyperv.waits import HostSnapshot, WaitFor, WaitTarget
from airflow_hyperv.triggers.hyperv import (
    HyperVHostStateTrigger,
    HyperVLeaseTrigger,
    HyperVOperationTrigger,
    HyperVWaitTrigger,
    trigger_for,
)
from tests.support.emulated import settings_for, uri_for

TRIGGERS = [
    HyperVHostStateTrigger(
        hyperv_conn_id="hv", target=WaitTarget(WaitFor.VM_STATE, "A", target_state="Running", require_heartbeat=True),
    ),
    HyperVHostStateTrigger(
        hyperv_conn_id="hv", target=WaitTarget(WaitFor.MERGE_DONE, "b", checkpoint_id="C", avhdx_paths=("x.avhdx",)),
    ),
    HyperVOperationTrigger(
        hyperv_conn_id="hv",
        target=WaitTarget(WaitFor.OPERATION_DONE, "d", operation={
            "shell_id": "E" * 8 + "-0000-0000-0000-" + "0" * 12, "command_id": "F" * 8 + "-0000-0000-0000-" + "0" * 12,
            "label": "export", "started_at": 1.0}),
        resume_state={"plan": {"final": "D:\\\\x"}},
    ),
    HyperVLeaseTrigger(
        hyperv_conn_id="hv",
        target=WaitTarget(WaitFor.LEASE_FREE, "e", holder=new_lease(
            dag_id="d", run_id="r", vm_id="e", checkpoint_name="c", checkpoint_type_before="", host="hv-01")),
        resume_state={"busy_since": 1.0}, give_up_after=60.0, recheck_after=30.0,
    ),
]  # fmt: skip


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: t.wait_for.value)
def test_every_trigger_round_trips_through_serialize(trigger):
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    import json

    json.dumps(kwargs)  # plain JSON: nothing but ids, names and numbers


def test_host_waits_share_a_stream_and_operation_and_lease_waits_do_not():
    a, b, c, d = TRIGGERS
    assert a.shared_stream_key() == b.shared_stream_key() == ("airflow-hyperv-host-state", "hv", 10.0)
    assert c.shared_stream_key() is None and d.shared_stream_key() is None


def test_each_kind_of_wait_has_its_trigger_and_refuses_the_others():
    assert [type(trigger_for(t.target, hyperv_conn_id="hv")) for t in TRIGGERS] == [type(t) for t in TRIGGERS]
    assert HyperVWaitTrigger is HyperVHostStateTrigger  # the name DAGs and old Trigger rows use
    with pytest.raises(ValueError, match="does not wait for operation_done"):
        HyperVHostStateTrigger(hyperv_conn_id="hv", target=TRIGGERS[2].target)
    with pytest.raises(ValueError, match="does not wait for vm_state"):
        HyperVLeaseTrigger(hyperv_conn_id="hv", target=TRIGGERS[0].target)


def test_every_event_has_the_same_shape():
    from airflow_hyperv.hooks.waiter import Outcome

    for trigger in TRIGGERS:
        payload = trigger._event(Outcome("error", "m", {"timed_out": True})).payload
        assert payload == {
            "status": "error", "message": "m", "wait_for": trigger.wait_for.value, "vm_id": trigger.vm_id,
            "resume_state": trigger.resume_state, "timed_out": True,
        }  # fmt: skip


def test_waits_on_one_host_share_one_query_per_interval(emulator, monkeypatch):
    """Ten waits, one host: the shared stream's polls are the only pipelines that run."""
    monkeypatch.setenv("AIRFLOW_CONN_HV_SHARED", uri_for(emulator, "hv-01"))
    model = emulator.host("hv-01")
    vms = {v.name: v for v in model.vms()}
    web = vms["web-01"]
    waits = [
        HyperVHostStateTrigger(hyperv_conn_id="hv_shared", target=WaitTarget(WaitFor.VM_STATE, str(v.id),
                               target_state="Running"), poll_interval=0.05)
        for v in vms.values()
    ] + [
        HyperVHostStateTrigger(hyperv_conn_id="hv_shared", target=WaitTarget(WaitFor.VM_STATE, str(web.id),
                               target_state="Off"), poll_interval=0.05)
    ]  # fmt: skip

    async def scenario():
        subscribers = [asyncio.Queue() for _ in waits]

        async def broadcast():
            async for snapshot in HyperVHostStateTrigger.open_shared_stream(waits[0].serialize()[1]):
                for q in subscribers:
                    await q.put(snapshot)

        async def from_queue(q):
            while True:
                yield await q.get()

        producer = asyncio.create_task(broadcast())
        before = emulator.counters.snapshot()
        firsts = await asyncio.gather(
            *(
                anext(w.filter_shared_stream(from_queue(q)))
                for w, q in zip(waits[:-1], subscribers, strict=False)
            )
        )
        polls_for_running = (emulator.counters.snapshot() - before).pipelines_run
        pending = asyncio.create_task(anext(waits[-1].filter_shared_stream(from_queue(subscribers[-1]))))
        await asyncio.sleep(0.3)
        assert not pending.done()  # web-01 is still Running
        await asyncio.to_thread(model.stop_vm, web)
        event = await asyncio.wait_for(pending, 10)
        producer.cancel()
        return firsts, polls_for_running, event

    firsts, polls, event = asyncio.run(scenario())
    assert all(e.payload["status"] == "success" for e in firsts)
    assert polls == 1  # one host_state pipeline answered all four Running waits
    assert event.payload["status"] == "success" and "Off" in event.payload["message"]


def test_standalone_merge_wait_and_vanished_vm(emulator, monkeypatch):
    from airflow_hyperv.hooks.hyperv import HyperVHook

    monkeypatch.setenv("AIRFLOW_CONN_HV_ONE", uri_for(emulator, "hv-01"))
    with HyperVHook(settings=settings_for(emulator, "hv-01")) as hv:
        dc = hv.get_vm(name="dc-01")
        made = hv.create_checkpoint(
            dc.id, "airflow-hyperv 20261125T0100Z abcabcabcabc", consistency=Consistency.APPLICATION
        )
        avhdx = [d.path for d in hv.vm_overview(dc.id).drives]
        hv.remove_checkpoint(made.checkpoint.id)
    trigger = HyperVHostStateTrigger(
        hyperv_conn_id="hv_one", poll_interval=0.05, resume_state={"k": "v"},
        target=WaitTarget(WaitFor.MERGE_DONE, str(dc.id), checkpoint_id=str(made.checkpoint.id), avhdx_paths=tuple(avhdx)),
    )  # fmt: skip
    event = asyncio.run(asyncio.wait_for(trigger.run().asend(None), 20))
    assert event.payload["status"] == "success" and event.payload["resume_state"] == {"k": "v"}

    gone = HyperVHostStateTrigger(
        hyperv_conn_id="hv_one", poll_interval=0.05,
        target=WaitTarget(WaitFor.VM_STATE, "00000000-0000-0000-0000-000000000001", target_state="Running"),
    )  # fmt: skip
    event = asyncio.run(asyncio.wait_for(gone.run().asend(None), 20))
    assert event.payload["status"] == "error" and "no longer on the host" in event.payload["message"]


def test_poll_errors_are_tolerated_then_reported():
    trigger = TRIGGERS[0]

    async def failing():
        while True:
            yield HostSnapshot(error="ConnectionError: refused")

    event = asyncio.run(anext(trigger.filter_shared_stream(failing())))
    assert event.payload["status"] == "error" and "5 times" in event.payload["message"]
