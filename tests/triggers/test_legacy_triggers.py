"""Triggers a running deployment serialized before the trigger split still load and run.

Before, one class (``airflow_hyperv.triggers.hyperv.HyperVWaitTrigger``) served every wait, with
flat kwargs (``wait_for``, ``vm_id``, ..., ``echo``). Its Trigger rows keep that classpath and those
kwargs; the triggerer builds them with ``import_string(classpath)(**kwargs)``, as here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow._shared.module_loading import import_string

from airflow_hyperv.hooks.disconnected import start_disconnected
from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.lease import new_lease
from airflow_hyperv.triggers.hyperv import (
    CLASSPATH,
    HyperVHostStateTrigger,
    HyperVLeaseTrigger,
    HyperVOperationTrigger,
)
from tests.support.emulated import settings_for, uri_for


def old_kwargs(**fields: Any) -> dict[str, Any]:
    """What the old ``HyperVWaitTrigger.serialize()`` wrote, every key, through JSON as stored."""
    kwargs = {
        "hyperv_conn_id": "hv_old",
        "wait_for": None,
        "vm_id": None,
        "poll_interval": 0.05,
        "target_state": None,
        "require_heartbeat": False,
        "checkpoint_id": None,
        "avhdx_paths": [],
        "merge_links": [],
        "operation": None,
        "echo": {"busy_since": 1.5},
        "give_up_after": None,
        "holder": None,
        "recheck_after": 300.0,
    }
    kwargs.update(fields)
    return json.loads(json.dumps(kwargs))


def inflate(kwargs: dict[str, Any]) -> Any:
    return import_string(CLASSPATH)(**kwargs)


def first_event(trigger: Any) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        events = trigger.run()
        try:
            return (await asyncio.wait_for(anext(events), 20)).payload
        finally:
            await events.aclose()  # as the triggerer does once the trigger fired

    return asyncio.run(first())


@pytest.fixture
def old(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HV_OLD", uri_for(emulator, "hv-01"))
    return emulator


def vm_id(emulator: Any, name: str) -> str:
    return str(next(v for v in emulator.host("hv-01").vms() if v.name == name).id)


def test_an_old_vm_state_trigger_loads_and_runs(old):
    dc = vm_id(old, "dc-01")
    trigger = inflate(old_kwargs(wait_for="vm_state", vm_id=dc.upper(), target_state="Running"))
    assert type(trigger) is HyperVHostStateTrigger
    assert trigger.shared_stream_key() == ("airflow-hyperv-host-state", "hv_old", 0.05)
    event = first_event(trigger)
    assert event["status"] == "success" and event["message"] == "dc-01 is Running"
    assert event["wait_for"] == "vm_state" and event["vm_id"] == dc.lower()
    assert event["resume_state"] == {"busy_since": 1.5}  # the old echo, handed back


def test_an_old_merge_trigger_keeps_its_links_and_its_shared_stream(old):
    links = [["C:\\vm\\d_B.avhdx", "C:\\vm\\d_A.avhdx"]]
    trigger = inflate(old_kwargs(wait_for="merge_done", vm_id="V", checkpoint_id="C", merge_links=links))
    assert type(trigger) is HyperVHostStateTrigger
    assert trigger.target.merge_links == (("C:\\vm\\d_B.avhdx", "C:\\vm\\d_A.avhdx"),)
    assert trigger.target.checkpoint_id == "c"
    assert trigger.shared_stream_key() == (
        "airflow-hyperv-host-state",
        "hv_old",
        0.05,
        ("c:\\vm\\d_b.avhdx",),
    )


def test_an_old_operation_trigger_loads_as_the_operation_trigger_and_runs(old):
    op = start_disconnected(settings_for(old, "hv-01"), pipelines.host_info())
    trigger = inflate(old_kwargs(wait_for="operation_done", vm_id="d", operation=op.to_dict()))
    assert type(trigger) is HyperVOperationTrigger and trigger.shared_stream_key() is None
    event = first_event(trigger)
    assert event["status"] == "success" and event["state"] == "completed" and event["errors"] == []
    assert event["resume_state"] == {"busy_since": 1.5}


def test_an_old_lease_trigger_loads_as_the_lease_trigger_and_runs(old):
    web = vm_id(old, "web-01")
    holder = new_lease(
        dag_id="d", run_id="r", vm_id=web, checkpoint_name="c", checkpoint_type_before="", host="hv-01"
    )  # never written: the host has no lease on web-01, so it reads as released
    trigger = inflate(
        old_kwargs(wait_for="lease_free", vm_id=web, holder=holder.encode(), recheck_after=60.0)
    )
    assert type(trigger) is HyperVLeaseTrigger and trigger.recheck_after == 60.0
    event = first_event(trigger)
    assert event["status"] == "success" and "was released by" in event["message"]
    assert event["wait_for"] == "lease_free" and event["resume_state"] == {"busy_since": 1.5}


@pytest.mark.parametrize(
    "fields",
    [
        {"wait_for": "vm_state", "vm_id": "A", "target_state": "Off"},
        {"wait_for": "merge_done", "vm_id": "b", "checkpoint_id": "C", "avhdx_paths": ["x.avhdx"]},
        {"wait_for": "operation_done", "vm_id": "d", "operation": {"shell_id": "s", "command_id": "c"}},
        {"wait_for": "lease_free", "vm_id": "e", "holder": new_lease(
            dag_id="d", run_id="r", vm_id="e", checkpoint_name="c", checkpoint_type_before="", host="h"
        ).encode()},
    ],
    ids=lambda f: f["wait_for"],
)  # fmt: skip
def test_an_old_trigger_reserializes_in_the_new_form_which_round_trips(fields):
    trigger = inflate(old_kwargs(**fields))
    classpath, kwargs = trigger.serialize()
    assert classpath == trigger.classpath() and "echo" not in kwargs and kwargs["resume_state"]
    assert kwargs["target"]["wait_for"] == fields["wait_for"]
    rebuilt = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert type(rebuilt) is type(trigger) and rebuilt.serialize() == (classpath, kwargs)


def test_old_kwargs_with_an_unknown_argument_are_refused():
    with pytest.raises(TypeError, match="unexpected"):
        inflate(old_kwargs(wait_for="vm_state", vm_id="A", target_state="Off", colour="blue"))
