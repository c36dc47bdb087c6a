"""JEA restricted mode: the role capability (``.psrc``) a real endpoint would load, read from a file.

A JEA session (PowerShell docs, "JEA Role Capabilities",
https://learn.microsoft.com/powershell/scripting/security/remoting/jea/role-capabilities) shows only
what its role capability makes visible: cmdlets in ``VisibleCmdlets``, functions in
``VisibleFunctions`` (a name, ``Module\\Name``, a wildcard, or a hashtable with ``Parameters``, each
parameter with an optional ``ValidateSet`` / ``ValidatePattern``), and **no PowerShell provider**
unless ``VisibleProviders`` names it. Anything else is not there at all: invoking it fails with
PowerShell's CommandNotFoundException ("The term 'X' is not recognized as the name of a cmdlet,
function, script file, or operable program…", FQID ``CommandNotFoundException``; a capture from a
JEA session: PowershellFrameworkCollective/psframework#315). A parameter the role does not list is
unknown to the proxy command (PowerShell/PowerShell#14650: "the Name parameter is unknown").

The emulator reads the role from a ``.psrc`` file, or from the first fenced ``powershell`` block with
``VisibleCmdlets`` in a Markdown file, always at a path it is given: there is no default (installed
code never looks for a source checkout). The provider ships its documented role as
``airflow_hyperv.jea.ROLE_CAPABILITY``, which is what the tests run against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperv_emulator.model.errors import ParameterBindingError, ParameterValidationError

# Commands that are *functions* on Windows PowerShell 5.1 (Get-Command shows CommandType Function):
# Get-FileHash lives in Microsoft.PowerShell.Utility's script module; Get-Volume is a CDXML function
# of the Storage module. Listing them under VisibleCmdlets makes nothing visible.
FUNCTIONS = {"get-filehash": "Microsoft.PowerShell.Utility", "get-volume": "Storage"}
# The module each cmdlet comes from, to check module-qualified names (``Hyper-V\\Get-VM``).
MODULES = {
    "get-psdrive": "Microsoft.PowerShell.Management",
    "get-childitem": "Microsoft.PowerShell.Management",
    "test-path": "Microsoft.PowerShell.Management",
    "new-item": "Microsoft.PowerShell.Management",
    "move-item": "Microsoft.PowerShell.Management",
    "remove-item": "Microsoft.PowerShell.Management",
    "rename-item": "Microsoft.PowerShell.Management",
    "get-content": "Microsoft.PowerShell.Management",
    "set-content": "Microsoft.PowerShell.Management",
    "get-item": "Microsoft.PowerShell.Management",
    "get-winevent": "Microsoft.PowerShell.Diagnostics",
    "get-clusternode": "FailoverClusters",
    "get-clustergroup": "FailoverClusters",
    **FUNCTIONS,
}
# Cmdlets that work through a PowerShell provider (FileSystem): invisible providers break them.
PROVIDER_COMMANDS = {
    "get-psdrive",
    "get-childitem",
    "test-path",
    "new-item",
    "move-item",
    "remove-item",
    "rename-item",
    "get-content",
    "set-content",
    "get-item",
    "get-filehash",
}
# What every RestrictedRemoteServer session shows (about_Session_Configuration_Files, SessionType).
DEFAULT_VISIBLE = {
    "clear-host",
    "exit-pssession",
    "get-command",
    "get-formatdata",
    "get-help",
    "measure-object",
    "out-default",
    "select-object",
}
COMMON_PARAMETERS = {
    "verbose",
    "debug",
    "erroraction",
    "warningaction",
    "informationaction",
    "errorvariable",
    "warningvariable",
    "informationvariable",
    "outvariable",
    "outbuffer",
    "pipelinevariable",
}


def hyperv_module(name: str) -> str:
    """Hyper-V's own cmdlets (``*-VM*``, ``Get-VHD``, ``Get-VMHost``…) come from the Hyper-V module."""
    return MODULES.get(name.lower(), "Hyper-V")


