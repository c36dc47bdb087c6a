import uuid

import pytest

from airflow_hyperv.hyperv.enums import CheckpointType, HeartbeatStatus, VMState
from airflow_hyperv.hyperv.errors import (
    CheckpointNotFoundError,
    CommandFailedError,
    ErrorInfo,
    ScriptRefusedError,
    VMNotFoundError,
    classify,
)
from airflow_hyperv.hyperv.records import Checkpoint, IntegrationService, VirtualMachine


class RemoteEnum:
    """Shape of an enum as pypsrp decodes it: value in property_sets, name in to_string."""

    def __init__(self, value, name):
        self.property_sets = [value]
        self.to_string = name

    def __str__(self):
        return self.to_string


def test_enums_parse_from_remoting_objects_names_and_ints():
    assert VMState.parse(RemoteEnum(2, "Running")) is VMState.Running
    assert VMState.parse("Off") is VMState.Off
    assert VMState.parse(6) is VMState.Saved
    assert CheckpointType.parse("productiononly") is CheckpointType.ProductionOnly
    assert CheckpointType.ProductionOnly.value == 4
    with pytest.raises(ValueError, match="CheckpointType"):
        CheckpointType.parse("Sometimes")


def test_vm_record_decodes_and_serialises_to_plain_json():
    vm_id = uuid.uuid4()
    vm = VirtualMachine.decode(
        {
            "Name": "web-01",
            "Id": str(vm_id),
            "State": RemoteEnum(2, "Running"),
            "Status": "Fonctionnement normal",
            "Heartbeat": RemoteEnum(6, "OkApplicationsHealthy"),
            "CheckpointType": RemoteEnum(3, "Production"),
            "AutomaticCheckpointsEnabled": False,
        }
    )
    assert (
        vm.id == vm_id
        and vm.state is VMState.Running
        and vm.heartbeat is HeartbeatStatus.OkApplicationsHealthy
    )
    assert vm.to_dict()["state"] == "Running" and vm.to_dict()["id"] == str(vm_id)


def test_checkpoint_memory_state_and_backup_service_names():
    cp = Checkpoint.decode(
        {"Id": str(uuid.uuid4()), "VMId": str(uuid.uuid4()), "Name": "x", "SnapshotType": 0, "State": "Saved"}
    )
    assert cp.has_memory_state
    vm_id = str(uuid.uuid4()).upper()
    svc = IntegrationService.decode(
        {
            "Name": "Backup (volume shadow copy)",
            "Id": f"Microsoft:{vm_id}\\5CED1297-4598-4915-A5FC-AD21BB4D02A4",
            "Enabled": True,
        }
    )
    assert svc.is_backup_service
    assert not IntegrationService.decode({"Name": "VSS", "Enabled": True}).is_backup_service  # no Id: unknown


@pytest.mark.parametrize(
    ("info", "cls"),
    [
        (
            ErrorInfo(
                "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.CheckpointVM",
                "ObjectNotFound",
                "Microsoft.HyperV.PowerShell.VirtualizationException",
            ),
            VMNotFoundError,
        ),
        (
            ErrorInfo(
                "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVMSnapshot",
                "ObjectNotFound",
                "Microsoft.HyperV.PowerShell.VirtualizationException",
            ),
            CheckpointNotFoundError,
        ),
        (
            ErrorInfo("ScriptsNotAllowed", "ParserError", "System.Management.Automation.ParseException"),
            ScriptRefusedError,
        ),
        (ErrorInfo("Something,Else", "NotSpecified", "System.Exception", message="boom"), CommandFailedError),
    ],
)
def test_error_classification_uses_ids_not_messages(info, cls):
    assert type(classify(info)) is cls
