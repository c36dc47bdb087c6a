"""A host's Hyper-V event log: per-channel records with monotonically increasing RecordIds.

Event ids and message templates follow what real hosts write (docs/events.md lists each id with its
source). Like Windows, every channel numbers its records on its own (EventRecordID starts at 1 per
channel and never goes back), and messages carry ``(Virtual machine ID <GUID>)`` in upper case.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hyperv_emulator.model.clock import Clock

WORKER_ADMIN = "Microsoft-Windows-Hyper-V-Worker-Admin"
VMMS_ADMIN = "Microsoft-Windows-Hyper-V-VMMS-Admin"
PROVIDERS = {WORKER_ADMIN: "Microsoft-Windows-Hyper-V-Worker", VMMS_ADMIN: "Microsoft-Windows-Hyper-V-VMMS"}

# (channel, event id) -> (level, message template). Level: 2 Error, 3 Warning, 4 Information.
TEMPLATES: dict[tuple[str, int], tuple[int, str]] = {
    (WORKER_ADMIN, 18500): (4, "'{name}' started successfully. (Virtual machine ID {vm_id})"),
    (WORKER_ADMIN, 18502): (4, "{name} was turned off. (Virtual machine ID {vm_id})"),
    (
        WORKER_ADMIN,
        18504,
    ): (4, "'{name}' was shut down using the Shutdown Integration Component. (Virtual machine ID {vm_id})"),
    (VMMS_ADMIN, 13002): (4, "A new virtual machine '{name}' was created. (Virtual machine ID {vm_id})"),
    (VMMS_ADMIN, 13003): (4, "A virtual machine '{name}' was deleted. (Virtual machine ID {vm_id})"),
    # Checkpoint failures: the texts are confirmed (hashicorp/vagrant#9977, home-assistant/operating-system#1996), the ids are *unconfirmed*.
    (VMMS_ADMIN, 18016): (
        2,
        "Production checkpoints cannot be created for '{name}'. (Virtual machine ID {vm_id})",
    ),
    (VMMS_ADMIN, 18012): (2, "Checkpoint operation for '{name}' failed. (Virtual machine ID {vm_id})"),
}
LEVEL_NAMES = {1: "Critical", 2: "Error", 3: "Warning", 4: "Information"}


@dataclass(frozen=True)
class EventRecord:
    log_name: str
    record_id: int
    event_id: int
    level: int
    time_created: float  # emulated clock seconds
    message: str
    vm_id: str  # upper-case GUID, as in the message

    @property
    def provider(self) -> str:
        return PROVIDERS.get(self.log_name, self.log_name)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES.get(self.level, str(self.level))


class HostEventLog:
    """Thread-safe, append-only. Records are kept (no wrap-around: the emulator's logs are small)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, list[EventRecord]] = {WORKER_ADMIN: [], VMMS_ADMIN: []}

    @property
    def channels(self) -> list[str]:
        return list(self._records)

    def write(self, channel: str, event_id: int, *, name: str, vm_id: uuid.UUID | str) -> EventRecord:
        level, template = TEMPLATES[(channel, event_id)]
        gid = str(vm_id).upper()
        with self._lock:
            records = self._records.setdefault(channel, [])
            record = EventRecord(
                log_name=channel,
                record_id=(records[-1].record_id + 1) if records else 1,
                event_id=event_id,
                level=level,
                time_created=self._clock.now(),
                message=template.format(name=name, vm_id=gid),
                vm_id=gid,
            )
            records.append(record)
            return record

    def records(self, channel: str) -> list[EventRecord] | None:
        """Oldest first; None when the channel does not exist on this host."""
        with self._lock:
            found = next((c for c in self._records if c.lower() == channel.lower()), None)
            return None if found is None else list(self._records[found])


def event_log(host: object) -> HostEventLog:
    """The event log of a host model (created on first use)."""
    log = getattr(host, "events", None)
    if log is None:
        log = HostEventLog(host.clock)  # type: ignore[attr-defined]
        host.events = log  # type: ignore[attr-defined]
    return log
