"""Export a checkpoint to a backup target (staged, verified, then promoted) and keep exports tidy."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_hyperv.config import export_resume_before_end
from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.lease import is_cluster_wide
from airflow_hyperv.hyperv.names import (
    is_provider_checkpoint,
    join_host_path,
    require_generated_paths,
    require_host_path,
)
from airflow_hyperv.hyperv.progress import DEFAULT_PROGRESS_INTERVAL, OutputProgress, expected_export_bytes
from airflow_hyperv.hyperv.records import ExportManifest
from airflow_hyperv.hyperv.waits import WaitFor, WaitTarget
from airflow_hyperv.operators.base import DeferrableMixin, HyperVBaseOperator, run_checkpoint_name

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_hyperv.hooks.connection import ConnectionSettings
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation, PollResult
    from airflow_hyperv.hooks.hyperv import HyperVHook
    from airflow_hyperv.hyperv.records import DiskChain

EXPORT_ALIAS = "hyperv-exports"
_EXPORT_FOLDER = re.compile(r"^\d{8}T\d{4}Z-[0-9a-f]{12}$")
STAGING_PREFIX = ".staging-"
# The task_state_store key holding the export this task started last (kept across tries and clears).
STATE_KEY = "hyperv-export"
# What Export-VMSnapshot writes under <Path>\<VMName>: nothing else belongs in an export.
EXPORT_SUBFOLDERS = ("virtual machines", "virtual hard disks", "snapshots")
_HOST_FOLDER_KEEP = re.compile(r"[a-z0-9_-]")


def export_asset(host: str, vm_id: str, vm_name: str) -> Asset:
    """The Asset one VM's verified exports update (what downstream DAGs schedule on)."""
    return Asset(name=f"hyperv-export/{host}/{vm_name}", uri=f"hyperv://{host}/vms/{vm_id.lower()}/exports")


def _folder_for(checkpoint_name: str) -> str:
    """``airflow-hyperv 20261125T0100Z 0123456789ab`` -> ``20261125T0100Z-0123456789ab``."""
    _, stamp, digest = checkpoint_name.split(" ")
    return f"{stamp}-{digest}"


def host_folder(computer_name: str) -> str:
    """The host's own name (Get-VMHost ComputerName) as one path component.

    Lower case (Windows names are case-insensitive); any character but ``a-z 0-9 _ -`` becomes
    ``%XX`` of its UTF-8 bytes, so two different names never share a folder.
    """
    name = computer_name.strip().lower()
    if not name:
        raise AirflowFailException("the host did not report its name (Get-VMHost ComputerName is empty)")
    return "".join(
        c if _HOST_FOLDER_KEEP.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in name
    )


def vm_export_folder(root: str, computer_name: str, vm_id: uuid.UUID | str) -> str:
    """``<root>\\<host>\\<vm id>``: where one VM's exports from one host live.

    The host is part of the path because a VM Id is not unique across hosts (a VM imported without
    ``-GenerateNewId``, a Hyper-V Replica): two hosts sharing one export root must never share a folder.
    The VM's Id, not its name: names may hold characters a path cannot, Ids never do.
    """
    return join_host_path(root, host_folder(computer_name), str(vm_id).lower())


def export_base(hv: HyperVHook, root: str, vm_id: uuid.UUID | str, computer_name: str | None = None) -> str:
    """``vm_export_folder`` for the host ``hv`` is connected to (asks the host its name unless
    ``computer_name`` is given, already read). A cluster connection uses the cluster's name: a VM's
    exports stay in one folder whichever node it ran on."""
    cluster = hv.connection_settings.cluster
    return vm_export_folder(root, cluster or computer_name or hv.host_info().host.name, vm_id)


def require_cluster_wide_root(hv: HyperVHook, root: str) -> None:
    """A clustered VM is exported by whichever node runs it, and later steps may run on another node:
    the export root must be the same folder for every node (a Cluster Shared Volume or an SMB share).
    Refused before anything changes."""
    settings = hv.connection_settings
    if settings.cluster and not is_cluster_wide(root):
        raise AirflowFailException(
            f"export root {root} is a folder of one node, but {settings.cluster} is a cluster: the VM may run "
            "on another node by the next step. Export to a Cluster Shared Volume (C:\\ClusterStorage\\VolumeN\\...) "
            "or an SMB share every node can write to; nothing was changed"
        )


