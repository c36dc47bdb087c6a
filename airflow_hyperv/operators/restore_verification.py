"""Prove an export restorable: verify it against its manifest, import it as an isolated copy (new Id,
network disconnected), boot it, wait for a healthy heartbeat, record the result — and remove the copy
and its files whatever happened.

``HyperVRestoreTestOperator`` does the whole test in one task, with the removal in ``finally``.
``HyperVRestoreCleanupOperator`` is its teardown: it removes any copy still under the restore root
(a worker that died mid-test leaves one behind; a teardown runs anyway).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_hyperv.hyperv.names import join_host_path, require_host_path
from airflow_hyperv.hyperv.restore import CopyImportError, config_path
from airflow_hyperv.operators.base import DEFAULT_CONN_ID, HyperVOperatorMixin
from airflow_hyperv.operators.export import EXPORT_ALIAS

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_hyperv.hooks.hyperv import HyperVHook

RESTORE_ALIAS = "hyperv-restore-tests"
COPY_PREFIX = "restore-test"


def restore_asset(host: str, vm_id: str, vm_name: str) -> Asset:
    """The Asset one VM's successful restore tests update (what the protection report reads)."""
    return Asset(
        name=f"hyperv-restore-test/{host}/{vm_name}", uri=f"hyperv://{host}/vms/{vm_id.lower()}/restore-tests"
    )


def newest_export(
    events: Sequence[Any], vm: str | None = None, host: str | None = None
) -> dict[str, Any] | None:
    """The newest export manifest among asset events (``extra`` = manifest), optionally for one VM
    (name or Id) and one host (its label): two hosts may hold VMs with one name and even one Id, and
    an export is tested on the host that wrote it."""
    best: tuple[Any, dict[str, Any]] | None = None
    for event in events:
        extra = dict(getattr(event, "extra", None) or {})
        if not extra.get("path") or not extra.get("files"):
            continue
        if host and str(extra.get("host") or "").lower() != host.lower():
            continue
        if vm and vm.lower() not in (
            str(extra.get("vm_name", "")).lower(),
            str(extra.get("vm_id", "")).lower(),
        ):
            continue
        when = getattr(event, "timestamp", None)
        key = (str(when), extra.get("checkpoint_name", ""))
        if best is None or key > best[0]:
            best = (key, extra)
    return best[1] if best else None


