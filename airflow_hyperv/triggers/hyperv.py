"""One trigger for every Hyper-V wait, parameterised by what it waits for.

Host-state waits (a VM state, a finished merge) opt into Airflow's shared trigger streams: every
wait on the same connection and interval shares one poll of the host (``host_state``: one round trip
per interval for all of them), and each trigger judges the shared snapshot for itself. Waits on a
disconnected operation (an export) poll that operation. pypsrp is synchronous: every call runs in a
worker thread, so the triggerer's event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Hashable
from dataclasses import asdict, dataclass
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_hyperv.hyperv.errors import AuthenticationFailedError
from airflow_hyperv.hyperv.lease import Lease
from airflow_hyperv.hyperv.waits import HostSnapshot, WaitFor, WaitTarget, judge, lease_released

CLASSPATH = "airflow_hyperv.triggers.hyperv.HyperVWaitTrigger"
MAX_CONSECUTIVE_ERRORS = 5  # transient faults only: a rejected login ends the wait at once
LEASE_RECHECK_SECONDS = 300.0


@dataclass(frozen=True)
class LoginRejected:
    """What the shared host poll yields once the host rejected its login. It never logs in again
    (each try would count towards the account's lockout); every waiter ends with an error event
    marked ``rejected_login``, which fails the resuming task without retries."""

    message: str


class HyperVWaitTrigger(BaseEventTrigger):
    def __init__(
        self,
        *,
        hyperv_conn_id: str,
        wait_for: str,
        vm_id: str,
        poll_interval: float = 10.0,
        target_state: str | None = None,
        require_heartbeat: bool = False,
        checkpoint_id: str | None = None,
        avhdx_paths: list[str] | None = None,
        merge_links: list[list[str]] | None = None,
        operation: dict[str, Any] | None = None,
        echo: dict[str, Any] | None = None,
        give_up_after: float | None = None,
        holder: str | None = None,
        recheck_after: float = LEASE_RECHECK_SECONDS,
    ) -> None:
        super().__init__()
        self.hyperv_conn_id = hyperv_conn_id
        self.wait_for = WaitFor(wait_for)
        self.vm_id = str(vm_id).lower()
        self.poll_interval = float(poll_interval)
        self.target_state = target_state
        self.require_heartbeat = bool(require_heartbeat)
        self.checkpoint_id = checkpoint_id.lower() if checkpoint_id else None
        self.avhdx_paths = list(avhdx_paths or [])
        self.merge_links = [[str(disk), str(parent)] for disk, parent in (merge_links or [])]
        self.operation = dict(operation) if operation else None
        # Handed back in the event: what the resuming operator needs (deferral kwargs are not
        # returned by every runner, e.g. dag.test() replaces them with the event).
        self.echo = dict(echo) if echo else {}
        # Our own deadline, so the failure event can say what was last observed (Airflow's deferral
        # timeout, a backstop set a little later, can only say "timed out").
        self.give_up_after = float(give_up_after) if give_up_after else None
        if self.wait_for is WaitFor.OPERATION_DONE and not self.operation:
            raise ValueError("waiting for an operation needs the operation")
        # LEASE_FREE: the holder's lease (JSON); the wait also ends every ``recheck_after`` seconds so
        # the task can ask Airflow whether the holder's run is over (a stale lease is taken over).
        self.holder = holder
        self.recheck_after = float(recheck_after)
        if self.wait_for is WaitFor.LEASE_FREE and not self.holder:
            raise ValueError("waiting for a lease needs its holder")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "hyperv_conn_id": self.hyperv_conn_id,
                "wait_for": self.wait_for.value,
                "vm_id": self.vm_id,
                "poll_interval": self.poll_interval,
                "target_state": self.target_state,
                "require_heartbeat": self.require_heartbeat,
                "checkpoint_id": self.checkpoint_id,
                "avhdx_paths": self.avhdx_paths,
                "merge_links": self.merge_links,
                "operation": self.operation,
                "echo": self.echo,
                "give_up_after": self.give_up_after,
                "holder": self.holder,
                "recheck_after": self.recheck_after,
            },
        )

    # -- shared host-state stream -----------------------------------------------------------------
    def shared_stream_key(self) -> Hashable | None:
        if self.wait_for in (WaitFor.OPERATION_DONE, WaitFor.LEASE_FREE):
            return None  # an operation is its own session; a lease is a file read on its own
        # A merge watches its own disks too (one extra Get-VHD in the same round trip), so it shares
        # a stream only with waits on the very same disks.
        key: tuple[Any, ...] = ("airflow-hyperv-host-state", self.hyperv_conn_id, self.poll_interval)
        disks = tuple(sorted(d.lower() for d, _ in self.merge_links))
        return (*key, disks) if disks else key

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        disks = tuple(disk for disk, _ in kwargs.get("merge_links") or [])
        async for snapshot in cls._poll_host(kwargs["hyperv_conn_id"], float(kwargs["poll_interval"]), disks):
            yield snapshot

    @staticmethod
    async def _poll_host(
        conn_id: str, interval: float, disk_paths: tuple[str, ...] = ()
    ) -> AsyncIterator[HostSnapshot | LoginRejected]:
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook

        async with HyperVAsyncHook(conn_id) as hook:
            rejected: LoginRejected | None = None
            while True:
                snapshot: HostSnapshot | LoginRejected
                if rejected is not None:
                    snapshot = rejected  # told to every waiter that joins later; no new login
                else:
                    try:
                        snapshot = await hook.call(lambda hv: hv.host_state(disk_paths))
                    except AuthenticationFailedError as exc:
                        rejected = snapshot = LoginRejected(str(exc))
                    except Exception as exc:  # reported to every waiter, which keeps an error budget
                        snapshot = HostSnapshot(error=f"{type(exc).__name__}: {exc}")
                yield snapshot
                await asyncio.sleep(interval)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        target = WaitTarget(
            kind=self.wait_for,
            vm_id=self.vm_id,
            target_state=self.target_state,
            require_heartbeat=self.require_heartbeat,
            checkpoint_id=self.checkpoint_id,
            avhdx_paths=tuple(self.avhdx_paths),
            merge_links=tuple((disk, parent) for disk, parent in self.merge_links),
        )
        errors = 0
        started = time.monotonic()
        async for snapshot in shared_stream:
            if isinstance(snapshot, LoginRejected):
                self.log.error("%s: ending the wait without retrying", snapshot.message)
                yield self._event("error", snapshot.message, rejected_login=True)
                return
            if snapshot.error:
                errors += 1
                self.log.warning("Polling the host failed (%d in a row): %s", errors, snapshot.error)
                if errors >= MAX_CONSECUTIVE_ERRORS:
                    yield self._event("error", f"polling the host failed {errors} times: {snapshot.error}")
                    return
                continue
            errors = 0
            done, observed = judge(target, snapshot)
            if done:
                gone = self.vm_id not in snapshot.vms
                yield self._event("error" if gone else "success", observed)
                return
            if self.give_up_after and time.monotonic() - started > self.give_up_after:
                yield self._event(
                    "error", f"not done after {self.give_up_after:g}s: {observed}", timed_out=True
                )
                return
            self.log.info("Waiting for %s: %s", self.wait_for.value, observed)

    # -- standalone run ---------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.wait_for is WaitFor.OPERATION_DONE:
            async for event in self._wait_operation():
                yield event
            return
        if self.wait_for is WaitFor.LEASE_FREE:
            async for event in self._wait_lease():
                yield event
            return
        async for event in self.filter_shared_stream(
            self._poll_host(self.hyperv_conn_id, self.poll_interval, tuple(d for d, _ in self.merge_links))
        ):
            yield event
            return

    async def _wait_operation(self) -> AsyncIterator[TriggerEvent]:
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation, poll_disconnected

        op = DisconnectedOperation.from_dict(self.operation)
        settings = await HyperVAsyncHook(self.hyperv_conn_id).settings()
        errors = 0
        started = time.monotonic()
        while True:
            try:
                poll = await asyncio.to_thread(poll_disconnected, settings, op, wait_seconds=1.0)
            except AuthenticationFailedError as exc:
                self.log.error("%s: ending the wait without retrying", exc)
                yield self._event("error", f"polling {op.label}: {exc}", rejected_login=True)
                return
            except Exception as exc:
                errors += 1
                self.log.warning("Polling %s failed (%d in a row): %s", op.label, errors, exc)
                if errors >= MAX_CONSECUTIVE_ERRORS:
                    yield self._event("error", f"polling {op.label} failed {errors} times: {exc}")
                    return
                await asyncio.sleep(self.poll_interval)
                continue
            errors = 0
            if poll.state == "running":
                if self.give_up_after and time.monotonic() - started > self.give_up_after:
                    yield self._event(
                        "error", f"{op.label} still running after {self.give_up_after:g}s", timed_out=True
                    )
                    return
                await asyncio.sleep(self.poll_interval)
                continue
            if poll.state == "gone":
                yield self._event(
                    "error", f"{op.label}: the host no longer has the session (restarted or reaped)"
                )
                return
            result = poll.result
            errs = [asdict(e) for e in result.errors] if result else []
            status = "success" if poll.state == "completed" and not errs else "error"
            message = errs[0]["message"] if errs else f"{op.label} ended {poll.state}"
            yield self._event(status, message, errors=errs, state=poll.state)
            return

    async def _wait_lease(self) -> AsyncIterator[TriggerEvent]:
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook

        assert self.holder is not None
        holder = Lease.decode(self.holder)
        errors = 0
        started = time.monotonic()
        async with HyperVAsyncHook(self.hyperv_conn_id) as hook:
            while True:
                try:
                    current = await hook.call(lambda hv: hv.read_lease(uuid.UUID(self.vm_id)))
                except AuthenticationFailedError as exc:
                    self.log.error("%s: ending the wait without retrying", exc)
                    yield self._event("error", f"reading the lease: {exc}", rejected_login=True)
                    return
                except Exception as exc:
                    errors += 1
                    self.log.warning("Reading the lease failed (%d in a row): %s", errors, exc)
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        yield self._event("error", f"reading the lease failed {errors} times: {exc}")
                        return
                    await asyncio.sleep(self.poll_interval)
                    continue
                errors = 0
                done, observed = lease_released(holder, current)
                elapsed = time.monotonic() - started
                if done:
                    yield self._event("success", observed)
                    return
                if self.give_up_after and elapsed > self.give_up_after:
                    yield self._event(
                        "error", f"not free after {self.give_up_after:g}s: {observed}", timed_out=True
                    )
                    return
                if elapsed > self.recheck_after:
                    yield self._event(
                        "success", f"still busy, checking the holder's run: {observed}", recheck=True
                    )
                    return
                self.log.info("Waiting for %s: %s", self.wait_for.value, observed)
                await asyncio.sleep(self.poll_interval)

    # -- cancellation -----------------------------------------------------------------------------
    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear / mark success): stop the export.

        Not ``cleanup()``: that runs on every exit, including a triggerer restart or the trigger
        moving to another triggerer, and an export must survive those (Airflow's
        ``BaseTrigger.on_kill`` docstring). A deferral timeout calls neither; the operator's
        ``resume_execution`` cancels then.
        """
        if self.wait_for is not WaitFor.OPERATION_DONE or not self.operation:
            return
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation, cancel_disconnected

        op = DisconnectedOperation.from_dict(self.operation)
        settings = await HyperVAsyncHook(self.hyperv_conn_id).settings()
        deleted = await asyncio.to_thread(cancel_disconnected, settings, op)
        self.log.warning(
            "Task killed: cancelled %s on the host (shell %s %s)",
            op.label,
            op.shell_id,
            "deleted" if deleted else "already gone",
        )

    def _event(self, status: str, message: str, **extra: Any) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "wait_for": self.wait_for.value,
                "vm_id": self.vm_id,
                "echo": self.echo,
                **extra,
            }
        )
