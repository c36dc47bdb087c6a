"""Parameter binding the way PowerShell does it for compiled cmdlets.

Names are case-insensitive, aliases count, and an unambiguous prefix is enough (``-VMN`` for
``-VMName``). Unknown names fail with ``NamedParameterNotFound``, ambiguous prefixes with
``AmbiguousParameter``; values are converted to the parameter's type or fail with
``CannotConvertArgumentNoMessage``. Object parameters (``-VM``, ``-VMSnapshot``) accept only live
objects from an earlier command of the same pipeline: a deserialized object from a client cannot be
converted back, exactly like on a real host.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

from hyperv_emulator.cmdlets.output_views import NetworkAdapterView
from hyperv_emulator.host_runtime import BoundParameter
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.enums import ENUM_TYPE_NAMES, parse_enum
from hyperv_emulator.model.errors import ParameterBindingError
from hyperv_emulator.model.vm import VirtualMachine

if TYPE_CHECKING:
    from hyperv_emulator.cmdlets.base import Call

Kind = Literal[
    "string", "strings", "guid", "switch", "bool", "enum", "int", "vms", "snapshots", "adapters", "choice"
]
_TYPE_NAMES: dict[str, str] = {
    "string": "System.String",
    "strings": "System.String[]",
    "guid": "System.Guid",
    "switch": "System.Management.Automation.SwitchParameter",
    "bool": "System.Boolean",
    "int": "System.Int32",
    "vms": "Microsoft.HyperV.PowerShell.VirtualMachine[]",
    "snapshots": "Microsoft.HyperV.PowerShell.VMSnapshot[]",
    "choice": "System.String",
    "adapters": "Microsoft.HyperV.PowerShell.VMNetworkAdapter[]",
}
_PIPELINE_TYPES: dict[str, type] = {
    "vms": VirtualMachine,
    "snapshots": Checkpoint,
    "adapters": NetworkAdapterView,
}


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind = "string"
    aliases: tuple[str, ...] = ()
    position: int | None = None
    pipeline: bool = False  # takes pipeline input by value (objects of its kind)
    enum: type[IntEnum] | None = None
    choices: tuple[str, ...] = ()
    excludes: tuple[
        str, ...
    ] = ()  # other parameter sets: pipeline input cannot bind if one of these is given
    mandatory: bool = False  # refused before the handler runs when missing (cmdlets/base.py, invoke)

    @property
    def type_name(self) -> str:
        if self.enum is not None:
            return ENUM_TYPE_NAMES.get(self.enum, self.enum.__name__)
        return _TYPE_NAMES[self.kind]


COMMON = (
    Param("Verbose", "switch", ("vb",)),
    Param("Debug", "switch", ("db",)),
    Param(
        "ErrorAction",
        "choice",
        ("ea",),
        choices=("Continue", "Ignore", "Inquire", "SilentlyContinue", "Stop", "Suspend"),
    ),
    Param(
        "WarningAction",
        "choice",
        ("wa",),
        choices=("Continue", "Ignore", "Inquire", "SilentlyContinue", "Stop"),
    ),
    Param(
        "InformationAction",
        "choice",
        ("infa",),
        choices=("Continue", "Ignore", "Inquire", "SilentlyContinue", "Stop"),
    ),
    Param("ErrorVariable", "string", ("ev",)),
    Param("WarningVariable", "string", ("wv",)),
    Param("InformationVariable", "string", ("iv",)),
    Param("OutVariable", "string", ("ov",)),
    Param("OutBuffer", "int", ("ob",)),
    Param("PipelineVariable", "string", ("pv",)),
)
SHOULD_PROCESS = (Param("WhatIf", "switch", ("wi",)), Param("Confirm", "switch", ("cf",)))


@dataclass(frozen=True)
class Cmdlet:
    """One cmdlet: its name, .NET class (for FQIDs), parameters and handler."""

    name: str
    command_type: str
    params: tuple[Param, ...]
    handler: Callable[[Call], Iterable[Any]]
    aliases: tuple[str, ...] = ()
    should_process: bool = False
    prompts: bool = False  # ConfirmImpact High: prompts unless -Confirm:$false
    # A Hyper-V (or event log) cmdlet of this host only: the caller must be a Hyper-V administrator and
    # -ComputerName may name only this host (cmdlets/base.py, invoke).
    local_only: bool = False
    # A FailoverClusters cmdlet: only a cluster node has the module (elsewhere: not recognized).
    cluster_only: bool = False
    all_params: tuple[Param, ...] = field(init=False)

    def __post_init__(self) -> None:
        extra = COMMON + (SHOULD_PROCESS if self.should_process else ())
        object.__setattr__(self, "all_params", self.params + extra)

    def resolve(self, given: str) -> Param:
        """Exact name/alias first, then a unique prefix, like PowerShell."""
        low = given.lower()
        for p in self.all_params:
            if p.name.lower() == low or low in (a.lower() for a in p.aliases):
                return p
        hits = {
            p.name: p
            for p in self.all_params
            if p.name.lower().startswith(low) or any(a.lower().startswith(low) for a in p.aliases)
        }
        if len(hits) == 1:
            return next(iter(hits.values()))
        if len(hits) > 1:
            raise ParameterBindingError.ambiguous(given, sorted(hits))
        raise ParameterBindingError.not_found(given)

    def pipeline_param_for(self, obj: object) -> Param | None:
        for p in self.params:
            if p.pipeline and isinstance(obj, _PIPELINE_TYPES.get(p.kind, ())):
                return p
        return None


def convert(param: Param, value: Any) -> Any:
    """Convert one client value to the parameter's type, or raise CannotConvertArgumentNoMessage."""
    kind = param.kind
    if kind == "switch":
        return True if value is None else _to_bool(param, value)
    if value is None:
        raise ParameterBindingError.missing_argument(param.name, param.type_name)
    if kind == "bool":
        return _to_bool(param, value)
    if kind == "string":
        if isinstance(value, list | tuple):
            if len(value) != 1:
                raise ParameterBindingError.cannot_convert(
                    param.name, " ".join(map(str, value)), "System.String"
                )
            value = value[0]
        return str(value)
    if kind == "strings":
        items = list(value) if isinstance(value, list | tuple) else [value]
        return [str(v) for v in items]
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ParameterBindingError.cannot_convert(
                param.name, value, "System.Int32", "Input string was not in a correct format."
            ) from exc
    if kind == "guid":
        if isinstance(value, list | tuple) and len(value) == 1:
            value = value[0]
        try:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError as exc:
            raise ParameterBindingError.cannot_convert(
                param.name,
                value,
                "System.Guid",
                "Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).",
            ) from exc
    if kind == "enum":
        assert param.enum is not None
        try:
            return parse_enum(param.enum, value)
        except ValueError as exc:
            raise ParameterBindingError.cannot_convert(param.name, value, param.type_name, str(exc)) from exc
    if kind == "choice":
        text = str(value)
        for choice in param.choices:
            if choice.lower() == text.lower():
                return choice
        raise ParameterBindingError.cannot_convert(
            param.name,
            value,
            param.type_name,
            f'The argument "{text}" does not belong to the set "{",".join(param.choices)}"',
        )
    # object kinds: only live objects from this pipeline (a deserialized client object cannot bind)
    expected = _PIPELINE_TYPES[kind]
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, expected):
            tn = getattr(item, "PSTypeNames", None) or [type(item).__name__]
            raise ParameterBindingError.cannot_convert(
                param.name, item, param.type_name, f'value of type "{tn[0]}" cannot be converted'
            )
    return items


