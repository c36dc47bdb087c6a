"""The ``-FilterXPath`` subset Get-WinEvent accepts here, as a predicate over ``EventRecord``.

What event queries use: ``*`` or ``*[System[<condition>]]`` with ``EventID``, ``EventRecordID`` and
``Level`` compared by ``= != < <= > >=``, joined with ``and`` / ``or`` and parentheses. Anything else is
``InvalidQueryError`` (an EventLogException, like a real host's answer to a query it cannot parse).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hyperv_emulator.model.errors import InvalidQueryError
from hyperv_emulator.model.eventlog import EventRecord

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
