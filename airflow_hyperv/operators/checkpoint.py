"""Create, merge (remove), restore checkpoints, and set a VM's checkpoint type."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
)

from airflow_hyperv.config import merge_defer_after
from airflow_hyperv.hyperv.enums import CheckpointType, Consistency
from airflow_hyperv.hyperv.errors import (
    ProductionCheckpointImpossibleError,
)
from airflow_hyperv.hyperv.lease import Lease, describe_holder, is_stale, new_lease
from airflow_hyperv.hyperv.names import is_provider_checkpoint, require_exact_name
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget
from airflow_hyperv.operators.base import (
    FINAL_ERRORS,
    DeferrableMixin,
    HyperVBaseOperator,
    run_checkpoint_name,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_hyperv.hooks.hyperv import HyperVHook, LeaseRead


log = logging.getLogger(__name__)
DEFAULT_BUSY_TIMEOUT = 6 * 3600.0


def _avhdx(paths: list[str]) -> list[str]:
    return [p for p in paths if p.lower().endswith(".avhdx")]


class HyperVCreateCheckpointOperator(DeferrableMixin, HyperVBaseOperator):
    """Take this run's checkpoint of a VM, once, while holding the VM's protection lease.

    ``consistency="application"`` attempts a production checkpoint with ProductionOnly (it never
    falls back silently); with ``fallback_to_crash=True`` a failed attempt is followed by a standard
    checkpoint that is *recorded* as crash-consistent. The name is deterministic per DAG run and VM,
    so a retry finds the checkpoint an earlier try made. If anything fails after Checkpoint-VM may
    have run, the checkpoint is removed and the lease released before the task fails.

    Before anything changes the task takes the VM's lease (docs/operations.md, Overlapping runs).
    If another run holds it: ``on_busy="wait"`` waits up to ``busy_timeout`` seconds, ``on_busy="skip"``
    skips naming the holder. The wait is an Airflow reschedule by default (``reschedule_when_busy``):
    the task holds neither a worker slot nor a pool slot meanwhile, so a run waiting for a VM can never
    starve the lease holder's own export and merge of the host's pool (the example pools count
    deferred tasks). With ``reschedule_when_busy=False`` it defers (``deferrable``) or polls in the
    worker. A holder whose DAG run is over is stale: its lease is taken over, its checkpoint is never
    touched.

    Returns (XCom): vm_id, vm_name, host, checkpoint_id, checkpoint_name, consistency, created_at,
    created (False if an earlier try made it), fell_back, fallback_reason, avhdx_paths.

    Checkpoints disabled, an unknown or ambiguous VM, invalid input and (without a fallback) a
    production checkpoint that is impossible fail the task at once, without retries.

    .. seealso::
        docs/operators.md (HyperVCreateCheckpointOperator), docs/consistency.md (the policies) and
        docs/operations.md (Overlapping runs).

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param consistency: ``application`` (default): a production checkpoint, attempted with the VM's
        checkpoint type set to ProductionOnly for that one attempt and put back after it; ``crash``: a
        standard checkpoint. Any other value fails the task without retries. (templated)
    :param fallback_to_crash: When a production checkpoint is impossible (the guest cannot quiesce),
        take a standard checkpoint instead, recorded as crash-consistent (``fell_back`` in the XCom).
        Default False: that case fails the task.
    :param policy: The VM's policy (``require``, ``fallback``, ``skip``); ``fallback`` allows the
        standard fallback like ``fallback_to_crash``. Templated, so a mapped task group can map it.
        Default None. (templated)
    :param branch_task_id: The branch task that must have chosen this task (for this map index);
        otherwise the task skips. Needed inside mapped task groups, where Airflow does not skip the
        paths a branch did not follow. Default None: no check.
    :param on_busy: What to do while another run holds the VM's protection lease: ``wait`` (default)
        or ``skip`` (the task is skipped, naming the holder). Any other value raises ValueError when
        the DAG is parsed. A holder whose DAG run is over is stale: its lease is taken over, its
        checkpoint never touched.
    :param busy_timeout: Seconds to wait for the lease with ``on_busy="wait"`` before failing (naming
        the holder; nothing is changed). Default 21600 (6 hours); must be above 0.
    :param reschedule_when_busy: Wait for the lease as an Airflow reschedule (``up_for_reschedule``):
        no worker slot and no pool slot are held, so a waiting run cannot starve the holder's own
        export and merge of the host's pool. Default True. False: defer (``deferrable``) or poll in
        the worker; use it only with pools that do not count deferred tasks.
    :param deferrable: With ``reschedule_when_busy=False``, wait for the lease in the triggerer
        instead of the worker. Default None: Airflow's ``[operators] default_deferrable``.
    :param poll_interval: Seconds between two looks at the lease while the VM is busy (the reschedule
        interval). Default 10; must be above 0.
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "consistency", "policy")

    def __init__(
        self,
        *,
        consistency: str = "application",
        fallback_to_crash: bool = False,
        policy: str | None = None,
        branch_task_id: str | None = None,
        on_busy: str = "wait",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        reschedule_when_busy: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reschedule_when_busy = reschedule_when_busy
        self.consistency = consistency
        self.fallback_to_crash = fallback_to_crash
        self.policy = policy  # "fallback" allows the standard fallback too (templated, so it can be mapped)
        self.branch_task_id = branch_task_id
        self.on_busy = parse_on_busy(on_busy)
        if busy_timeout <= 0:
            raise ValueError(f"busy_timeout must be above 0 seconds, not {busy_timeout}")
        self._init_deferrable(deferrable, poll_interval, float(busy_timeout))

    @property
    def _may_fall_back(self) -> bool:
        return self.fallback_to_crash or str(self.policy or "").strip().lower() == "fallback"

    def execute(self, context: Context, busy_since: float | None = None) -> dict[str, Any]:
        skip_unless_followed(self, context)
        try:
            wanted = Consistency(str(self.consistency).lower())
        except ValueError:
            raise AirflowFailException(
                f"consistency must be application or crash, not {self.consistency!r}"
            ) from None
        with self.hyperv_hook() as hv:
            with self.final_errors():
                vm = hv.resolve_vm(self.vm)
            name = run_checkpoint_name(context, str(vm.id))
            lease, known = self._claim(context, hv, vm, name, busy_since)
            try:
                return self._create(hv, vm, name, wanted, lease, known)
            except BaseException:
                self._remove_partial(hv, vm.id, name, lease)
                raise

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """The holder released the VM (or it is time to look at the holder again): try once more."""
        state = self.resume_state(event)
        if event and event.get("timed_out"):
            raise AirflowException(f"{self.vm} stayed busy: {event.get('message', '')}")
        self.check_event(event)
        return self.execute(context, busy_since=float(state.get("busy_since") or time.time()))

    def _claim(
        self, context: Context, hv: HyperVHook, vm: Any, name: str, busy_since: float | None
    ) -> tuple[Lease, Any]:
        """This run's lease on ``vm``: acquired, resumed (a retry), taken over from a finished run, or
        waited for. Records the VM's checkpoint type and checkpoints once, right after acquiring, and
        returns that read too (None when the lease was resumed), so the create need not read again."""
        dag_run = context["dag_run"]
        candidate = new_lease(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, vm_id=str(vm.id), checkpoint_name=name,
            checkpoint_type_before="", host=hv.settings.host_label,
        )  # fmt: skip
        started = busy_since if busy_since is not None else self._first_wait(context)
        while True:
            claim = hv.acquire_lease(candidate)
            state = None if claim.ours else holder_run_state(context, claim.lease)
            if not claim.ours and is_stale(state):
                self.log.warning(
                    "Taking over the lease of %s from %s; its checkpoint %r is left alone",
                    vm.name, describe_holder(claim.lease, state), claim.lease.checkpoint_name,
                )  # fmt: skip
                claim = hv.take_over_lease(claim.lease, candidate)
                if not claim.ours:
                    continue  # a third run was faster: judge that holder afresh
            if claim.ours:
                break
            holder = describe_holder(claim.lease, state)
            if self.on_busy == "skip":
                raise AirflowSkipException(
                    f"{vm.name} is being protected by {holder}; skipping (on_busy='skip')"
                )
            waited = time.time() - started
            if self.wait_timeout is not None and waited >= self.wait_timeout:
                raise AirflowException(
                    f"{vm.name} is still being protected by {holder} after {waited:.0f}s (busy_timeout "
                    f"{self.wait_timeout:g}s); nothing was changed"
                )
            self.log.info("%s is being protected by %s; waiting for it", vm.name, holder)
            if self.reschedule_when_busy:
                raise AirflowRescheduleException(
                    dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.poll_interval)
                )
            if self.deferrable:
                self._defer_for_lease(vm, claim.lease, started, waited)
            time.sleep(self.poll_interval)
        lease = claim.lease
        if claim.resumed:
            self.log.info("Resuming this run's lease of %s (taken %s)", vm.name, lease.acquired_at)
        known = None
        if not lease.checkpoint_type_before:
            current, checkpoints, held = hv.vm_checkpoints_and_lease(vm.id)  # one round trip
            lease = hv.record_lease(
                dataclasses.replace(
                    lease,
                    checkpoint_type_before=current.checkpoint_type.name,
                    existing_checkpoint_ids=tuple(str(c.id).lower() for c in checkpoints),
                ),
                held=held,
            )
            known = (current, checkpoints)
        return lease, known

    @staticmethod
    def _first_wait(context: Context) -> float:
        """When this try began to wait for the lease: its first reschedule's start, else now."""
        first = None
        with contextlib.suppress(Exception):  # no reschedule history (e.g. a direct execute() call)
            first = context["ti"].get_first_reschedule_date(context)
        return first.timestamp() if first is not None else time.time()

    def _defer_for_lease(self, vm: Any, holder: Lease, started: float, waited: float) -> None:
        from airflow_hyperv.triggers.hyperv import HyperVLeaseTrigger

        remaining = max((self.wait_timeout or 0) - waited, 1.0) if self.wait_timeout else None
        self.defer(
            trigger=HyperVLeaseTrigger(
                hyperv_conn_id=self.hyperv_conn_id,
                target=WaitTarget(WaitFor.LEASE_FREE, str(vm.id), holder=holder),
                poll_interval=self.poll_interval,
                resume_state={"busy_since": started},
                give_up_after=remaining,
            ),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=remaining * 1.1 + 60) if remaining else None,
        )

    def _create(
        self, hv: HyperVHook, vm: Any, name: str, wanted: Consistency, lease: Lease, known: Any = None
    ) -> dict[str, Any]:
        fell_back = False
        reason = None
        try:
            result = hv.create_checkpoint(vm.id, name, consistency=wanted, lease=lease, known=known)
        except ProductionCheckpointImpossibleError as exc:
            if not self._may_fall_back:
                raise AirflowFailException(str(exc)) from exc
            self.log.warning("%s; taking a standard checkpoint, recorded as crash-consistent", exc)
            result = hv.create_checkpoint(vm.id, name, consistency=Consistency.CRASH, lease=lease)
            fell_back, reason = True, str(exc)
        except FINAL_ERRORS as exc:
            raise AirflowFailException(str(exc)) from exc
        # The checkpoint's own round trip read the drives; a checkpoint found again did not.
        drives = result.drives if result.drives is not None else hv.vm_overview(vm.id).drives
        cp = result.checkpoint
        self.log.info(
            "%s checkpoint %r of %s (%s-consistent)",
            "Took" if result.created else "Found the earlier try's",
            cp.name,
            vm.name,
            result.consistency.value,
        )
        return {
            "vm_id": str(vm.id),
            "vm_name": vm.name,
            "host": hv.settings.host_label,
            "checkpoint_id": str(cp.id),
            "checkpoint_name": cp.name,
            "consistency": result.consistency.value,
            "created_at": cp.creation_time.isoformat() if cp.creation_time else None,
            "created": result.created,
            "fell_back": fell_back,
            "fallback_reason": reason,
            "avhdx_paths": _avhdx([d.path for d in drives]),
        }

    def _remove_partial(self, hv: HyperVHook, vm_id: uuid.UUID, name: str, lease: Lease) -> None:
        """A failed create must not leave its checkpoint behind (it may exist if an answer was lost,
        named or, if the rename never ran, with its default name), nor hold the VM's lease."""
        try:
            found = hv.find_checkpoint(vm_id, name)
            if found is None:
                vm, checkpoints = hv.vm_with_checkpoints(vm_id)
                known = set(lease.existing_checkpoint_ids)
                found = next(
                    (c for c in checkpoints if str(c.id).lower() not in known and c.name.startswith(f"{vm.name} - (")),
                    None,
                ) if lease.checkpoint_type_before else None  # fmt: skip
            if found is not None:
                self.log.warning("Removing checkpoint %r left by the failed attempt", found.name)
                hv.remove_checkpoint(found.id)
            hv.finish_lease(vm_id, name)
        except Exception as exc:  # the merge teardown looks it up by name again and releases the lease
            self.log.warning("Could not clean up after the failed attempt: %s", exc)


