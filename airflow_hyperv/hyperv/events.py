"""Hyper-V event-log records: which events mean what, the Get-WinEvent pipelines, and the watermark.

Pure (no transport): triggers and DAG files may import it; ``HyperVHook.read_events`` and
``HyperVHook.newest_event_record_id`` run the pipelines built here. Event ids and their sources are
listed in docs/events.md; we branch on the channel and the numeric id, never on the (localized)
message. The VM is identified by the GUID in the message ``(Virtual machine ID <GUID>)`` — a GUID
reads the same in every language.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_hyperv.hyperv.pipelines import SWITCH, Pipeline, bound_command, single_statement
from airflow_hyperv.hyperv.records import Props, Record

WORKER_ADMIN = "Microsoft-Windows-Hyper-V-Worker-Admin"
VMMS_ADMIN = "Microsoft-Windows-Hyper-V-VMMS-Admin"

# (channel, event id) -> kind. "confirmed" ids have a public source in docs/events.md; the
# checkpoint-failure ids are *unconfirmed* (their texts are confirmed) and can be overridden.
EVENT_KINDS: dict[tuple[str, int], str] = {
    (WORKER_ADMIN, 18500): "vm_started",
    (WORKER_ADMIN, 18502): "vm_turned_off",
    (WORKER_ADMIN, 18504): "vm_shut_down",
    (WORKER_ADMIN, 18508): "vm_shut_down_by_guest",
    (WORKER_ADMIN, 18512): "vm_reset",
    (WORKER_ADMIN, 18514): "vm_reset_by_guest",
    (VMMS_ADMIN, 13002): "vm_created",
    (VMMS_ADMIN, 13003): "vm_deleted",
    (VMMS_ADMIN, 18016): "production_checkpoint_impossible",
    (VMMS_ADMIN, 18012): "checkpoint_failed",
}
DEFAULT_CHANNELS: tuple[str, ...] = (WORKER_ADMIN, VMMS_ADMIN)
# Kinds after which a VM is about to be worked on (maintenance): what protect_on_change reacts to.
CHANGE_KINDS = frozenset({"vm_turned_off", "vm_shut_down", "vm_shut_down_by_guest"})
# A failed checkpoint. Not a change kind: the provider's own ProductionOnly attempts emit these
# (every run whose guest cannot quiesce, before its fallback), and the event names only the VM, not
# the checkpoint, so nobody can tell whose attempt failed. Reacting to them would trigger itself.
CHECKPOINT_FAILURE_KINDS = frozenset({"production_checkpoint_impossible", "checkpoint_failed"})
# The name the restore test gives its isolated copy: operators/restore_verification.py COPY_PREFIX + " ".
RESTORE_COPY_NAME_PREFIX = "restore-test "
NO_EVENTS_ID = "NoMatchingEventsFound"
_GUID = re.compile(r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b")


def default_event_ids(channel: str) -> list[int]:
    return sorted(i for (c, i) in EVENT_KINDS if c.lower() == channel.lower())


def xpath_after(record_id: int, event_ids: Sequence[int] = ()) -> str:
    """``*[System[(EventID=a or EventID=b) and EventRecordID>N]]``: data for ``-FilterXPath``."""
    after = f"EventRecordID>{int(record_id)}"
    if not event_ids:
        return f"*[System[{after}]]"
    ids = " or ".join(f"EventID={int(i)}" for i in event_ids)
    return f"*[System[({ids}) and {after}]]"


def events_after(channel: str, record_id: int, event_ids: Sequence[int], max_events: int) -> Pipeline:
    """The oldest ``max_events`` matching records after ``record_id`` (``-Oldest``: forward order)."""
    return single_statement(
        bound_command(
            "Get-WinEvent",
            LogName=channel,
            FilterXPath=xpath_after(record_id, event_ids),
            MaxEvents=int(max_events),
            Oldest=SWITCH,
        ),
        label="win-events",
    )


def newest_event(channel: str) -> Pipeline:
    """The newest record of a channel (Get-WinEvent's default order is newest first)."""
    return single_statement(
        bound_command("Get-WinEvent", LogName=channel, MaxEvents=1), label="win-events-newest"
    )


@dataclass(frozen=True)
class HostEvent(Record):
    channel: str
    record_id: int
    event_id: int
    kind: str
    vm_id: uuid.UUID | None  # the GUID in the message, when it has one (a lower-case string in payload())
    time_created: dt.datetime | None
    level: str
    message: str  # for humans only
    host: str = ""

    @classmethod
    def decode(cls, obj: Any, host: str = "", channel: str | None = None) -> HostEvent:
        p = Props(obj)
        channel = channel or p.text("LogName")
        event_id = p.integer("Id")
        message = p.text("Message")
        guids = _GUID.findall(message)
        return cls(
            channel=channel,
            record_id=p.integer("RecordId"),
            event_id=event_id,
            kind=kind_of(channel, event_id),
            vm_id=uuid.UUID(guids[-1]) if guids else None,
            time_created=p.time("TimeCreated"),
            level=p.text("LevelDisplayName"),
            message=message,
            host=host,
        )

    def payload(self) -> dict[str, Any]:
        """What a TriggerEvent carries (and so the asset event's ``extra["payload"]``)."""
        return self.to_dict()


def not_for_protection(event: HostEvent, vms_on_host: Mapping[str, str]) -> str | None:
    """Why ``event`` must not start a protection run (None: it may). ``vms_on_host``: id (lower) ->
    name of every VM on the host now. A VM that is gone cannot be protected (a deleted VM, or the
    restore test's copy, turned off and removed), and the restore test's own copy is never protected."""
    if event.vm_id is None:
        return None
    name = vms_on_host.get(str(event.vm_id))
    if name is None:
        return f"VM {event.vm_id} is no longer on the host"
    if name.lower().startswith(RESTORE_COPY_NAME_PREFIX):
        return f"{name!r} is this provider's restore-test copy"
    return None


def kind_of(channel: str, event_id: int) -> str:
    for (c, i), kind in EVENT_KINDS.items():
        if c.lower() == channel.lower() and i == event_id:
            return kind
    return "other"


def only_no_match(errors: Iterable[Any]) -> bool:
    """True when every error is Get-WinEvent's "no events were found": an empty answer, not a failure."""
    errs = list(errors)
    return bool(errs) and all(str(e.fully_qualified_error_id).startswith(NO_EVENTS_ID) for e in errs)


def events_in_order(objects: Iterable[Any], after: int, host: str, channel: str) -> list[HostEvent]:
    """The decoded records after RecordId ``after``, oldest first (a host may hand back the boundary)."""
    events = [HostEvent.decode(o, host, channel) for o in objects]
    return sorted((e for e in events if e.record_id > after), key=lambda e: e.record_id)


def newest_of(objects: Iterable[Any]) -> int:
    """The highest RecordId among the records (0 when there are none: an empty log)."""
    return max((HostEvent.decode(o).record_id for o in objects), default=0)


# --- the watermark ---------------------------------------------------------------------------------------


def advance(watermark: Mapping[str, int], event: HostEvent) -> dict[str, int]:
    """The watermark after ``event``: RecordIds are per channel, so one number per channel."""
    out = dict(watermark)
    out[event.channel] = max(int(out.get(event.channel, 0)), event.record_id)
    return out


def parse_watermark(value: Any) -> dict[str, int] | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return {str(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError):
        return None
