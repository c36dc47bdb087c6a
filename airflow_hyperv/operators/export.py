"""Export a checkpoint to a backup target (staged, verified, then promoted) and keep exports tidy."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.names import is_provider_checkpoint, join_host_path, require_host_path
from airflow_hyperv.hyperv.records import ExportManifest
from airflow_hyperv.hyperv.waits import WaitFor
from airflow_hyperv.operators.base import DeferrableMixin, HyperVBaseOperator, run_checkpoint_name

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_hyperv.hooks.hyperv import HyperVHook

EXPORT_ALIAS = "hyperv-exports"
_EXPORT_FOLDER = re.compile(r"^\d{8}T\d{4}Z-[0-9a-f]{12}$")
STAGING_PREFIX = ".staging-"


def export_asset(host: str, vm_id: str, vm_name: str) -> Asset:
    """The Asset one VM's verified exports update (what downstream DAGs schedule on)."""
    return Asset(name=f"hyperv-export/{host}/{vm_name}", uri=f"hyperv://{host}/vms/{vm_id.lower()}/exports")


def _folder_for(checkpoint_name: str) -> str:
    """``airflow-hyperv 20261125T0100Z 0123456789ab`` -> ``20261125T0100Z-0123456789ab``."""
    _, stamp, digest = checkpoint_name.split(" ")
    return f"{stamp}-{digest}"


def _vm_folder(vm_id: str) -> str:
    # The VM's Id, not its name: names may hold characters a path cannot, Ids never do.
    return vm_id.lower()


