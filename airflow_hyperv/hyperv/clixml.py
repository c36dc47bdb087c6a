"""A lean reading of one CLIXML output object: its type names and only the properties asked for.

A host poll answers every wait on the host with one snapshot: a few hundred objects of ~20
properties each (a ``VirtualMachine`` carries memory, paths, dates, an ArrayList of drives...). A
generic deserializer builds all of that, element by element, and most of it is thrown away: the
waits judge a VM's Id, name, state and heartbeat, a checkpoint's Id, a drive's VM and path, a disk's
parent. ``lean_object`` parses the message with the C parser (``xml.etree``) and converts only those
properties, into an object ``records.Props`` reads like any other remoting object (``types``,
``adapted_properties``, ``extended_properties``; an enum as ``EnumValue`` with ``to_string`` and
``property_sets``). Pure: no pypsrp (the transport hands it the message text).

Serialization rules ([MS-PSRP] 2.2.5): an object is ``<Obj>`` with its type names in ``<TN>`` (or a
``<TNRef>`` to a ``<TN>`` earlier in the same message), adapted properties in ``<Props>``, extended
ones in ``<MS>``, each property a primitive element whose ``N`` attribute is its name; an enum is an
``<Obj>`` holding its number (``<I32>``...) and its name (``<ToString>``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

_INTEGERS = frozenset({"I16", "I32", "I64", "U16", "U32", "U64", "By", "SB"})
_FLOATS = frozenset({"Sg", "Db", "D"})
_TEXTS = frozenset({"S", "G", "DT", "TS", "URI", "Version", "XD", "SBK", "ToString"})


@dataclass(frozen=True)
class EnumValue:
    """An enum property as remoting sends it: its .NET name and its number."""

    to_string: str
    property_sets: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return self.to_string


@dataclass
class LeanObject:
    """One output object, read for only some of its properties (``lean_object``)."""

    types: list[str] = field(default_factory=list)
    adapted_properties: dict[str, Any] = field(default_factory=dict)
    extended_properties: dict[str, Any] = field(default_factory=dict)
    to_string: str | None = None


def lean_object(message: str, keep: Collection[str]) -> Any:
    """The output object in ``message`` (one PSRP ``PIPELINE_OUTPUT`` message's CLIXML) with only the
    properties named in ``keep`` (case-insensitive); a primitive output is its value.

    :param message: The CLIXML of one output object.
    :param keep: The property names to convert; every other property is skipped unread.
    :return: A ``LeanObject``, or the primitive's value.
    """
    root = ET.fromstring(message)  # noqa: S314 - a host's answer, parsed with the stdlib's expat
    wanted = {name.lower() for name in keep}
    if root.tag != "Obj":
        return _value(root, {})
    type_names: dict[str, list[str]] = {}
    return _object(root, wanted, type_names)


def _object(element: ET.Element, wanted: set[str] | None, type_names: dict[str, list[str]]) -> LeanObject:
    """``wanted`` None: every property (a nested object, read only when asked for)."""
    obj = LeanObject()
    for child in element:
        tag = child.tag
        if tag == "TN":
            obj.types = [t.text or "" for t in child.findall("T")]
            ref = child.get("RefId")
            if ref is not None:
                type_names[ref] = obj.types
        elif tag == "TNRef":
            obj.types = type_names.get(child.get("RefId") or "", [])
        elif tag == "ToString":
            obj.to_string = child.text or ""
        elif tag in ("Props", "MS"):
            target = obj.adapted_properties if tag == "Props" else obj.extended_properties
            for prop in child:
                name = prop.get("N")
                if name is not None and (wanted is None or name.lower() in wanted):
                    target[name] = _value(prop, type_names)
    return obj


def _value(element: ET.Element, type_names: dict[str, list[str]]) -> Any:
    tag, text = element.tag, element.text
    if tag == "Nil":
        return None
    if tag in _TEXTS:
        return text or ""
    if tag in _INTEGERS:
        return int(text or 0)
    if tag == "B":
        return (text or "").strip().lower() == "true"
    if tag in _FLOATS:
        return float(text or 0)
    if tag == "C":
        return chr(int(text or 0))
    if tag == "Obj":
        numbers = [int(c.text or 0) for c in element if c.tag in _INTEGERS]
        nested = _object(element, None, type_names)
        if numbers and nested.to_string is not None:  # an enum (or flags): its name and number
            return EnumValue(nested.to_string, numbers[:1])
        for listing in ("LST", "IE", "STK", "QUE"):
            items = element.find(listing)
            if items is not None:
                return [_value(item, type_names) for item in items]
        return nested
    return text  # a type this reading has no use for (bytes, secure strings, references)
