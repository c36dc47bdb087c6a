"""Values real Hyper-V hosts send that the emulator and client once disagreed with: every VMState
(Critical twins, values from newer Windows), .NET round-trip dates, localized integration services
and the error records real hosts emit. Sources: docs/emulator.md, Conformance."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from airflow_hyperv.hyperv.enums import CheckpointType, VMState
from airflow_hyperv.hyperv.errors import (
    CheckpointNotFoundError,
    CommandFailedError,
    ErrorInfo,
    PathNotFoundError,
    PermissionDeniedError,
    StorageFullError,
    VMNotFoundError,
    classify,
    means_production_impossible,
)
from airflow_hyperv.hyperv.records import IntegrationService, Props, VirtualMachine
from airflow_hyperv.hyperv.verify import Verdict, verify

VIRT = "Microsoft.HyperV.PowerShell.VirtualizationException"
CMD = "Microsoft.HyperV.PowerShell.Commands."

# Microsoft.HyperV.PowerShell.VMState (decompiled module, nforgeio/neonSDK HyperVWmiDriver VMState.cs).
REAL_STATES = {
    "Other": 1, "Running": 2, "Off": 3, "Stopping": 4, "Saved": 6, "Paused": 9, "Starting": 10, "Reset": 11,
    "Saving": 32773, "Pausing": 32776, "Resuming": 32777, "FastSaved": 32779, "FastSaving": 32780,
    "ForceShutdown": 32781, "ForceReboot": 32782, "Hibernated": 32783, "ComponentServicing": 32784,
    "RunningCritical": 32785, "OffCritical": 32786, "StoppingCritical": 32787, "SavedCritical": 32788,
    "PausedCritical": 32789, "StartingCritical": 32790, "ResetCritical": 32791, "SavingCritical": 32792,
    "PausingCritical": 32793, "ResumingCritical": 32794, "FastSavedCritical": 32795, "FastSavingCritical": 32796,
}  # fmt: skip


class RemoteEnum:
    """An enum as pypsrp decodes it: the number in property_sets, the .NET name in to_string."""

    def __init__(self, value: int, name: str) -> None:
        self.property_sets = [value]
        self.to_string = name


def vm_object(state: object, **extra: object) -> dict[str, object]:
    return {
        "Name": "vm-1",
        "Id": str(uuid.uuid4()),
        "State": state,
        "Status": "Normaler Betrieb",
        "CheckpointType": RemoteEnum(3, "Production"),
        **extra,
    }


# -- 1. VM states ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), sorted(REAL_STATES.items(), key=lambda kv: kv[1]))
def test_every_real_vm_state_decodes_by_number_and_by_name(name, value):
    assert VMState.parse(value).name == name
    assert VMState.parse(RemoteEnum(value, name)).name == name
    assert VMState.parse(RemoteEnum(value, name)).is_critical == name.endswith("Critical")


def test_a_state_from_a_newer_windows_keeps_its_number_and_breaks_nothing():
    vm = VirtualMachine.decode(vm_object(RemoteEnum(32801, "SomethingNew")))
    assert int(vm.state) == 32801 and vm.state.name == "Unknown32801"
    assert not vm.state.is_known and not vm.state.is_critical
    assert vm.to_dict()["state"] == "Unknown32801"


def test_remoting_enums_decode_by_name_because_numbers_differ_between_windows_versions():
    # eryph-org/eryph: after ForceShutdown the numbers differ by Windows version (no Hibernated on 2016).
    assert VMState.parse(RemoteEnum(32783, "RunningCritical")) is VMState.RunningCritical


def _verify(state: VMState):
    vm = VirtualMachine(
        id=uuid.uuid4(), name="store-01", state=state, status="", heartbeat=None,
        checkpoint_type=CheckpointType.Production, automatic_checkpoints=False,
    )  # fmt: skip
    return verify(vm, [], [], [], host="hv-01")


@pytest.mark.parametrize("state", [VMState.PausedCritical, VMState.RunningCritical, VMState.OffCritical])
def test_verify_blocks_a_critical_vm_with_its_reason(state):
    report = _verify(state)
    assert report.verdict is Verdict.BLOCKED
    assert [f.code for f in report.findings if f.severity == "blocks"] == ["vm-critical"]
    assert state.name in report.reasons[0] and "health is not OK" in report.reasons[0]


def test_verify_blocks_an_unknown_state_naming_its_number():
    report = _verify(VMState(32801))
    assert report.verdict is Verdict.BLOCKED and "32801" in report.reasons[0]


# -- 2. dates ---------------------------------------------------------------------------------------------

UTC = dt.timezone.utc
CET = dt.timezone(dt.timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T03:14:15.1234567+01:00", dt.datetime(2026, 11, 29, 3, 14, 15, 123456, CET)),
        ("2026-11-29T03:14:15.12+01:00", dt.datetime(2026, 11, 29, 3, 14, 15, 120000, CET)),
        ("2026-11-29T03:14:15.1Z", dt.datetime(2026, 11, 29, 3, 14, 15, 100000, UTC)),
        ("2026-11-29T03:14:15-05:30", dt.datetime(2026, 11, 29, 3, 14, 15, 0, dt.timezone(-dt.timedelta(hours=5, minutes=30)))),
        ("2026-11-29T03:14:15.0000001+00:00", dt.datetime(2026, 11, 29, 3, 14, 15, 0, UTC)),
        ("2026-11-29T03:14:15", dt.datetime(2026, 11, 29, 3, 14, 15, 0, UTC)),  # DateTimeKind.Unspecified
    ],
)  # fmt: skip
def test_clixml_dates_decode_to_aware_datetimes(text, expected):
    decoded = Props({"CreationTime": text}).time("CreationTime")
    assert decoded == expected and decoded.utcoffset() == expected.utcoffset()


def test_a_date_that_is_not_a_date_is_refused_clearly():
    with pytest.raises(ValueError, match="CLIXML DateTime"):
        Props({"CreationTime": "29.11.2026 03:14"}).time("CreationTime")


# -- 3. integration services by component GUID --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "guid", "is_vss"),
    [
        ("VSS", "5CED1297-4598-4915-A5FC-AD21BB4D02A4", True),
        ("Backup (volume shadow copy)", "5CED1297-4598-4915-A5FC-AD21BB4D02A4", True),  # Server 2012 R2
        ("Takt", "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47", False),  # German Heartbeat
        ("Grænseflade til gæstetjeneste", "6C09BB55-D683-4DA0-8931-C9BF705F6480", False),  # Danish GSI
        ("VSS", "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47", False),  # a name proves nothing
    ],
)
def test_the_backup_service_is_found_by_its_component_guid(name, guid, is_vss):
    vm_id = str(uuid.uuid4()).upper()
    svc = IntegrationService.decode({"Name": name, "Id": f"Microsoft:{vm_id}\\{guid}", "Enabled": True})
    assert svc.is_backup_service is is_vss


# -- 4. error records -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "cls"),
    [
        # Get-VM -Name with no match (minikube#8970, PS-AutoLab-Env#133)
        (ErrorInfo(f"InvalidParameter,{CMD}GetVM", "InvalidArgument", VIRT), VMNotFoundError),
        # -VMName cmdlets with no match (Lability#294, Easy-GPU-PV#449)
        (ErrorInfo(f"ObjectNotFound,{CMD}CheckpointVM", "ObjectNotFound", VIRT), VMNotFoundError),
        (ErrorInfo(f"ObjectNotFound,{CMD}GetVMSnapshot", "ObjectNotFound", VIRT), CheckpointNotFoundError),
        # A service name not found is no missing VM (PlagueHO/LabBuilder#183)
        (
            ErrorInfo(
                f"InvalidParameter,{CMD}GetVMIntegrationServiceCommand",
                "InvalidArgument",
                "Microsoft.HyperV.PowerShell.VirtualizationInvalidArgumentException",
            ),
            CommandFailedError,
        ),
        # permission problems are never "not found"
        (ErrorInfo(f"AccessDenied,{CMD}GetVM", "PermissionDenied", VIRT), PermissionDeniedError),
        (ErrorInfo("ItemExists", "PermissionDenied", "System.UnauthorizedAccessException"), PermissionDeniedError),
        # file errors are about files, not VMs or checkpoints
        (
            ErrorInfo(
                "PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand",
                "ObjectNotFound",
                "System.Management.Automation.ItemNotFoundException",
            ),
            PathNotFoundError,
        ),
        (ErrorInfo("ObjectNotFound,Microsoft.Vhd.PowerShell.Cmdlets.GetVhd", "ObjectNotFound", VIRT), PathNotFoundError),
        # ResourceUnavailable says nothing about storage
        (ErrorInfo(f"Unspecified,{CMD}ExportVMSnapshot", "ResourceUnavailable", VIRT), CommandFailedError),
        # a full volume is recognised by its Win32 code, not by prose
        (
            ErrorInfo(
                f"OperationFailed,{CMD}ExportVMSnapshot", "NotSpecified", VIRT,
                exception_message="Failed to copy file during export.\nDer Datenträger ist voll. (0x80070070).",
            ),
            StorageFullError,
        ),
    ],
)  # fmt: skip
def test_errors_are_classified_by_what_real_hosts_emit(info, cls):
    assert type(classify(info)) is cls


def test_only_a_plain_failed_checkpoint_job_means_the_guest_could_not_quiesce():
    refused = ErrorInfo(
        f"OperationFailed,{CMD}CheckpointVM", "NotSpecified", VIRT,
        exception_message="Checkpoint operation failed.\nProduction checkpoints cannot be created.",
    )  # fmt: skip
    disk_full = ErrorInfo(
        f"OperationFailed,{CMD}CheckpointVM", "NotSpecified", VIRT,
        exception_message="Checkpoint operation failed. There is not enough space on the disk. (0x80070070)",
    )  # fmt: skip
    denied = ErrorInfo(f"AccessDenied,{CMD}CheckpointVM", "PermissionDenied", VIRT)
    assert means_production_impossible(classify(refused))
    assert not means_production_impossible(classify(disk_full))
    assert not means_production_impossible(classify(denied))


def test_an_error_shows_the_hyperv_reason_not_the_category_line():
    info = ErrorInfo(
        f"InvalidParameter,{CMD}GetVM", "InvalidArgument", VIRT,
        message="InvalidArgument: (nope:String) [Get-VM], VirtualizationException",
        exception_message='Hyper-V was unable to find a virtual machine with name "nope".',
    )  # fmt: skip
    assert str(classify(info)) == (
        f'Hyper-V was unable to find a virtual machine with name "nope". [InvalidParameter,{CMD}GetVM]'
    )