class HyperVExportCheckpointOperator(DeferrableMixin, HyperVBaseOperator):
    """Export this run's checkpoint to ``export_root\\<vm id>\\<stamp>-<hash>``.

    The export is written into a staging folder, started on the host in a disconnected session and
    waited for by the triggerer (``deferrable``) or in the worker. It is then verified (the VM's
    configuration and every disk present, each disk at least as large as its base disk, SHA-256 of
    every file) and only then promoted (renamed) to its final folder. A retry finds a promoted export
    and verifies it again instead of exporting twice. A failed export removes its staging folder.
    Publishes the VM's export Asset (through the ``hyperv-exports`` alias) with the manifest.
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
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(name=EXPORT_ALIAS)])
        super().__init__(**kwargs)
        self.export_root = export_root
        self.checkpoint_name = checkpoint_name
        self._init_deferrable(deferrable, poll_interval, wait_timeout)

    def execute(self, context: Context) -> dict[str, Any]:
        with self.final_errors():
            root = require_host_path(self.export_root, "export root")
        with self.hyperv_hook() as hv:
            with self.final_errors():
                vm = hv.resolve_vm(self.vm)
            name = self.checkpoint_name or run_checkpoint_name(context, str(vm.id))
            checkpoint = hv.find_checkpoint(vm.id, name)
            if checkpoint is None:
                raise AirflowFailException(f"{vm.name} has no checkpoint {name!r} to export")
            if not is_provider_checkpoint(name):
                raise AirflowFailException(f"{name!r} was not made by this provider; export it by hand")
            base = join_host_path(root, _vm_folder(str(vm.id)))
            final = join_host_path(base, _folder_for(name))
            staging = join_host_path(base, STAGING_PREFIX + _folder_for(name))
            plan = {
                "vm_id": str(vm.id),
                "vm_name": vm.name,
                "host": hv.settings.host_label,
                "checkpoint_id": str(checkpoint.id),
                "checkpoint_name": name,
                "final": final,
                "staging": staging,
            }
            if hv.path_exists(final):
                self.log.info("An earlier try already promoted %s; verifying it again", final)
                return self._publish(context, self._verify(hv, plan, final))
            if hv.path_exists(staging):
                self.log.warning("Removing the partial export of an earlier try at %s", staging)
                hv.remove_item(staging)
            hv.make_directory(staging)
            if not self.deferrable:
                try:
                    hv.export_checkpoint(checkpoint.id, staging)
                except Exception:
                    self._discard(hv, staging)
                    raise
                return self._promote(context, hv, plan)
            from airflow_hyperv.hooks.disconnected import start_disconnected
            from airflow_hyperv.hyperv import pipelines

            operation = start_disconnected(hv.settings, pipelines.export_checkpoint(checkpoint.id, staging))
        from airflow_hyperv.triggers.hyperv import HyperVWaitTrigger

        self.log.info("Export of %s to %s runs on the host; deferring", vm.name, staging)
        self.defer_to(
            HyperVWaitTrigger(
                hyperv_conn_id=self.hyperv_conn_id,
                wait_for=WaitFor.OPERATION_DONE.value,
                vm_id=str(vm.id),
                poll_interval=self.poll_interval,
                operation=operation.to_dict(),
                echo=plan,
            )
        )
        raise AssertionError("defer returned")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        plan = (event or {}).get("echo") or {}
        if not plan:
            raise AirflowException(f"the export wait ended without its plan: {event}")
        with self.hyperv_hook() as hv:
            if not event or event.get("status") != "success":
                self._discard(hv, plan["staging"])
                raise AirflowException(f"export of {plan['vm_name']} failed: {(event or {}).get('message')}")
            return self._promote(context, hv, plan)

    def _promote(self, context: Context, hv: HyperVHook, plan: dict[str, Any]) -> dict[str, Any]:
        try:
            manifest = self._verify(hv, plan, plan["staging"])
        except Exception:
            self._discard(hv, plan["staging"])
            raise
        hv.move_item(plan["staging"], plan["final"])
        # A rename on one volume moves no data: checking that every verified file arrived with its
        # size is enough; hashing again would read the whole export a second time.
        moved = {
            f.path[len(plan["final"]) :].lstrip("\\").lower(): f.length for f in hv.list_files(plan["final"])
        }
        expected = {f["path"]: f["length"] for f in manifest["files"]}
        if moved != expected:
            raise AirflowException(
                f"export of {plan['vm_name']} changed while it was promoted to {plan['final']}"
            )
        self.log.info("Export verified and promoted to %s", plan["final"])
        return self._publish(context, {**manifest, "path": plan["final"]})

    def _discard(self, hv: HyperVHook, staging: str) -> None:
        try:
            if hv.path_exists(staging):
                hv.remove_item(staging)
        except Exception as exc:
            self.log.warning("Could not remove the partial export %s: %s", staging, exc)

    def _verify(self, hv: HyperVHook, plan: dict[str, Any], folder: str) -> dict[str, Any]:
        """Never trust a folder's existence: every expected file, sizes, checksums."""
        vm_id = uuid.UUID(plan["vm_id"])
        checkpoint = hv.get_checkpoint(uuid.UUID(plan["checkpoint_id"]))
        files = hv.list_files(folder)
        by_rel = {f.path[len(folder) :].lstrip("\\").lower(): f for f in files}
        problems = []
        config = f"{plan['vm_name']}\\virtual machines\\{plan['vm_id'].upper()}.vmcx".lower()
        if config not in by_rel:
            problems.append(f"configuration file {config} is missing")
        for chain in hv.disk_chains(vm_id):
            base = chain.disks[-1] if chain.disks else None
            if base is None:
                continue
            disk_name = base.path.rsplit("\\", 1)[-1]
            exported = by_rel.get(f"{plan['vm_name']}\\virtual hard disks\\{disk_name}".lower())
            if exported is None:
                problems.append(f"disk {disk_name} is missing")
            elif exported.length < base.file_size:
                problems.append(
                    f"disk {disk_name} is {exported.length} bytes, smaller than its base {base.file_size}"
                )
        has_memory = checkpoint is not None and checkpoint.has_memory_state
        if has_memory and not any(k.endswith(".vmrs") for k in by_rel):
            problems.append("the checkpoint's saved memory state (.VMRS) is missing")
        if any(f.length == 0 for f in files):
            problems.append("empty files: " + ", ".join(f.path for f in files if f.length == 0))
        if problems:
            raise AirflowException(
                f"export of {plan['vm_name']} at {folder} is incomplete: {'; '.join(problems)}"
            )
        hashes = {h.path.lower(): h.hash for h in hv.file_hashes([f.path for f in files])}
        consistency = (
            Consistency.CRASH
            if checkpoint is not None and checkpoint.has_memory_state
            else Consistency.APPLICATION
        )
        manifest = ExportManifest(
            vm_id=plan["vm_id"],
            vm_name=plan["vm_name"],
            checkpoint_id=plan["checkpoint_id"],
            checkpoint_name=plan["checkpoint_name"],
            consistency=consistency.value,
            path=folder,
            files=[
                {"path": rel, "length": f.length, "sha256": hashes.get(f.path.lower(), "")}
                for rel, f in sorted(by_rel.items())
            ],
        )
        if any(not f["sha256"] for f in manifest.files):
            raise AirflowException(f"export of {plan['vm_name']}: some files could not be hashed")
        data = manifest.to_dict()
        data["total_bytes"] = manifest.total_bytes
        data["host"] = plan["host"]
        return data

    def _publish(self, context: Context, manifest: dict[str, Any]) -> dict[str, Any]:
        asset = export_asset(manifest["host"], manifest["vm_id"], manifest["vm_name"])
        events = context.get("outlet_events")
        if events is not None:
            events[AssetAlias(name=EXPORT_ALIAS)].add(asset, extra=manifest)
        return manifest


class HyperVRetentionOperator(HyperVBaseOperator):
    """Keep the newest ``keep_last`` verified exports of a VM (and none older than ``max_age_days``,
    except the newest).

    Deletes nothing unless ``verified_export`` (this run's export XCom) says a newer export was
    verified: a failed export never costs an older good one. It never merges a checkpoint: another
    run's checkpoint may be in use (docs/operations.md, Overlapping runs); merge a leftover one by
    name with ``HyperVMergeCheckpointOperator(checkpoint_name=...)``.
    """

    template_fields: Sequence[str] = ("vm", "hyperv_conn_id", "export_root", "verified_export")

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
            base = join_host_path(root, _vm_folder(str(vm.id)))
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