class HyperVRestoreTestOperator(HyperVOperatorMixin, BaseOperator):
    """Restore-test one export.

    ``export``: the export's manifest (the export task's XCom or an export asset event's ``extra``),
    a JSON string of it, or None to take the newest export event of the ``hyperv-exports`` alias
    among this task's inlets (optionally only those of ``vm``). ``restore_root``: a host folder
    where the copy's configuration and disks are written, one subfolder per test.

    The export is first checked against its manifest (sizes, SHA-256); a damaged one is never
    imported. The copy gets a new Id and a new name, and boots only once every network adapter is
    disconnected; it is turned off and removed with its files whatever happens (a copy that cannot be
    removed fails the task). ``inlets`` defaults to the ``hyperv-exports`` alias, ``outlets`` to
    ``hyperv-restore-tests`` (the VM's restore-test Asset).

    Returns (XCom): vm_id, vm_name, host, export_path, checkpoint_name, consistency, work_folder,
    copy_id, heartbeat, boot_seconds, outcome (``restorable``), tested_at.

    .. seealso::
        docs/events.md (restore verification).

    :param restore_root: The host folder the copies are written under (an absolute Windows path or a
        UNC path), one ``restore-test-<token>`` subfolder per test. (templated)
    :param export: The export's manifest (the export task's XCom or an export Asset event's
        ``extra``), or its JSON. Default None: the newest export from this host among the task's
        inlet events. (templated)
    :param vm: With ``export=None``: take only exports of this VM (its name or Id). Default None: any
        VM. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the host the export was written
        on (with ``export=None`` only exports from this host are taken). Default ``hyperv_default``.
        (templated)
    :param boot_timeout: Seconds the copy has to report a healthy heartbeat after it is started;
        past it the task fails (the export does not boot). Default 600.
    :param poll_interval: Seconds between two reads of the copy's heartbeat. Default 5.
    """

    template_fields: Sequence[str] = ("export", "vm", "hyperv_conn_id", "restore_root")
    template_fields_renderers = {"export": "json"}  # the export's manifest
    ui_color = "#d7f5d0"

    def __init__(
        self,
        *,
        restore_root: str,
        export: Any = None,
        vm: str | None = None,
        hyperv_conn_id: str = DEFAULT_CONN_ID,
        boot_timeout: float = 600.0,
        poll_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(name=RESTORE_ALIAS)])
        kwargs.setdefault("inlets", [AssetAlias(name=EXPORT_ALIAS)])
        super().__init__(**kwargs)
        self.restore_root = restore_root
        self.export = export
        self.vm = vm or ""
        self.hyperv_conn_id = hyperv_conn_id
        self.boot_timeout = boot_timeout
        self.poll_interval = poll_interval

    # -- which export -----------------------------------------------------------------------------
    def _manifest(self, context: Context) -> dict[str, Any]:
        export = self.export
        if isinstance(export, str) and export.strip() not in ("", "None", "null"):
            export = json.loads(export)
        if isinstance(export, dict) and export.get("path"):
            return export
        events: list[Any] = []
        inlet_events = context.get("inlet_events")
        if inlet_events is not None:
            try:
                events = list(inlet_events[AssetAlias(name=EXPORT_ALIAS)])
            except (KeyError, LookupError):
                events = []
        host = self.hyperv_hook().settings.host_label
        manifest = newest_export(events, self.vm or None, host)
        if manifest is None:
            raise AirflowFailException(
                f"no verified export from {host} to test{f' for {self.vm}' if self.vm else ''}: give `export` "
                "or run an export first"
            )
        return manifest

    # -- the test ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        manifest = self._manifest(context)
        root = require_host_path(self.restore_root, "restore root")
        token = hashlib.sha256(f"{context['run_id']}|{manifest['path']}".encode()).hexdigest()[:12]
        work = join_host_path(root, f"{COPY_PREFIX}-{token}")
        copy_name = f"{COPY_PREFIX} {manifest['vm_name']} {token}"
        started = time.monotonic()
        result: dict[str, Any] = {
            "vm_id": manifest["vm_id"],
            "vm_name": manifest["vm_name"],
            "host": manifest.get("host", ""),
            "export_path": manifest["path"],
            "checkpoint_name": manifest.get("checkpoint_name", ""),
            "consistency": manifest.get("consistency", ""),
            "work_folder": work,
        }
        with self.hyperv_hook() as hv:
            problems = hv.verify_export(manifest)
            if problems:
                raise AirflowFailException(
                    f"export {manifest['path']} of {manifest['vm_name']} is damaged, not restore-tested: "
                    + "; ".join(problems)
                )
            copy_id: uuid.UUID | None = None
            try:
                self._remove_leftovers(hv, work)  # an earlier try of this run
                hv.make_directory(work)
                try:
                    copy = hv.import_vm_copy(config_path(manifest), work)
                except CopyImportError as exc:
                    raise AirflowFailException(f"import of {manifest['path']} failed: {exc}") from exc
                copy_id = copy.id
                if str(copy_id).lower() == str(manifest["vm_id"]).lower():
                    raise AirflowFailException(
                        "the imported copy kept the original's Id; refusing to boot it"
                    )
                hv.rename_vm(copy_id, copy_name)
                self._isolate(hv, copy_id)
                hv.start_vm(copy_id)
                heartbeat = self._wait_heartbeat(hv, copy_id)
                result.update(
                    copy_id=str(copy_id),
                    heartbeat=heartbeat,
                    boot_seconds=round(time.monotonic() - started, 3),
                    outcome="restorable",
                )
            finally:
                self._remove(hv, copy_id, work)
        result["tested_at"] = _now()
        self.log.info("Restore test of %s passed: %s", manifest["vm_name"], result)
        events = context.get("outlet_events")
        if events is not None:
            asset = restore_asset(result["host"] or "host", result["vm_id"], result["vm_name"])
            events[AssetAlias(name=RESTORE_ALIAS)].add(asset, extra=result)
        return result

    def _isolate(self, hv: HyperVHook, copy_id: uuid.UUID) -> None:
        isolation = hv.isolate_vm(copy_id)
        if not isolation.isolated:
            raise AirflowFailException(
                f"could not isolate the copy {copy_id} (connected: {isolation.connected or 'unknown'}): "
                "not booting it"
            )

    def _wait_heartbeat(self, hv: HyperVHook, copy_id: uuid.UUID) -> str:
        deadline = time.monotonic() + self.boot_timeout
        while True:
            vm = hv.get_vm(vm_id=copy_id)
            if vm.state.name == "Running" and vm.heartbeat is not None and vm.heartbeat.is_ok:
                return vm.heartbeat.name
            if time.monotonic() >= deadline:
                seen = vm.heartbeat.name if vm.heartbeat else "none"
                raise AirflowFailException(
                    f"the restored copy did not report a healthy heartbeat within {self.boot_timeout:g}s "
                    f"(state {vm.state.name}, heartbeat {seen}): the export does not boot"
                )
            time.sleep(self.poll_interval)

    def _remove_leftovers(self, hv: HyperVHook, work: str) -> None:
        for vm in hv.list_vm_locations():
            if vm.path.lower().startswith(work.lower()):
                self._remove(hv, vm.id, None)
        if hv.path_exists(work):
            hv.remove_item(work)

    def _remove(self, hv: HyperVHook, copy_id: uuid.UUID | None, work: str | None) -> None:
        """Always: turn the copy off, Remove-VM -Force, then delete its folder (configuration + disks)."""
        errors = []
        if copy_id is not None:
            try:
                removal = hv.remove_vm_copy(copy_id)
                if removal.errors and not _gone(hv, copy_id):
                    errors.append(removal.errors[0])
            except Exception as exc:
                errors.append(str(exc))
        if work is not None:
            try:
                if hv.path_exists(work):
                    hv.remove_item(work)
            except Exception as exc:
                errors.append(str(exc))
        if errors:
            self.log.error("The restore copy %s was NOT fully removed: %s", copy_id, "; ".join(errors))
            raise AirflowFailException(
                f"the restore copy {copy_id} was not fully removed: {'; '.join(errors)}"
            )


