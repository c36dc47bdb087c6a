"""The JEA role in docs/connection.md makes visible every command the provider sends, and the
emulator's restricted mode refuses what a role does not show, the way a real JEA endpoint does."""

from __future__ import annotations

import ast
import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airflow_hyperv.hyperv.pipelines import Pipeline, bound_command, single_statement
from airflow_hyperv.jea import ROLE_CAPABILITY
from hyperv_emulator.cmdlets.jea import (
    COMMON_PARAMETERS,
    FUNCTIONS,
    PROVIDER_COMMANDS,
    RoleCapability,
    parse_psdata,
    role_block,
)
from tests.support.emulated import settings_for

PACKAGE = Path(__file__).parents[2] / "airflow_hyperv"
DOC = Path(__file__).parents[2] / "docs" / "connection.md"
# Commands whose output the next command of a pipeline takes by value, and the parameter it binds to.
PIPELINE_PARAMETER = {
    "get-vm": "VM",
    "get-vmsnapshot": "VMSnapshot",
    "get-vmnetworkadapter": "VMNetworkAdapter",
}


@dataclass
class Sent:
    """One command as some builder sends it: its parameters and where in the code."""

    name: str
    parameters: set[str] = field(default_factory=set)
    where: set[str] = field(default_factory=set)
    literals: dict[str, set[str]] = field(default_factory=dict)  # fixed string values, e.g. ItemType


