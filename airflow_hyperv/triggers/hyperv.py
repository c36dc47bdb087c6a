"""The triggers of every Hyper-V wait: one base, one subclass per kind of wait.

* ``HyperVHostStateTrigger``: a VM state or a finished merge, judged from a snapshot of the host.
  These waits opt into Airflow's shared trigger streams: every wait on the same connection and
  interval shares one poll of the host (``host_state``: one round trip per interval for all of
  them), and each trigger judges the shared snapshot for itself.
* ``HyperVOperationTrigger``: a pipeline running in a disconnected session (an export).
* ``HyperVLeaseTrigger``: another run's protection lease on a VM.

Each one waits with the loop the worker uses too (``airflow_hyperv.hooks.waiter``: error budget,
rejected logins, give-up time), and ends with one event of the same shape (``_event``). pypsrp is
synchronous: every call runs in a worker thread, so the triggerer's event loop never blocks.

``HyperVWaitTrigger`` is the name (and classpath) of the one trigger there was before: it is
``HyperVHostStateTrigger``, and called with the kwargs such a trigger was serialized with (flat,
``wait_for=...``, ``echo=...``), it builds the trigger for that kind of wait.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_hyperv.config import wait_error_budget
from airflow_hyperv.hooks.waiter import (
    HostStateWait,
    LeaseWait,
    OperationPoll,
    OperationWait,
    Outcome,
    Polled,
    PollFailed,
    async_wait,
    async_wait_on,
    read_progress,
)
from airflow_hyperv.hyperv.cadence import PhasePlan, after_poll
from airflow_hyperv.hyperv.errors import AuthenticationFailedError
from airflow_hyperv.hyperv.progress import DEFAULT_PROGRESS_INTERVAL
from airflow_hyperv.hyperv.waits import TARGET_KEYS, HostSnapshot, WaitFor, WaitTarget

CLASSPATH = "airflow_hyperv.triggers.hyperv.HyperVWaitTrigger"  # triggers serialized before the split
LEASE_RECHECK_SECONDS = 300.0


@dataclass(frozen=True)
class LoginRejected:
    """What the shared host poll yields once the host rejected its login. It never logs in again
    (each try would count towards the account's lockout); every waiter ends with an error event
    marked ``rejected_login``, which fails the resuming task without retries."""

    message: str


def _target_of(target: WaitTarget | Mapping[str, Any] | None, flat: Mapping[str, Any]) -> WaitTarget:
    """The trigger's target: ``target`` (new kwargs), or the flat target fields of old kwargs."""
    if target is not None:
        if flat:
            raise TypeError(f"a trigger takes a target or the fields of one, not both: {sorted(flat)}")
        return WaitTarget.from_dict(target.to_dict() if isinstance(target, WaitTarget) else target)
    if "wait_for" not in flat or "vm_id" not in flat:
        raise TypeError("a trigger needs a target")
    return WaitTarget.from_dict(flat)


class HyperVBaseWaitTrigger(BaseEventTrigger):
    """What every wait trigger shares: its kwargs (``serialize``), its target, the state handed back
    to the resuming task (``resume_state``) and the shape of its one event (``_event``).

    The one event carries ``status`` (``success`` or ``error``), ``message``, ``wait_for``, ``vm_id``,
    ``resume_state`` and the outcome's details (``timed_out``, ``rejected_login``, ...). Failed polls
    count against ``[hyperv] wait_error_budget``; a rejected login ends the wait at once.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host.
    :param target: What to wait for: a ``WaitTarget`` or its ``to_dict()``. Default None only for
        triggers serialized before ``target`` existed, which pass its fields flat (``wait_for=...``).
    :param poll_interval: Seconds between two polls of the host. Default 10.
    :param resume_state: What the deferring task gets back in the event (``resume_state``), to resume
        with. Default None: an empty dict.
    :param give_up_after: Seconds after which the wait ends with a ``timed_out`` error event saying
        what it last saw; None (default): no deadline of its own (the task's deferral timeout remains).
    :param echo: Deprecated: ``resume_state``'s name in triggers serialized before the rename.
    """

    kinds: ClassVar[frozenset[WaitFor]] = frozenset()

    def __init__(
        self,
        *,
        hyperv_conn_id: str,
        target: WaitTarget | Mapping[str, Any] | None = None,
        poll_interval: float = 10.0,
        resume_state: Mapping[str, Any] | None = None,
        give_up_after: float | None = None,
        echo: Mapping[str, Any] | None = None,  # resume_state's name before the rename
        **flat: Any,  # the target's fields, as triggers serialized before ``target`` had them
    ) -> None:
        super().__init__()
        unknown = set(flat) - TARGET_KEYS - {"recheck_after"}
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        flat.pop("recheck_after", None)  # a lease wait's own, in every old trigger's kwargs
        self.hyperv_conn_id = hyperv_conn_id
        self.target = _target_of(target, flat)
        if self.target.kind not in self.kinds:
            raise ValueError(f"{type(self).__name__} does not wait for {self.target.kind.value}")
        self.poll_interval = float(poll_interval)
        # Handed back in the event: what the resuming operator needs (deferral kwargs are not
        # returned by every runner, e.g. dag.test() replaces them with the event).
        state = resume_state if resume_state is not None else echo
        self.resume_state: dict[str, Any] = dict(state) if state else {}
        # Our own deadline, so the failure event can say what was last observed (Airflow's deferral
        # timeout, a backstop set a little later, can only say "timed out").
        self.give_up_after = float(give_up_after) if give_up_after else None

    @property
    def wait_for(self) -> WaitFor:
        return self.target.kind

    @property
    def vm_id(self) -> str:
        return self.target.vm_id

    @classmethod
    def classpath(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            self.classpath(),
            {
                "hyperv_conn_id": self.hyperv_conn_id,
                "target": self.target.to_dict(),
                "poll_interval": self.poll_interval,
                "resume_state": self.resume_state,
                "give_up_after": self.give_up_after,
                **self._own_kwargs(),
            },
        )

    def _own_kwargs(self) -> dict[str, Any]:
        """A subclass's own kwargs, serialized with the common ones."""
        return {}

    def _event(self, outcome: Outcome) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": outcome.status,
                "message": outcome.message,
                "wait_for": self.target.kind.value,
                "vm_id": self.target.vm_id,
                "resume_state": self.resume_state,
                **outcome.details,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError
        yield


class HyperVHostStateTrigger(HyperVBaseWaitTrigger):
    """A VM reaching a state, or a removed checkpoint's merge ending: judged from one host snapshot
    shared by every wait on the host (Airflow's shared trigger streams).

    Waits on the same connection and ``poll_interval`` share one poll; a merge wait shares it only with
    waits on the very same disks. Once the host rejects the shared poll's login, it never logs in
    again and every waiter ends with an error event marked ``rejected_login``.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host.
    :param target: What to wait for: a ``WaitTarget`` or its ``to_dict()``. Default None only for
        triggers serialized before ``target`` existed, which pass its fields flat (``wait_for=...``).
    :param poll_interval: Seconds between two polls of the host. Default 10.
    :param resume_state: What the deferring task gets back in the event (``resume_state``), to resume
        with. Default None: an empty dict.
    :param give_up_after: Seconds after which the wait ends with a ``timed_out`` error event saying
        what it last saw; None (default): no deadline of its own (the task's deferral timeout remains).
    :param echo: Deprecated: ``resume_state``'s name in triggers serialized before the rename.
    """

    kinds = frozenset({WaitFor.VM_STATE, WaitFor.MERGE_DONE})

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # A trigger serialized before the split (classpath HyperVWaitTrigger, this class): flat kwargs
        # with ``wait_for``, of any kind of wait. Build the trigger of that kind.
        if "target" not in kwargs and "wait_for" in kwargs:
            kind = _TRIGGER_FOR.get(WaitFor(kwargs["wait_for"]), cls)
            if not issubclass(kind, cls):
                return kind(*args, **kwargs)
        return super().__new__(cls)

    def shared_stream_key(self) -> Hashable | None:
        # A merge watches its own disks too (one extra Get-VHD in the same round trip), so it shares
        # a stream only with waits on the very same disks.
        key: tuple[Any, ...] = ("airflow-hyperv-host-state", self.hyperv_conn_id, self.poll_interval)
        disks = tuple(sorted(d.lower() for d in self.target.watched_disks))
        return (*key, disks) if disks else key

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        flat = {k: v for k, v in kwargs.items() if k in TARGET_KEYS}
        target = _target_of(kwargs.get("target"), flat)
        async for snapshot in cls._poll_host(
            kwargs["hyperv_conn_id"], float(kwargs["poll_interval"]), target.watched_disks
        ):
            yield snapshot

    @staticmethod
    async def _poll_host(
        conn_id: str, interval: float, disk_paths: tuple[str, ...] = ()
    ) -> AsyncIterator[HostSnapshot | LoginRejected]:
        """The host's snapshots: one at once, then one every ``interval`` seconds at this loop's phase
        (``hyperv.cadence``: the host loops of one triggerer spread over the interval, on the event
        loop's clock so they never drift into step). The snapshot is read and decoded in the worker
        thread that runs pypsrp (``host_state``: only the fields a wait judges), never on the loop."""
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook

        loop = asyncio.get_running_loop()
        plan = _phase_plan()
        phase = plan.take(poll_loop_key(conn_id, disk_paths), interval)
        try:
            async with HyperVAsyncHook(conn_id) as hook:
                rejected: LoginRejected | None = None
                while True:
                    started = loop.time()
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
                    due = after_poll(phase, interval, started=started, now=loop.time())
                    await asyncio.sleep(max(0.0, due - loop.time()))
        finally:
            plan.release(interval, phase)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        polls = _as_polls(shared_stream)
        try:
            outcome = await async_wait_on(
                HostStateWait(self.target),
                polls,
                error_budget=wait_error_budget(),
                give_up_after=self.give_up_after,
                log=self.log,
            )
        finally:
            await polls.aclose()  # not the shared stream itself: that is the triggerer's
        if outcome is not None:
            yield self._event(outcome)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls = self._poll_host(self.hyperv_conn_id, self.poll_interval, self.target.watched_disks)
        async for event in self.filter_shared_stream(polls):
            yield event
            return


# The phases of the host poll loops running on each event loop (one triggerer: one loop).
_phase_plans: dict[int, PhasePlan] = {}


def _phase_plan() -> PhasePlan:
    """This event loop's plan of poll phases (``hyperv.cadence.PhasePlan``)."""
    return _phase_plans.setdefault(id(asyncio.get_running_loop()), PhasePlan())


def poll_loop_key(conn_id: str, disk_paths: tuple[str, ...] = ()) -> str:
    """What identifies a host poll loop for its phase: the connection and the disks it watches."""
    return "\n".join((conn_id, *sorted(d.lower() for d in disk_paths)))


async def _as_polls(shared_stream: AsyncIterator[Any]) -> AsyncGenerator[Polled[HostSnapshot], None]:
    """The shared host poll's snapshots as the waiter's polls (a failed one is its error)."""
    async for snapshot in shared_stream:
        if isinstance(snapshot, LoginRejected):
            yield Polled(error=AuthenticationFailedError(snapshot.message))
        elif snapshot.error:
            yield Polled(error=PollFailed(snapshot.error))
        else:
            yield Polled(snapshot)


class HyperVOperationTrigger(HyperVBaseWaitTrigger):
    """A pipeline started in a disconnected session (an export), until it ends. An operation is its
    own session: it shares no stream.

    A user killing the deferred task (mark failed / success, clear) cancels the operation on the host
    (``on_kill``); a triggerer restart or a move to another triggerer does not.

    With a ``progress`` target (the folder the operation writes and what it should hold), a progress
    line is logged at once and then at most every ``progress_interval`` seconds (in Airflow 3 a
    trigger's log lines are in the task's log). Only a poll on which a line is due reads the bytes
    written so far, on a runspace pool opened for that read and closed after it: the wait holds no
    shell of its own between polls (each counts against the host's WinRM quotas).

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host.
    :param target: The operation (``WaitFor.OPERATION_DONE``): a ``WaitTarget`` or its ``to_dict()``.
        Default None only for triggers serialized before ``target`` existed, which pass its fields
        flat (``wait_for=...``).
    :param poll_interval: Seconds between two polls of the host. Default 10.
    :param resume_state: What the deferring task gets back in the event (``resume_state``), to resume
        with. Default None: an empty dict.
    :param give_up_after: Seconds after which the wait ends with a ``timed_out`` error event saying
        what it last saw; None (default): no deadline of its own (the task's deferral timeout remains).
    :param echo: Deprecated: ``resume_state``'s name in triggers serialized before the rename.
    :param progress_interval: Seconds between two progress lines of a ``progress`` target (the first
        comes with the first poll); 0: every poll. Default 60.
    :param resume_before_end: With a ``progress`` target: end the wait with a success event marked
        ``nearly_done`` once the end its progress reads predict is this many seconds away, so the task
        resumes while the operation finishes and waits out the end itself. Default 0: only at the end.
    """

    kinds = frozenset({WaitFor.OPERATION_DONE})

    def __init__(
        self,
        *,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        resume_before_end: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if progress_interval < 0:
            raise ValueError(f"progress_interval must be 0 or more, not {progress_interval}")
        if resume_before_end < 0:
            raise ValueError(f"resume_before_end must be 0 or more, not {resume_before_end}")
        self.progress_interval = float(progress_interval)
        self.resume_before_end = float(resume_before_end)

    def _own_kwargs(self) -> dict[str, Any]:
        return {"progress_interval": self.progress_interval, "resume_before_end": self.resume_before_end}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation, poll_disconnected

        op = DisconnectedOperation.from_dict(self.target.operation)
        watch = self.target.progress
        settings = await HyperVAsyncHook(self.hyperv_conn_id).settings()
        step = OperationWait(
            op, watch=watch, progress_interval=self.progress_interval, lead=self.resume_before_end
        )

        async def poll() -> OperationPoll:
            state = await asyncio.to_thread(poll_disconnected, settings, op, wait_seconds=1.0)
            if watch is None or state.state != "running" or not step.progress_due():
                return OperationPoll(state)
            # A pool for this one read: between polls the wait holds no shell (WinRM quotas).
            async with HyperVAsyncHook(self.hyperv_conn_id) as hook:
                return await hook.call(lambda hv: read_progress(hv, state, watch))

        outcome = await async_wait(
            step,
            poll,
            interval=self.poll_interval,
            error_budget=wait_error_budget(),
            give_up_after=self.give_up_after,
            log=self.log,
        )
        yield self._event(outcome)

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed / clear / mark success): stop the export.

        Not ``cleanup()``: that runs on every exit, including a triggerer restart or the trigger
        moving to another triggerer, and an export must survive those (Airflow's
        ``BaseTrigger.on_kill`` docstring). A deferral timeout calls neither; the operator's
        ``resume_execution`` cancels then.
        """
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation, cancel_disconnected

        op = DisconnectedOperation.from_dict(self.target.operation)
        settings = await HyperVAsyncHook(self.hyperv_conn_id).settings()
        deleted = await asyncio.to_thread(cancel_disconnected, settings, op)
        self.log.warning(
            "Task killed: cancelled %s on the host (shell %s %s)",
            op.label,
            op.shell_id,
            "deleted" if deleted else "already gone",
        )


class HyperVLeaseTrigger(HyperVBaseWaitTrigger):
    """Another run's lease on a VM, until it is released or changes hands. The wait also ends every
    ``recheck_after`` seconds, so the task can ask Airflow whether the holder's run is over (a stale
    lease is taken over). A lease is a file read on its own: it shares no stream.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host.
    :param target: The lease to outwait (``WaitFor.LEASE_FREE``, with its ``holder``): a ``WaitTarget``
        or its ``to_dict()``. Default None only for triggers serialized before ``target`` existed,
        which pass its fields flat (``wait_for=...``).
    :param poll_interval: Seconds between two polls of the host. Default 10.
    :param resume_state: What the deferring task gets back in the event (``resume_state``), to resume
        with. Default None: an empty dict.
    :param give_up_after: Seconds after which the wait ends with a ``timed_out`` error event saying
        what it last saw; None (default): no deadline of its own (the task's deferral timeout remains).
    :param echo: Deprecated: ``resume_state``'s name in triggers serialized before the rename.
    :param recheck_after: Seconds after which the wait ends anyway (a success event marked
        ``recheck``), so the task can look at the holder's DAG run again. Default 300.
    """

    kinds = frozenset({WaitFor.LEASE_FREE})

    def __init__(self, *, recheck_after: float = LEASE_RECHECK_SECONDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recheck_after = float(recheck_after)

    def _own_kwargs(self) -> dict[str, Any]:
        return {"recheck_after": self.recheck_after}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook

        vm_id = self.target.vm_id
        async with HyperVAsyncHook(self.hyperv_conn_id) as hook:
            outcome = await async_wait(
                LeaseWait(self.target, self.recheck_after),
                lambda: hook.call(lambda hv: hv.read_lease(uuid.UUID(vm_id))),
                interval=self.poll_interval,
                error_budget=wait_error_budget(),
                give_up_after=self.give_up_after,
                log=self.log,
            )
            yield self._event(outcome)


_TRIGGER_FOR: dict[WaitFor, type[HyperVBaseWaitTrigger]] = {
    WaitFor.VM_STATE: HyperVHostStateTrigger,
    WaitFor.MERGE_DONE: HyperVHostStateTrigger,
    WaitFor.OPERATION_DONE: HyperVOperationTrigger,
    WaitFor.LEASE_FREE: HyperVLeaseTrigger,
}


def trigger_for(target: WaitTarget, **kwargs: Any) -> HyperVBaseWaitTrigger:
    """The trigger that waits for ``target`` (kwargs: hyperv_conn_id, poll_interval, resume_state...).

    :param target: What to wait for; its kind picks the trigger class.
    :return: The trigger of that kind.
    """
    return _TRIGGER_FOR[target.kind](target=target, **kwargs)


# The one trigger's name before the split, and its classpath (CLASSPATH): DAGs and triggers
# serialized by a running deployment name it. Called with their flat kwargs it builds the trigger
# for their kind of wait.
HyperVWaitTrigger = HyperVHostStateTrigger

__all__ = [
    "CLASSPATH",
    "HyperVBaseWaitTrigger",
    "HyperVHostStateTrigger",
    "HyperVLeaseTrigger",
    "HyperVOperationTrigger",
    "HyperVWaitTrigger",
    "LoginRejected",
    "trigger_for",
]
