"""Two VMs of one name on a host (Hyper-V allows it; Import-VM -Copy -GenerateNewId makes one): every
operator and sensor refuses the name, naming both Ids, before anything on the host changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.support.emulated import uri_for

STORAGE_FLEET = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "storage.yaml"
# Everything the provider can run that changes a host (pipelines.py, restore.py).
CHANGING = {
    "Set-VM",
    "Checkpoint-VM",
    "Export-VMSnapshot",
    "Remove-VMSnapshot",
    "Restore-VMSnapshot",
    "Start-VM",
    "Stop-VM",
    "Import-VM",
    "Rename-VM",
    "Disconnect-VMNetworkAdapter",
    "Remove-VM",
    "New-Item",
    "Move-Item",
    "Remove-Item",
}


@pytest.fixture
def emulator(tmp_path):
    from hyperv_emulator.api import Emulator

    with Emulator(STORAGE_FLEET, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        yield emu


def operators():
    from airflow_hyperv.operators.checkpoint import (
        HyperVCreateCheckpointOperator,
        HyperVMergeCheckpointOperator,
        HyperVRestoreCheckpointOperator,
        HyperVSetCheckpointTypeOperator,
    )
    from airflow_hyperv.operators.export import HyperVExportCheckpointOperator, HyperVRetentionOperator
    from airflow_hyperv.operators.verify import HyperVVerifyOperator
    from airflow_hyperv.sensors.checkpoint import HyperVCheckpointMergedSensor
    from airflow_hyperv.sensors.vm import HyperVVMStateSensor

    common = {"vm": "twin-01"}
    return [
        HyperVVerifyOperator(task_id="verify", export_path="D:\\Backups", **common),
        HyperVCreateCheckpointOperator(task_id="create", **common),
        HyperVMergeCheckpointOperator(task_id="merge", deferrable=False, **common),
        HyperVRestoreCheckpointOperator(
            task_id="restore", checkpoint_name="before", deferrable=False, **common
        ),
        HyperVSetCheckpointTypeOperator(task_id="set_type", checkpoint_type="ProductionOnly", **common),
        HyperVExportCheckpointOperator(
            task_id="export", export_root="D:\\Backups", deferrable=False, **common
        ),
        HyperVRetentionOperator(task_id="retention", export_root="D:\\Backups", **common),
        HyperVCheckpointMergedSensor(task_id="merged", checkpoint_id="0" * 8, deferrable=False, **common),
        HyperVVMStateSensor(task_id="state", target_state="Running", deferrable=False, **common),
    ]


def test_the_fleet_holds_two_vms_of_one_name(emulator):
    """Positive control: the loader accepts them, each with its own Id and folder."""
    twins = [v for v in emulator.host("hv-01").vms() if v.name == "twin-01"]
    assert len(twins) == 2 and twins[0].id != twins[1].id and twins[0].path != twins[1].path


def test_every_operator_refuses_an_ambiguous_name_with_both_ids_before_changing_anything(
    emulator, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    ids = [str(v.id) for v in emulator.host("hv-01").vms() if v.name == "twin-01"]
    refused = []
    for op in operators():
        with pytest.raises(AirflowFailException) as info:
            op.execute({})
        message = str(info.value)
        assert all(i in message for i in ids), (op.task_id, message)
        refused.append(op.task_id)
    assert len(refused) == len(operators())
    assert emulator.audit.entries(cmdlet="Get-VM")  # the name was looked up, on the host …
    assert not [e for e in emulator.audit.entries() if e.cmdlet in CHANGING]  # … and nothing changed
