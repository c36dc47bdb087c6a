"""A tiny CommandHost for the WS-Man transport tests: the real WSManServer and the real pypsrp client
with a host whose commands are a few made-up ``*-X`` cmdlets instead of the Hyper-V model.

Its vocabulary (every command, in every statement):

* ``-Ticks N`` on any command: it first waits N x ``tick`` seconds (``Early-X`` writes ``early``
  before), returning at once when the pipeline is cancelled;
* ``Sleep-X -Count N -Seconds S``: writes ``tick 0`` ... ``tick N-1``, S seconds apart;
* ``Fail-X``: a terminating error (``error``); ``Warn-X``: a non-terminating one, then its output;
* ``Crash-X``: an unexpected exception (an emulator bug); ``Get-VM``: warning, verbose, error and
  output streams; a script: refused;
* anything else writes ``reply(host, command name, parameters)``.

``seen`` holds every pipeline's statements, ``cancelled`` the context of every pipeline that ended
cancelled, and ``finished`` is set when a pipeline runs to its end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from hyperv_emulator.host_runtime import ErrorSpec, PipelineContext, PipelineSink, Statement, TerminatingError

USER, PASSWORD = "alice", "Secret1"
SCRIPTS_NOT_ALLOWED = ErrorSpec(
    "Scripts are not allowed.", "ScriptsNotAllowed", "PermissionDenied", "System.Exception"
)


def hyperv_error(message: str, error_id: str, category: str, activity: str, target: str) -> ErrorSpec:
    """An error record as a Hyper-V cmdlet writes it (a VirtualizationException about ``target``)."""
    return ErrorSpec(
        message=message,
        fully_qualified_error_id=f"{error_id},Microsoft.HyperV.PowerShell.Commands.{activity.replace('-', '')}",
        category=category,
        exception_type="Microsoft.HyperV.PowerShell.VirtualizationException",
        activity=activity,
        reason="VirtualizationException",
        target_name=target,
        target_type="String",
    )


Reply = Callable[["ScriptedHost", str, dict[str, Any]], Any]


def echo_reply(host: ScriptedHost, command: str, params: dict[str, Any]) -> str:
    """``hv1:Echo-X:[('Name', 'vm1')]``: the host, the command and its sorted parameters."""
    return f"{host.name}:{command}:{sorted(params.items(), key=str)}"


class ScriptedHost:
    def __init__(
        self, name: str = "hv1", *, error: ErrorSpec, tick: float = 0.0, reply: Reply = echo_reply
    ) -> None:
        self.name, self.error, self.tick, self.reply = name, error, tick, reply
        self.seen: list[Sequence[Statement]] = []
        self.cancelled: list[PipelineContext] = []
        self.finished = threading.Event()

    def run(self, statements: Sequence[Statement], sink: PipelineSink, ctx: PipelineContext) -> None:
        self.seen.append(statements)
        for statement in statements:
            for command in statement:
                if command.is_script:
                    raise TerminatingError(SCRIPTS_NOT_ALLOWED)
                params = {p.name: p.value for p in command.parameters}
                if command.name == "Early-X":
                    sink.write_output("early")
                if ctx.cancelled.wait(int(params.get("Ticks", 0)) * self.tick):
                    self.cancelled.append(ctx)
                    return
                if command.name == "Sleep-X":
                    for i in range(int(params.get("Count", 1))):
                        if ctx.cancelled.wait(float(params.get("Seconds", 0.1))):
                            self.cancelled.append(ctx)
                            return
                        sink.write_output(f"tick {i}")
                elif command.name == "Fail-X":
                    raise TerminatingError(self.error)
                elif command.name == "Crash-X":
                    raise RuntimeError("emulator bug")
                elif command.name == "Get-VM":
                    sink.write_warning("careful")
                    sink.write_verbose("looking")
                    sink.write_error(self.error, target_object=self.error.target_name)
                    sink.write_output(f"{self.name}:{params}")
                else:
                    if command.name == "Warn-X":
                        sink.write_error(self.error, target_object=self.error.target_name)
                    sink.write_output(self.reply(self, command.name, params))
        self.finished.set()