@dataclass
class ExportPlan:
    """What one export attempt writes where; travels in the trigger's resume_state and the task state store."""

    vm_id: str
    vm_name: str
    host: str  # the connection's label (what reports and the export Asset name)
    checkpoint_id: str
    checkpoint_name: str
    final: str
    staging: str
    operation: dict[str, Any] | None = None  # the DisconnectedOperation running the export
    left_behind: list[str] = field(default_factory=list)  # staging folders an earlier export may still use
    # What the checkpoint's disks hold (Get-VHD): what a progress line counts the export's bytes against.
    expected_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportPlan:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["left_behind"] = list(known.get("left_behind") or [])
        return cls(**known)


@dataclass(frozen=True)
class _UnknownPoll:
    """How an earlier try's export reads when the host cannot be asked about it."""

    state: str = "unknown"
    result: None = None


PollResultUnknown: Any = _UnknownPoll()


class HyperVExportCheckpointOperator(DeferrableMixin, HyperVBaseOperator):
    """Export this run's checkpoint to ``export_root\\<host>\\<vm id>\\<stamp>-<hash>``.

    The export is written into a staging folder of its own (``.staging-<stamp>-<hash>-<token>``), by
    a pipeline started on the host in a disconnected session and waited for by the triggerer
    (``deferrable``) or in the worker. It is then verified (the configuration and every disk of the
    *checkpoint* present, each at least as large as its base disk, nothing else in the folder,
    SHA-256 of every file) and only then promoted (renamed) to its final folder, which must not exist.

    Safety across tries: the running export is kept in the task state store, so a retry reattaches
    to it (or uses its finished result) instead of starting a second export; ``on_kill``, the
    trigger's ``on_kill`` and a timed-out wait cancel it on the host. A staging folder is removed
    only when its export's pipeline reported its end; one whose export was cancelled or lost is
    left (Hyper-V may still write into it) and named in the log, and the next try writes elsewhere.
    Publishes the VM's export Asset (through the ``hyperv-exports`` alias) with the manifest.

    Returns (XCom): the manifest: vm_id, vm_name, checkpoint_id, checkpoint_name, consistency, path,
    files (path, length, sha256), total_bytes, host. ``outlets`` defaults to the ``hyperv-exports``
    Asset alias.

    While it waits (in the worker or deferred) it logs how far the export has got, at once and then at
    most every ``progress_interval`` seconds: ``Export of sql-01: 12.4 of 40.0 GiB (31 %), 3m20s
    elapsed`` (the bytes in the staging folder against what the checkpoint's disks hold). None: no
    progress lines, only the plain waiting line of each poll (in the worker).

    .. seealso::
        docs/operators.md (HyperVExportCheckpointOperator: where exports go, cancellation, path lengths).

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param export_root: Where exports go: an absolute Windows path on the host (``D:\\Backups``) or a
        UNC path (``\\\\backup01\\exports``); each export lands in
        ``<export_root>\\<host>\\<vm id>\\<stamp>-<hash>``. (templated)
    :param checkpoint_name: Export the checkpoint of exactly this name instead of this run's own; it
        must be one this provider made. Default None: this run's checkpoint. (templated)
    :param deferrable: Wait for the export in the triggerer instead of the worker (the export runs on
        the host in a disconnected session either way). Default None: Airflow's
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between two polls of the export (in the worker, each poll waits on
        the host for up to ``min(poll_interval, 30)`` seconds). Default 15; must be above 0.
    :param wait_timeout: Seconds the export may run before it is cancelled on the host and the task
        fails (its staging folder is left in place); None: no limit. Default 43200 (12 hours).
    :param progress_interval: Seconds between two progress lines while the export runs (the first comes
        with the first poll); 0: every poll; None: no progress lines. Default 60.
    :param resume_before_end: Deferrable: the trigger hands the wait back to the task this many seconds
        before the end the export's progress predicts, so the task's resume (a new process) overlaps the
        export's last seconds and the merge can follow sooner; the task then waits out the end in the
        worker, for at most ``3 x resume_before_end + poll_interval`` seconds before deferring again
        (without a lead). 0: resume only at the end. Needs progress reads (``progress_interval`` not
        None). Default None: ``[hyperv] export_resume_before_end`` (10).
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "export_root", "checkpoint_name")

    def __init__(
        self,
        *,
        export_root: str,
        checkpoint_name: str | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 15.0,
        wait_timeout: float | None = 12 * 3600.0,
        progress_interval: float | None = DEFAULT_PROGRESS_INTERVAL,
        resume_before_end: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(name=EXPORT_ALIAS)])
        super().__init__(**kwargs)
        if progress_interval is not None and progress_interval < 0:
            raise ValueError(
                f"progress_interval must be 0 or more (or None for none), not {progress_interval}"
            )
        if resume_before_end is None:
            resume_before_end = export_resume_before_end()
        if resume_before_end < 0:
            raise ValueError(f"resume_before_end must be 0 or more, not {resume_before_end}")
        self.resume_before_end = float(resume_before_end)
        self.export_root = export_root
        self.checkpoint_name = checkpoint_name
        self.progress_interval = progress_interval
        self._init_deferrable(deferrable, poll_interval, wait_timeout)
        # The export this worker process waits for (the non-deferrable path): what on_kill cancels.
        self._running: tuple[ConnectionSettings, DisconnectedOperation] | None = None
        self._killed = False

    # -- start or reattach ------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation, poll_disconnected

        with self.final_errors():
            root = require_host_path(self.export_root, "export root")
        with self.hyperv_hook() as hv:
            with self.final_errors():
                # A name: resolved, and the host's name read, in the same round trip.
                overview = hv.resolve_overview(self.vm, with_host=True)
            vm = overview.vm
            require_cluster_wide_root(hv, root)
            name = self.checkpoint_name or run_checkpoint_name(context, str(vm.id))
            checkpoint = _named(overview.checkpoints, name, vm.name)
            if checkpoint is None:
                raise AirflowFailException(f"{vm.name} has no checkpoint {name!r} to export")
            if not is_provider_checkpoint(name):
                raise AirflowFailException(f"{name!r} was not made by this provider; export it by hand")
            base = export_base(hv, root, vm.id, overview.host.name if overview.host else None)
            final = join_host_path(base, _folder_for(name))
            plan = ExportPlan(
                vm_id=str(vm.id),
                vm_name=vm.name,
                host=hv.settings.host_label,
                checkpoint_id=str(checkpoint.id),
                checkpoint_name=name,
                final=final,
                staging=join_host_path(base, f"{STAGING_PREFIX}{_folder_for(name)}-{uuid.uuid4().hex[:8]}"),
            )
            # The checkpoint's own drives and whether an earlier try promoted already: one round trip.
            chains, promoted = hv.checkpoint_chains_and_path(checkpoint.id, vm.id, final)
            with self.final_errors():
                require_generated_paths(_generated_paths(plan, chains))
            # What the export writes for the disks: what its progress lines count against.
            plan.expected_bytes = expected_export_bytes(chains)
            earlier = self._load(context, final)
            if promoted:
                self.log.info("An earlier try already promoted %s; verifying it again", final)
                return self._publish(context, self._verify(hv, plan, final)[0])
            if earlier is not None and earlier.operation:
                plan.left_behind = list(earlier.left_behind)
                op = DisconnectedOperation.from_dict(earlier.operation)
                try:
                    poll = poll_disconnected(hv.settings, op, wait_seconds=0.1)
                except Exception as exc:  # e.g. the shell is still held by the try that died
                    self.log.warning("Could not read the export an earlier try started: %s", exc)
                    poll = PollResultUnknown
                # An export of another checkpoint of the same name (one re-made after a clear) is
                # never reattached to nor promoted: it is treated like any other earlier export.
                same = earlier.checkpoint_id.lower() == plan.checkpoint_id.lower()
                if poll.state == "running" and same:
                    earlier.expected_bytes = earlier.expected_bytes or plan.expected_bytes
                    self.log.info(
                        "The export an earlier try started into %s still runs; waiting for it instead of "
                        "starting another",
                        earlier.staging,
                    )
                    return self._wait(context, hv, earlier)
                if poll.state == "completed" and same and not (poll.result and poll.result.errors):
                    self.log.info(
                        "The export an earlier try started into %s finished meanwhile", earlier.staging
                    )
                    return self._promote(context, hv, earlier)
                self._after_earlier(hv, plan, earlier, poll)
            elif earlier is not None:
                plan.left_behind = list(earlier.left_behind)
            hv.make_directory(plan.staging)
            plan.operation = self._start(context, hv, plan)
            self._save(context, plan)
            return self._wait(context, hv, plan)

    def _start(self, context: Context, hv: HyperVHook, plan: ExportPlan) -> dict[str, Any]:
        from airflow_hyperv.hooks.disconnected import StartUncertainError, start_disconnected
        from airflow_hyperv.hyperv import pipelines

        pipeline = pipelines.export_checkpoint(uuid.UUID(plan.checkpoint_id), plan.staging)
        try:
            operation = start_disconnected(hv.settings, pipeline)
        except StartUncertainError as exc:
            # It may run: record it so the retry polls it (reattaches, uses its result, or learns it
            # never started) instead of exporting again into a folder it may write to.
            plan.operation = exc.operation.to_dict()
            self._save(context, plan)
            raise AirflowException(
                f"the export of {plan.vm_name} into {plan.staging} may or may not have started "
                f"({exc.cause}); the next try checks it on the host"
            ) from exc.cause
        except Exception:
            self._discard(hv, plan.staging)  # no Command reached the host: nothing writes there
            raise
        self.log.info(
            "Export of %s to %s started on the host (shell %s)",
            plan.vm_name,
            plan.staging,
            operation.shell_id,
        )
        return operation.to_dict()

    def _after_earlier(self, hv: HyperVHook, plan: ExportPlan, earlier: ExportPlan, poll: PollResult) -> None:
        """An earlier try's export is over or lost: remove its staging only if its pipeline ended."""
        if poll.state in ("completed", "failed"):
            self.log.info(
                "The export an earlier try started into %s ended (%s); removing it",
                earlier.staging,
                poll.state,
            )
            self._discard(hv, earlier.staging)
        elif poll.state == "gone" and self._never_written(hv, earlier.staging):
            # Its session is gone and nothing was ever written: no export ran there, none can start.
            self.log.info(
                "The export an earlier try started into %s never ran; removing the empty folder",
                earlier.staging,
            )
            self._discard(hv, earlier.staging)
        else:
            self.log.warning(
                "The export an earlier try started into %s is %s: Hyper-V may still write into it, so it "
                "is left in place; this try exports into %s",
                earlier.staging,
                {
                    "gone": "lost (the host no longer has its session)",
                    "running": "still running (another checkpoint)",
                }.get(poll.state, "unknown (the host could not be asked)"),
                plan.staging,
            )
            plan.left_behind.append(earlier.staging)

    # -- wait ---------------------------------------------------------------------------------------
    def _wait(
        self,
        context: Context,
        hv: HyperVHook,
        plan: ExportPlan,
        *,
        in_worker_for: float | None = None,
        lead: float | None = None,
    ) -> dict[str, Any]:
        """Wait for the export to end: deferred (when ``deferrable``) or here. ``in_worker_for``: wait
        here for at most that long (the trigger handed the end back early), then defer again with
        ``lead`` (the trigger's ``resume_before_end``; None: this operator's)."""
        from airflow_hyperv.config import wait_error_budget
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation, poll_disconnected
        from airflow_hyperv.hooks.waiter import OperationPoll, OperationWait, read_progress, wait

        op = DisconnectedOperation.from_dict(plan.operation)
        watch = (
            OutputProgress(plan.staging, plan.expected_bytes, plan.vm_name)
            if self.progress_interval is not None
            else None
        )
        if self.deferrable and in_worker_for is None:
            from airflow_hyperv.triggers.hyperv import HyperVOperationTrigger

            self.log.info("Export of %s to %s runs on the host; deferring", plan.vm_name, plan.staging)
            give_up_after = None
            if lead is not None and self.wait_timeout and op.started_at:
                # Deferred again after an early hand-back: wait_timeout still counts from the start.
                give_up_after = max(self.wait_timeout - (time.time() - op.started_at), self.poll_interval)
            self.defer_to(
                HyperVOperationTrigger(
                    hyperv_conn_id=self.hyperv_conn_id,
                    target=WaitTarget(
                        WaitFor.OPERATION_DONE, plan.vm_id, operation=op.to_dict(), progress=watch
                    ),
                    poll_interval=self.poll_interval,
                    resume_state=plan.to_dict(),
                    progress_interval=self.progress_interval or 0.0,
                    resume_before_end=self.resume_before_end if lead is None else lead,
                    give_up_after=give_up_after,
                )
            )
            raise AssertionError("defer returned")  # pragma: no cover
        polls: list[PollResult] = []
        step = OperationWait(
            op,
            subject=f"polling the export of {plan.vm_name}",
            progress=("Waiting for the export of %s to %s", plan.vm_name, plan.staging),
            stopped=lambda: self._killed,
            watch=watch,
            progress_interval=self.progress_interval or 0.0,
        )

        def poll() -> OperationPoll | None:
            try:
                polls.append(poll_disconnected(hv.settings, op, wait_seconds=min(self.poll_interval, 30.0)))
            except Exception:
                if self._killed:  # on_kill deleted the shell under this poll
                    return None
                raise
            # A round that logs a progress line reads how far it has got, on the pool this task holds.
            return read_progress(hv, polls[-1], watch if step.progress_due() else None)

        self._running = (hv.settings, op)
        try:
            outcome = wait(
                step,
                poll,
                interval=0.0,  # each poll waits on the host (wait_seconds) for the export to end
                error_interval=self.poll_interval,
                error_budget=wait_error_budget(),  # the export may still run: a retry reattaches to it
                give_up_after=self.wait_timeout if in_worker_for is None else in_worker_for,
                log=self.log,
            )
            if outcome.timed_out and in_worker_for is not None and not self._killed:
                # Handed back early, but the export runs on past what its progress said: the rest
                # of the wait goes back to the triggerer, which hands it back only at the end now.
                self.log.info(
                    "The export of %s still runs %.0fs after the trigger expected its end; deferring again",
                    plan.vm_name,
                    in_worker_for,
                )
                self._running = None
                return self._wait(context, hv, plan, lead=0.0)
            if outcome.timed_out:
                self._cancel(hv.settings, op)
                raise AirflowException(
                    self._left(
                        plan, f"export of {plan.vm_name} not done after {self.wait_timeout:g}s; cancelled"
                    )
                )
        finally:
            self._running = None
        if self._killed:
            raise AirflowException(
                self._left(plan, f"export of {plan.vm_name} cancelled: the task was killed")
            )
        if outcome.rejected_login:
            raise AirflowFailException(outcome.message) from outcome.cause
        if outcome.cause is not None:
            raise AirflowException(outcome.message) from outcome.cause
        last = polls[-1]
        return self._finish(
            context,
            hv,
            plan,
            last.state,
            last.result.errors[0].message if last.result and last.result.errors else "",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        saved = self.resume_state(event)
        if not saved:
            raise AirflowException(f"the export wait ended without its plan: {event}")
        plan = ExportPlan.from_dict(saved)
        with self.hyperv_hook() as hv:
            hv.follow(uuid.UUID(plan.vm_id))  # a cluster: the VM's node now (it may have moved meanwhile)
            if event.get("status") == "success" and event.get("nearly_done"):
                # The trigger handed the wait back just before the predicted end: wait it out here.
                self.log.info("%s; waiting for its end in the worker", event.get("message"))
                return self._wait(
                    context, hv, plan, in_worker_for=3 * self.resume_before_end + self.poll_interval
                )
            if event.get("status") == "success":
                return self._finish(context, hv, plan, "completed", "")
            if event.get("timed_out"):
                self._cancel(hv.settings, self._operation(plan))
                raise AirflowException(
                    self._left(plan, f"export of {plan.vm_name} cancelled: {event.get('message')}")
                )
            state = event.get("state") or ""
            if state in ("completed", "failed"):
                return self._finish(context, hv, plan, "failed", str(event.get("message") or ""))
            # The trigger could not tell how the export ended (the session is gone, or polling
            # failed): it may still run. Leave everything; a retry reattaches or writes elsewhere.
            raise AirflowException(self._left(plan, f"export of {plan.vm_name}: {event.get('message')}"))

    def _finish(
        self, context: Context, hv: HyperVHook, plan: ExportPlan, state: str, message: str
    ) -> dict[str, Any]:
        """The export's pipeline ended (completed or failed) or was lost ("gone")."""
        if state == "completed" and not message:
            return self._promote(context, hv, plan)
        if state in ("completed", "failed"):
            self._discard(hv, plan.staging)  # its pipeline ended: nothing writes there any more
            raise AirflowException(f"export of {plan.vm_name} failed: {message or state}")
        raise AirflowException(self._left(plan, f"export of {plan.vm_name}: the host lost its session"))

    # -- cancellation -------------------------------------------------------------------------------
    def on_kill(self) -> None:
        """The task is killed or timed out while this worker waits: stop the export on the host."""
        running, self._running = self._running, None
        if running is not None:
            self._killed = True
            self._cancel(*running)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        # Airflow's own deferral timeout resumes the task only to fail it ("__fail__", "Trigger
        # timeout"), without the trigger's event: cancel the export recorded in the task state store
        # first. A trigger that crashed ("Trigger failure") leaves the export to a retry to reattach.
        if next_method == "__fail__" and (next_kwargs or {}).get("error") == "Trigger timeout":
            plan = self._load(context, None)
            if plan is not None and plan.operation:
                from airflow_hyperv.hooks.hyperv import HyperVHook

                with HyperVHook(self.hyperv_conn_id) as hv:
                    self._cancel(hv.settings, self._operation(plan))
                self.log.error(self._left(plan, "the deferral timed out; the export was cancelled"))
        return super().resume_execution(next_method, next_kwargs, context)

    def _cancel(self, settings: ConnectionSettings, op: DisconnectedOperation | None) -> None:
        from airflow_hyperv.hooks.disconnected import cancel_disconnected

        if op is None:
            return
        try:
            deleted = cancel_disconnected(settings, op)
        except Exception as exc:  # the task is failing anyway; say what could not be done
            self.log.error("Could not cancel %s (shell %s): %s", op.label, op.shell_id, exc)
            return
        self.log.warning(
            "Cancelled %s on the host (shell %s %s)",
            op.label,
            op.shell_id,
            "deleted" if deleted else "already gone",
        )

    @staticmethod
    def _operation(plan: ExportPlan) -> DisconnectedOperation | None:
        from airflow_hyperv.hooks.disconnected import DisconnectedOperation

        return DisconnectedOperation.from_dict(plan.operation) if plan.operation else None

    @staticmethod
    def _left(plan: ExportPlan, reason: str) -> str:
        folders = [*plan.left_behind, plan.staging]
        return (
            f"{reason}; left in place, because Hyper-V may still write into them (remove them once the VM "
            f"shows no export in progress): {', '.join(folders)}. The next try exports into a new folder."
        )

    # -- task state store ---------------------------------------------------------------------------
    def _load(self, context: Context, final: str | None) -> ExportPlan | None:
        store = context.get("task_state_store")
        if store is None:
            return None
        data = store.get(STATE_KEY)
        if not isinstance(data, dict):
            return None
        plan = ExportPlan.from_dict(data)
        return plan if final is None or plan.final.lower() == final.lower() else None

    def _save(self, context: Context, plan: ExportPlan) -> None:
        store = context.get("task_state_store")
        if store is None:
            self.log.warning(
                "No task state store: a retry cannot reattach to this export (it writes elsewhere)"
            )
            return
        store.set(STATE_KEY, plan.to_dict())

    # -- verify and promote -------------------------------------------------------------------------
    def _promote(self, context: Context, hv: HyperVHook, plan: ExportPlan) -> dict[str, Any]:
        # Move-Item onto an existing folder moves the source INTO it (Move-Item docs, example 2):
        # never promote onto one. The final folder is tested after the hashes, in their round trip.
        try:
            manifest, final_exists = self._verify(hv, plan, plan.staging, then_test=plan.final)
        except Exception:
            self._discard(hv, plan.staging)  # only called once its export ended
            raise
        if final_exists if final_exists is not None else hv.path_exists(plan.final):
            raise AirflowException(
                f"{plan.final} appeared while {plan.vm_name} was exported; not promoting into it "
                f"(verified export left at {plan.staging})"
            )
        # A rename on one volume moves no data: checking that every verified file arrived with its
        # size (and nothing else is there) is enough; hashing again would read the export twice.
        # The listing rides in the move's round trip.
        listed = hv.move_and_list(plan.staging, plan.final)
        moved = {f.path[len(plan.final) :].lstrip("\\").lower(): f.length for f in listed}
        expected = {f["path"]: f["length"] for f in manifest["files"]}
        if moved != expected:
            raise AirflowException(f"export of {plan.vm_name} changed while it was promoted to {plan.final}")
        self.log.info("Export verified and promoted to %s", plan.final)
        if plan.left_behind:
            self.log.warning(
                "Staging folders of earlier tries were left in place (Hyper-V may still have written into "
                "them): %s",
                ", ".join(plan.left_behind),
            )
        return self._publish(context, {**manifest, "path": plan.final})

    def _never_written(self, hv: HyperVHook, staging: str) -> bool:
        try:
            return not hv.path_exists(staging) or hv.is_empty_folder(staging)
        except Exception as exc:
            self.log.warning("Could not list %s: %s", staging, exc)
            return False

    def _discard(self, hv: HyperVHook, staging: str) -> None:
        try:
            if hv.path_exists(staging):
                hv.remove_item(staging)
        except Exception as exc:
            self.log.warning("Could not remove the partial export %s: %s", staging, exc)

    def _verify(
        self, hv: HyperVHook, plan: ExportPlan, folder: str, *, then_test: str | None = None
    ) -> tuple[dict[str, Any], bool | None]:
        """Never trust a folder's existence: every expected file, nothing else, sizes, checksums. The
        reads (checkpoint, listing, disk chains, hashes) take two round trips (``export_contents``).
        Returns the manifest and whether ``then_test`` exists (None: not tested)."""
        contents = hv.export_contents(uuid.UUID(plan.checkpoint_id), folder, then_test=then_test)
        checkpoint = contents.checkpoint
        if checkpoint is None:
            raise AirflowException(
                f"checkpoint {plan.checkpoint_name} of {plan.vm_name} is gone: cannot verify {folder}"
            )
        files = contents.files
        by_rel = {f.path[len(folder) :].lstrip("\\").lower(): f for f in files}
        vm_dir = plan.vm_name.lower()
        problems = []
        unexpected = sorted(
            rel
            for rel in by_rel
            if rel.split("\\")[0] != vm_dir
            or rel.split("\\")[1:2] == []
            or rel.split("\\")[1] not in EXPORT_SUBFOLDERS
        )
        if unexpected:
            problems.append(f"unexpected content {', '.join(unexpected)}")
        config = f"{vm_dir}\\virtual machines\\{plan.vm_id.upper()}.vmcx".lower()
        if config not in by_rel:
            problems.append(f"configuration file {config} is missing")
        # The checkpoint's own drives: a disk added to the VM after the checkpoint is not exported.
        for chain in contents.chains:
            base = chain.disks[-1] if chain.disks else None
            if base is None:
                continue
            disk_name = base.path.rsplit("\\", 1)[-1]
            exported = by_rel.get(f"{vm_dir}\\virtual hard disks\\{disk_name}".lower())
            if exported is None:
                problems.append(f"disk {disk_name} is missing")
            elif exported.length < base.file_size:
                problems.append(
                    f"disk {disk_name} is {exported.length} bytes, smaller than its base {base.file_size}"
                )
        if checkpoint.has_memory_state and not any(k.endswith(".vmrs") for k in by_rel):
            problems.append("the checkpoint's saved memory state (.VMRS) is missing")
        if any(f.length == 0 for f in files):
            problems.append("empty files: " + ", ".join(f.path for f in files if f.length == 0))
        if problems:
            raise AirflowException(
                f"export of {plan.vm_name} at {folder} is incomplete: {'; '.join(problems)}"
            )
        hashes = {h.path.lower(): h.hash for h in contents.hashes}
        consistency = Consistency.CRASH if checkpoint.has_memory_state else Consistency.APPLICATION
        manifest = ExportManifest(
            vm_id=plan.vm_id,
            vm_name=plan.vm_name,
            checkpoint_id=plan.checkpoint_id,
            checkpoint_name=plan.checkpoint_name,
            consistency=consistency.value,
            path=folder,
            files=[
                {"path": rel, "length": f.length, "sha256": hashes.get(f.path.lower(), "")}
                for rel, f in sorted(by_rel.items())
            ],
        )
        if any(not f["sha256"] for f in manifest.files):
            raise AirflowException(f"export of {plan.vm_name}: some files could not be hashed")
        data = manifest.to_dict()
        data["total_bytes"] = manifest.total_bytes
        data["host"] = plan.host
        return data, contents.then_exists

    def _publish(self, context: Context, manifest: dict[str, Any]) -> dict[str, Any]:
        asset = export_asset(manifest["host"], manifest["vm_id"], manifest["vm_name"])
        events = context.get("outlet_events")
        if events is not None:
            events[AssetAlias(name=EXPORT_ALIAS)].add(asset, extra=manifest)
        return manifest


def _named(checkpoints: list[Any], name: str, vm_name: str) -> Any:
    """The checkpoint of exactly this name (compared here: ``-Name`` would take wildcards), or None.

    :param checkpoints: The VM's checkpoints.
    :param name: The checkpoint's exact name.
    :param vm_name: The VM's name, for the error.
    :return: The checkpoint, or None.
    """
    from airflow_hyperv.hyperv.errors import HyperVError

    matches = [c for c in checkpoints if c.name == name]
    if len(matches) > 1:
        raise HyperVError(f"VM {vm_name} has {len(matches)} checkpoints named {name!r}")
    return matches[0] if matches else None


def _generated_paths(plan: ExportPlan, chains: list[DiskChain]) -> dict[str, str]:
    """Every folder and file the export creates, under staging and (after promotion) final."""
    disk_names = [c.disks[-1].path.rsplit("\\", 1)[-1] for c in chains if c.disks]
    paths: dict[str, str] = {}
    for top in (plan.staging, plan.final):
        vm_dir = join_host_path(top, plan.vm_name)
        for sub in ("Virtual Machines", "Virtual Hard Disks", "Snapshots"):
            paths[join_host_path(vm_dir, sub)] = "folder"
        for ext in (".vmcx", ".vmgs", ".VMRS"):
            paths[join_host_path(vm_dir, "Virtual Machines", plan.vm_id.upper() + ext)] = "file"
        for disk in disk_names:
            paths[join_host_path(vm_dir, "Virtual Hard Disks", disk)] = "file"
    return paths


class HyperVRetentionOperator(HyperVBaseOperator):
    """Keep the newest ``keep_last`` verified exports of a VM (and none older than ``max_age_days``,
    except the newest).

    Deletes nothing unless ``verified_export`` (this run's export XCom) says a newer export was
    verified: a failed export never costs an older good one. It never merges a checkpoint: another
    run's checkpoint may be in use (docs/operations.md, Overlapping runs); merge a leftover one by
    name with ``HyperVMergeCheckpointOperator(checkpoint_name=...)``.

    Only folders of this provider's layout under ``<export_root>\\<host>\\<vm id>`` are considered;
    the verified export and anything newer are never deleted. Returns (XCom): vm_id, vm_name,
    removed_exports, merged_checkpoints (always empty).

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param export_root: The export root the export task wrote to. (templated)
    :param verified_export: This run's export XCom (``export.output``: the manifest, or its JSON).
        None or empty (the export failed or did not run): nothing is deleted. Default None. (templated)
    :param keep_last: How many of the newest exports to keep. Default 3; must be at least 1.
    :param max_age_days: Also delete exports this many days old or older (except the verified one and
        newer); None (default): no age limit. Must be above 0.
    :param merge_leftover_checkpoints: No longer supported: True raises ValueError when the DAG is
        parsed (retention cannot tell a leftover checkpoint from one another run still uses).
        Default False.
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "export_root", "verified_export")
    template_fields_renderers = {"verified_export": "json"}  # this run's export XCom (a manifest)

    def __init__(
        self,
        *,
        export_root: str,
        verified_export: Any = None,
        keep_last: int = 3,
        max_age_days: float | None = None,
        merge_leftover_checkpoints: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, not {keep_last}")
        if merge_leftover_checkpoints:
            raise ValueError(
                "merge_leftover_checkpoints is no longer supported: retention cannot tell a leftover "
                "checkpoint from one another run is still using. Merge a leftover by name with "
                "HyperVMergeCheckpointOperator(checkpoint_name=...)"
            )
        if max_age_days is not None and max_age_days <= 0:
            raise ValueError(
                f"max_age_days must be above 0, not {max_age_days} (0 or less would delete every older export)"
            )
        self.export_root = export_root
        self.verified_export = verified_export
        self.keep_last = keep_last
        self.max_age_days = max_age_days
        self.merge_leftover_checkpoints = merge_leftover_checkpoints

    def execute(self, context: Context) -> dict[str, Any]:
        import datetime as dt

        with self.final_errors():
            root = require_host_path(self.export_root, "export root")
        newest = self.verified_export
        if isinstance(newest, str):  # rendered from a template as JSON
            newest = json.loads(newest) if newest.strip() not in ("", "null", "None") else None
        newest = newest if isinstance(newest, dict) else None
        removed_exports: list[str] = []
        merged: list[str] = []  # always empty: retention merges nothing (kept for XCom readers)
        with self.hyperv_hook() as hv:
            with self.final_errors():
                vm = hv.resolve_vm(self.vm)
            if not newest or not newest.get("path"):
                self.log.warning("No verified export in this run: keeping every export of %s", vm.name)
                return {
                    "vm_id": str(vm.id),
                    "vm_name": vm.name,
                    "removed_exports": [],
                    "merged_checkpoints": merged,
                }
            base = export_base(hv, root, vm.id)
            folders = sorted(
                {
                    f.path[len(base) :].lstrip("\\").split("\\", 1)[0]
                    for f in (hv.list_files(base) if hv.path_exists(base) else [])
                },
                reverse=True,
            )
            exports = [f for f in folders if _EXPORT_FOLDER.match(f)]
            newest_folder = newest["path"].rstrip("\\").rsplit("\\", 1)[-1]
            if newest_folder not in exports:
                raise AirflowException(
                    f"the verified export {newest['path']} is not under {base}; deleting nothing"
                )
            now = dt.datetime.now(dt.timezone.utc)
            for index, folder in enumerate(exports):
                if folder >= newest_folder:
                    continue  # never delete the verified export or anything newer
                when = dt.datetime.strptime(folder.split("-", 1)[0], "%Y%m%dT%H%MZ").replace(
                    tzinfo=dt.timezone.utc
                )
                too_old = self.max_age_days is not None and (now - when).days >= self.max_age_days
                if index >= self.keep_last or too_old:
                    hv.remove_item(join_host_path(base, folder))
                    removed_exports.append(folder)
        self.log.info(
            "Removed %d export(s) of %s",
            len(removed_exports),
            vm.name,
        )
        return {
            "vm_id": str(vm.id),
            "vm_name": vm.name,
            "removed_exports": removed_exports,
            "merged_checkpoints": merged,
        }
