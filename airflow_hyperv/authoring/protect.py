"""One line per VM in a DAG file: the whole protection chain as a task group.

verify -> branch -> production checkpoint | standard fallback | skip -> export -> merge, with retention
beside the merge (after the export), and the merge as the teardown of both checkpoint setups, so it
runs whatever failed.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TaskGroup, TriggerRule

from airflow_hyperv.hyperv.verify import Policy
from airflow_hyperv.operators.base import DEFAULT_CONN_ID
from airflow_hyperv.operators.checkpoint import (
    DEFAULT_BUSY_TIMEOUT,
    HyperVCreateCheckpointOperator,
    HyperVMergeCheckpointOperator,
)
from airflow_hyperv.operators.export import HyperVExportCheckpointOperator, HyperVRetentionOperator
from airflow_hyperv.operators.failures import record_failure
from airflow_hyperv.operators.verify import HyperVCheckpointBranchOperator, HyperVVerifyOperator


def protect_vm(
    vm: Any,
    *,
    group_id: str | None = None,
    **options: Any,
) -> TaskGroup:
    """Build the protection chain of one VM in a task group named ``group_id`` (default ``protect_<vm>``).
    Options are those of ``build_protection_chain``."""
    with TaskGroup(group_id or default_group_id(vm), add_suffix_on_collision=True) as group:
        build_protection_chain(vm, **options)
    return group


def default_group_id(vm: Any) -> str:
    """``protect_<vm>``, made of the characters a task group id allows (the VM name is validated at
    run time, with a clear message, not here)."""
    import hashlib
    import re

    text = str(vm)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", text)[:60]
    if safe != text:
        safe += "_" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"protect_{safe}"


def build_protection_chain(
    vm: Any,
    *,
    policy: Any = "require",
    export_root: Any = None,
    keep_exports: int | None = None,
    hyperv_conn_id: str = DEFAULT_CONN_ID,
    pool: str | None = None,
    queue: str | None = None,
    deferrable: bool | None = None,
    poll_interval: float = 10.0,
    on_busy: str = "wait",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    reschedule_when_busy: bool = True,
    **task_kwargs: Any,
) -> dict[str, Any]:
    """Create the chain's tasks in the current DAG / task group (also a mapped ``@task_group``, where
    ``vm``, ``policy`` and ``export_root`` may be mapped arguments).

    ``policy``: require (application-consistent or fail), fallback (standard checkpoint recorded as
    crash-consistent), skip. ``pool`` caps concurrent host work (one pool per Hyper-V host). ``queue``
    routes every task of the chain to the executor queue of the host's site (the CeleryExecutor's
    workers there serve it; None: the default queue); docs/operations.md, "Queues per site".
    ``on_busy`` / ``busy_timeout``: what the checkpoint task does while another run holds the VM's
    lease (wait up to ``busy_timeout`` seconds, rescheduled so no worker or pool slot is held unless
    ``reschedule_when_busy=False``; or skip).
    """
    if isinstance(policy, str):
        Policy.parse(policy)  # a bad literal policy fails at parse time, before any run
    task_kwargs.setdefault("on_failure_callback", record_failure)
    # Finish one VM's chain before starting the next VM's: with the default (downstream) weights a
    # fleet run verifies and checkpoints every VM first, leaving dozens of checkpoints open for
    # minutes while exports queue (seen in bench.fleet_airflow at 100 VMs).
    task_kwargs.setdefault("weight_rule", "upstream")
    if queue:
        task_kwargs["queue"] = queue  # every task, the branch and the cleaned_up leaf too
    common: dict[str, Any] = {"vm": vm, "hyperv_conn_id": hyperv_conn_id, **task_kwargs}
    if pool:
        common["pool"] = pool
    waits: dict[str, Any] = {"deferrable": deferrable, "poll_interval": poll_interval}
    busy: dict[str, Any] = {
        "on_busy": on_busy,
        "busy_timeout": busy_timeout,
        "reschedule_when_busy": reschedule_when_busy,
        **waits,
    }
    verify = HyperVVerifyOperator(task_id="verify", export_path=export_root, **common)
    branch = HyperVCheckpointBranchOperator(
        task_id="choose",
        report=verify.output,
        vm=vm,
        policy=policy,
        production_task_id="production_checkpoint",
        standard_task_id="standard_checkpoint",
        **task_kwargs,
    )
    production = HyperVCreateCheckpointOperator(
        task_id="production_checkpoint",
        consistency="application",
        policy=policy,
        branch_task_id=branch.task_id,
        **busy,
        **common,
    )
    standard = HyperVCreateCheckpointOperator(
        task_id="standard_checkpoint", consistency="crash", branch_task_id=branch.task_id, **busy, **common
    )
    merge = HyperVMergeCheckpointOperator(task_id="merge", **waits, **common)
    verify >> branch >> [production, standard]
    tasks: dict[str, Any] = {
        "verify": verify,
        "choose": branch,
        "production": production,
        "standard": standard,
    }
    last: list[Any] = [production, standard]
    if export_root:
        # One export per path: Airflow requires a setup's direct downstream to be ALL_SUCCESS, and
        # the path the branch did not take is skipped together with its export.
        exports = [
            HyperVExportCheckpointOperator(
                task_id=f"export_{kind}", export_root=export_root, **waits, **common
            )
            for kind in ("production", "standard")
        ]
        production >> exports[0]
        standard >> exports[1]
        last = exports
        tasks["exports"] = exports
        if keep_exports:
            # One retention per path too: Airflow skips a task when any setup upstream of it was skipped,
            # and the branch always skips one of the two checkpoint setups.
            retentions = [
                HyperVRetentionOperator(
                    task_id=f"retention_{kind}",
                    export_root=export_root,
                    keep_last=keep_exports,
                    verified_export=export.output,
                    **common,
                )
                for kind, export in zip(("production", "standard"), exports, strict=True)
            ]
            # Beside the merge, not before it: nothing that can wait sits between a checkpoint and its
            # merge (the VM runs on the checkpoint's AVHDX until then); retention deletes only older
            # exports, never this run's checkpoint or export.
            for export, retention in zip(exports, retentions, strict=True):
                export >> retention
            tasks["retention"] = retentions
    last >> merge
    merge.as_teardown(setups=[production, standard])
    # A teardown normally runs only if a setup succeeded; a create that failed after
    # Checkpoint-VM ran must still be cleaned up, and the merge is a no-op when nothing exists.
    merge.trigger_rule = TriggerRule.ALL_DONE
    # A failed merge leaves an AVHDX behind, and a teardown's failure does not fail the run; this leaf
    # does (upstream_failed). Not on_failure_fail_dagrun: that would hide the exports' own failures,
    # as Airflow then stops counting the teardown's upstream tasks as leaves.
    cleaned_up = EmptyOperator(task_id="cleaned_up", **task_kwargs)
    merge >> cleaned_up
    tasks["merge"] = merge
    tasks["cleaned_up"] = cleaned_up
    return tasks
