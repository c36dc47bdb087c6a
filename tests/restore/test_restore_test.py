"""Restore verification against the emulator: a good export restores, a damaged one fails clearly, and
the imported copy (VM, configuration, disks) is removed whatever happened."""

from __future__ import annotations

import types

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_hyperv.operators.restore_verification import (
    HyperVRestoreCleanupOperator,
    HyperVRestoreTestOperator,
    newest_export,
)
from hyperv_emulator.model.paths import read_standin_header
from tests.support.emulated import uri_for

ROOT = "D:\\RestoreTests"


def make_export(hook, vm_name: str = "web-01", path: str = "D:\\Backups\\t1") -> dict:
    """Checkpoint + export through the real hook, and the manifest the export operator would publish."""
    from airflow_hyperv.hyperv.enums import Consistency

    vm = hook.get_vm(name=vm_name)
    made = hook.create_checkpoint(
        vm.id, "airflow-hyperv 20260101T0100Z 0123456789ab", consistency=Consistency.CRASH
    )
    hook.make_directory(path)
    hook.export_checkpoint(made.checkpoint.id, path)
    files = hook.list_files(path)
    hashes = {h.path.lower(): h.hash for h in hook.file_hashes([f.path for f in files])}
    return {
        "vm_id": str(vm.id),
        "vm_name": vm.name,
        "host": "hv-01",
        "checkpoint_id": str(made.checkpoint.id),
        "checkpoint_name": made.checkpoint.name,
        "consistency": "crash",
        "path": path,
        "files": [
            {
                "path": f.path[len(path) :].lstrip("\\").lower(),
                "length": f.length,
                "sha256": hashes[f.path.lower()],
            }
            for f in files
        ],
    }


@pytest.fixture
def conn(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))


def run(manifest, **kw):
    op = HyperVRestoreTestOperator(
        task_id="restore_test", restore_root=ROOT, export=manifest, poll_interval=0.02, **kw
    )
    return op.execute({"run_id": "manual__1", "inlet_events": None, "outlet_events": None})  # type: ignore[arg-type]


def leftovers(emulator):
    host = emulator.host("hv-01")
    copies = [v for v in host.vms() if v.path.lower().startswith(ROOT.lower())]
    folder = host.fs.to_real(ROOT)
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return copies, files


def test_good_export_boots_isolated_and_is_removed(emulator, hook, conn):
    manifest = make_export(hook)
    result = run(manifest)
    assert result["outcome"] == "restorable" and result["heartbeat"].startswith("Ok")
    assert result["copy_id"] != manifest["vm_id"]
    assert leftovers(emulator) == ([], [])
    cmdlets = [e.cmdlet for e in emulator.audit.entries()]
    assert cmdlets.index("Disconnect-VMNetworkAdapter") < cmdlets.index("Start-VM")  # never boots connected
    assert cmdlets.count("Import-VM") == 1 and cmdlets.count("Remove-VM") == 1
    originals = [v for v in emulator.host("hv-01").vms() if v.name == "web-01"]
    assert len(originals) == 1 and str(originals[0].id) == manifest["vm_id"]


def test_hash_mismatch_fails_before_import(emulator, hook, conn):
    manifest = make_export(hook)
    disk = next(f for f in manifest["files"] if f["path"].endswith(".vhdx"))
    real = emulator.host("hv-01").fs.to_real(manifest["path"] + "\\" + disk["path"])
    data = bytearray(real.read_bytes())
    data[-1] ^= 0xFF
    real.write_bytes(bytes(data))
    with pytest.raises(AirflowFailException, match=r"damaged.*SHA-256"):
        run(manifest)
    assert not emulator.audit.entries(cmdlet="Import-VM")
    assert leftovers(emulator) == ([], [])


def test_missing_disk_fails_clearly(emulator, hook, conn):
    manifest = make_export(hook)
    disk = next(f for f in manifest["files"] if f["path"].endswith(".vhdx"))
    emulator.host("hv-01").fs.to_real(manifest["path"] + "\\" + disk["path"]).unlink()
    with pytest.raises(AirflowFailException, match=r"damaged.*vhdx is missing"):
        run(manifest)
    # a manifest that does not list the disk gets past the check; Import-VM itself refuses
    manifest["files"] = [f for f in manifest["files"] if f is not disk]
    with pytest.raises(AirflowFailException, match=r"import of .* failed.*OperationFailed,.*ImportVM"):
        run(manifest)
    assert leftovers(emulator) == ([], [])


