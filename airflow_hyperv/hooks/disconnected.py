"""Long pipelines in a PowerShell disconnected session: start now, poll later from another process.

``start_disconnected`` opens a dedicated runspace pool (never the hook's shared one), starts the
pipeline and disconnects (WS-Man Disconnect): the pipeline keeps running on the host and buffers its
output there. The returned ``DisconnectedOperation`` holds only ids, a label and a start time, so it
travels in trigger kwargs or XCom. ``poll_disconnected`` reattaches as a new client (any process, any
``WSMan`` session), waits at most ``wait_seconds`` for the pipeline, then either disconnects again (still
running) or reads the result and deletes the shell (finished). ``cancel_disconnected`` deletes the shell,
which stops its pipeline.

Reattaching does not enumerate the host's shells (pypsrp's ``RunspacePool.get_runspace_pools`` sends one
Enumerate for all shells of the user plus one per shell): ``_reattach`` builds the Disconnected
``RunspacePool``/``PowerShell`` pair for the known ids exactly as ``get_runspace_pools`` does internally.

WS-Man requests per call (counted against the emulator, ``tests/hooks/test_disconnected.py``):

* start: Create, Receive (pool open), Command, Disconnect = 4 (+ Send for pipelines over one fragment);
* a poll that finds the pipeline still running: Connect (pool, connectXml), Receive (pool: private data
  and the Opened state), Connect (CommandId), Receive (long-poll of at most ``wait_seconds``; more
  Receives only if ``wait_seconds`` exceeds the server's Receive wait), Disconnect = 5;
* the final poll of a finished pipeline: Connect, Receive, Connect, Receive, Delete = 5;
* cancel: Connect, Receive, Delete = 3.

A start that fails once its Command was sent raises ``StartUncertainError`` with the operation (the
CommandId is chosen by the client): the shell is disconnected, not deleted, so a later poll tells
whether the pipeline ran ("completed"/"failed"), still runs, or never started ("gone").

Over NTLM each new ``WSMan`` adds the HTTP authentication legs (an empty POST, Negotiate, Authenticate).

WS-Man Receive consumes what it returns. Output a pipeline writes before it ends and that a "running"
poll happens to read comes back in ``PollResult.partial``; the final ``result`` holds only what was still
buffered. Export-VMSnapshot writes (with ``-Passthru``) only at the end, so nothing is split for it.

A shell the host no longer knows (idle timeout of the disconnected shell, host restart, Delete by
someone else: WS-Man fault 2150858843) is reported as ``"gone"``; so is a shell whose command is gone
(the shell is then deleted). A shell another client is connected to (a concurrent poll, or a poller that
died between Connect and Disconnect) answers 2150859216; that is raised as a ``TransportError``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pypsrp.complex_objects import PSInvocationState, RunspacePoolState
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import SelectorSet, WSMan

from airflow_hyperv.hooks import transport
from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hyperv.errors import AuthenticationFailedError, HyperVError, InvalidInputError
from airflow_hyperv.hyperv.pipelines import Pipeline

log = logging.getLogger(__name__)

# ERROR_WSMAN_INVALID_SELECTORS: the shell was not found (deleted, reaped, host restarted).
SHELL_NOT_FOUND = 2150858843
# E_INVALIDARG: what WinRM answers a Connect/Signal naming a CommandId the shell does not have.
COMMAND_NOT_FOUND = 2147942487
# The smallest Receive wait we ask for (pypsrp treats a 0 timeout as "use the default").
_MIN_WAIT = 0.1

PollState = Literal["running", "completed", "failed", "gone"]


@dataclass(frozen=True)
class DisconnectedOperation:
    """A pipeline running in a disconnected shell. Ids and a label only: no credentials. For a cluster
    connection ``node`` names the node whose shell it is (polls and cancels go there, wherever the VM
    runs by then); empty for a connection to one host."""

    shell_id: str
    command_id: str
    label: str = ""
    started_at: float = 0.0  # seconds since the epoch (time.time()) when the pipeline was started
    node: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "shell_id": self.shell_id,
            "command_id": self.command_id,
            "label": self.label,
            "started_at": self.started_at,
        }
        if self.node:
            data["node"] = self.node
        return data

    def on(self, settings: ConnectionSettings) -> ConnectionSettings:
        """Where this operation's shell lives: its node of a cluster connection, else ``settings``."""
        return settings.for_node(self.node) if self.node and settings.cluster else settings

    @classmethod
    def from_dict(cls, data: Any) -> DisconnectedOperation:
        """Parse what ``to_dict`` wrote (e.g. after a JSON round trip); ids must be UUIDs."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"a disconnected operation must be a dict, not {type(data).__name__}")
        missing = [key for key in ("shell_id", "command_id") if not data.get(key)]
        if missing:
            raise InvalidInputError(f"a disconnected operation needs {', '.join(missing)}")
        try:
            started_at = float(data.get("started_at") or 0.0)
        except (TypeError, ValueError):
            raise InvalidInputError(f"started_at must be a number, not {data.get('started_at')!r}") from None
        return cls(
            shell_id=_uuid_text(data["shell_id"], "shell_id"),
            command_id=_uuid_text(data["command_id"], "command_id"),
            label=str(data.get("label") or ""),
            started_at=started_at,
            node=str(data.get("node") or ""),
        )


def _uuid_text(value: Any, name: str) -> str:
    try:
        return str(uuid.UUID(str(value))).upper()
    except ValueError:
        raise InvalidInputError(f"{name} must be a UUID, not {value!r}") from None


class StartUncertainError(Exception):
    """Starting the pipeline failed after its Command was sent: it may have run, may still run, or may
    never have started. ``operation`` names the shell and the (client-chosen) CommandId, so a later
    ``poll_disconnected`` can tell; ``cause`` is the translated transport error."""

    def __init__(self, operation: DisconnectedOperation, cause: Exception) -> None:
        super().__init__(f"{operation.label}: not known whether it started ({cause})")
        self.operation = operation
        self.cause = cause


@dataclass(frozen=True)
class PollResult:
    """One poll's answer. ``result`` is set once the pipeline finished (completed or failed).

    "completed" may still carry non-terminating errors in ``result.errors``; "failed" means the
    pipeline ended Failed (a terminating error) or Stopped. ``partial`` holds what a "running" poll
    read (WS-Man Receive consumes it), or None if nothing arrived.
    """

    state: PollState
    result: transport.PipelineResult | None = None
    partial: transport.PipelineResult | None = None

    @property
    def finished(self) -> bool:
        return self.state != "running"


# -- start ---------------------------------------------------------------------------------------


def start_disconnected(
    settings: ConnectionSettings, pipeline: Pipeline, *, idle_timeout: int | None = None
) -> DisconnectedOperation:
    """Start ``pipeline`` in a new runspace pool and disconnect from it; it runs on without us.

    ``idle_timeout`` (seconds) is the shell's IdleTimeOut: how long the host keeps the disconnected
    shell between polls (None: the host's default, 7200 s on Windows). Not retried: the pipeline may
    have started even if an answer was lost. A cluster connection starts it on one node: ``settings``
    of that node (``HyperVHook.settings`` once the VM was resolved), never the cluster's.
    """
    if settings.cluster and not settings.node:
        raise InvalidInputError(
            "a cluster connection starts a disconnected operation on a node: resolve the VM first"
        )
    wsman = WSMan(**settings.wsman_kwargs())
    pool: RunspacePool | None = None
    try:
        pool = RunspacePool(wsman, configuration_name=settings.configuration_name, idle_timeout=idle_timeout)
        pool.open()
        ps = transport.build(pool, pipeline)
        # pypsrp sends its own PowerShell id as the Command's CommandId, and WinRM creates the command
        # under the id the client gives (WSManRunShellCommandEx docs): the operation is known before
        # the Command is sent.
        op = DisconnectedOperation(
            shell_id=str(pool.shell.id or pool.id).upper(),
            command_id=str(ps.id).upper(),
            label=pipeline.label or pipeline.cmdlets[0],
            started_at=time.time(),
            node=settings.node or "",
        )
        try:
            ps.begin_invoke()
            pool.disconnect()
        except Exception as exc:
            # The Command may have reached the host (its answer lost): deleting the shell now would
            # stop a pipeline that may be running. Disconnect instead, so a later poll can tell.
            _best_effort(pool.disconnect, "disconnect the runspace pool", settings)
            error = transport.translate(exc, settings.endpoint)
            raise StartUncertainError(op, error) from _cause(error, exc)
        op = DisconnectedOperation(
            shell_id=op.shell_id,
            command_id=str(ps._command_id or ps.id).upper(),
            label=op.label,
            started_at=op.started_at,
            node=op.node,
        )
    except StartUncertainError:
        raise
    except Exception as exc:
        error = transport.translate(exc, settings.endpoint)
        # After a rejected login, any further request is one more rejected login: send none.
        if pool is not None and pool.state == RunspacePoolState.OPENED and not _rejected(error):
            _best_effort(pool.close, "delete the runspace pool", settings)
        raise error from _cause(error, exc)
    finally:
        _close_session(wsman)
    log.info("Started %s on %s in disconnected shell %s", op.label, settings.endpoint, op.shell_id)
    return op


# -- poll ----------------------------------------------------------------------------------------


def poll_disconnected(
    settings: ConnectionSettings, op: DisconnectedOperation, *, wait_seconds: float = 1.0
) -> PollResult:
    """Reattach, wait at most ``wait_seconds`` for the pipeline, then disconnect (running) or collect
    the result and delete the shell (finished). Works from any process: it needs no state but ``op``."""
    if not wait_seconds > 0:
        raise InvalidInputError(f"wait_seconds must be positive, not {wait_seconds!r}")
    settings = op.on(settings)
    wsman = WSMan(**settings.wsman_kwargs())
    pool, ps = _reattach(wsman, settings, op)
    try:
        if not _connect(pool, ps, settings, op):
            return PollResult("gone")
        deadline = time.monotonic() + wait_seconds
        while True:
            remaining = deadline - time.monotonic()
            ps.poll_invoke(timeout=round(max(remaining, _MIN_WAIT), 3))  # type: ignore[arg-type]
            if ps.state != PSInvocationState.RUNNING or deadline - time.monotonic() < _MIN_WAIT / 2:
                break
        if ps.state == PSInvocationState.RUNNING:
            partial = _result(ps, op) if (ps.output or _has_streams(ps)) else None
            pool.disconnect()
            log.info("%s on %s still running; disconnected again", op.label, settings.endpoint)
            return PollResult("running", partial=partial)
        result = _result(ps, op)
        state: PollState = "completed" if ps.state == PSInvocationState.COMPLETED else "failed"
        # The result is what matters now; a failed Delete leaves the shell to the host's idle timeout.
        _best_effort(pool.close, "delete the runspace pool", settings)
        log.info(
            "%s on %s %s: %d object(s), %d error(s) after %.0fs",
            op.label,
            settings.endpoint,
            state,
            len(result.output),
            len(result.errors),
            result.seconds,
        )
        return PollResult(state, result=result)
    except HyperVError:
        raise
    except Exception as exc:
        error = transport.translate(exc, settings.endpoint)
        # Leave the pipeline running for the next poll: disconnect if we got as far as connecting
        # (not after a rejected login: that request would be one more rejected login).
        if pool.state == RunspacePoolState.OPENED and not _rejected(error):
            _best_effort(pool.disconnect, "disconnect the runspace pool", settings)
        raise error from _cause(error, exc)
    finally:
        _close_session(wsman)


# -- cancel --------------------------------------------------------------------------------------


def cancel_disconnected(settings: ConnectionSettings, op: DisconnectedOperation) -> bool:
    """Delete the operation's shell, which stops its pipeline. False if the host no longer had it.

    Connects first (Delete of a shell another client holds is refused); if Connect is refused for a
    reason other than "not found", a Delete is still attempted.
    """
    settings = op.on(settings)
    wsman = WSMan(**settings.wsman_kwargs())
    pool, _ = _reattach(wsman, settings, op)
    try:
        try:
            pool.connect()
        except WSManFaultError as exc:
            if exc.code == SHELL_NOT_FOUND:
                log.info("%s on %s: shell %s already gone", op.label, settings.endpoint, op.shell_id)
                return False
            log.warning(
                "Connect to shell %s on %s refused (WS-Man fault %s); deleting it anyway",
                op.shell_id,
                settings.endpoint,
                exc.code,
            )
        pool.close()
    except WSManFaultError as exc:
        if exc.code == SHELL_NOT_FOUND:
            return False
        error = transport.translate(exc, settings.endpoint)
        raise error from _cause(error, exc)
    except Exception as exc:
        error = transport.translate(exc, settings.endpoint)
        raise error from _cause(error, exc)
    finally:
        _close_session(wsman)
    log.info("Cancelled %s on %s: shell %s deleted", op.label, settings.endpoint, op.shell_id)
    return True


# -- helpers -------------------------------------------------------------------------------------


def _reattach(
    wsman: WSMan, settings: ConnectionSettings, op: DisconnectedOperation
) -> tuple[RunspacePool, PowerShell]:
    """A Disconnected RunspacePool/PowerShell pair for known ids, as a new client.

    Mirrors ``RunspacePool.get_runspace_pools`` (pypsrp 0.9.x) without its Enumerate requests: the
    pool's PSRP id is the ShellId, ``_new_client`` makes ``connect()`` send Connect with connectXml
    instead of Reconnect (which only the creating WSMan session may send), and the pipeline is
    registered under its CommandId. Unlike ``get_runspace_pools`` it keeps the configuration name.
    """
    pool = RunspacePool(wsman, configuration_name=settings.configuration_name)
    pool.id = op.shell_id
    pool.shell.id = op.shell_id
    pool.shell.opened = True
    selectors = SelectorSet()
    selectors.add_option("ShellId", op.shell_id)
    pool.shell._selector_set = selectors  # so Delete works even if Connect is refused
    pool._new_client = True
    pool.state = RunspacePoolState.DISCONNECTED
    ps = PowerShell(pool)
    ps.id = op.command_id
    ps._command_id = op.command_id
    ps.state = PSInvocationState.DISCONNECTED
    pool.pipelines = {ps.id: ps}
    return pool, ps


def _connect(
    pool: RunspacePool, ps: PowerShell, settings: ConnectionSettings, op: DisconnectedOperation
) -> bool:
    """Connect the pool, then the pipeline. False if the host no longer has either."""
    try:
        pool.connect()
    except WSManFaultError as exc:
        if exc.code == SHELL_NOT_FOUND:
            log.info("%s on %s: shell %s is gone", op.label, settings.endpoint, op.shell_id)
            return False
        raise
    try:
        ps.connect_async()
    except WSManFaultError as exc:
        if exc.code not in (SHELL_NOT_FOUND, COMMAND_NOT_FOUND):
            raise
        log.info("%s on %s: command %s is gone", op.label, settings.endpoint, op.command_id)
        _best_effort(pool.close, "delete the runspace pool", settings)
        return False
    return True


def _cause(error: HyperVError, exc: BaseException) -> BaseException | None:
    """What a translated error is raised from: the transport's own exception, which names the root
    cause (DNS, refused, TLS), except after a rejected login, whose pypsrp message names the user."""
    return None if _rejected(error) else exc


def _rejected(error: HyperVError) -> bool:
    return isinstance(error, AuthenticationFailedError)


def _has_streams(ps: PowerShell) -> bool:
    return bool(ps.streams.error or ps.streams.warning)


def _result(ps: PowerShell, op: DisconnectedOperation) -> transport.PipelineResult:
    result = transport.collect(ps, ps.output, time.monotonic())
    result.failed = ps.state in (PSInvocationState.FAILED, PSInvocationState.STOPPED)
    result.seconds = max(time.time() - op.started_at, 0.0) if op.started_at else 0.0
    return result


def _best_effort(action: Any, what: str, settings: ConnectionSettings) -> None:
    try:
        action()
    except Exception as exc:  # the host reaps an abandoned shell after its idle timeout
        log.warning("Could not %s on %s: %s", what, settings.endpoint, type(exc).__name__)


def _close_session(wsman: WSMan) -> None:
    with contextlib.suppress(Exception):  # best effort: the HTTP session is being thrown away
        wsman.close()
