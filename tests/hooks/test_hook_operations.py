"""Every HyperVHook operation against the emulator, through the real pypsrp client."""

from __future__ import annotations

import uuid

import pytest

from airflow_hyperv.hyperv.enums import CheckpointType, Consistency, VMState
from airflow_hyperv.hyperv.errors import (
    CheckpointNotFoundError,
    CheckpointsDisabledError,
    ProductionCheckpointImpossibleError,
    VMNotFoundError,
)
from airflow_hyperv.hyperv.names import is_provider_checkpoint
from tests.support.emulated import settings_for
from tests.support.waiting import wait_for  # operations finish on the host's own clock


def test_get_vm_by_name_and_by_id_agree(hook):
    by_name = hook.get_vm(name="dc-01")
    assert by_name.name == "dc-01" and by_name.state is VMState.Running
    assert by_name.checkpoint_type is CheckpointType.ProductionOnly
    assert hook.get_vm(vm_id=by_name.id) == by_name
    assert hook.resolve_vm(str(by_name.id)) == by_name
    assert hook.resolve_vm("dc-01") == by_name


def test_missing_vm_is_vm_not_found(hook):
    with pytest.raises(VMNotFoundError, match="nope"):
        hook.get_vm(name="nope")
    with pytest.raises(VMNotFoundError):
        hook.get_vm(vm_id=uuid.uuid4())


def test_integration_services_show_the_backup_service(hook):
    dc = hook.get_vm(name="dc-01")
    vss = [s for s in hook.integration_services(dc.id) if s.is_backup_service]
    assert len(vss) == 1 and vss[0].healthy


def test_production_checkpoint_restores_the_vms_own_type(hook, emulator):
    web = hook.get_vm(name="web-01")
    name = "airflow-hyperv 20261125T0100Z 0123456789ab"
    result = hook.create_checkpoint(web.id, name, consistency=Consistency.APPLICATION)
    assert result.created and result.consistency is Consistency.APPLICATION
    assert result.checkpoint.name == name and result.checkpoint.vm_id == web.id
    assert not result.checkpoint.has_memory_state  # production: disks only
    assert hook.get_vm(vm_id=web.id).checkpoint_type is CheckpointType.Production
    # A second call (a retry of the same run) finds it instead of making another.
    again = hook.create_checkpoint(web.id, name, consistency=Consistency.APPLICATION)
    assert not again.created and again.checkpoint.id == result.checkpoint.id
    assert [c.name for c in hook.list_checkpoints(web.id)] == [name]
    assert is_provider_checkpoint(name)


def test_production_impossible_never_falls_back(hook):
    app = hook.get_vm(name="app-01")  # Linux guest without hv_vss_daemon, type Production
    with pytest.raises(ProductionCheckpointImpossibleError, match="could not quiesce"):
        hook.create_checkpoint(
            app.id, "airflow-hyperv 20261125T0100Z aaaaaaaaaaaa", consistency="application"
        )
    assert hook.list_checkpoints(app.id) == []
    assert hook.get_vm(vm_id=app.id).checkpoint_type is CheckpointType.Production


def test_standard_checkpoint_keeps_memory_state(hook):
    app = hook.get_vm(name="app-01")
    result = hook.create_checkpoint(app.id, "airflow-hyperv 20261125T0100Z bbbbbbbbbbbb", consistency="crash")
    assert result.consistency is Consistency.CRASH and result.checkpoint.has_memory_state
    assert hook.get_vm(vm_id=app.id).checkpoint_type is CheckpointType.Production


def test_disabled_vm_is_refused_before_anything_changes(emulator):
    from airflow_hyperv.hooks.hyperv import HyperVHook

    with HyperVHook(settings=settings_for(emulator, "hv-02")) as hv:
        build = hv.get_vm(name="build-01")
        before = len(emulator.audit.entries(cmdlet="Set-VM"))
        with pytest.raises(CheckpointsDisabledError, match="disabled"):
            hv.create_checkpoint(
                build.id, "airflow-hyperv 20261125T0100Z cccccccccccc", consistency="application"
            )
        assert len(emulator.audit.entries(cmdlet="Set-VM")) == before
        assert hv.get_vm(vm_id=build.id).checkpoint_type is CheckpointType.Disabled


def test_set_checkpoint_type_round_trips(hook):
    web = hook.get_vm(name="web-01")
    assert (
        hook.set_checkpoint_type(web.id, CheckpointType.Standard).checkpoint_type is CheckpointType.Standard
    )
    assert (
        hook.set_checkpoint_type(web.id, CheckpointType.Production).checkpoint_type
        is CheckpointType.Production
    )


