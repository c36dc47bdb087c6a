"""The shared host poll of a trigger: its snapshot is decoded in the worker thread that runs pypsrp,
never on the triggerer's event loop, and the poll loops of one event loop hold spread phases."""

from __future__ import annotations

import asyncio
import itertools
import threading

from airflow_hyperv.hyperv.waits import HostSnapshot
from airflow_hyperv.triggers.hyperv import HyperVHostStateTrigger, _phase_plan, poll_loop_key
from tests.support.emulated import settings_for, uri_for


def _record_decoding(monkeypatch) -> list[tuple[str, int]]:
    """Test doubles of the two decoders a host poll runs (the lean CLIXML reading of each object and
    the snapshot made of them): they note the thread they run on, then do the real work."""
    import airflow_hyperv.hooks.hyperv as hyperv_hook
    import airflow_hyperv.hooks.transport as transport

    calls: list[tuple[str, int]] = []
    lean_object, host_snapshot = transport.lean_object, hyperv_hook.host_snapshot

    def lean(message, keep):
        calls.append(("lean_object", threading.get_ident()))
        return lean_object(message, keep)

    def snapshot(objects):
        calls.append(("host_snapshot", threading.get_ident()))
        return host_snapshot(objects)

    monkeypatch.setattr(transport, "lean_object", lean)
    monkeypatch.setattr(hyperv_hook, "host_snapshot", snapshot)
    return calls


def test_the_shared_poll_decodes_off_the_event_loop(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HV_DECODE", uri_for(emulator, "hv-01"))
    calls = _record_decoding(monkeypatch)

    async def two_polls() -> tuple[int, list[object]]:
        stream = HyperVHostStateTrigger._poll_host("hv_decode", 0.05)
        got = [await anext(stream) for _ in range(2)]
        await stream.aclose()
        return threading.get_ident(), got

    loop_thread, got = asyncio.run(two_polls())

    assert all(isinstance(s, HostSnapshot) and s.vms and s.error is None for s in got), got
    assert {name for name, _ in calls} == {"lean_object", "host_snapshot"}  # both ran, once per object / poll
    assert sum(name == "host_snapshot" for name, _ in calls) == 2
    assert loop_thread not in {thread for _, thread in calls}

    # Positive control: the same decoding run on the loop's own thread is seen there.
    calls.clear()

    async def on_the_loop() -> int:
        from airflow_hyperv.hooks.hyperv import HyperVHook

        with HyperVHook(settings=settings_for(emulator, "hv-01")) as hv:
            hv.host_state()  # blocking, on purpose
        return threading.get_ident()

    assert asyncio.run(on_the_loop()) in {thread for _, thread in calls}


def test_the_poll_loops_of_one_event_loop_hold_spread_phases_while_they_run(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HV_A", uri_for(emulator, "hv-01"))
    monkeypatch.setenv("AIRFLOW_CONN_HV_B", uri_for(emulator, "hv-02"))
    interval = 30.0  # each loop polls once at its start, then waits for its beat: one poll each here
    streams = [("hv_a", ()), ("hv_b", ()), ("hv_a", ("C:\\disks\\x.avhdx",))]

    async def scenario() -> tuple[list[float], list[float]]:
        opened = [HyperVHostStateTrigger._poll_host(conn, interval, disks) for conn, disks in streams]
        for stream in opened:
            assert isinstance(await anext(stream), HostSnapshot)
        running = _phase_plan().phases(interval)
        for stream in opened:
            await stream.aclose()
        return running, _phase_plan().phases(interval)

    running, after = asyncio.run(scenario())

    assert len(running) == 3 and all(0.0 <= p < interval for p in running)
    gaps = [b - a for a, b in itertools.pairwise(running)] + [running[0] + interval - running[-1]]
    assert min(gaps) >= interval / 6  # three loops, never closer than interval / (2 n)
    assert after == []  # each loop gave its phase back when it ended
    assert poll_loop_key("hv_a") != poll_loop_key("hv_a", ("C:\\disks\\x.avhdx",))
