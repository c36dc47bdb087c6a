"""The chain against real storage layouts: VMs on a Cluster Shared Volume, VMs on a differencing disk
over a golden image, and two VMs of one name (emulator/fleets/storage.yaml)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.lifecycle.runs import chain_snapshot, states, xcom

STORAGE_FLEET = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "storage.yaml"
CSV = "C:\\ClusterStorage\\Volume1"
GiB = 1 << 30


@pytest.fixture
def emulator(tmp_path):
    """The storage fleet instead of the example one (dag_factory and hook use this fixture)."""
    from hyperv_emulator.api import Emulator

    with Emulator(STORAGE_FLEET, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        yield emu


def test_the_fleet_has_the_layouts_the_tests_rely_on(emulator):
    """Positive control: C: is nearly full, the CSV is a volume of its own with plenty of room."""
    fs = emulator.host("hv-01").fs
    assert fs.free("C") < GiB
    csv = fs.volume_for(f"{CSV}\\csv-01\\Virtual Hard Disks\\csv-01.vhdx")
    assert csv.mount_point == CSV and csv.file_system == "CSVFS" and fs.free(csv) > 1000 * GiB


def test_free_space_is_read_from_the_volume_that_holds_the_path(hook):
    csv = hook.volume_of(f"{CSV}\\csv-01")
    assert csv is not None and csv.drive_letter == "" and csv.file_system == "CSVFS" and csv.label == "CSV1"
    assert hook.free_space(f"{CSV}\\csv-01") == csv.free > 1000 * GiB
    c_drive = hook.volume_of("C:\\Hyper-V")  # a folder that does not exist yet: its nearest parent's volume
    assert c_drive is not None and c_drive.drive_letter == "C" and c_drive.free < GiB
    assert hook.free_space("D:\\Backups\\not\\yet\\there") == hook.volume_of("D:\\").free  # type: ignore[union-attr]
    assert hook.free_space("\\\\filer\\backups\\hv-01") is None  # a share: unknown, never C:'s number


def test_a_vm_on_a_cluster_shared_volume_is_protected(dag_factory, emulator):
    """C: has 0.5 GB free; the VM's disks are on the CSV, which has terabytes: verify must measure the CSV."""
    before = chain_snapshot(emulator, "hv-01", "csv-01")
    run = dag_factory(
        "t_csv", vm="csv-01", policy="require", export_root="D:\\Backups", deferrable=True
    ).test()
    st = states(run)
    assert str(run.state) == "success", st
    report = xcom(run, "verify")
    assert report["verdict"] == "production", report["findings"]
    assert not [f for f in report["findings"] if f["code"].startswith("checkpoint-space")]
    assert st["production_checkpoint"] == "success" and st["merge"] == "success"
    assert chain_snapshot(emulator, "hv-01", "csv-01") == before


def test_a_vm_on_a_golden_image_is_protected_and_its_parent_is_left_alone(dag_factory, emulator):
    """A differencing .vhdx over a golden parent with no checkpoint is normal, not an orphaned AVHDX."""
    model = emulator.host("hv-01")
    golden = f"{CSV}\\Golden\\ws2022-golden.vhdx"
    golden_before = model.vhd_info(golden)
    before = chain_snapshot(emulator, "hv-01", "golden-01")
    run = dag_factory("t_golden", vm="golden-01", policy="require", export_root="D:\\Backups").test()
    st = states(run)
    assert str(run.state) == "success", st
    report = xcom(run, "verify")
    assert report["verdict"] == "production", report["findings"]
    assert report["chain_depths"] == [0]
    assert "differencing-base" in [f["code"] for f in report["findings"]]
    assert "orphaned-avhdx" not in [f["code"] for f in report["findings"]]
    # The merge folded the checkpoint into the VM's own differencing disk, never into the golden image.
    assert chain_snapshot(emulator, "hv-01", "golden-01") == before
    vm = next(v for v in model.vms() if v.name == "golden-01")
    assert vm.hard_drives[0].disk.parent is not None and vm.hard_drives[0].disk.parent.path == golden
    assert model.vhd_info(golden) == golden_before


