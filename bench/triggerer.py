"""Many deferred waits in one triggerer: shared host polls vs one poll loop per wait.

N ``HyperVWaitTrigger`` ``vm_state`` waits (default 1,000: every VM of a 10-host x 100-VM fleet waits
for ``Running``; all start ``Off``) run as tasks of ONE asyncio loop, like one triggerer process,
against the emulator. Two paths, each on a fresh emulator:

* ``shared``      Airflow's own ``SharedStreamManager`` (``airflow.triggers.shared_stream``), driven
  the way ``TriggerRunner`` drives it: ``subscribe(trigger_id, trigger, key=trigger.shared_stream_key())``
  then the trigger's ``filter_shared_stream`` over the returned stream, ``unsubscribe`` after the
  event. One ``open_shared_stream`` poll loop per host key broadcasts each host snapshot to every
  subscriber on that host.
* ``lockstep``    the same shared streams as the provider polled before its host loops got phases
  and lean decoding, kept here only as the baseline of the same run: each host loop sleeps the whole
  interval after its poll (loops started together stay in step), and every object of the snapshot is
  deserialized whole by pypsrp (``LockstepHostStateTrigger``).
* ``standalone``  each trigger's own ``run()``: every wait polls its host alone (its own runspace
  pool, its own ``host_state`` round trip per interval).

Timeline per path: the waits start; after ``--settle`` seconds a ``--window`` of steady state is
counted (emulator counters: host polls = pipelines run, WS-Man requests); then every VM is started
(directly on the emulator's model, no WS-Man traffic) and the bench measures how long each wait takes
to fire, giving up after ``--deadline`` seconds (waits still pending are reported, not waited for).
A ticker task sleeps 10 ms in a loop for the whole run and records how much it overslept: the
event-loop lag every other trigger in that triggerer would see. Reaction time: from the moment the
VMs were started until a wait's event. Host poll starts are noted (in the thread, as each
``host-state`` pipeline is sent); the gaps between consecutive starts during the counted window say
whether the host loops poll spread over the interval or in step.

The emulator runs in a child process (as a real host is another machine): its CPU is not this loop's.
pypsrp is synchronous, so each poll runs in a worker thread (``HyperVAsyncHook``: ``asyncio.to_thread``,
at most 8 threads per loop, and the default executor's min(32, cores+4) threads); decoding a 100-VM
snapshot holds the GIL, which is where the loop lag comes from (``shared`` decodes only what waits judge). Logging is off while measuring (each
trigger logs every snapshot it judges). Traffic goes to 127.0.0.1 only.

Run: ``.venv/bin/python -m bench.triggerer`` (``--waits``, ``--hosts``, ``--vms-per-host``,
``--poll-interval``, ``--settle``, ``--window``, ``--deadline``, ``--paths shared lockstep standalone``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.common import cli, header, print_table, quiet
from hyperv_emulator.counters import CountersSnapshot
from tests.support.emulated import uri_for

PATHS = ("shared", "lockstep", "standalone")
BASELINES = ("lockstep", "standalone")  # what ``shared`` is compared with
TICK = 0.010


def fleet(hosts: int, vms_per_host: int) -> dict[str, Any]:
    """A fleet dict (docs/emulator.md): ``hosts`` hosts of ``vms_per_host`` small Linux VMs, all Off."""
    return {
        "timing": {"checkpoint_seconds": 3},
        "hosts": [
            {
                "name": f"hv-{h:02d}",
                "volumes": {"C": {"capacity_gb": 4000, "used_gb": 100}},
                "vms": [
                    {"name": f"vm-{h:02d}-{v:03d}", "state": "Off", "guest": "linux", "disks": [{"size_gb": 20, "file_gb": 2}]}
                    for v in range(vms_per_host)
                ],
            }
            for h in range(hosts)
        ],
    }  # fmt: skip


def conn_id(host: str) -> str:
    return "bench_" + host.replace("-", "_")


# -- the emulator, in a child process -------------------------------------------------------------------
def _emulator_child(pipe: Connection, fleet_dict: dict[str, Any], time_scale: float) -> None:
    import logging

    logging.disable(logging.INFO)
    from hyperv_emulator.api import Emulator

    with Emulator(fleet=fleet_dict, auth="basic", time_scale=time_scale) as emu:
        pipe.send({"uris": {h: uri_for(emu, h) for h in emu.host_names}})
        while True:
            command = pipe.recv()
            if command == "snapshot":
                pipe.send(emu.counters.snapshot())
            elif command == "start_all":
                for name in emu.host_names:
                    model = emu.host(name)
                    for vm in model.vms():
                        model.start_vm(vm)
                pipe.send("started")
            elif command == "ids":
                pipe.send({h: [(vm.name, str(vm.id)) for vm in emu.host(h).vms()] for h in emu.host_names})
            else:
                pipe.send("bye")
                return


class EmulatorProcess:
    """An ``Emulator`` in a child process, driven over a pipe (counters, start every VM)."""

    def __init__(self, fleet_dict: dict[str, Any], time_scale: float = 1000.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._process = ctx.Process(target=_emulator_child, args=(child, fleet_dict, time_scale), daemon=True)
        self._process.start()
        if not self._pipe.poll(120):
            self._process.kill()
            raise RuntimeError("the emulator process did not start")
        self.uris: dict[str, str] = self._pipe.recv()["uris"]

    def ask(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def counters(self) -> CountersSnapshot:
        return self.ask("snapshot")  # type: ignore[no-any-return]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def connections(uris: dict[str, str]) -> Iterator[None]:
    names = {f"AIRFLOW_CONN_{conn_id(h).upper()}": uri for h, uri in uris.items()}
    previous = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the baseline: shared streams as they were (host loops in step, every object decoded whole) --------
def _full_host_state(hv: Any, disk_paths: tuple[str, ...]) -> Any:
    """``host_state`` with every object deserialized whole by pypsrp (the snapshot is the same)."""
    import dataclasses

    from airflow_hyperv.hyperv import pipelines
    from airflow_hyperv.hyperv.waits import host_snapshot

    pipeline = dataclasses.replace(pipelines.host_state(disk_paths), decode_only=frozenset())
    return host_snapshot(hv.run_repeatable(pipeline).output)


def _lockstep_trigger_class() -> type:
    from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook
    from airflow_hyperv.hyperv.waits import HostSnapshot
    from airflow_hyperv.triggers.hyperv import HyperVHostStateTrigger

    class LockstepHostStateTrigger(HyperVHostStateTrigger):
        """The shared host poll before phases and lean decoding (bench baseline only)."""

        @staticmethod
        async def _poll_host(conn_id: str, interval: float, disk_paths: tuple[str, ...] = ()) -> Any:
            async with HyperVAsyncHook(conn_id) as hook:
                while True:
                    try:
                        snapshot = await hook.call(lambda hv: _full_host_state(hv, disk_paths))
                    except Exception as exc:
                        snapshot = HostSnapshot(error=f"{type(exc).__name__}: {exc}")
                    yield snapshot
                    await asyncio.sleep(interval)  # after the poll: loops started together stay in step

    return LockstepHostStateTrigger


@contextlib.contextmanager
def noting_poll_starts(starts: list[tuple[float, str]]) -> Iterator[None]:
    """Note (time, host) as each ``host-state`` pipeline is sent, in the thread that sends it."""
    from airflow_hyperv.hooks.base import HyperVBaseHook

    real = HyperVBaseHook.run_pipeline

    def run_pipeline(self: Any, pipeline: Any) -> Any:
        if pipeline.label == "host-state":
            starts.append((time.perf_counter(), self.settings.host))
        return real(self, pipeline)

    HyperVBaseHook.run_pipeline = run_pipeline  # type: ignore[method-assign]
    try:
        yield
    finally:
        HyperVBaseHook.run_pipeline = real  # type: ignore[method-assign]


# -- the measurement ----------------------------------------------------------------------------------
@dataclass
class PathResult:
    path: str
    waits: int
    lags: list[float] = field(default_factory=list)  # seconds overslept per 10 ms tick
    lag_times: list[float] = field(default_factory=list)  # when each tick woke (perf_counter)
    window_seconds: float = 0.0
    window: CountersSnapshot | None = None
    total: CountersSnapshot | None = None
    fire_seconds: list[float] = field(default_factory=list)  # per fired wait, after the VMs started
    statuses: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    deadline: float = 0.0
    poll_starts: list[tuple[float, str]] = field(default_factory=list)  # (perf_counter, host)
    window_span: tuple[float, float] = (0.0, 0.0)


def _percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100.0 * (len(ordered) - 1)))]


async def _ticker(lags: list[float], times: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(TICK)
        woke = time.perf_counter()
        lags.append(max(0.0, woke - started - TICK))
        times.append(woke)


async def _run_path(
    path: str,
    emu: EmulatorProcess,
    targets: list[tuple[str, str]],
    *,
    poll_interval: float,
    settle: float,
    window: float,
    deadline: float,
) -> PathResult:
    from airflow.triggers.shared_stream import SharedStreamManager

    from airflow_hyperv.triggers.hyperv import HyperVWaitTrigger

    result = PathResult(path, len(targets), deadline=deadline)
    trigger_class = _lockstep_trigger_class() if path == "lockstep" else HyperVWaitTrigger
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(result.lags, result.lag_times, stop))
    started_at: list[float] = []  # set once the VMs have been started
    fired: dict[int, float] = {}
    manager = SharedStreamManager(max_subscriber_queue=1024)

    triggers = [
        trigger_class(
            hyperv_conn_id=conn_id(host), wait_for="vm_state", vm_id=vm_id, target_state="Running",
            poll_interval=poll_interval,
        )
        for host, vm_id in targets
    ]  # fmt: skip

    async def wait(trigger_id: int, trigger: HyperVWaitTrigger) -> None:
        if path != "standalone":
            key = trigger.shared_stream_key()
            stream = manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
            events = trigger.filter_shared_stream(stream)
        else:
            key, events = None, trigger.run()
        try:
            async for event in events:
                fired[trigger_id] = time.perf_counter()
                status = str(event.payload.get("status"))
                result.statuses[status] = result.statuses.get(status, 0) + 1
                break
        finally:
            with contextlib.suppress(BaseException):
                await events.aclose()  # type: ignore[attr-defined]
            if key is not None:
                await manager.unsubscribe(trigger_id, key)

    began = time.perf_counter()
    first = await asyncio.to_thread(emu.counters)
    tasks = [asyncio.create_task(wait(i, t)) for i, t in enumerate(triggers)]
    await asyncio.sleep(settle)
    before = await asyncio.to_thread(emu.counters)
    window_start = time.perf_counter()
    await asyncio.sleep(window)
    after = await asyncio.to_thread(emu.counters)
    result.window_seconds = time.perf_counter() - window_start
    result.window_span = (window_start, window_start + result.window_seconds)
    result.window = after - before
    early = len(fired)
    if early:
        result.statuses["fired_before_start"] = early
    t0 = time.perf_counter()
    await asyncio.to_thread(emu.ask, "start_all")
    started_at.append(t0)
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    result.fire_seconds = sorted(t - t0 for t in fired.values() if t >= t0)
    result.statuses["pending_at_deadline"] = len(pending)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=30)
    await manager.stop_all()
    stop.set()
    await ticker
    result.total = (await asyncio.to_thread(emu.counters)) - first
    result.wall_seconds = time.perf_counter() - began
    return result


def run_path(
    path: str,
    *,
    waits: int,
    hosts: int,
    vms_per_host: int,
    poll_interval: float,
    settle: float,
    window: float,
    deadline: float,
) -> PathResult:
    if waits > hosts * vms_per_host:
        raise ValueError(f"{waits} waits need at least {waits} VMs, not {hosts} x {vms_per_host}")
    with EmulatorProcess(fleet(hosts, vms_per_host)) as emu, connections(emu.uris):
        ids: dict[str, list[tuple[str, str]]] = emu.ask("ids")
        names = sorted(ids)
        # Wait i goes to host i % hosts: the waits spread evenly over the fleet.
        targets = [(names[i % hosts], ids[names[i % hosts]][i // hosts][1]) for i in range(waits)]
        starts: list[tuple[float, str]] = []
        with noting_poll_starts(starts):
            result = asyncio.run(
                _run_path(
                    path, emu, targets,
                    poll_interval=poll_interval, settle=settle, window=window, deadline=deadline,
                )
            )  # fmt: skip
        result.poll_starts = starts
        return result


def poll_gaps(r: PathResult) -> list[float]:
    """Seconds between consecutive host poll starts (any hosts) during the counted window."""
    begin, end = r.window_span
    times = sorted(t for t, _ in r.poll_starts if begin <= t <= end)
    return [b - a for a, b in itertools.pairwise(times)]


def _reaction(r: PathResult, pct: float) -> float | str:
    """A percentile of the reaction times over ALL waits (one not fired counts as later than the
    deadline)."""
    times = r.fire_seconds + [float("inf")] * (r.waits - len(r.fire_seconds))
    value = _percentile(times, pct)
    return round(value, 2) if value != float("inf") else f"> {r.deadline:g}"


def summarize(r: PathResult, poll_interval: float, hosts: int) -> dict[str, Any]:
    window = r.window or CountersSnapshot(0, 0, {}, 0, 0, 0)
    seconds = r.window_seconds or 1.0
    fired = len(r.fire_seconds)
    polls_per_s = window.pipelines_run / seconds
    loops = min(hosts, r.waits) if r.path != "standalone" else r.waits  # independent poll loops
    gaps = poll_gaps(r)
    begin, end = r.window_span
    steady = [lag for lag, t in zip(r.lags, r.lag_times, strict=True) if begin <= t <= end]
    return {
        "path": r.path,
        "waits": r.waits,
        "poll_interval_s": poll_interval,
        "poll_loops": loops,
        "host_polls_per_s": round(polls_per_s, 2),
        # How long until every poll loop has polled once, at the measured rate (the wait's reaction time
        # once polls saturate; poll_interval when they do not).
        "round_s": round(max(poll_interval, loops / polls_per_s), 1) if polls_per_s else "n/a",
        "wsman_per_s": round(window.wsman_requests / seconds, 2),
        "pools_opened": (r.total.pools_opened if r.total else 0),
        "loop_lag_p50_ms": round(_percentile(r.lags, 50) * 1000.0, 2),
        "loop_lag_p99_ms": round(_percentile(r.lags, 99) * 1000.0, 2),
        "loop_lag_max_ms": round(max(r.lags, default=float("nan")) * 1000.0, 1),
        # The same in the counted window only: steady polling, nothing firing.
        "steady_lag_p99_ms": round(_percentile(steady, 99) * 1000.0, 2),
        "steady_lag_max_ms": round(max(steady, default=float("nan")) * 1000.0, 1),
        "fired": f"{fired}/{r.waits}",
        # Reaction (fired - VMs started), over ALL waits (one not fired by the deadline counts as later).
        "fire_p50_s": _reaction(r, 50),
        "fire_p99_s": _reaction(r, 99),
        "last_fired_s": round(r.fire_seconds[-1], 2) if fired == r.waits and fired else "n/a",
        # Host poll starts in the counted window: the closest two, and the typical gap.
        "poll_gap_min_ms": round(min(gaps) * 1000.0, 1) if gaps else "n/a",
        "poll_gap_p50_ms": round(_percentile(gaps, 50) * 1000.0, 1) if gaps else "n/a",
        "statuses": ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items()) if v),
        "wall_s": round(r.wall_seconds, 1),
    }


RATIO_KEYS = (
    "host_polls_per_s", "wsman_per_s", "pools_opened", "round_s", "loop_lag_p50_ms", "loop_lag_p99_ms",
    "loop_lag_max_ms", "steady_lag_p99_ms", "steady_lag_max_ms", "fire_p50_s", "fire_p99_s", "last_fired_s", "poll_gap_min_ms",
)  # fmt: skip


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shared vs each baseline path of the same run (lockstep, standalone), for every number where
    both have one."""
    by_path = {r["path"]: r for r in rows}
    shared = by_path.get("shared")
    baselines = [p for p in BASELINES if p in by_path]
    if not shared or not baselines:
        return []
    ratios = []
    for key in RATIO_KEYS:
        row: dict[str, Any] = {"measure": key, "shared": shared[key]}
        for name in baselines:
            a, b = shared[key], by_path[name][key]
            row[name] = b
            row[f"shared_vs_{name}"] = (
                round(a / b, 3)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b
                else "n/a"
            )
        ratios.append(row)
    return ratios


