"""``HyperVCommandHost``: runs decoded pipelines against one ``HostModel`` (the host_runtime.CommandHost seam).

Like PowerShell, every command of a statement is resolved and its command-line parameters bound before
anything runs; then the first command runs once and each later command runs once per object the
previous one produced (pipeline input by value). Errors that PowerShell treats as terminating
(parameter binding, unknown command, script text) fail the pipeline; operation failures are
non-terminating error records unless ``-ErrorAction Stop``.

With a ``RoleCapability`` (restricted mode) the host behaves like a JEA endpoint: a command the role
does not make visible is not found, a parameter it does not list is unknown, a value outside its
ValidateSet/ValidatePattern is refused, and provider cmdlets fail unless FileSystem is a visible
provider (emulator/cmdlets/jea.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperv_emulator.cmdlets import (  # noqa: F401  (registers the cmdlets)
    cluster_cmdlets,
    disk_cmdlets,
    file_cmdlets,
    network_cmdlets,
    snapshot_cmdlets,
    vm_cmdlets,
    volume_cmdlets,
    winevent_cmdlets,
)
from hyperv_emulator.cmdlets.audit import AuditEntry, AuditLog
from hyperv_emulator.cmdlets.base import REGISTRY, Call, invoke
from hyperv_emulator.cmdlets.binding import Cmdlet, as_text, bind
from hyperv_emulator.cmdlets.jea import (
    PROVIDER_COMMANDS,
    RoleCapability,
    VisibleCommand,
    check_parameters,
)
from hyperv_emulator.cmdlets.serialize import serialize
from hyperv_emulator.host_runtime import (
    CommandInvocation,
    ErrorSpec,
    PipelineContext,
    PipelineSink,
    Statement,
    TerminatingError,
)
from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.errors import (
    CommandNotFoundError,
    DriveNotFoundError,
    HyperVError,
    ParameterBindingError,
    ScriptsNotAllowedError,
)
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.vm import VirtualMachine


def _vm_refs(params: dict[str, Any]) -> list[str]:
    """The VMs a call names (Ids of -VM / -VMSnapshot objects, -Id, -Name/-VMName text): what a gate
    (faults.Gate) matches on."""
    refs: list[str] = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, VirtualMachine):
                refs.append(str(item.id))
            elif isinstance(item, Checkpoint):
                refs.append(str(item.vm_id))
            elif name in ("Id", "Name", "VMName", "VMId") and isinstance(item, str | uuid.UUID):
                refs.append(str(item))
    return refs


@dataclass
class _Step:
    invocation: CommandInvocation
    cmdlet: Cmdlet
    params: dict[str, Any]
    audit: AuditEntry
    errors: list[str] = field(default_factory=list)
    visible: VisibleCommand | None = None  # the role's entry, in restricted mode


class HyperVCommandHost:
    """A PowerShell endpoint (NoLanguage, like JEA) in front of one emulated Hyper-V host."""

    def __init__(
        self, host: HostModel, *, audit: AuditLog | None = None, role: RoleCapability | None = None
    ) -> None:
        self.host = host
        self.name = host.name
        self.audit = audit if audit is not None else AuditLog()
        self.role = role  # restricted (JEA) mode when set

    @property
    def reachable(self) -> bool:
        """False for a cluster node that is down: the server answers nothing for it."""
        return not self.host.down

    def run(self, statements: Sequence[Statement], sink: PipelineSink, ctx: PipelineContext) -> None:
        for statement in statements:
            if ctx.cancelled.is_set():
                return
            self._run_statement(statement, sink, ctx)

    # --- one statement ----------------------------------------------------------------------------------

    def _open(
        self, ctx: PipelineContext, cmdlet: str, params: dict[str, str], invoked_as: str = ""
    ) -> AuditEntry:
        return self.audit.open(
            time=self.host.clock.now(),
            host=self.name,
            user=ctx.user,
            cmdlet=cmdlet,
            parameters=params,
            invoked_as=invoked_as,
            pipeline=str(ctx.pipeline_id),
        )

    def _terminate(self, entry: AuditEntry, err: HyperVError, cmdlet: Cmdlet | None) -> TerminatingError:
        spec = err.to_spec(cmdlet.name if cmdlet else "", cmdlet.command_type if cmdlet else "")
        entry.outcome = "failed"
        entry.errors.append(spec.fully_qualified_error_id)
        return TerminatingError(spec)

    def _prepare(self, statement: Statement, ctx: PipelineContext) -> list[_Step]:
        steps: list[_Step] = []
        for inv in statement:
            raw = {(p.name or f"[{i}]"): as_text(p.value) for i, p in enumerate(inv.parameters)}
            if inv.is_script:
                entry = self._open(ctx, "<script>", {"Script": inv.name[:200]})
                raise self._terminate(entry, ScriptsNotAllowedError(inv.name), None)
            cmdlet = REGISTRY.get(inv.name.strip().lower())
            if cmdlet is not None and cmdlet.cluster_only and self.host.cluster is None:
                cmdlet = None  # no FailoverClusters module outside a cluster
            visible = None
            if cmdlet is not None and self.role is not None:
                # JEA shows a command under its own name only (no aliases unless VisibleAliases).
                visible = (
                    self.role.visible(cmdlet.name)
                    if inv.name.strip().lower() == cmdlet.name.lower()
                    else None
                )
                if visible is None:
                    cmdlet = None
            if cmdlet is None:
                entry = self._open(ctx, inv.name, raw)
                raise self._terminate(entry, CommandNotFoundError(inv.name), None)
            try:
                params = bind(cmdlet, inv.parameters)
                if visible is not None:
                    check_parameters(visible, params)
                    self._require_provider(cmdlet, params)
            except HyperVError as err:
                entry = self._open(ctx, cmdlet.name, raw, inv.name)
                raise self._terminate(entry, err, cmdlet) from None
            entry = self._open(ctx, cmdlet.name, {k: as_text(v) for k, v in params.items()}, inv.name)
            steps.append(_Step(inv, cmdlet, params, entry, visible=visible))
        return steps

    def _require_provider(self, cmdlet: Cmdlet, params: dict[str, Any]) -> None:
        """No provider is visible in a JEA session unless the role names it: the FileSystem drives
        do not exist there (the exact error of each cmdlet is *unconfirmed*; DriveNotFound here)."""
        if self.role is None or cmdlet.name.lower() not in PROVIDER_COMMANDS or self.role.provider_visible():
            return
        paths = [*(params.get("LiteralPath") or []), *(params.get("Path") or []), *(params.get("Name") or [])]
        first = str(paths[0]) if paths else "C"
        raise DriveNotFoundError(first[0].upper() if first[1:2] == ":" or len(first) == 1 else "C")

    def _run_statement(self, statement: Statement, sink: PipelineSink, ctx: PipelineContext) -> None:
        if not statement:
            return
        steps = self._prepare(statement, ctx)
        objects: list[Any] = []
        for index, step in enumerate(steps):
            outputs: list[Any] = []
            try:
                if index == 0:
                    outputs.extend(self._invoke(step, dict(step.params), sink, ctx))
                else:
                    for obj in objects:
                        if ctx.cancelled.is_set():
                            break
                        outputs.extend(self._invoke_with_input(step, obj, sink, ctx))
            except TerminatingError:
                step.audit.ended = self.host.clock.now()
                for later in steps[index + 1 :]:
                    later.audit.outcome = "skipped"
                raise
            step.audit.ended = self.host.clock.now()
            if ctx.cancelled.is_set():
                step.audit.outcome = "stopped"
                for later in steps[index + 1 :]:
                    later.audit.outcome = "skipped"
                return
            step.audit.outcome = "error" if step.errors else "ok"
            objects = outputs
        for obj in objects:
            sink.write_output(serialize(obj, self.host))

    def _invoke_with_input(
        self, step: _Step, obj: Any, sink: PipelineSink, ctx: PipelineContext
    ) -> list[Any]:
        param = step.cmdlet.pipeline_param_for(obj)
        hidden = (
            param is not None
            and step.visible is not None
            and step.visible.parameters is not None
            and param.name.lower() not in step.visible.parameters
        )  # a JEA proxy without the pipeline parameter cannot bind the input
        if (
            param is None
            or hidden
            or param.name in step.params
            or any(x in step.params for x in param.excludes)
        ):
            self._error(
                step,
                ParameterBindingError.input_not_bound().to_spec(step.cmdlet.name, step.cmdlet.command_type),
                obj,
                sink,
            )
            return []
        params = dict(step.params)
        params[param.name] = [obj]
        previous = step.audit.parameters.get(param.name)
        text = as_text([obj])
        step.audit.parameters[param.name] = f"{previous},{text}" if previous else text
        return self._invoke(step, params, sink, ctx)

    def _invoke(
        self, step: _Step, params: dict[str, Any], sink: PipelineSink, ctx: PipelineContext
    ) -> list[Any]:
        call = Call(
            step.cmdlet,
            self.host,
            params,
            step.audit,
            ctx.cancelled,
            lambda spec, target: self._error(step, spec, target, sink),
        )
        gate = self.host.faults.take_gate(step.cmdlet.name, _vm_refs(params))
        if gate is not None and not gate.hold(f"{step.cmdlet.name} {step.audit.parameters}", ctx.cancelled):
            return []  # the client stopped the pipeline while the test held it: nothing ran
        outputs: list[Any] = []
        try:
            for obj in invoke(call):
                outputs.append(obj)
        except ParameterBindingError as err:
            raise self._terminate(step.audit, err, step.cmdlet) from None
        except HyperVError as err:
            call.error(err, err.target_name or None)
        for warning in call.warnings:
            sink.write_warning(warning)
        return outputs

    def _error(self, step: _Step, spec: ErrorSpec, target: Any, sink: PipelineSink) -> None:
        action = step.params.get("ErrorAction", "Continue")
        step.errors.append(spec.fully_qualified_error_id)
        step.audit.errors.append(spec.fully_qualified_error_id)
        if action == "Stop":
            step.audit.outcome = "failed"
            raise TerminatingError(spec)
        if action in ("SilentlyContinue", "Ignore"):
            return
        sink.write_error(spec, None if target is None else str(target))