def _command_name(node: ast.AST, helpers: dict[str, str]) -> str | None:
    """``bound_command("X", …)`` / ``Command("X", …)`` -> X; a call to a helper that returns one -> its X."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    if node.func.id in ("bound_command", "Command") and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return helpers.get(node.func.id)


def commands_the_provider_sends() -> dict[str, Sent]:
    """Every command built anywhere in the package (the emulator excluded), read from the source, so a
    builder added later is checked without anyone listing it here."""
    sent: dict[str, Sent] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "emulator" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        helpers: dict[str, str] = {}  # def _vm(...): return bound_command("Get-VM", ...)
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef):
                for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return)):
                    name = _command_name(ret.value, {}) if ret.value is not None else None
                    if name:
                        helpers[fn.name] = name
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)] or [tree]:
            dict_keys = {  # ``**option`` with option = {"TurnOff": SWITCH} if … else {"Force": SWITCH}
                k.value
                for d in ast.walk(fn)
                if isinstance(d, ast.Dict)
                for k in d.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value[:1].isupper()
            }
            for node in ast.walk(fn):
                name = _command_name(node, {})
                if name is not None and isinstance(node, ast.Call):
                    entry = sent.setdefault(name.lower(), Sent(name))
                    entry.where.add(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
                    for kw in node.keywords:
                        if kw.arg is not None:
                            entry.parameters.add(kw.arg)
                            if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                                entry.literals.setdefault(kw.arg, set()).add(kw.value.value)
                        else:
                            entry.parameters.update(dict_keys)
                # a pipeline: a later command binds the output of the one before it
                items = (
                    node.args
                    if isinstance(node, ast.Call)
                    else node.elts
                    if isinstance(node, ast.Tuple)
                    else []
                )
                names = [_command_name(item, helpers) for item in items]
                for before, after in itertools.pairwise(names):
                    if before and after and before.lower() in PIPELINE_PARAMETER:
                        sent.setdefault(after.lower(), Sent(after)).parameters.add(
                            PIPELINE_PARAMETER[before.lower()]
                        )
    return sent


def role_problems(role: RoleCapability, sent: dict[str, Sent]) -> list[str]:
    problems = []
    for key, command in sorted(sent.items()):
        entry = role.visible(command.name)
        if entry is None:
            field_name = "VisibleFunctions (it is a function)" if key in FUNCTIONS else "VisibleCmdlets"
            problems.append(
                f"docs/connection.md: add {command.name} to {field_name} of the role capability "
                f"(sent by {', '.join(sorted(command.where))})"
            )
            continue
        missing = sorted(
            p
            for p in command.parameters
            if entry.parameters is not None
            and p.lower() not in entry.parameters
            and p.lower() not in COMMON_PARAMETERS  # always allowed
        )
        if missing:
            problems.append(
                f"docs/connection.md: add {', '.join(f'@{{ Name = {p!r} }}' for p in missing)} to the Parameters "
                f"of {command.name} (sent by {', '.join(sorted(command.where))})"
            )
        for param, values in sorted(command.literals.items()):
            rule = (entry.parameters or {}).get(param.lower())
            allowed = (
                {v.lower() for v in rule.validate_set} if rule is not None and rule.validate_set else None
            )
            refused = sorted(v for v in values if allowed is not None and v.lower() not in allowed)
            if refused:
                problems.append(
                    f"docs/connection.md: add {', '.join(map(repr, refused))} to the ValidateSet of -{param} of "
                    f"{command.name} (sent by {', '.join(sorted(command.where))})"
                )
        if key in PROVIDER_COMMANDS and not role.provider_visible("FileSystem"):
            problems.append(f"docs/connection.md: {command.name} needs VisibleProviders = 'FileSystem'")
    return problems


def test_the_scan_finds_the_builders_it_must_check() -> None:
    """Positive control: the scan sees the commands, parameters and pipeline parameters we know of."""
    sent = commands_the_provider_sends()
    for name in (
        "get-vm",
        "checkpoint-vm",
        "get-volume",
        "get-filehash",
        "get-winevent",
        "import-vm",
        "remove-vm",
    ):
        assert name in sent, name
    assert {"SnapshotName", "Passthru", "VM"} <= sent["checkpoint-vm"].parameters
    assert {"TurnOff", "Force", "VM"} <= sent["stop-vm"].parameters  # through **option
    assert "VMNetworkAdapter" in sent["disconnect-vmnetworkadapter"].parameters


def test_the_documented_role_makes_every_command_the_provider_sends_visible() -> None:
    role = RoleCapability.load(DOC)
    problems = role_problems(role, commands_the_provider_sends())
    assert not problems, "\n".join(problems)


def test_a_role_with_a_function_as_cmdlet_and_no_provider_is_caught() -> None:
    """The mistakes the old role made are reported, naming what to add where."""
    old = RoleCapability.from_psdata(
        parse_psdata(
            """@{
                VisibleCmdlets = @(
                    @{ Name = 'Hyper-V\\Get-VM'; Parameters = @{ Name = 'Id' } }
                    @{ Name = 'Microsoft.PowerShell.Utility\\Get-FileHash'; Parameters = @{ Name = 'LiteralPath' } }
                    'Microsoft.PowerShell.Management\\Test-Path'
                    @{ Name = 'New-Item'; Parameters = @{ Name = 'ItemType'; ValidateSet = 'Directory' } }
                )
            }"""
        )
    )
    sent = {
        "get-vm": Sent("Get-VM", {"Id", "Name"}, {"x.py:1"}),
        "get-filehash": Sent("Get-FileHash", {"LiteralPath"}, {"x.py:2"}),
        "test-path": Sent("Test-Path", {"LiteralPath"}, {"x.py:3"}),
        "get-volume": Sent("Get-Volume", {"FilePath"}, {"x.py:4"}),
        "new-item": Sent("New-Item", {"ItemType", "ErrorAction"}, {"x.py:5"}, {"ItemType": {"File"}}),
    }
    problems = "\n".join(role_problems(old, sent))
    assert "add @{ Name = 'Name' } to the Parameters of Get-VM" in problems
    assert "add Get-FileHash to VisibleFunctions (it is a function)" in problems
    assert "add Get-Volume to VisibleFunctions" in problems
    assert "Test-Path needs VisibleProviders = 'FileSystem'" in problems
    assert "add 'File' to the ValidateSet of -ItemType of New-Item" in problems
    assert "ErrorAction" not in problems  # a common parameter is always allowed


def test_the_shipped_role_capability_is_the_documented_one() -> None:
    """airflow_hyperv/jea/AirflowHyperV.psrc is, byte for byte, the role block of docs/connection.md:
    the doc cannot drift from the file the package ships (and the emulator's restricted mode loads)."""
    assert ROLE_CAPABILITY.read_text(encoding="utf-8") == role_block(DOC.read_text(encoding="utf-8"))
    role, documented = RoleCapability.load(ROLE_CAPABILITY), RoleCapability.load(DOC)
    assert (role.cmdlets, role.functions, role.providers) == (
        documented.cmdlets,
        documented.functions,
        documented.providers,
    )
    assert role.provider_visible("FileSystem")
    assert role.visible("Get-FileHash") is not None and role.visible("Get-Volume") is not None
    assert role.visible("Invoke-Expression") is None


# --- restricted mode against the real client --------------------------------------------------------------


ROLE = """@{
    VisibleCmdlets = @(
        @{ Name = 'Hyper-V\\Get-VM'; Parameters = @{ Name = 'Id' } }
        @{ Name = 'Hyper-V\\Get-VMSnapshot'; Parameters = @{ Name = 'Id' } }
        'Microsoft.PowerShell.Management\\Test-Path'
        @{ Name = 'Microsoft.PowerShell.Management\\Get-ChildItem';
           Parameters = @{ Name = 'LiteralPath'; ValidatePattern = '^D:\\\\Backups(\\\\|$)' }, @{ Name = 'Recurse' }, @{ Name = 'File' } }
        'Microsoft.PowerShell.Utility\\Get-FileHash'
    )
}"""


@pytest.fixture
def restricted_hook(tmp_path):
    from airflow_hyperv.hooks.hyperv import HyperVHook
    from hyperv_emulator.api import Emulator

    psrc = tmp_path / "AirflowHyperV.psrc"
    psrc.write_text(ROLE)
    with Emulator(root_dir=tmp_path / "hosts", time_scale=1000.0, role_capability=psrc) as emu:
        hv = HyperVHook(settings=settings_for(emu, "hv-01"))
        hv.retry_wait_multiplier, hv.retry_wait_max = 0.01, 0.05
        with hv:
            yield emu, hv


def test_restricted_mode_refuses_what_the_role_does_not_show(restricted_hook) -> None:
    emu, hv = restricted_hook
    vm = next(v for v in emu.host("hv-01").vms() if v.name == "dc-01")
    assert hv.run_repeatable(
        single_statement(bound_command("Get-VM", Id=vm.id))
    ).output  # visible, with a listed parameter

    # A cmdlet the role does not list is not there at all (PowerShell's CommandNotFoundException).
    result = hv.run_repeatable(single_statement(bound_command("Get-VMHost")))
    error = result.errors[0]
    assert error.fully_qualified_error_id == "CommandNotFoundException"
    assert error.category == "ObjectNotFound" and error.target_name == "Get-VMHost"

    # A function listed under VisibleCmdlets is not visible either (Get-FileHash is a function on 5.1).
    assert hv.run_repeatable(single_statement(bound_command("Get-FileHash", LiteralPath=["D:\\x"]))).errors[
        0
    ].fully_qualified_error_id == ("CommandNotFoundException")

    # A parameter the role does not list is unknown; a value outside ValidatePattern is refused.
    assert (
        hv.run_repeatable(single_statement(bound_command("Get-VM", Name="dc-01")))
        .errors[0]
        .fully_qualified_error_id.startswith("NamedParameterNotFound")
    )
    assert (
        hv.run_repeatable(
            single_statement(bound_command("Get-ChildItem", LiteralPath="C:\\Windows", Recurse=True))
        )
        .errors[0]
        .fully_qualified_error_id.startswith("ParameterArgumentValidationError")
    )

    # No VisibleProviders: the FileSystem drives do not exist in the session.
    assert (
        hv.run_repeatable(single_statement(bound_command("Test-Path", LiteralPath="D:\\Backups")))
        .errors[0]
        .fully_qualified_error_id.startswith("DriveNotFound")
    )
    changing = {"Set-VM", "Checkpoint-VM", "New-Item", "Remove-Item", "Move-Item"}
    assert not [e for e in emu.audit.entries() if e.cmdlet in changing]


def test_a_role_without_the_pipeline_parameter_cannot_take_piped_input(restricted_hook) -> None:
    """The role lists Get-VMSnapshot with -Id only: ``Get-VM -Id … | Get-VMSnapshot`` cannot bind -VM."""
    emu, hv = restricted_hook
    vm = next(v for v in emu.host("hv-01").vms() if v.name == "dc-01")
    result = hv.run_repeatable(
        Pipeline(((bound_command("Get-VM", Id=vm.id), bound_command("Get-VMSnapshot")),))
    )
    assert not result.output
    assert result.errors[0].fully_qualified_error_id.startswith("InputObjectNotBound")


def test_a_hidden_command_gets_powershells_not_recognized_message(tmp_path) -> None:
    """The exact record a JEA endpoint writes for a command it does not show."""
    from hyperv_emulator.cmdlets import HyperVCommandHost
    from hyperv_emulator.faults import FaultPlan
    from hyperv_emulator.host_runtime import CommandInvocation, PipelineContext, TerminatingError
    from hyperv_emulator.model import Fleet, ManualClock

    fleet = Fleet.load(
        {"hosts": [{"name": "hv-j", "vms": [{"name": "a"}]}]},
        root_dir=tmp_path,
        clock=ManualClock(),
        faults=FaultPlan(),
    )
    role = RoleCapability.from_psdata(parse_psdata("@{ VisibleCmdlets = 'Hyper-V\\Get-VM' }"))
    host = HyperVCommandHost(fleet.hosts["hv-j"], role=role)
    ctx = PipelineContext("hv-j", "u", uuid.uuid4(), uuid.uuid4())
    with pytest.raises(TerminatingError) as info:
        host.run([(CommandInvocation("Remove-VM", False),)], None, ctx)  # type: ignore[arg-type]
    spec = info.value.error
    assert spec.message == (
        "The term 'Remove-VM' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check the spelling of the name, or if a path was included, verify that the path is correct "
        "and try again."
    )
    assert (spec.fully_qualified_error_id, spec.category) == ("CommandNotFoundException", "ObjectNotFound")
    assert spec.exception_type == "System.Management.Automation.CommandNotFoundException"
    # Positive control: the same host runs what the role shows.
    assert fleet.hosts["hv-j"].vms()
