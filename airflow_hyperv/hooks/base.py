"""The one base every Hyper-V hook stands on: it owns the connection, the runspace pool and retries."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from airflow.sdk import BaseHook
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_random_exponential

from airflow_hyperv.hooks.cluster import ClusterRouter
from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hyperv.errors import (
    AuthenticationFailedError,
    HyperVError,
    TransientTransportError,
    WinRMQuotaError,
)
from airflow_hyperv.hyperv.pipelines import Pipeline

T = TypeVar("T")
log = logging.getLogger(__name__)


def _is_transient(exc: BaseException) -> bool:
    # A rejected login is never transient: every repeat is one more bad-password count on the account.
    return isinstance(exc, TransientTransportError) and not isinstance(exc, AuthenticationFailedError)


class HyperVBaseHook(BaseHook):
    """Opens one runspace pool on first use and reuses it for every call until ``close()``.

    Use it as a context manager (``with HyperVHook(...) as hv:``) so the pool is closed on the host.

    Once the host rejects the credentials, this hook never logs in again: every later ``open()``
    raises the same ``AuthenticationFailedError`` without contacting the host (an AD account locks
    after a handful of rejected logins). Make a new hook once the credentials are fixed.

    Transient transport faults are retried with random exponential backoff (full jitter), bounded by
    the connection's ``retry_attempts`` and ``retry_max_seconds``; rejected credentials and Hyper-V's
    own errors never are.

    .. seealso::
        docs/hook.md (the hook, retries, dropped connections) and docs/connection.md.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``.
    :param settings: Already parsed connection settings, used instead of reading ``hyperv_conn_id``
        (the async hook passes what it read without blocking). Default None: read the connection on
        first use.
    """

    conn_name_attr = "hyperv_conn_id"
    default_conn_name = "hyperv_default"
    conn_type = "hyperv"
    hook_name = "Hyper-V"

    # Backoff between retries: random exponential (full jitter), capped per wait.
    retry_wait_multiplier = 0.5
    retry_wait_max = 10.0

    def __init__(
        self, hyperv_conn_id: str = default_conn_name, *, settings: ConnectionSettings | None = None
    ):
        super().__init__()
        self.hyperv_conn_id = hyperv_conn_id
        self._settings = settings
        self._wsman: Any = None
        self._pool: Any = None
        self._rejected: AuthenticationFailedError | None = None
        self._router: ClusterRouter | None = None  # a cluster connection: the nodes (hooks/cluster.py)
        # What to raise instead of AuthenticationFailedError (operators raise AirflowFailException,
        # so Airflow does not retry the task); the original stays the exception's cause.
        self.on_rejected: Callable[[AuthenticationFailedError], BaseException] | None = None

    # -- connection -------------------------------------------------------------------------------
    @property
    def connection_settings(self) -> ConnectionSettings:
        """The connection as configured (for a cluster connection: the cluster, not one node)."""
        if self._settings is None:
            conn = self.get_connection(self.hyperv_conn_id)
            self._settings = ConnectionSettings.from_connection(
                host=conn.host, port=conn.port, login=conn.login, password=conn.password, extra=conn.extra
            )
        return self._settings

    @property
    def settings(self) -> ConnectionSettings:
        """Where this hook's work goes: the connection's host, or for a cluster connection the node the
        current VM runs on (``router``), once one was chosen."""
        router = self._router
        if router is not None and router.current is not None:
            return router.hook(router.current).settings
        return self.connection_settings

    @property
    def routes(self) -> bool:
        """True for a cluster connection: work goes to a VM's owner node (docs/hook.md, Clusters)."""
        settings = self.connection_settings
        return settings.cluster is not None and settings.node is None

    @property
    def router(self) -> ClusterRouter:
        if self._router is None:
            settings = self.connection_settings

            def rejected(error: AuthenticationFailedError) -> BaseException:
                self._rejected = error  # every node has the same credentials: no node logs in again
                return (
                    self.on_rejected(error)
                    if self.on_rejected is not None
                    else AuthenticationFailedError(str(error))
                )

            def make(node_settings: ConnectionSettings) -> HyperVBaseHook:
                hook = type(self)(self.hyperv_conn_id, settings=node_settings)
                hook.on_rejected = rejected
                hook.retry_wait_multiplier, hook.retry_wait_max = (
                    self.retry_wait_multiplier,
                    self.retry_wait_max,
                )
                return hook

            self._router = ClusterRouter(settings, make)
        return self._router

    def __enter__(self: Any) -> Any:
        # A quota refusal of the Create is retried here too: the host answered, no shell exists, and
        # another shell of this user may end meanwhile. Other faults surface at once, as before.
        for attempt in self._retrying(retry_on=lambda exc: isinstance(exc, WinRMQuotaError)):
            with attempt:
                self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Open the runspace pool (one Create and one Receive on the wire) if it is not open yet. For a
        cluster connection: the pool of the node work goes to now (any node that answers at first).

        Not retried here (``with`` retries a quota refusal). A rejected login is remembered: this hook
        never sends another one, and raises the same error (or ``on_rejected``'s) at once.
        """
        if self.routes:
            if self._rejected is not None:
                self._raise_rejected(AuthenticationFailedError(str(self._rejected)))
            self.router.current_hook().open()
            return
        if self._pool is not None:
            return
        if self._rejected is not None:
            self._raise_rejected(AuthenticationFailedError(str(self._rejected)))
        from pypsrp.wsman import WSMan

        from airflow_hyperv.hooks.transport import runspace_pool, translate

        settings = self.settings
        try:
            self._wsman = WSMan(**settings.wsman_kwargs())
            pool = runspace_pool(self._wsman, configuration_name=settings.configuration_name)
            pool.open()
        except Exception as exc:
            self._drop_pool()
            error = translate(exc, settings.endpoint)
            if isinstance(error, AuthenticationFailedError):
                self._rejected = error
                self._raise_rejected(error)
            raise error from exc  # the root cause (DNS, refused, TLS...) stays in the traceback
        self._pool = pool
        log.info("Opened a runspace pool on %s", settings.endpoint)

    def get_conn(self) -> Any:
        """The open ``pypsrp.powershell.RunspacePool`` this hook runs every pipeline on, as other
        first-party hooks return their client (the peer PsrpHook also returns a RunspacePool).

        Opens it on first use (one Create and one Receive on the wire), then returns the same pool until
        ``close()``. The hook owns it: do not close it yourself; leave the ``with`` block (or call
        ``close()``) instead. Its ``WSMan`` session is ``pool.connection``. A transient transport fault
        during a call makes the hook abandon the pool and open a fresh one on the next call, so ask
        ``get_conn()`` again rather than keeping the object. Run commands on it with
        ``pypsrp.powershell.PowerShell(pool)``, bound parameters only (``add_cmdlet`` /
        ``add_parameter``): the typed methods of ``HyperVHook`` do the same with retries and error
        classification, and are what operators use.

        :return: The open ``pypsrp.powershell.RunspacePool``.
        """
        if self.routes:
            return self.router.current_hook().get_conn()
        self.open()
        return self._pool

    def close(self) -> None:
        """Close the runspace pool on the host (a WS-Man Delete) if one is open; a failure is logged,
        not raised (the host reaps an abandoned pool after its idle timeout). The hook can open a new
        pool afterwards."""
        if self._router is not None:
            self._router.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                pool.close()
            except Exception as exc:  # the host reaps an abandoned pool after its idle timeout
                log.warning(
                    "Closing the runspace pool on %s failed: %s", self.settings.endpoint, type(exc).__name__
                )
        self._drop_pool()

    def _raise_rejected(self, error: AuthenticationFailedError) -> NoReturn:
        log.error("%s; not logging in again with this hook (retries lock accounts out)", error)
        if self.on_rejected is not None:
            raise self.on_rejected(error) from error
        raise error from None

    def abandon(self) -> None:
        """Forget the pool without deleting it on the host (no Delete, no request at all).

        After a transient fault a pipeline may still be running there (e.g. the final ``Set-VM``
        that restores the VM's checkpoint type); a Delete would stop it. An abandoned shell keeps
        running its pipeline to the end and is removed by the host after its idle timeout
        (WinRM IdleTimeout, 2 h by default). The next call opens a fresh pool. (A cluster connection:
        the current node's pool.)
        """
        if self.routes:
            if self._router is not None and self._router.current is not None:
                self._router.hook(self._router.current).abandon()
            return
        if self._pool is not None:
            log.warning(
                "Abandoning the runspace pool on %s without deleting it: a pipeline may still be "
                "running there; the host removes the shell after its idle timeout",
                self.settings.endpoint,
            )
        self._drop_pool()

    def _drop_pool(self) -> None:
        self._pool = None
        if self._wsman is not None:
            with contextlib.suppress(Exception):  # best effort: the session is being thrown away
                self._wsman.close()
        self._wsman = None

    # -- running pipelines ------------------------------------------------------------------------
    def _retrying(self, retry_on: Callable[[BaseException], bool] = _is_transient) -> Retrying:
        settings = self.settings

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "Transient fault on %s (attempt %d of %d): %s; retrying",
                settings.endpoint,
                state.attempt_number,
                settings.retry_attempts,
                exc,
            )

        def give_up(state: RetryCallState) -> NoReturn:
            exc = state.outcome.exception() if state.outcome else None
            assert exc is not None  # tenacity gives up only on a failed attempt
            if isinstance(exc, WinRMQuotaError) and state.attempt_number > 1:
                # Say that the bounded retries did not get past the quota, naming it.
                error = exc.after_retries(state.attempt_number, state.idle_for)
                log.error("%s", error)
                raise error from exc
            raise exc

        return Retrying(
            stop=stop_after_attempt(settings.retry_attempts) | stop_after_delay(settings.retry_max_seconds),
            wait=wait_random_exponential(multiplier=self.retry_wait_multiplier, max=self.retry_wait_max),
            retry=retry_if_exception(retry_on),
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )

    def run_pipeline(self, pipeline: Pipeline) -> Any:
        """Run ``pipeline`` once on the open pool; transport faults come back as domain errors. For a
        cluster connection: on the node work goes to now (``_run_routed``).

        Never repeated: use it for what must be sent at most once (an Import-VM). After a transient
        fault the pool is abandoned (never deleted: the pipeline may still run on the host).

        :param pipeline: The cmdlets with bound parameters (``airflow_hyperv.hyperv.pipelines``).
        :return: The invocation's result: ``output`` (the objects), ``errors`` (non-terminating error
            records, never dropped), ``warnings`` and ``verbose``.
        """
        from airflow_hyperv.hooks.transport import invoke, translate

        if self.routes:
            return self._run_routed(pipeline)
        self.open()
        started = time.monotonic()
        try:
            result = invoke(self._pool, pipeline)
        except HyperVError:
            raise
        except Exception as exc:
            error = translate(exc, self.settings.endpoint)
            if isinstance(error, AuthenticationFailedError):
                self._rejected = error
                self._drop_pool()  # any further request would be one more rejected login
                self._raise_rejected(error)
            elif isinstance(error, WinRMQuotaError):
                # The host answered: it refused the command, nothing of it ran, and the pool's earlier
                # pipelines have ended. Delete the shell (abandoning it would hold a quota slot until the
                # host's idle timeout) so the retry starts on a fresh one: a per-shell counter such as
                # MaxConcurrentCommandsPerShell only resets with a new shell (jborean93/pypsrp#148).
                self.close()
            elif isinstance(error, TransientTransportError):
                # The pool's state is unknown after a lost answer, and the host may still be running
                # the pipeline: abandon the pool (never Delete it, which would stop the pipeline) and
                # start the next try on a fresh one.
                self.abandon()
            raise error from exc
        log.info(
            "%s on %s: %d object(s), %d error(s) in %.2fs",
            pipeline.describe(),
            self.settings.endpoint,
            len(result.output),
            len(result.errors),
            time.monotonic() - started,
        )
        source = pipeline.label or pipeline.cmdlets[0]
        for warning in result.warnings:
            log.warning("%s: %s", source, warning)
        for line in result.verbose:
            log.info("%s (verbose): %s", source, line)
        return result

    def _run_routed(self, pipeline: Pipeline) -> Any:
        """A cluster connection: run on the current node; when that node answers "not found" for the VM
        the cluster says it owns, ask the cluster once more (it may just have moved) and, if it is on
        another node now, run the pipeline there. Nothing ran on the first node: the first command of
        every VM pipeline is ``Get-VM -Id`` (or ``Get-VMSnapshot -Id``), which found nothing."""
        if self._rejected is not None:
            self._raise_rejected(AuthenticationFailedError(str(self._rejected)))
        router = self.router
        result = router.current_hook().run_pipeline(pipeline)
        if router.focus is None or result.output or not _only_not_found(result.errors):
            return result
        role = router.settled_role(vm_id=router.focus)
        if router.current is not None and role.owner_node.lower() == router.current.lower():
            return result  # the owner itself says not found: that is the answer
        log.warning(
            "Node %s answered 'not found' for VM %s; cluster %s says it runs on %s now (it moved): "
            "running %s there",
            router.current,
            router.focus,
            router.cluster,
            role.owner_node,
            pipeline.label or pipeline.cmdlets[0],
        )
        router.go_to(role.owner_node, router.focus)
        return router.current_hook().run_pipeline(pipeline)

    def run_repeatable(self, pipeline: Pipeline) -> Any:
        """Run a pipeline that is safe to repeat (it reads, or sets what it sets to the same end
        state): after a transient fault it is simply sent again.

        :param pipeline: The cmdlets with bound parameters.
        :return: The invocation's result, as ``run_pipeline``'s.
        """
        for attempt in self._retrying():
            with attempt:
                return self.run_pipeline(pipeline)
        raise AssertionError("unreachable")  # pragma: no cover

    def run_checked_write(self, pipeline: Pipeline, *, already_done: Callable[[], T | None]) -> Any:
        """Run a pipeline that changes the host and must not simply be repeated (a second checkpoint,
        a second lease). Before a repeat, ``already_done()`` asks the host whether the lost try took
        effect; if it returns something, that is the result and nothing is sent again.

        :param pipeline: The cmdlets with bound parameters.
        :param already_done: Asked before each repeat: what the lost try made (returned as the result),
            or None to send the pipeline again.
        :return: The invocation's result, as ``run_pipeline``'s, or what ``already_done`` returned.
        """
        first = True
        for attempt in self._retrying():
            with attempt:
                if not first:
                    done = already_done()
                    if done is not None:
                        log.info(
                            "%s already took effect on %s; not repeating it",
                            pipeline.label,
                            self.settings.endpoint,
                        )
                        return done
                first = False
                return self.run_pipeline(pipeline)
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, pipeline: Pipeline) -> Any:
        """Deprecated name of ``run_repeatable``.

        :param pipeline: The cmdlets with bound parameters.
        :return: ``run_repeatable(pipeline)``.
        """
        warnings.warn("HyperVHook.read is deprecated: use run_repeatable", DeprecationWarning, stacklevel=2)
        return self.run_repeatable(pipeline)

    def write(self, pipeline: Pipeline, *, already_done: Callable[[], T | None]) -> Any:
        """Deprecated name of ``run_checked_write``.

        :param pipeline: The cmdlets with bound parameters.
        :param already_done: As for ``run_checked_write``.
        :return: ``run_checked_write(pipeline, already_done=already_done)``.
        """
        warnings.warn(
            "HyperVHook.write is deprecated: use run_checked_write", DeprecationWarning, stacklevel=2
        )
        return self.run_checked_write(pipeline, already_done=already_done)

    def test_connection(self) -> tuple[bool, str]:
        """A real round trip (Get-VMHost), as the UI's Test button and ``airflow connections test`` run it.

        :return: ``(True, message)`` when the host answered, else ``(False, the reason)``; never raises.
        """
        from airflow_hyperv.hyperv import pipelines

        try:
            with self:
                result = self.run_repeatable(pipelines.host_info())
        except Exception as exc:
            return False, str(exc)
        if result.errors or not result.output:
            reason = result.errors[0].describe() if result.errors else "Get-VMHost returned nothing"
            return False, f"{self.settings.endpoint} answered, but Get-VMHost failed: {reason}"
        return True, f"Connected to {self.settings.endpoint}: Hyper-V host answered Get-VMHost"


def _only_not_found(errors: list[Any]) -> bool:
    """Every error says the VM or checkpoint is not there (ObjectNotFound, or Get-VM -Name's
    InvalidParameter for a missing name)."""
    from airflow_hyperv.hyperv.errors import CheckpointNotFoundError, VMNotFoundError, classify

    return bool(errors) and all(
        isinstance(classify(e), VMNotFoundError | CheckpointNotFoundError) for e in errors
    )
