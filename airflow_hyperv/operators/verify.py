"""Quiesce-verify and the branch that acts on it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_hyperv.hyperv.verify import Policy, SpaceReading, VerifyReport, decide, verify
from airflow_hyperv.operators.base import DEFAULT_CONN_ID, HyperVBaseOperator, run_checkpoint_name

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_hyperv.hooks.hyperv import DiskReadings
    from airflow_hyperv.hyperv.records import VolumeSpace


class HyperVVerifyOperator(HyperVBaseOperator):
    """Check, before anything changes, whether a VM can get an application-consistent checkpoint.

    Reads the VM, its integration services, checkpoints, disk chain and free space (read-only), and
    returns a ``VerifyReport`` dict (XCom) whose ``verdict`` is ``production``, ``standard_only`` or
    ``blocked`` with findings a human can act on.

    Read-only: it changes nothing on the host, and another run's lease on the VM is reported, never
    acted on. Feed its XCom to ``HyperVCheckpointBranchOperator``.

    .. seealso::
        docs/operators.md (HyperVVerifyOperator: what it looks at).

    :param vm: The VM's exact name, or its Id (a GUID); wildcard characters are refused before the host
        is contacted. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    :param export_path: The export root (an absolute Windows path or a UNC path): the free space of
        the volume that holds it is checked too. Default None: not checked. (templated)
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "export_path")

    def __init__(self, *, export_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export_path = export_path

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_hyperv.hyperv.names import require_host_path

        with self.final_errors():
            export_path = require_host_path(self.export_path, "export path") if self.export_path else None
        with self.hyperv_hook() as hv:
            with self.final_errors():
                # a name: resolved in the same round trip, the export root's volume read with it
                overview = hv.resolve_overview(self.vm, volume_of=export_path)
            vm = overview.vm
            own_name = run_checkpoint_name(context, str(vm.id))
            readings = hv.disks_and_lease(vm.id, overview.drives)  # chains, volumes, lease: one trip
            chains = readings.chains
            disk_space = _disk_space(readings.volumes, [c.current_path for c in chains if c.current_path])
            export_space = _reading(export_path, overview.volume) if export_path else None
            report = verify(
                overview.vm,
                overview.services,
                overview.checkpoints,
                chains,
                host=hv.settings.host_label
                if hv.routes
                else hv.settings.host
                if not hv.settings.wsman_path.endswith("/wsman")
                else hv.settings.wsman_path[:-6],
                disk_space=disk_space,
                export_space=export_space,
                own_checkpoint_name=own_name,
                lease_holder=_other_holder(readings, own_name),
            )
        self.log.info("%s: verdict %s", report.vm_name, report.verdict.value)
        for finding in report.findings:
            self.log.info("  [%s] %s", finding.severity, finding.message)
        data = report.to_dict()
        data["checked_at"] = _now()
        return data


def _other_holder(readings: DiskReadings, own_name: str) -> str | None:
    """Who else holds the VM's protection lease (reported, never acted on here)."""
    if readings.lease_error is not None:  # an unreadable lease is the create task's problem
        return f"an unreadable lease ({readings.lease_error})"
    held = readings.lease
    return held.describe() if held is not None and held.checkpoint_name != own_name else None


def _reading(path: str, volume: VolumeSpace | None) -> SpaceReading:
    """The volume that holds ``path`` (a CSV, a mount point, a drive), or unknown: never C:'s number."""
    if volume is None:
        return SpaceReading(path, None)
    return SpaceReading(
        path, volume.free, volume.drive_letter + ":\\" if volume.drive_letter else volume.path
    )


def _disk_space(volumes: dict[str, VolumeSpace | None], paths: list[str]) -> list[SpaceReading]:
    """One reading per volume the VM's current disks are on (a VM may span volumes)."""
    readings: dict[str, SpaceReading] = {}
    for path in paths:
        reading = _reading(path, volumes.get(path))
        readings.setdefault(reading.volume or path.lower(), reading)
    return list(readings.values())


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat()


class HyperVCheckpointBranchOperator(BaseBranchOperator):
    """Pick the production path, the standard-fallback path, or skip, from a report and a policy.

    ``require`` fails the task (and names the reasons) when production is impossible; ``fallback``
    takes the standard path, recorded downstream as crash-consistent; ``skip`` skips the VM.

    A ``blocked`` verdict fails the task unless the policy is ``skip``; such failures are not retried.
    Inside a task group the task ids are qualified with the group's prefix when they lack it.

    .. seealso::
        docs/consistency.md (the require / fallback / skip policies).

    :param report: The verify task's XCom (``verify.output``, a dict). (templated)
    :param vm: Only to name the VM in failure reports. Default None. (templated)
    :param policy: ``require`` (default), ``fallback`` or ``skip``. (templated)
    :param production_task_id: The task to follow when a production checkpoint is possible.
    :param standard_task_id: The task to follow for the standard (crash-consistent) fallback.
    :param skip_task_id: A task to follow when the VM is skipped. Default None: follow nothing.
    """

    template_fields: Sequence[str] = ("report", "policy", "vm")
    template_fields_renderers = {"report": "json"}  # the verify task's XCom, shown as JSON in the UI

    def __init__(
        self,
        *,
        report: Any,
        vm: Any = None,
        policy: str = "require",
        production_task_id: str,
        standard_task_id: str,
        skip_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.report = report
        self.vm = vm  # only to name the VM in failure reports
        self.policy = policy
        self.production_task_id = production_task_id
        self.standard_task_id = standard_task_id
        self.skip_task_id = skip_task_id

    def choose_branch(self, context: Context) -> str | Iterable[str]:
        policy = Policy.parse(self.policy)
        if not isinstance(self.report, dict):
            raise AirflowFailException(
                f"report must be the verify task's XCom (a dict), not {type(self.report).__name__}"
            )
        report = VerifyReport.from_dict(self.report)
        decision = decide(report, policy)
        if decision.fail_reason:
            raise AirflowFailException(decision.fail_reason)
        prefix = f"{self.task_group.group_id}." if self.task_group and self.task_group.group_id else ""
        if decision.path == "production":
            return self._qualified(prefix, self.production_task_id)
        if decision.path == "standard":
            self.log.warning(
                "%s: taking the standard (crash-consistent) fallback: %s", report.vm_name, report.reasons
            )
            return self._qualified(prefix, self.standard_task_id)
        self.log.info("%s skipped by policy: %s", report.vm_name, "; ".join(report.reasons))
        return [self._qualified(prefix, self.skip_task_id)] if self.skip_task_id else []

    @staticmethod
    def _qualified(prefix: str, task_id: str) -> str:
        return task_id if task_id.startswith(prefix) else prefix + task_id


__all__ = ["DEFAULT_CONN_ID", "HyperVCheckpointBranchOperator", "HyperVVerifyOperator"]