def _gone(hv: HyperVHook, vm_id: uuid.UUID) -> bool:
    return all(v.id != vm_id for v in hv.list_vm_locations())


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat()


class HyperVRestoreCleanupOperator(HyperVOperatorMixin, BaseOperator):
    """Teardown: remove every restore-test copy whose folder is under ``restore_root``, and the folders.

    Run it as the teardown of ``HyperVRestoreTestOperator``: a worker that died mid-test leaves a copy
    behind. Only VMs that live in, and folders named, ``restore-test...`` under ``restore_root`` are
    touched. Returns (XCom): the Ids of the copies removed.

    :param restore_root: The restore test's ``restore_root``. (templated)
    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``. (templated)
    """

    template_fields: Sequence[str] = ("hyperv_conn_id", "restore_root")

    def __init__(self, *, restore_root: str, hyperv_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restore_root = restore_root
        self.hyperv_conn_id = hyperv_conn_id

    def execute(self, context: Context) -> list[str]:
        root = require_host_path(self.restore_root, "restore root")
        prefix = join_host_path(root, COPY_PREFIX).lower()
        removed = []
        with self.hyperv_hook() as hv:
            for vm in hv.list_vm_locations():
                if vm.path.lower().startswith(prefix):
                    removal = hv.remove_vm_copy(vm.id)
                    if removal.errors:
                        self.log.warning("Removing the restore copy %s reported: %s", vm.id, removal.errors)
                    removed.append(str(vm.id))
            if hv.path_exists(root):
                folders = {f.path[len(root) :].lstrip("\\").split("\\", 1)[0] for f in hv.list_files(root)}
                for folder in sorted(folders):
                    if folder.lower().startswith(COPY_PREFIX):
                        hv.remove_item(join_host_path(root, folder))
        if removed:
            self.log.warning("Removed %d leftover restore copies: %s", len(removed), removed)
        return removed