def test_a_golden_image_vm_with_checkpoints_counts_checkpoints_not_parents(hook, emulator):
    """Chain depth is the number of checkpoint disks: one checkpoint over a golden parent is depth 1."""
    from airflow_hyperv.hyperv.verify import verify

    model = emulator.host("hv-01")
    vm_model = next(v for v in model.vms() if v.name == "golden-02")
    model.checkpoint_vm(vm_model, "manual")
    vm = hook.get_vm(name="golden-02")
    overview = hook.vm_overview(vm.id)
    chains = hook.disk_chains(vm.id, overview.drives)
    assert [c.depth for c in chains] == [1] and [c.differencing_depth for c in chains] == [2]
    report = verify(overview.vm, overview.services, overview.checkpoints, chains, host="hv-01")
    assert "orphaned-avhdx" not in [f.code for f in report.findings]


def test_unknown_free_space_is_a_warning_never_another_volumes_number():
    """A share (or a host that cannot tell) is reported as unknown, and nothing is invented."""
    from airflow_hyperv.hyperv.enums import CheckpointType, VMState
    from airflow_hyperv.hyperv.records import VirtualMachine
    from airflow_hyperv.hyperv.verify import SpaceReading, Verdict, verify

    vm = VirtualMachine(
        id=uuid.UUID("6b1a2c3d-4e5f-4061-8273-94a5b6c7d8e9"),
        name="smb-01",
        state=VMState.Off,
        status="",
        heartbeat=None,
        checkpoint_type=CheckpointType.Production,
        automatic_checkpoints=False,
    )
    unknown = verify(
        vm,
        [],
        [],
        [],
        host="hv-01",
        disk_space=[SpaceReading("\\\\filer\\vms\\smb-01\\smb-01.vhdx", None)],
        export_space=SpaceReading("\\\\filer\\backups", None),
    )
    codes = {f.code: f.severity for f in unknown.findings}
    assert codes["checkpoint-space-unknown"] == "warning" and codes["export-space-unknown"] == "warning"
    assert unknown.verdict is Verdict.PRODUCTION
    full = verify(vm, [], [], [], host="hv-01", disk_space=[SpaceReading("C:\\x", 1 << 20, "C:\\")])
    assert full.verdict is Verdict.BLOCKED and "checkpoint-space" in [f.code for f in full.findings]


def test_verify_reads_chains_volumes_and_lease_in_one_round_trip(hook, emulator):
    """``disks_and_lease`` answers what the separate reads answer (each disk's chain and volume, the
    lease), in one pipeline for a one-level chain; a golden-image VM's parent costs one more."""
    from airflow_hyperv.hyperv.lease import Lease

    for name, levels in (("csv-01", 1), ("golden-01", 2)):
        overview = hook.resolve_overview(name)
        vm_id = overview.vm.id
        paths = [d.path for d in overview.drives if d.path]
        before = emulator.counters.snapshot()
        readings = hook.disks_and_lease(vm_id, overview.drives)
        assert (emulator.counters.snapshot() - before).pipelines_run == levels, name
        assert [[d.path for d in c.disks] for c in readings.chains] == [
            [d.path for d in c.disks] for c in hook.disk_chains(vm_id, overview.drives)
        ]
        assert len(readings.chains[0].disks) == levels
        assert readings.volumes == {p: hook.volume_of(p) for p in paths}
        assert all(v is not None and v.file_system == "CSVFS" for v in readings.volumes.values())
        assert readings.lease is None and readings.lease_error is None

    held = Lease(
        "other_dag", "run-1", str(vm_id), "airflow-other", "Production", "2026-12-07T00:00:00Z", "hv-01"
    )
    assert hook.acquire_lease(held).ours
    readings = hook.disks_and_lease(vm_id, overview.drives)
    assert readings.lease == hook.read_lease(vm_id) and readings.lease is not None
    assert readings.lease.checkpoint_name == "airflow-other"
    hook.release_lease(held)


def test_verify_reads_the_export_roots_volume_with_the_vm(hook, emulator):
    """The export root's volume rides in the overview's round trip: the same answer as ``volume_of``
    (the nearest existing folder's volume), no pipeline of its own; a share is unknown, never C:."""
    before = emulator.counters.snapshot()
    overview = hook.resolve_overview("csv-01", volume_of="D:\\Backups\\not\\yet\\there")
    assert (emulator.counters.snapshot() - before).pipelines_run == 1
    assert overview.volume == hook.volume_of("D:\\") and overview.volume is not None
    assert overview.vm.name == "csv-01" and overview.drives
    share = hook.resolve_overview("csv-01", volume_of="\\\\filer\\backups\\hv-01")
    assert share.volume is None and share.vm.name == "csv-01"
    by_id = hook.resolve_overview(str(overview.vm.id), volume_of="D:\\Backups\\not\\yet\\there")
    assert by_id.volume == overview.volume  # an Id resolves first, the volume is read after it
