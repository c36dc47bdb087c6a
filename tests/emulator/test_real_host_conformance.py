"""The emulator behaves like a real host where the client depends on it, seen through the real pypsrp
client and hook: localized hosts, local-time dates, Critical states, and the error records real hosts
emit. Each behaviour has its source in docs/emulator.md, Conformance ("States, dates, names, errors")."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.errors import PermissionDeniedError, VMNotFoundError
from airflow_hyperv.hyperv.records import Checkpoint, ServiceComponent, VirtualMachine
from airflow_hyperv.hyperv.verify import Verdict, verify
from hyperv_emulator.api import EXAMPLE_FLEET, Emulator
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.model import Fleet, ManualClock
from hyperv_emulator.model.fleet import FleetError
from tests.support.emulated import settings_for

FLEETS = EXAMPLE_FLEET.parent


@contextmanager
def connected(tmp_path: Path, fleet: Any, host: str = "hv-01") -> Iterator[tuple[Emulator, HyperVHook]]:
    with Emulator(fleet=fleet, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        hook = HyperVHook(settings=settings_for(emu, host))
        hook.retry_wait_multiplier = 0.01
        hook.retry_wait_max = 0.05
        with hook:
            yield emu, hook


def verify_vm(hook: HyperVHook, name: str):
    vm = hook.get_vm(name=name)
    overview = hook.vm_overview(vm.id)
    chains = hook.disk_chains(vm.id, overview.drives)
    return verify(overview.vm, overview.services, overview.checkpoints, chains, host="hv")


# -- 1. states ------------------------------------------------------------------------------------------


def test_a_host_with_critical_vms_is_read_whole_and_each_critical_vm_is_blocked(tmp_path):
    with connected(tmp_path, FLEETS / "critical.yaml") as (_, hook):
        states = {v["name"]: v["state"] for v in hook.host_state().vms.values()}
        assert states == {
            "dc-01": "Running",
            "store-01": "PausedCritical",
            "run-01": "RunningCritical",
            "off-01": "OffCritical",
        }
        for name in ("store-01", "run-01", "off-01"):
            report = verify_vm(hook, name)
            assert report.verdict is Verdict.BLOCKED
            assert "vm-critical" in [f.code for f in report.findings], report.findings
        assert verify_vm(hook, "dc-01").verdict is Verdict.PRODUCTION


# -- 2. dates -------------------------------------------------------------------------------------------

NET_ROUND_TRIP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,6}[1-9])?[+-]\d\d:\d\d")


def test_dates_go_out_in_host_local_time_with_trimmed_ticks_and_decode_to_the_same_instant(tmp_path):
    with connected(tmp_path, FLEETS / "de-de.yaml") as (emu, hook):
        model = next(v for v in emu.host("hv-01").vms() if v.name == "dc-01")
        result = hook.run_repeatable(pipelines.get_vm_by_id(model.id))
        wire = result.output[0].adapted_properties["CreationTime"]
        assert NET_ROUND_TRIP.fullmatch(wire) and wire.endswith("+01:00"), wire
        decoded = hook.get_vm(vm_id=model.id)
        assert isinstance(decoded, VirtualMachine)
        made = hook.create_checkpoint(model.id, "conformance", consistency="application").checkpoint
        raw = (
            hook.run_repeatable(pipelines.get_checkpoint(made.id))
            .output[0]
            .adapted_properties["CreationTime"]
        )
        assert NET_ROUND_TRIP.fullmatch(raw) and raw.endswith("+01:00"), raw
        checkpoint = Checkpoint.decode(hook.run_repeatable(pipelines.get_checkpoint(made.id)).output[0])
        cp_model = model.checkpoint(made.id)
        assert checkpoint.creation_time is not None and cp_model is not None
        assert abs(checkpoint.creation_time.timestamp() - cp_model.creation_time) < 1e-5
        assert checkpoint.creation_time.utcoffset().total_seconds() == 3600


# -- 3. localized services --------------------------------------------------------------------------------


def test_a_german_host_prints_german_service_names_and_the_vss_service_is_still_found(tmp_path):
    with connected(tmp_path, FLEETS / "de-de.yaml") as (_, hook):
        vm = hook.get_vm(name="dc-01")
        names = {s.name for s in hook.integration_services(vm.id)}
        assert names == {
            "Gastdienstschnittstelle", "Takt", "Austausch von Schlüsselwertepaaren",
            "Herunterfahren", "Zeitsynchronisierung", "VSS",
        }  # fmt: skip
        assert hook.get_vm(name="dc-01").status == "Normaler Betrieb"
        # -Name matches the localized name only (PlagueHO/LabBuilder#183)
        by_name = hook.run_repeatable(
            pipelines.single_statement(
                pipelines.bound_command("Get-VMIntegrationService", VMName="dc-01", Name="Takt")
            )
        )
        assert len(by_name.output) == 1
        english = hook.run_repeatable(
            pipelines.single_statement(
                pipelines.bound_command("Get-VMIntegrationService", VMName="dc-01", Name="Heartbeat")
            )
        )
        assert not english.output
        assert verify_vm(hook, "dc-01").verdict is Verdict.PRODUCTION
        disabled = verify_vm(hook, "file-01")
        assert [f.code for f in disabled.findings if f.severity == "prevents-production"] == ["vss-disabled"]
        # the fix names the service by its component GUID: -Name with a localized name fails elsewhere
        fix = next(f.message for f in disabled.findings if f.code == "vss-disabled")
        assert f"Where-Object Id -like '*\\{ServiceComponent.VSS}'" in fix and "-Name" not in fix, fix


def test_a_danish_2012r2_host_names_services_its_own_way_and_vss_is_found_by_guid(tmp_path):
    with connected(tmp_path, FLEETS / "de-de.yaml", host="hv-02") as (_, hook):
        vm = hook.get_vm(name="app-02")
        services = hook.integration_services(vm.id)
        names = {s.name for s in services}
        assert {
            "Grænseflade til gæstetjeneste",
            "Backup (volume shadow copy)",
        } <= names and "VSS" not in names
        assert [s.name for s in services if s.is_backup_service] == ["Backup (volume shadow copy)"]
        assert verify_vm(hook, "app-02").verdict is Verdict.PRODUCTION


# -- 4. error records ------------------------------------------------------------------------------------


def test_get_vm_by_a_missing_name_answers_invalid_parameter_and_the_hook_says_not_found(tmp_path):
    with connected(tmp_path, EXAMPLE_FLEET) as (_, hook):
        error = hook.run_repeatable(pipelines.get_vm_by_name("nope")).errors[0]
        assert error.fully_qualified_error_id == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"
        assert error.category == "InvalidArgument"
        with pytest.raises(VMNotFoundError) as caught:
            hook.get_vm(name="nope")
        assert caught.value.info is not None
        assert (
            caught.value.info.exception_message
            == 'Hyper-V was unable to find a virtual machine with name "nope".'
        )
        # -VMName cmdlets answer ObjectNotFound for the same situation, and so does Get-VM -Id
        snapshots = hook.run_repeatable(
            pipelines.single_statement(pipelines.bound_command("Get-VMSnapshot", VMName="nope"))
        ).errors[0]
        assert snapshots.category == "ObjectNotFound" and snapshots.error_id == "ObjectNotFound"
        missing = uuid.uuid4()
        by_id = hook.run_repeatable(pipelines.get_vm_by_id(missing)).errors[0]
        assert by_id.category == "ObjectNotFound" and by_id.error_id == "ObjectNotFound"
        with pytest.raises(VMNotFoundError):
            hook.get_vm(vm_id=missing)


def test_a_permission_error_on_get_vm_is_not_read_as_a_missing_vm(tmp_path):
    fleet = {"hosts": [{"name": "hv-01", "hyperv_admin": False, "vms": [{"name": "dc-01"}]}]}
    with connected(tmp_path, fleet) as (_, hook):
        with pytest.raises(PermissionDeniedError) as caught:
            hook.get_vm(name="dc-01")
        assert "required permission" in str(caught.value) and "not found" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("locale", "fr-FR", "not one of en-US, de-DE, da-DK"),
        ("utc_offset", "+1", "not an offset"),
        ("windows", "2008", "not one of 2012R2"),
        ("hyperv_admin", "no", "expected true or false"),
    ],
)
def test_a_bad_host_culture_in_a_fleet_file_names_the_field(tmp_path, field, value, message):
    fleet = {"hosts": [{"name": "hv-01", field: value}]}
    with pytest.raises(FleetError, match=f"field '{field}': .*{message}"):
        Fleet.load(fleet, root_dir=tmp_path, clock=ManualClock(), faults=FaultPlan())