def test_remove_merges_and_the_disk_chain_comes_back(hook):
    dc = hook.get_vm(name="dc-01")
    depth_before = [c.depth for c in hook.disk_chains(dc.id)]
    made = hook.create_checkpoint(
        dc.id, "airflow-hyperv 20261125T0100Z dddddddddddd", consistency="application"
    )
    chains = hook.disk_chains(dc.id)
    assert [c.depth for c in chains] == [d + 1 for d in depth_before]
    assert all(c.current_path.lower().endswith(".avhdx") for c in chains)
    assert hook.get_checkpoint(made.checkpoint.id) == made.checkpoint
    assert hook.find_checkpoint(dc.id, made.checkpoint.name) == made.checkpoint

    assert hook.remove_checkpoint(made.checkpoint.id) is True
    assert hook.get_checkpoint(made.checkpoint.id) is None
    wait_for(lambda: [c.depth for c in hook.disk_chains(dc.id)] == depth_before)
    assert not any(c.current_path.lower().endswith(".avhdx") for c in hook.disk_chains(dc.id))
    assert hook.remove_checkpoint(made.checkpoint.id) is False  # already gone: nothing to do


def test_restore_production_checkpoint_leaves_vm_off_then_start(hook):
    web = hook.get_vm(name="web-01")
    made = hook.create_checkpoint(
        web.id, "airflow-hyperv 20261125T0100Z eeeeeeeeeeee", consistency="application"
    )
    restored = hook.restore_checkpoint(made.checkpoint.id)
    assert restored.state is VMState.Off
    assert hook.start_vm(web.id).state is VMState.Running
    assert hook.stop_vm(web.id).state is VMState.Off
    with pytest.raises(CheckpointNotFoundError):
        hook.restore_checkpoint(uuid.uuid4())


def test_export_writes_real_files_that_can_be_listed_and_hashed(hook, emulator):
    sql = hook.get_vm(name="sql-01")
    made = hook.create_checkpoint(
        sql.id, "airflow-hyperv 20261125T0100Z ffffffffffff", consistency="application"
    )
    staging = "D:\\Backups\\sql-01\\.staging-run1"
    hook.make_directory(staging)
    assert hook.path_exists(staging)
    hook.export_checkpoint(made.checkpoint.id, staging)
    files = hook.list_files(staging)
    assert files and all(f.length > 0 for f in files)
    assert any(f.path.lower().endswith(".vhdx") for f in files)
    hashes = hook.file_hashes([f.path for f in files])
    assert len(hashes) == len(files) and all(len(h.hash) == 64 for h in hashes)
    final = "D:\\Backups\\sql-01\\run1"
    hook.move_item(staging, final)
    assert hook.path_exists(final) and not hook.path_exists(staging)
    hook.remove_item(final)
    assert not hook.path_exists(final)


def test_host_info_and_free_space(hook):
    info = hook.host_info("D")
    assert info.host.name and info.drive is not None and info.drive.free > 0
    assert hook.free_space("D:\\Backups") == info.drive.free


def test_the_old_names_of_run_repeatable_and_run_checked_write_still_work_with_a_warning(hook):
    from airflow_hyperv.hyperv import pipelines

    with pytest.warns(DeprecationWarning, match="run_repeatable"):
        assert hook.read(pipelines.host_info()).output
    with pytest.warns(DeprecationWarning, match="run_checked_write"):
        assert hook.write(pipelines.host_info(), already_done=lambda: None).output


def test_the_event_log_reads_return_typed_events_oldest_first(hook):
    from airflow_hyperv.hyperv.events import WORKER_ADMIN, default_event_ids

    start = hook.newest_event_record_id(WORKER_ADMIN)
    vm = hook.get_vm(name="web-01")
    hook.stop_vm(vm.id, turn_off=True)
    events = hook.read_events(WORKER_ADMIN, start, default_event_ids(WORKER_ADMIN), host="hv-01")
    assert [(e.kind, e.vm_id, e.host) for e in events] == [("vm_turned_off", vm.id, "hv-01")]
    assert events[0].payload()["vm_id"] == str(vm.id).lower()  # the payload keeps its string
    assert hook.newest_event_record_id(WORKER_ADMIN) == events[0].record_id > start
    assert hook.read_events(WORKER_ADMIN, events[0].record_id, default_event_ids(WORKER_ADMIN)) == []