# --- a reader for PowerShell data files (the subset .psrc files use) ---------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+)|(?P<block><\#.*?\#>)|(?P<comment>\#[^\n]*)|(?P<nl>\n)
    |(?P<sq>'(?:[^']|'')*')|(?P<dq>"(?:[^"`]|`.|"")*")
    |(?P<open>@\{|@\(|\()|(?P<close>[})])|(?P<op>[=;,])|(?P<word>[^\s=;,(){}'"\#]+)""",
    re.VERBOSE | re.DOTALL,
)


class PsdataError(ValueError):
    """The role capability text is not a PowerShell data hashtable this reader understands."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PsdataError(f"unexpected {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        pos = m.end()
        if kind in ("ws", "block", "comment"):
            continue
        value = m.group()
        if kind == "sq":
            kind, value = "str", value[1:-1].replace("''", "'")
        elif kind == "dq":
            kind, value = "str", re.sub(r"`(.)", r"\1", value[1:-1]).replace('""', '"')
        out.append((kind, value))
    out.append(("eof", ""))
    return out


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def skip(self, *separators: str) -> None:
        """Skip newlines and the given separators (``;`` between keys, ``,`` inside ``@( )``)."""
        while self.peek()[0] == "nl" or (self.peek()[0] == "op" and self.peek()[1] in separators):
            self.take()

    def value(self) -> Any:
        """An item, or a comma list of items (a comma at a line end continues the list)."""
        items = [self.item()]
        while self.peek() == ("op", ","):
            self.take()
            self.skip()
            items.append(self.item())
        return items[0] if len(items) == 1 else items

    def item(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text
        if kind == "word":
            low = text.lower()
            if low in ("$true", "$false"):
                return low == "$true"
            if re.fullmatch(r"-?\d+", text):
                return int(text)
            return text
        if kind == "open" and text == "@{":
            return self.hashtable()
        if kind == "open":  # @( ... ) or ( ... ): newline- or comma-separated values, flattened
            out: list[Any] = []
            while True:
                self.skip(",", ";")
                if self.peek()[0] == "close":
                    self.take()
                    return out
                v = self.value()
                out.extend(v if isinstance(v, list) else [v])
        raise PsdataError(f"unexpected {text!r}")

    def hashtable(self) -> dict[str, Any]:
        table: dict[str, Any] = {}
        while True:
            self.skip(";")
            kind, key = self.take()
            if kind == "close":
                return table
            if kind not in ("word", "str"):
                raise PsdataError(f"expected a key, got {key!r}")
            if self.take() != ("op", "="):
                raise PsdataError(f"expected '=' after {key!r}")
            self.skip()
            table[key] = self.value()


def parse_psdata(text: str) -> dict[str, Any]:
    """Read a ``@{ … }`` PowerShell data hashtable (strings, numbers, booleans, arrays, hashtables)."""
    reader = _Reader(text)
    reader.skip()
    kind, value = reader.take()
    if (kind, value) != ("open", "@{"):
        raise PsdataError("a role capability file starts with @{")
    table = reader.hashtable()
    reader.skip()
    if reader.peek()[0] != "eof":
        raise PsdataError(f"unexpected {reader.peek()[1]!r} after the hashtable")
    return table


# --- the role -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterRule:
    name: str
    validate_set: tuple[str, ...] = ()
    validate_pattern: str | None = None


@dataclass(frozen=True)
class VisibleCommand:
    """One entry of VisibleCmdlets/VisibleFunctions. ``parameters`` None: every parameter."""

    pattern: str  # a name or a wildcard
    module: str | None
    parameters: dict[str, ParameterRule] | None

    def matches(self, name: str, module: str) -> bool:
        if self.module is not None and self.module.lower() != module.lower():
            return False
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in self.pattern)
        return re.fullmatch(regex, name, re.IGNORECASE) is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _entries(value: Any) -> list[VisibleCommand]:
    out = []
    for entry in _as_list(value):
        if isinstance(entry, str):
            name, params = entry, None
        elif isinstance(entry, dict):
            name = str(entry.get("Name", ""))
            params = None
            if "Parameters" in entry:
                params = {}
                for p in _as_list(entry["Parameters"]):
                    if not isinstance(p, dict) or "Name" not in p:
                        raise PsdataError(f"a parameter of {name} needs a Name: {p!r}")
                    pattern = p.get("ValidatePattern")
                    params[str(p["Name"]).lower()] = ParameterRule(
                        str(p["Name"]),
                        tuple(str(v) for v in _as_list(p.get("ValidateSet"))),
                        str(pattern) if pattern is not None else None,
                    )
        else:
            raise PsdataError(f"not a command entry: {entry!r}")
        module, _, bare = name.rpartition("\\")
        out.append(VisibleCommand(bare, module or None, params))
    return out


@dataclass(frozen=True)
class RoleCapability:
    cmdlets: list[VisibleCommand] = field(default_factory=list)
    functions: list[VisibleCommand] = field(default_factory=list)
    providers: frozenset[str] = frozenset()
    source: str = ""

    @classmethod
    def from_psdata(cls, table: dict[str, Any], source: str = "") -> RoleCapability:
        return cls(
            cmdlets=_entries(table.get("VisibleCmdlets")),
            functions=_entries(table.get("VisibleFunctions")),
            providers=frozenset(str(p).lower() for p in _as_list(table.get("VisibleProviders"))),
            source=source,
        )

    @classmethod
    def load(cls, path: Path) -> RoleCapability:
        """A ``.psrc`` file, or the role capability block of a Markdown file (docs/connection.md)."""
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".md":
            text = role_block(text)
        try:
            return cls.from_psdata(parse_psdata(text), str(path))
        except PsdataError as exc:
            raise PsdataError(f"{path}: {exc}") from exc

    def visible(self, name: str) -> VisibleCommand | None:
        """The entry that makes ``name`` visible (cmdlets in VisibleCmdlets, functions in
        VisibleFunctions, with their module), or None when the session does not have it."""
        low = name.lower()
        if low in DEFAULT_VISIBLE:
            return VisibleCommand(name, None, None)
        is_function = low in FUNCTIONS
        pool = self.functions if is_function else self.cmdlets
        module = hyperv_module(name)
        return next((e for e in pool if e.matches(name, module)), None)

    def provider_visible(self, provider: str = "FileSystem") -> bool:
        return provider.lower() in self.providers


def role_block(markdown: str) -> str:
    """The first fenced ``powershell`` block that sets VisibleCmdlets."""
    for m in re.finditer(r"```powershell\n(.*?)```", markdown, re.DOTALL):
        if "VisibleCmdlets" in m.group(1):
            return m.group(1)
    raise PsdataError("no ```powershell block with VisibleCmdlets")


# --- what a JEA proxy command checks (its error: model/errors.py) -------------------------------------------------------------------


def check_parameters(entry: VisibleCommand, params: dict[str, Any]) -> None:
    """Refuse a parameter the role does not list, or a value outside its ValidateSet/Pattern."""
    if entry.parameters is None:
        return
    for name, value in params.items():
        low = name.lower()
        if low in COMMON_PARAMETERS:
            continue
        rule = entry.parameters.get(low)
        if rule is None:
            raise ParameterBindingError.not_found(name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            text = v.name if hasattr(v, "name") and not isinstance(v, str) else str(v)
            if rule.validate_pattern is not None:
                if re.search(rule.validate_pattern, text, re.IGNORECASE) is None:
                    raise ParameterValidationError(
                        f"Cannot validate argument on parameter '{rule.name}'. The argument \"{text}\" does not "
                        f'match the "{rule.validate_pattern}" pattern. Supply an argument that matches '
                        f'"{rule.validate_pattern}" and try again.',
                        target_name=rule.name,
                    )
            elif rule.validate_set and text.lower() not in (s.lower() for s in rule.validate_set):
                raise ParameterValidationError(
                    f"Cannot validate argument on parameter '{rule.name}'. The argument \"{text}\" does not belong "
                    f'to the set "{",".join(rule.validate_set)}" specified by the ValidateSet attribute. Supply an '
                    "argument that is in the set and then try the command again.",
                    target_name=rule.name,
                )