def _to_bool(param: Param, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in ("true", "$true", "1"):
        return True
    if text in ("false", "$false", "0"):
        return False
    raise ParameterBindingError.cannot_convert(param.name, value, param.type_name)


def bind(cmdlet: Cmdlet, parameters: Sequence[BoundParameter]) -> dict[str, Any]:
    """Bind a command's client parameters (named and positional) to canonical names."""
    bound: dict[str, Any] = {}
    positional = sorted((p for p in cmdlet.params if p.position is not None), key=lambda p: p.position or 0)
    pos_index = 0
    for bp in parameters:
        if bp.name is None:
            while pos_index < len(positional) and positional[pos_index].name in bound:
                pos_index += 1
            if pos_index >= len(positional):
                raise ParameterBindingError(
                    "PositionalParameterNotFound",
                    f"A positional parameter cannot be found that accepts argument '{bp.value}'.",
                )
            param = positional[pos_index]
            pos_index += 1
        else:
            param = cmdlet.resolve(bp.name.lstrip("-"))
        if param.name in bound:
            raise ParameterBindingError(
                "ParameterAlreadyBound",
                f"Cannot bind parameter because parameter '{param.name}' is specified more than once. To provide "
                "multiple values to parameters that can accept multiple values, use the array syntax.",
            )
        bound[param.name] = convert(param, bp.value)
    return bound


def as_text(value: Any) -> str:
    """Bound values for the audit log: lists comma-joined, objects by Id."""
    if isinstance(value, list | tuple):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, VirtualMachine | Checkpoint):
        return f"{type(value).__name__}({value.id})"
    if isinstance(value, IntEnum):
        return value.name
    return str(value)
