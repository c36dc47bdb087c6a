"""An event-driven scheduling trigger: a Hyper-V host's event log as an Asset watcher.

    from airflow.sdk import Asset, AssetWatcher
    from airflow_hyperv.triggers.events import HyperVEventTrigger

    changes = Asset("hyperv-events/hv-01", watchers=[
        AssetWatcher("hv-01-events", HyperVEventTrigger(hyperv_conn_id="hyperv_hv_01"))])

The trigger reads ``Get-WinEvent -LogName <channel> -FilterXPath "*[System[(EventID=…) and
EventRecordID>N]]" -Oldest -MaxEvents M`` for each channel (docs/events.md explains the choice
and the event ids) and yields one TriggerEvent per record, oldest first. Its watermark — the last
RecordId per channel — lives in the asset state store (``self.asset_state_store``, Airflow 3.3), so
a new triggerer continues where the old one stopped.

Exactly once: the watermark moves past a record only after the triggerer has taken the event (the
code after ``yield`` runs when the triggerer asks for the next event, which it does right after
queueing this one). A triggerer stopped while an event is in flight has not queued it, and a new
one fires it again; a queued event is never fired twice. (A triggerer *killed* in the instant
between queueing an event and committing it to the database loses that event: the window every
Airflow trigger shares.) ``extra["payload"]`` of the asset event carries ``record_id`` and
``channel``, so a consumer can also de-duplicate on them.

Rejected credentials: the watcher stops contacting the host at the first rejected login and logs an
ERROR saying why; it does not end. (An AssetWatcher trigger whose ``run()`` returns or raises is
started again by the triggerer on its next loop, because its Trigger row stays assigned to the
asset: ``Trigger.ids_for_triggerer`` / ``TriggerRunnerSupervisor.update_triggers`` in Airflow 3.3.
Ending would log in again every few seconds and lock the account out.) While it stands by it only
re-reads the Airflow connection (no host contact) and resumes once its host, login, password or
extra change; restarting the triggerer also makes it try once more.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_hyperv.hyperv.errors import AuthenticationFailedError
from airflow_hyperv.hyperv.events import (
    DEFAULT_CHANNELS,
    HostEvent,
    advance,
    default_event_ids,
    not_for_protection,
    parse_watermark,
)

if TYPE_CHECKING:
    from airflow_hyperv.hooks.hyperv import HyperVHook

CLASSPATH = "airflow_hyperv.triggers.events.HyperVEventTrigger"
WATERMARK_KEY = "hyperv-event-watermark"
START_FROM = ("latest", "beginning")
STAND_BY_CHECK_SECONDS = 60.0  # how often a watcher whose login was rejected re-reads its connection
STAND_BY_REMINDER_SECONDS = 3600.0  # how often it repeats the ERROR while standing by


class HyperVEventTrigger(BaseEventTrigger):
    """Fire once per Hyper-V event-log record of one host (one connection id).

    Use it as an ``AssetWatcher`` trigger. Each event's payload carries ``record_id``, ``channel``,
    ``kind``, the VM and the host. The watermark (the last RecordId per channel) lives in the asset
    state store, so a new triggerer continues where the old one stopped. After a rejected login the
    watcher stops contacting the host (every retry counts towards the account's lockout) and logs an
    ERROR; it watches again once the connection's host, login, password or extra change, or after a
    triggerer restart.

    .. seealso::
        docs/events.md (the channels, the event ids, exactly-once firing).

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the host to watch.
    :param channels: The event-log channels to read. Default None: Hyper-V's Worker-Admin and
        VMMS-Admin channels.
    :param event_ids: Event ids to read, per channel name. Default None: for each channel, the ids the
        provider knows a kind for (``airflow_hyperv.hyperv.events.EVENT_KINDS``).
    :param kinds: Fire only events of these kinds (e.g. ``vm_turned_off``); the watermark still moves
        past the others. Default None: every kind.
    :param vm_ids: Fire only events of these VM Ids. Default None: every VM.
    :param poll_interval: Seconds between two reads of the channels; after failed reads the pause
        doubles, up to 600. Default 30; must be above 0.
    :param max_events: Records read per call; a longer backlog is paged through before the next
        pause. Default 100; must be at least 1.
    :param start_from: Where a watcher without a watermark starts: ``latest`` (default: only records
        written from now on) or ``beginning`` (the whole log).
    :param protectable_only: Drop events of VMs no run could protect: gone from the host, or a restore
        test's own copy (one ``Get-VM`` of the host per batch with wanted events). Default False.
    """

    def __init__(
        self,
        *,
        hyperv_conn_id: str,
        channels: Sequence[str] | None = None,
        event_ids: dict[str, Sequence[int]] | None = None,
        kinds: Sequence[str] | None = None,
        vm_ids: Sequence[str] | None = None,
        poll_interval: float = 30.0,
        max_events: int = 100,
        start_from: str = "latest",
        protectable_only: bool = False,
    ) -> None:
        super().__init__()
        if start_from not in START_FROM:
            raise ValueError(f"start_from must be one of {START_FROM}, not {start_from!r}")
        if poll_interval <= 0 or max_events < 1:
            raise ValueError("poll_interval must be > 0 and max_events >= 1")
        self.hyperv_conn_id = hyperv_conn_id
        # Normalised so equal watchers serialise equally (kwargs are hashed to de-duplicate triggers).
        self.channels = sorted(dict.fromkeys(channels or DEFAULT_CHANNELS))
        given = {k: sorted({int(i) for i in v}) for k, v in (event_ids or {}).items()}
        self.event_ids = {c: given.get(c, default_event_ids(c)) for c in self.channels}
        self.kinds = sorted(set(kinds)) if kinds else None
        self.vm_ids = sorted({str(v).lower() for v in vm_ids}) if vm_ids else None
        self.poll_interval = float(poll_interval)
        self.max_events = int(max_events)
        self.start_from = start_from
        # Drop events of VMs no run could or should protect (gone, or the restore test's own copy):
        # one Get-VM of the host per batch that has wanted events (hyperv.events.not_for_protection).
        self.protectable_only = bool(protectable_only)
        self._memory: dict[str, int] | None = None  # when no state store was injected (dag.test, tests)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "hyperv_conn_id": self.hyperv_conn_id,
                "channels": list(self.channels),
                "event_ids": {c: list(ids) for c, ids in self.event_ids.items()},
                "kinds": self.kinds,
                "vm_ids": self.vm_ids,
                "poll_interval": self.poll_interval,
                "max_events": self.max_events,
                "start_from": self.start_from,
                "protectable_only": self.protectable_only,
            },
        )

    # -- watermark ---------------------------------------------------------------------------------
    async def _load(self) -> dict[str, int] | None:
        if self.asset_state_store is None:
            return self._memory
        return parse_watermark(await self.asset_state_store.aget(WATERMARK_KEY))

    async def _save(self, watermark: dict[str, int]) -> None:
        if self.asset_state_store is None:
            self._memory = dict(watermark)
            return
        await self.asset_state_store.aset(WATERMARK_KEY, dict(watermark))  # type: ignore[arg-type]

    def _wanted(self, event: HostEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return self.vm_ids is None or (event.vm_id is not None and str(event.vm_id) in self.vm_ids)

    # -- the watch ---------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.asset_state_store is None:
            self.log.warning("No asset state store: the watermark is kept in memory only")
        while True:
            try:
                async for event in self._watch():
                    yield event
            except AuthenticationFailedError as exc:
                await self._stand_by(exc)

    async def _connection_fingerprint(self) -> str:
        """A digest of what the login depends on, kept in memory only (never logged or stored)."""
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(self.hyperv_conn_id)
        parts = (conn.host, conn.port, conn.login, conn.password, conn.extra)
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    async def _stand_by(self, exc: AuthenticationFailedError) -> None:
        """After a rejected login: no more logins until the connection changes. Logs why, loudly."""
        fingerprint = await self._connection_fingerprint()
        why = (
            f"Stopped watching the Hyper-V event log of connection {self.hyperv_conn_id!r}: {exc}. "
            "The watcher does not log in again (every rejected login counts towards the account's "
            "lockout) until the connection's host, login, password or extra change; fix them, or "
            "restart the triggerer to try once more. No events are fired meanwhile."
        )
        self.log.error("%s", why)
        reminded = time.monotonic()
        while True:
            await asyncio.sleep(min(self.poll_interval, STAND_BY_CHECK_SECONDS))
            if await self._connection_fingerprint() != fingerprint:
                self.log.info("Connection %r changed: watching again", self.hyperv_conn_id)
                return
            if time.monotonic() - reminded >= STAND_BY_REMINDER_SECONDS:
                self.log.error("%s", why)
                reminded = time.monotonic()

    async def _watch(self) -> AsyncIterator[TriggerEvent]:
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook

        async with HyperVAsyncHook(self.hyperv_conn_id) as hook:
            host = (await hook.settings()).host_label
            watermark = await self._load()
            if watermark is None:
                watermark = {}
                for channel in self.channels:
                    watermark[channel] = (
                        await hook.call(functools.partial(_newest, channel=channel))
                        if self.start_from == "latest"
                        else 0
                    )
                await self._save(watermark)
                self.log.info("Watching %s from %s", host, watermark)
            failures = 0
            while True:
                for channel in self.channels:
                    while True:  # page through a backlog before sleeping
                        after = int(watermark.get(channel, 0))
                        try:
                            events = await hook.call(
                                functools.partial(
                                    _read,
                                    channel=channel,
                                    after=after,
                                    event_ids=self.event_ids[channel],
                                    max_events=self.max_events,
                                    host=host,
                                )
                            )
                            failures = 0
                        except AuthenticationFailedError:
                            raise  # never retried: run() stands by
                        except Exception as exc:  # keep watching: a watcher that ends watches nothing
                            failures += 1
                            self.log.warning(
                                "Reading %s on %s failed (%d in a row): %s", channel, host, failures, exc
                            )
                            break
                        vms_on_host: dict[str, str] | None = None
                        if self.protectable_only and any(self._wanted(e) for e in events):
                            try:
                                vms_on_host = await hook.call(_vm_names)
                            except Exception as exc:  # read this batch again on the next poll
                                self.log.warning("Listing the VMs of %s failed: %s", host, exc)
                                break
                        for event in events:
                            watermark = advance(watermark, event)
                            reason = (
                                not_for_protection(event, vms_on_host)
                                if vms_on_host is not None and self._wanted(event)
                                else None
                            )
                            if reason:
                                self.log.info(
                                    "Not firing %s record %d: %s", event.kind, event.record_id, reason
                                )
                            elif self._wanted(event):
                                yield TriggerEvent(event.payload())
                            # Runs once the triggerer took the event (or skipped it as unwanted).
                            await self._save(watermark)
                        if len(events) < self.max_events:
                            break
                await asyncio.sleep(min(self.poll_interval * (2 ** min(failures, 5)), 600.0))


def _vm_names(hv: HyperVHook) -> dict[str, str]:
    return {vm_id: vm["name"] for vm_id, vm in hv.host_state().vms.items()}


def _newest(hv: HyperVHook, *, channel: str) -> int:
    return hv.newest_event_record_id(channel)


def _read(
    hv: HyperVHook, *, channel: str, after: int, event_ids: list[int], max_events: int, host: str
) -> list[HostEvent]:
    return hv.read_events(channel, after, event_ids, max_events, host)
