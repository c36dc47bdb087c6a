"""PowerShell ``WildcardPattern`` semantics, because Hyper-V cmdlets treat -Name/-VMName as wildcards.

``*`` any run, ``?`` one character, ``[abc]`` / ``[a-c]`` a set or range, a backtick escapes the next
character; matching is case-insensitive and anchored at both ends. A hostile name like
``x'; Remove-VM *`` is just a pattern here: it can only ever match names, never run anything.
"""

from __future__ import annotations

import re
from functools import lru_cache

from hyperv_emulator.model.errors import WildcardPatternError

_SPECIAL = "*?["


def has_wildcards(pattern: str) -> bool:
    """True if the pattern has an unescaped ``*``, ``?`` or ``[`` (WildcardPattern.ContainsWildcardCharacters)."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "`":
            i += 2
            continue
        if c in _SPECIAL:
            return True
        i += 1
    return False


def unescape(pattern: str) -> str:
    """The literal a pattern stands for once backtick escapes are removed."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "`" and i + 1 < len(pattern):
            out.append(pattern[i + 1])
            i += 2
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "`":
            if i + 1 < n:
                out.append(re.escape(pattern[i + 1]))
                i += 2
            else:
                out.append(re.escape("`"))
                i += 1
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            j = i + 1
            items: list[str] = []
            while j < n and pattern[j] != "]":
                ch = pattern[j]
                if ch == "`" and j + 1 < n:
                    ch = pattern[j + 1]
                    j += 1
                if j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    hi = pattern[j + 2]
                    items.append(f"{re.escape(ch)}-{re.escape(hi)}")
                    j += 3
                    continue
                items.append(re.escape(ch))
                j += 1
            if j >= n or not items:
                raise WildcardPatternError(pattern)
            out.append("[" + "".join(items) + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


class WildcardPattern:
    """A compiled pattern; ``match()`` is a full, case-insensitive match."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = _compile(pattern)

    def match(self, text: str) -> bool:
        return self._regex.fullmatch(text) is not None


def matches(pattern: str, text: str) -> bool:
    return WildcardPattern(pattern).match(text)