def parse_on_busy(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("wait", "skip"):
        raise ValueError(f"on_busy must be 'wait' or 'skip', not {value!r}")
    return text


def holder_run_state(context: Context, lease: Lease) -> str | None:
    """The state of the lease holder's DAG run in this Airflow, or None if it cannot be told."""
    try:
        state = context["ti"].get_dagrun_state(dag_id=lease.dag_id, run_id=lease.run_id)
    except Exception as exc:  # not in this Airflow's database (another deployment?) or no API
        log.info("Cannot read the state of %s: %s", lease.describe(), exc)
        return None
    return str(getattr(state, "value", state)) if state is not None else None


MERGE_STATE_KEY = "airflow_hyperv.merge"


@dataclass(frozen=True)
class MergePlan:
    """What a merge waits for, learnt before Remove-VMSnapshot and kept across tries (task_state_store):
    a retry whose checkpoint an earlier try removed still waits on exactly these disks."""

    vm_id: str
    checkpoint_id: str
    checkpoint_name: str
    links: tuple[tuple[str, str], ...]  # (disk, parent): the chain links the merge dissolves

    def to_json(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "checkpoint_id": self.checkpoint_id,
            "checkpoint_name": self.checkpoint_name,
            "links": [list(link) for link in self.links],
        }

    @classmethod
    def from_json(cls, data: Any) -> MergePlan | None:
        if not isinstance(data, dict):
            return None
        return cls(
            vm_id=str(data["vm_id"]),
            checkpoint_id=str(data["checkpoint_id"]),
            checkpoint_name=str(data["checkpoint_name"]),
            links=tuple((str(d), str(p)) for d, p in data.get("links") or []),
        )


def merge_links(own_disks: list[str], chains: list[Any]) -> tuple[tuple[str, str], ...]:
    """The (child, disk) links between each of a checkpoint's own disks and the disk above it in a
    chain of the VM's drives. Removing the checkpoint dissolves each link: Hyper-V folds one of the
    two into the other. A disk no chain holds (its branch was left by a restore) has no link."""
    own = {p.lower() for p in own_disks}
    links = []
    for chain in chains:
        for above, disk in zip(chain.disks, chain.disks[1:], strict=False):
            if disk.path.lower() in own:
                links.append((above.path, disk.path))
    return tuple(links)


def manual_rollback_commands(vm_id: str, checkpoint_id: str) -> list[str]:
    """What an operator runs on the host to finish a rollback the run could not (by Id: -Name takes
    wildcards). A production checkpoint restores the VM Off, hence Start-VM.

    :param vm_id: The VM's Id.
    :param checkpoint_id: The checkpoint's Id.
    :return: PowerShell lines, to run in order.
    """
    return [
        f"Get-VMSnapshot -Id {checkpoint_id} | Restore-VMSnapshot -Confirm:$false",
        f"Get-VM -Id {vm_id} | Start-VM",
        "# then, once the VM is healthy, remove the rollback point (Hyper-V merges it):",
        f"Get-VMSnapshot -Id {checkpoint_id} | Remove-VMSnapshot",
    ]


class HyperVMergeCheckpointOperator(DeferrableMixin, HyperVBaseOperator):
    """Remove this run's checkpoint (Hyper-V merges its AVHDX) and wait until the host has really
    finished merging: the chain links between the checkpoint's own disks and their children are gone.
    Safe as the teardown of the checkpoint setups: it looks the checkpoint up by this run's
    deterministic name and does nothing if there is none.

    Only checkpoints this provider made are touched, unless ``checkpoint_name`` names one. With
    ``keep_unless_succeeded`` the checkpoint is a rollback point: it is merged only when one of those
    tasks succeeded in this run (the deployment is healthy, or the rollback finished); otherwise it
    is kept and the task fails with the commands to roll back by hand.

    What the merge waits for is kept in the task state store before Remove-VMSnapshot, so a retry
    whose checkpoint an earlier try removed still waits for exactly that merge. A merge that does not
    finish fails the task naming the AVHDX (docs/operators.md, When a merge fails). On success the
    VM's checkpoint type recorded in its lease is put back and the lease released.

    Returns (XCom): vm_id, vm_name, checkpoint_name, merged (False when there was nothing to merge),
    checkpoint_left, chain_depths or orphaned_avhdx, finished_at; key ``rollback_point`` when a
    rollback point was kept.

    .. seealso::
        docs/operators.md (HyperVMergeCheckpointOperator; When a merge fails).

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param checkpoint_name: Merge the checkpoint of exactly this name instead of this run's own (then
        it need not be one this provider made). Default None: this run's checkpoint. (templated)
    :param keep_unless_succeeded: Task ids of this run. When given, the checkpoint is merged only if
        one of them succeeded; otherwise (or when their states cannot be read) it is kept and the task
        fails with the commands to roll back by hand. Default ``()``: always merge.
    :param deferrable: Wait for the merge in the triggerer (shared per-host polls) instead of the
        worker. Default None: Airflow's ``[operators] default_deferrable``.
    :param poll_interval: Seconds between two looks at the host while the merge runs. Default 10;
        must be above 0.
    :param wait_timeout: Seconds to wait for the merge to finish before failing; None: no limit.
        Default 21600 (6 hours).
    :param defer_after: Deferrable: seconds the task first waits for the merge in the worker (polling
        after 1 s, then less and less often), deferring only if it is still running. A small AVHDX
        merges in seconds: it then costs no deferral, no resumed task and no second pool. 0: defer at
        once. Default None: ``[hyperv] merge_defer_after`` (30).
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "checkpoint_name")

    def __init__(
        self,
        *,
        checkpoint_name: str | None = None,
        keep_unless_succeeded: Sequence[str] = (),
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        wait_timeout: float | None = 6 * 3600.0,
        defer_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if defer_after is None:
            defer_after = merge_defer_after()
        if defer_after < 0:
            raise ValueError(f"defer_after must be 0 or more, not {defer_after}")
        self.checkpoint_name = checkpoint_name
        self.keep_unless_succeeded = tuple(keep_unless_succeeded)
        self.defer_after = float(defer_after)
        self._init_deferrable(deferrable, poll_interval, wait_timeout)

    def execute(self, context: Context) -> dict[str, Any]:
        store = context.get("task_state_store")
        with self.hyperv_hook() as hv:
            with self.final_errors():
                # The VM, its checkpoints and drives; a name is resolved in the same round trip.
                overview = hv.resolve_overview(self.vm)
                vm = overview.vm
                if self.checkpoint_name:
                    name = require_exact_name(self.checkpoint_name, "checkpoint name")
                else:
                    name = run_checkpoint_name(context, str(vm.id))
            checkpoints = overview.checkpoints
            found = [c for c in checkpoints if c.name == name]
            if found:
                checkpoint = found[0]
                if not self.checkpoint_name and not is_provider_checkpoint(checkpoint.name):
                    raise AirflowFailException(
                        f"refusing to merge {checkpoint.name!r}: not made by this provider"
                    )
                self._keep_if_rollback_needed(context, vm, checkpoint)
                own, chains = hv.checkpoint_links(checkpoint.id, vm.id, overview.drives)
                plan = MergePlan(
                    vm_id=str(vm.id),
                    checkpoint_id=str(checkpoint.id),
                    checkpoint_name=name,
                    links=merge_links([d.path for d in own if d.path], chains),
                )
                if store is not None:  # before Remove-VMSnapshot: a retry must know what this try removed
                    store.set(MERGE_STATE_KEY, plan.to_json())
                hv.remove_checkpoint(checkpoint.id)
                self.log.info(
                    "Removed checkpoint %r of %s; waiting until the host has merged %s",
                    name,
                    vm.name,
                    ", ".join(f"{d} -> {p}" for d, p in plan.links) or "nothing (no chain holds its disks)",
                )
            else:
                earlier = self._earlier_try(store, str(vm.id), name)
                if earlier is None:
                    return self._nothing_to_merge(hv, vm, checkpoints, name, overview.drives)
                plan = earlier
                self.log.warning(
                    "An earlier try removed checkpoint %r of %s; waiting for that merge to end", name, vm.name
                )
            target = WaitTarget(
                WaitFor.MERGE_DONE, plan.vm_id, checkpoint_id=plan.checkpoint_id, merge_links=plan.links
            )
            self.log.info(
                "Waiting for the merge of %r: up to %s, polling the host every %gs (%s)",
                plan.checkpoint_name,
                f"{self.wait_timeout:g}s" if self.wait_timeout else "no limit",
                self.poll_interval,
                (
                    f"in this worker for up to {self.defer_after:g}s, then deferred to the triggerer"
                    if self.deferrable and self.defer_after
                    else "deferred to the triggerer"
                    if self.deferrable
                    else "in this worker"
                ),
            )
            # In the worker the wait and the confirmation use this task's pool: no pool of their own.
            self.wait_for_host_state(
                target,
                resume_state={"plan": plan.to_json()},
                explain=_merge_not_finished,
                hook=hv,
                defer_after=self.defer_after,
            )
            return self._confirm(plan, hv)

    def _finish_lease(
        self, hv: HyperVHook, vm_id: uuid.UUID, name: str, read: LeaseRead | None = None
    ) -> None:
        """This run is done with the VM: its recorded checkpoint type back, its lease released."""
        released = hv.finish_lease(vm_id, name, read=read)
        if released is not None:
            self.log.info("Released the lease of %s (type %s)", vm_id, released.checkpoint_type_before)

    @staticmethod
    def _earlier_try(store: Any, vm_id: str, name: str) -> MergePlan | None:
        """What an earlier try of this task removed (None: no try removed this checkpoint)."""
        if store is None:
            return None
        plan = MergePlan.from_json(store.get(MERGE_STATE_KEY))
        if plan is None or plan.vm_id.lower() != vm_id.lower() or plan.checkpoint_name != name:
            return None
        return plan

    def _nothing_to_merge(
        self, hv: HyperVHook, vm: Any, checkpoints: list[Any], name: str, drives: list[Any]
    ) -> dict[str, Any]:
        """This run has no checkpoint and no try removed one. A differencing disk the VM runs on without
        any checkpoint is not this run's: it is reported at once, never waited for (verify blocks it)."""
        orphans = _avhdx([d.path for d in drives]) if not checkpoints else []
        if orphans:
            self.log.warning(
                "%s has no checkpoint but runs on %s: an orphaned AVHDX this run did not make (a merge that "
                "failed or never ran before). Not waiting for it; see docs/operators.md (When a merge fails).",
                vm.name,
                ", ".join(orphans),
            )
        else:
            self.log.info("No checkpoint %r on %s: nothing to merge", name, vm.name)
        self._finish_lease(hv, vm.id, name)
        return {
            "vm_id": str(vm.id),
            "vm_name": vm.name,
            "checkpoint_name": name,
            "merged": False,  # nothing of this run was removed
            "checkpoint_left": False,
            "orphaned_avhdx": orphans,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }

    def _keep_if_rollback_needed(self, context: Context, vm: Any, checkpoint: Any) -> None:
        """A rollback point is merged only when the deployment is healthy or the rollback finished."""
        if not self.keep_unless_succeeded:
            return
        ti = context["ti"]
        try:
            states = ti.get_task_states(
                dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=list(self.keep_unless_succeeded)
            )
            run_states = states.get(ti.run_id) or {}
        except Exception as exc:  # unknown means "maybe still needed": keep it
            run_states = {}
            self.log.warning("Could not read the states of %s: %s", self.keep_unless_succeeded, exc)
        if any(run_states.get(t) == "success" for t in self.keep_unless_succeeded):
            return
        seen = ", ".join(f"{t}: {run_states.get(t) or 'unknown'}" for t in self.keep_unless_succeeded)
        commands = manual_rollback_commands(str(vm.id), str(checkpoint.id))
        ti.xcom_push(
            key="rollback_point",
            value={
                "vm_id": str(vm.id),
                "vm_name": vm.name,
                "checkpoint_id": str(checkpoint.id),
                "checkpoint_name": checkpoint.name,
                "commands": commands,
            },
        )
        raise AirflowFailException(
            f"kept rollback point {checkpoint.name!r} ({checkpoint.id}) of {vm.name}: neither the deployment "
            f"was healthy nor the rollback finished ({seen}). To roll back by hand, on the host:\n  "
            + "\n  ".join(commands)
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event and event.get("timed_out"):
            raise AirflowException(_merge_not_finished(event.get("message", "")))
        state = self.resume_state(self.check_event(event))
        plan = MergePlan.from_json(state.get("plan"))
        if plan is None:
            raise AirflowException(f"the merge wait returned no plan: {state}")
        return self._confirm(plan)

    def _confirm(self, plan: MergePlan, hook: HyperVHook | None = None) -> dict[str, Any]:
        """The host's word is not enough: the checkpoint is gone and every link it had is dissolved,
        read from the whole chain of every drive. On ``hook`` (the task's open pool) when given."""
        vm_id = uuid.UUID(plan.vm_id)
        with contextlib.nullcontext(hook) if hook is not None else self.hyperv_hook() as hv:
            hv.follow(vm_id)  # a cluster: the VM's node now (it may have moved during the merge)
            # the lease and the VM ride in the first round trip, for _finish_lease below
            left, chains, lease_read = hv.confirm_merge_reads(uuid.UUID(plan.checkpoint_id), vm_id)
            if left is not None:
                raise AirflowException(
                    f"checkpoint {plan.checkpoint_name!r} is still on the VM after the merge"
                )
            present = {
                (a.path.lower(), d.path.lower())
                for c in chains
                for a, d in zip(c.disks, c.disks[1:], strict=False)
            }
            stuck = [disk for disk, parent in plan.links if (disk.lower(), parent.lower()) in present]
            if not stuck:
                self._finish_lease(hv, vm_id, plan.checkpoint_name, read=lease_read)
        if stuck:
            raise AirflowException(
                f"the merge of {plan.checkpoint_name!r} did not complete: {', '.join(stuck)} still sits on the "
                "checkpoint's disk. A failed merge leaves an orphaned AVHDX; see docs/operators.md (When a merge fails)."
            )
        return {
            "vm_id": plan.vm_id,
            "vm_name": self.vm,
            "checkpoint_name": plan.checkpoint_name,
            "merged": True,
            "checkpoint_left": False,
            "chain_depths": [c.depth for c in chains],
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }


class HyperVRestoreCheckpointOperator(DeferrableMixin, HyperVBaseOperator):
    """Apply a checkpoint (rollback). A production checkpoint restores the VM to Off, so the VM is
    started again if it was running (``start_vm=None``), then the task waits for a healthy heartbeat.
    When anything fails after the checkpoint was found, the log gives the commands to finish the
    rollback by hand.

    The restore itself is sent once, never repeated after a lost answer. It discards whatever the VM
    wrote since the checkpoint.

    Returns (XCom): vm_id, checkpoint_id, checkpoint_name, state, started (and ``heartbeat: ok`` after
    a deferred wait).

    .. seealso::
        docs/operators.md (HyperVRestoreCheckpointOperator; Pre-deployment).

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param checkpoint_name: The exact name of the checkpoint to apply. Default None: this run's own
        checkpoint. (templated)
    :param start_vm: Start the VM after the restore: None (default) if it was running before, True
        always, False never.
    :param wait_for_heartbeat: After starting the VM, wait until it runs with a healthy heartbeat.
        Default True.
    :param skip_if_missing: Skip instead of failing when the VM has no such checkpoint (a rollback path
        with nothing to undo). Default False.
    :param deferrable: Wait for the heartbeat in the triggerer instead of the worker. Default None:
        Airflow's ``[operators] default_deferrable``.
    :param poll_interval: Seconds between two looks at the VM while waiting for the heartbeat.
        Default 10; must be above 0.
    :param wait_timeout: Seconds to wait for a healthy heartbeat before failing; None: no limit.
        Default 1800 (30 minutes).
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "checkpoint_name")

    def __init__(
        self,
        *,
        checkpoint_name: str | None = None,
        start_vm: bool | None = None,
        wait_for_heartbeat: bool = True,
        skip_if_missing: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = 10.0,
        wait_timeout: float | None = 1800.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.checkpoint_name = checkpoint_name
        self.start_vm = start_vm
        self.wait_for_heartbeat = wait_for_heartbeat
        self.skip_if_missing = skip_if_missing  # a rollback path with no checkpoint has nothing to undo
        self._init_deferrable(deferrable, poll_interval, wait_timeout)

    def execute(self, context: Context) -> dict[str, Any]:
        with self.hyperv_hook() as hv:
            with self.final_errors():
                vm = hv.resolve_vm(self.vm)
                name = (
                    require_exact_name(self.checkpoint_name, "checkpoint name")
                    if self.checkpoint_name
                    else run_checkpoint_name(context, str(vm.id))
                )
            checkpoint = hv.find_checkpoint(vm.id, name)
            if checkpoint is None:
                message = f"{vm.name} has no checkpoint {name!r} to restore"
                if self.skip_if_missing:
                    raise AirflowSkipException(message)
                raise AirflowFailException(message)
            with self._explain_manual_rollback(str(vm.id), str(checkpoint.id)):
                was_running = vm.state.name == "Running"
                restored = hv.restore_checkpoint(checkpoint.id)
                self.log.info("Restored %s to %r; it is now %s", vm.name, name, restored.state.name)
                start = was_running if self.start_vm is None else self.start_vm
                if start and restored.state.name != "Running":
                    restored = hv.start_vm(vm.id)
        summary = {
            "vm_id": str(vm.id),
            "checkpoint_id": str(checkpoint.id),
            "checkpoint_name": name,
            "state": restored.state.name,
            "started": start,
        }
        if not (start and self.wait_for_heartbeat):
            return summary
        target = WaitTarget(WaitFor.VM_STATE, str(vm.id), target_state="Running", require_heartbeat=True)
        with self._explain_manual_rollback(str(vm.id), str(checkpoint.id)):
            self.wait_for_host_state(target, resume_state=summary)
        return summary

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        state = self.resume_state(event)
        with self._explain_manual_rollback(
            state.get("vm_id", "<vm id>"), state.get("checkpoint_id", "<checkpoint id>")
        ):
            summary = self.resume_state(self.check_event(event))
        return {**summary, "state": "Running", "heartbeat": "ok"}

    @contextlib.contextmanager
    def _explain_manual_rollback(self, vm_id: str, checkpoint_id: str) -> Iterator[None]:
        try:
            yield
        except Exception:
            self.log.error(
                "The rollback did not finish. To roll back by hand, on the host:\n  %s",
                "\n  ".join(manual_rollback_commands(vm_id, checkpoint_id)),
            )
            raise


class HyperVSetCheckpointTypeOperator(HyperVBaseOperator):
    """Set a VM's checkpoint type (Disabled, Production, ProductionOnly, Standard).

    Safe to repeat: a retry whose answer was lost first reads the VM's type. Returns (XCom): vm_id,
    previous, checkpoint_type.

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param checkpoint_type: ``Disabled``, ``Production``, ``ProductionOnly`` or ``Standard``; any other
        value fails the task without retries. (templated)
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "checkpoint_type")

    def __init__(self, *, checkpoint_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint_type = checkpoint_type

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            wanted = CheckpointType.parse(self.checkpoint_type)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        with self.hyperv_hook() as hv, self.final_errors():
            vm = hv.resolve_vm(self.vm)
            updated = hv.set_checkpoint_type(vm.id, wanted)
        return {
            "vm_id": str(vm.id),
            "previous": vm.checkpoint_type.name,
            "checkpoint_type": updated.checkpoint_type.name,
        }


def _merge_not_finished(observed: str) -> str:
    return (
        f"the merge did not finish ({observed}). If the host is no longer merging, the merge failed and "
        "left an orphaned AVHDX that the VM still runs on: see docs/operators.md (When a merge fails); "
        "never delete AVHDX files by hand."
    )


def skip_unless_followed(op: Any, context: Context) -> None:
    """Skip unless ``op.branch_task_id`` chose this task (for this map index).

    Airflow's scheduler skips the paths a branch did not follow, but not inside a mapped task group
    (its NotPreviouslySkippedDep reads the branch's decision with map index -1 there); a checkpoint
    task that ran on the wrong path would make a checkpoint nobody asked for.
    """
    if not op.branch_task_id:
        return
    from airflow.providers.standard.utils.skipmixin import XCOM_SKIPMIXIN_FOLLOWED, XCOM_SKIPMIXIN_KEY

    ti = context["ti"]
    decision = ti.xcom_pull(task_ids=op.branch_task_id, key=XCOM_SKIPMIXIN_KEY, map_indexes=ti.map_index)
    if isinstance(decision, list):
        decision = decision[0] if decision else None
    if isinstance(decision, dict) and op.task_id not in decision.get(XCOM_SKIPMIXIN_FOLLOWED, []):
        raise AirflowSkipException(f"{op.branch_task_id} did not choose {op.task_id}")


__all__ = [
    "HyperVCreateCheckpointOperator",
    "HyperVMergeCheckpointOperator",
    "HyperVRestoreCheckpointOperator",
    "HyperVSetCheckpointTypeOperator",
    "MergePlan",
    "manual_rollback_commands",
]
