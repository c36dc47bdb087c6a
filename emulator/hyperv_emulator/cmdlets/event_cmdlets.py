"""Get-WinEvent over the host's Hyper-V event log, and Import-VM / Remove-VM / Rename-VM /
Get-VMNetworkAdapter / Disconnect-VMNetworkAdapter for restore tests.

Get-WinEvent (windows-powershell-docs ``Microsoft.PowerShell.Diagnostics/Get-WinEvent.md``): ``-LogName``,
``-MaxEvents``, ``-FilterXPath``, ``-Oldest`` (default order is newest first). The XPath subset is what
event queries use: ``*[System[<condition>]]`` with ``EventID``, ``EventRecordID`` and ``Level``
compared by ``= != < <= > >=``, joined with ``and`` / ``or`` and parentheses. No match is the real
non-terminating error ``NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hyperv_emulator.cmdlets import binding
from hyperv_emulator.cmdlets.base import Call, cmdlet, target_vms
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.serialize import DT, EXTRA_SERIALIZERS, I32, I64, G, S, _fill, _pstype
from hyperv_emulator.cmdlets.vm_cmdlets import COMPUTER, PASSTHRU, VM_NAME, VM_OBJ, _local_only
from hyperv_emulator.model.clock import to_datetime
from hyperv_emulator.model.errors import HyperVError, ParameterBindingError
from hyperv_emulator.model.eventlog import EventRecord, event_log
from hyperv_emulator.model.importing import ADAPTER_NAME, disconnect, import_vm, switch_of
from hyperv_emulator.model.vm import VirtualMachine

DIAG = "Microsoft.PowerShell.Commands."
HV = "Microsoft.HyperV.PowerShell.Commands."


class NoMatchingEventsError(HyperVError):
    error_id = "NoMatchingEventsFound"
    category = "ObjectNotFound"
    exception_type = "System.Exception"

    def __init__(self) -> None:
        super().__init__("No events were found that match the specified selection criteria.")


class LogNotFoundError(HyperVError):
    error_id = "NoMatchingLogsFound"
    category = "ObjectNotFound"
    exception_type = "System.Exception"

    def __init__(self, name: str) -> None:
        super().__init__(f'There is not an event log on the localhost computer that matches "{name}".')


class InvalidQueryError(HyperVError):
    error_id = "System.Diagnostics.Eventing.Reader.EventLogException"
    category = "NotSpecified"
    exception_type = "System.Diagnostics.Eventing.Reader.EventLogException"

    def __init__(self, query: str) -> None:
        super().__init__(f"The specified query is invalid: {query}")


EVENT_TYPE = _pstype(
    "EventLogRecordObj",
    [
        "System.Diagnostics.Eventing.Reader.EventLogRecord",
        "System.Diagnostics.Eventing.Reader.EventRecord",
        "System.Object",
    ],
    [
        ("Id", I32),
        ("RecordId", I64),
        ("LogName", S),
        ("ProviderName", S),
        ("Level", None),
        ("LevelDisplayName", S),
        ("TimeCreated", DT),
        ("MachineName", S),
        ("Message", S),
    ],
)
ADAPTER_TYPE = _pstype(
    "VMNetworkAdapterObj",
    [
        "Microsoft.HyperV.PowerShell.VMNetworkAdapter",
        "Microsoft.HyperV.PowerShell.VMNetworkAdapterBase",
        "Microsoft.HyperV.PowerShell.VirtualizationObject",
        "System.Object",
    ],
    [
        ("Name", S),
        ("VMName", S),
        ("VMId", G),
        ("SwitchName", S),
        ("Connected", None),
        ("IsManagementOs", None),
    ],
)


# --- the XPath subset ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|and\b|or\b|EventID|EventRecordID|Level|!=|<=|>=|=|<|>|\d+)")
_FIELDS: dict[str, Callable[[EventRecord], int]] = {
    "EventID": lambda r: r.event_id,
    "EventRecordID": lambda r: r.record_id,
    "Level": lambda r: r.level,
}
_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
Predicate = Callable[[EventRecord], bool]


def parse_xpath(query: str) -> Predicate:
    """``*`` or ``*[System[cond]]`` -> predicate; anything else is an invalid query."""
    text = query.strip()
    if text == "*":
        return lambda r: True
    m = re.fullmatch(r"\*\s*\[\s*System\s*\[(.*)\]\s*\]", text, re.S)
    if not m:
        raise InvalidQueryError(query)
    tokens: list[str] = []
    rest = m.group(1)
    while rest.strip():
        tm = _TOKEN.match(rest)
        if not tm:
            raise InvalidQueryError(query)
        tokens.append(tm.group(1))
        rest = rest[tm.end() :]
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise InvalidQueryError(query)
        pos += 1
        return tokens[pos - 1]

    def atom() -> Predicate:
        tok = take()
        if tok == "(":
            inner = disjunction()
            if take() != ")":
                raise InvalidQueryError(query)
            return inner
        if tok not in _FIELDS:
            raise InvalidQueryError(query)
        op, value = take(), take()
        if op not in _OPS or not value.isdigit():
            raise InvalidQueryError(query)
        field, compare, number = _FIELDS[tok], _OPS[op], int(value)
        return lambda r: compare(field(r), number)

    def conjunction() -> Predicate:
        parts = [atom()]
        while peek() == "and":
            take()
            parts.append(atom())
        return lambda r: all(p(r) for p in parts)

    def disjunction() -> Predicate:
        parts = [conjunction()]
        while peek() == "or":
            take()
            parts.append(conjunction())
        return lambda r: any(p(r) for p in parts)

    predicate = disjunction()
    if pos != len(tokens):
        raise InvalidQueryError(query)
    return predicate


def _record(call: Call, rec: EventRecord) -> Any:
    return _fill(
        EVENT_TYPE(),
        {
            "Id": rec.event_id,
            "RecordId": rec.record_id,
            "LogName": rec.log_name,
            "ProviderName": rec.provider,
            "Level": rec.level,
            "LevelDisplayName": rec.level_name,
            "TimeCreated": to_datetime(rec.time_created),
            "MachineName": call.host.name,
            "Message": rec.message,
        },
    )


@cmdlet(
    "Get-WinEvent",
    "Microsoft.PowerShell.Commands.GetWinEventCommand",
    [
        Param("LogName", "strings", position=0),
        Param("MaxEvents", "int"),
        Param("FilterXPath", "string"),
        Param("Oldest", "switch"),
        COMPUTER,
    ],
)
def get_win_event(call: Call) -> Iterator[Any]:
    _local_only(call)
    if not call.has("LogName"):
        raise ParameterBindingError.missing_mandatory(["LogName"])
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
        yield _record(call, rec)


# --- import, removal, renaming, the network adapter ------------------------------------------------------


@dataclass(frozen=True)
class NetworkAdapterView:
    vm: VirtualMachine


binding._PIPELINE_TYPES.setdefault("adapters", NetworkAdapterView)
binding._TYPE_NAMES.setdefault("adapters", "Microsoft.HyperV.PowerShell.VMNetworkAdapter[]")


@cmdlet(
    "Import-VM",
    HV + "ImportVM",
    [
        Param("Path", "string", position=0),
        Param("Copy", "switch"),
        Param("GenerateNewId", "switch"),
        Param("VhdDestinationPath", "string"),
        Param("VirtualMachinePath", "string"),
        Param("SnapshotFilePath", "string"),
        Param("SmartPagingFilePath", "string"),
        Param("Register", "switch"),
        COMPUTER,
    ],
    should_process=True,
)
def import_vm_cmdlet(call: Call) -> Iterator[Any]:
    _local_only(call)
    if not call.has("Path"):
        raise ParameterBindingError.missing_mandatory(["Path"])
    if call.flag("WhatIf"):
        return
    vm = import_vm(
        call.host,
        call.get("Path"),
        copy=call.flag("Copy"),
        generate_new_id=call.flag("GenerateNewId"),
        vhd_destination=call.get("VhdDestinationPath"),
        vm_path=call.get("VirtualMachinePath"),
    )
    call.touch(vm.id)
    yield vm


@cmdlet(
    "Remove-VM",
    HV + "RemoveVM",
    [VM_NAME, VM_OBJ, Param("Force", "switch"), PASSTHRU, COMPUTER],
    should_process=True,
)
def remove_vm(call: Call) -> Iterator[Any]:
    _local_only(call)
    if not call.flag("Force") and call.get("Confirm", True) is not False:
        from hyperv_emulator.model.errors import ConfirmationRequiredError

        raise ConfirmationRequiredError("Remove-VM", ",".join(v.name for v in call.get("VM") or []))
    for vm in target_vms(call):
        call.touch(vm.id)
        if call.flag("WhatIf"):
            continue
        call.host.remove_vm(vm)
        if call.flag("Passthru"):
            yield vm


@cmdlet(
    "Rename-VM",
    HV + "RenameVM",
    [VM_NAME, VM_OBJ, Param("NewName", "string", position=1), PASSTHRU, COMPUTER],
    should_process=True,
)
def rename_vm(call: Call) -> Iterator[Any]:
    _local_only(call)
    if not call.has("NewName"):
        raise ParameterBindingError.missing_mandatory(["NewName"])
    for vm in target_vms(call):
        call.touch(vm.id)
        if not call.flag("WhatIf"):
            with call.host.lock:
                vm.name = call.get("NewName")
        if call.flag("Passthru"):
            yield vm


@cmdlet(
    "Get-VMNetworkAdapter",
    HV + "GetVMNetworkAdapter",
    [
        Param("VMName", "strings", position=0),
        Param("VM", "vms", pipeline=True, excludes=("VMName",)),
        Param("Name", "strings"),
        COMPUTER,
    ],
)
def get_network_adapter(call: Call) -> Iterator[Any]:
    _local_only(call)
    for vm in target_vms(call, name_param="VMName"):
        call.touch(vm.id)
        yield NetworkAdapterView(vm)


@cmdlet(
    "Disconnect-VMNetworkAdapter",
    HV + "DisconnectVMNetworkAdapter",
    [
        Param("VMName", "strings", position=0),
        Param("VMNetworkAdapter", "adapters", pipeline=True, excludes=("VMName",)),  # type: ignore[arg-type]
        Param("Name", "strings"),
        PASSTHRU,
        COMPUTER,
    ],
    should_process=True,
)
def disconnect_network_adapter(call: Call) -> Iterator[Any]:
    _local_only(call)
    if call.has("VMNetworkAdapter"):
        vms = [call.host.vm_by_id(a.vm.id) for a in call.get("VMNetworkAdapter")]
    else:
        vms = target_vms(call, name_param="VMName")
    for vm in vms:
        call.touch(vm.id)
        if not call.flag("WhatIf"):
            disconnect(call.host, vm)
        if call.flag("Passthru"):
            yield NetworkAdapterView(vm)


def serialize_adapter(view: NetworkAdapterView, host: Any) -> Any:
    switch = switch_of(host, view.vm)
    return _fill(
        ADAPTER_TYPE(),
        {
            "Name": ADAPTER_NAME,
            "VMName": view.vm.name,
            "VMId": view.vm.id,
            "SwitchName": switch,
            "Connected": bool(switch),
            "IsManagementOs": False,
        },
    )


EXTRA_SERIALIZERS[NetworkAdapterView] = serialize_adapter