def test_copy_that_never_answers_fails_and_is_removed(emulator, hook, conn):
    manifest = make_export(hook)
    disk = next(f for f in manifest["files"] if f["path"].endswith(".vhdx"))
    real = emulator.host("hv-01").fs.to_real(manifest["path"] + "\\" + disk["path"])
    real.write_bytes(b"not a disk")  # damaged after the manifest was (wrongly) made from it
    assert read_standin_header(real) is None
    files = hook.file_hashes([manifest["path"] + "\\" + disk["path"]])
    disk["sha256"], disk["length"] = (
        files[0].hash,
        hook.list_files(manifest["path"] + "\\" + disk["path"])[0].length,
    )
    with pytest.raises(AirflowFailException, match="healthy heartbeat"):
        run(manifest, boot_timeout=0.3)
    assert leftovers(emulator) == ([], [])
    assert len(emulator.audit.entries(cmdlet="Remove-VM")) == 1


def test_cleanup_teardown_removes_what_a_dead_worker_left(emulator, hook, conn):
    manifest = make_export(hook)
    from airflow_hyperv.hyperv.restore import config_path

    hook.make_directory(ROOT + "\\restore-test-deadbeef0000")
    hook.import_vm_copy(config_path(manifest), ROOT + "\\restore-test-deadbeef0000")
    assert leftovers(emulator)[0]
    op = HyperVRestoreCleanupOperator(task_id="cleanup", restore_root=ROOT)
    assert len(op.execute({})) == 1  # type: ignore[arg-type]
    assert leftovers(emulator) == ([], [])


def test_newest_export_picks_the_latest_event_per_vm():
    ev = lambda ts, name, path: types.SimpleNamespace(  # noqa: E731
        timestamp=ts, extra={"vm_name": name, "vm_id": name, "path": path, "files": [{}]}
    )
    events = [ev("2026-01-01", "a", "p1"), ev("2026-01-03", "b", "p3"), ev("2026-01-02", "a", "p2")]
    assert newest_export(events)["path"] == "p3"
    assert newest_export(events, "A")["path"] == "p2"
    assert newest_export([], None) is None


def test_the_hooks_restore_steps_return_typed_records(emulator, hook):
    import uuid

    from airflow_hyperv.hyperv.records import VirtualMachine
    from airflow_hyperv.hyperv.restore import (
        CopyImportError,
        CopyRemoval,
        NetworkIsolation,
        VMLocation,
        config_path,
    )

    manifest = make_export(hook)
    assert hook.verify_export(manifest) == []
    assert hook.verify_export({**manifest, "files": []}) == ["the manifest lists no files"]
    work = ROOT + "\\restore-test-0123456789ab"
    hook.make_directory(work)
    copy = hook.import_vm_copy(config_path(manifest), work)
    assert isinstance(copy, VirtualMachine) and isinstance(copy.id, uuid.UUID)
    assert str(copy.id) != manifest["vm_id"]
    renamed = hook.rename_vm(copy.id, "restore-test web-01 0123456789ab")
    assert renamed is not None and renamed.id == copy.id and renamed.name.startswith("restore-test ")
    isolation = hook.isolate_vm(copy.id)
    assert isinstance(isolation, NetworkIsolation) and isolation.adapters and isolation.isolated
    locations = {vm.id: vm for vm in hook.list_vm_locations()}
    assert isinstance(locations[copy.id], VMLocation) and locations[copy.id].path.startswith(work)
    assert hook.remove_vm_copy(copy.id) == CopyRemoval(copy.id, [])
    assert hook.remove_vm_copy(copy.id) == CopyRemoval(copy.id, [])  # already gone: not an error
    assert copy.id not in {vm.id for vm in hook.list_vm_locations()}
    with pytest.raises(CopyImportError, match="ImportVM"):
        hook.import_vm_copy(config_path({**manifest, "vm_id": str(uuid.uuid4())}), work)
