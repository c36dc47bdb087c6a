"""Get-WinEvent over the host's Hyper-V event log.

windows-powershell-docs ``Microsoft.PowerShell.Diagnostics/Get-WinEvent.md``: ``-LogName``,
``-MaxEvents``, ``-FilterXPath`` (the subset in model/event_query.py), ``-Oldest`` (default order is
newest first). No match is the real non-terminating error
``NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hyperv_emulator.cmdlets.base import COMPUTER, Call, cmdlet
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.serialize import serialize
from hyperv_emulator.model.errors import LogNotFoundError, NoMatchingEventsError
from hyperv_emulator.model.event_query import parse_xpath
from hyperv_emulator.model.eventlog import EventRecord, event_log


@cmdlet(
    "Get-WinEvent",
    "Microsoft.PowerShell.Commands.GetWinEventCommand",
    [
        Param("LogName", "strings", position=0, mandatory=True),
        Param("MaxEvents", "int"),
        Param("FilterXPath", "string"),
        Param("Oldest", "switch"),
        COMPUTER,
    ],
    local_only=True,
)
def get_win_event(call: Call) -> Iterator[Any]:
    predicate = parse_xpath(call.get("FilterXPath", "*"))
    log = event_log(call.host)
    found: list[EventRecord] = []
    for name in call.get("LogName"):
        records = log.records(name)
        if records is None:
            call.error(LogNotFoundError(name), name)
            continue
        call.touch(name)
        found.extend(r for r in records if predicate(r))
    if not call.flag("Oldest"):
        found.sort(key=lambda r: (r.time_created, r.record_id), reverse=True)
    if call.has("MaxEvents"):
        found = found[: max(0, int(call.get("MaxEvents")))]
    if not found:
        raise NoMatchingEventsError()
    for rec in found:
        yield serialize(rec, call.host)  # written as it is read, like the EventLogRecord a host writes