def measure(
    *,
    paths: Sequence[str] = PATHS,
    waits: int = 1000,
    hosts: int = 10,
    vms_per_host: int = 100,
    poll_interval: float = 10.0,
    settle: float = 10.0,
    window: float = 20.0,
    deadline: float = 60.0,
) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}")
        result = run_path(
            path, waits=waits, hosts=hosts, vms_per_host=vms_per_host, poll_interval=poll_interval,
            settle=settle, window=window, deadline=deadline,
        )  # fmt: skip
        rows.append(summarize(result, poll_interval, hosts))
    return rows


COLUMNS = (
    "path", "waits", "poll_interval_s", "poll_loops", "host_polls_per_s", "round_s", "wsman_per_s", "pools_opened",
    "loop_lag_p50_ms", "loop_lag_p99_ms", "loop_lag_max_ms", "steady_lag_p99_ms", "steady_lag_max_ms", "fired", "fire_p50_s", "fire_p99_s", "last_fired_s",
    "poll_gap_min_ms", "poll_gap_p50_ms", "wall_s",
)  # fmt: skip


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--vms-per-host", type=int, default=100)
    parser.add_argument(
        "--poll-interval", type=float, default=10.0, help="seconds (the operators' default: 10)"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before the counted window")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of steady state counted")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds the waits get to fire")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))


def main(argv: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    args = cli("bench.triggerer", __doc__, argv, options)
    header("Deferred waits in one triggerer loop: shared host polls vs lock-step and standalone")
    print(
        f"{args.waits} vm_state waits over {args.hosts} hosts x {args.vms_per_host} VMs, poll interval "
        f"{args.poll_interval}s; counted window {args.window}s after {args.settle}s; then every VM starts and "
        f"the waits get {args.deadline}s to fire. Emulator in a child process, time_scale 1000."
    )
    chatter = io.StringIO()
    with quiet(chatter):
        rows = measure(
            paths=args.paths, waits=args.waits, hosts=args.hosts, vms_per_host=args.vms_per_host,
            poll_interval=args.poll_interval, settle=args.settle, window=args.window, deadline=args.deadline,
        )  # fmt: skip
    print_table(rows, COLUMNS, title="Per path")
    for row in rows:
        print(f"* {row['path']}: {row['statuses']}")
    ratios = add_ratios(rows)
    if ratios:
        print_table(ratios, title="Ratios (shared / each baseline of the same run)")
    return rows, ratios


if __name__ == "__main__":
    main()
