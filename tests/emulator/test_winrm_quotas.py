"""WinRM quotas: a new shell past a quota gets the real QuotaLimit fault; a Delete or an idle timeout
frees its slot (docs/emulator-protocol.md, "Quotas"). In memory for the shell quotas, over the real
pypsrp client for the operations quota."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hyperv_emulator.counters import Counters
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.model.clock import ManualClock
from hyperv_emulator.model.fleet import Fleet, FleetError
from hyperv_emulator.quotas import PluginQuotas, WinRMQuotas
from hyperv_emulator.server import WSManServer
from hyperv_emulator.wsman import soap
from hyperv_emulator.wsman.service import WSManService
from tests.emulator.test_server import NOT_FOUND
from tests.emulator.test_wsman_protocol import PS_URI, NullHost, creation_bytes, envelope, parse
from tests.support.command_hosts import PASSWORD, USER, ScriptedHost

JEA_URI = "http://schemas.microsoft.com/powershell/AirflowHyperV"


def quota_service(quotas: WinRMQuotas, clock: list[float] | None = None) -> WSManService:
    now = clock if clock is not None else [0.0]
    return WSManService(
        {"hv1": NullHost()},
        faults=FaultPlan(),
        counters=Counters(),
        receive_wait_cap=0.2,
        idle_timeout=600,
        clock=lambda: now[0],
        quotas={"hv1": quotas},
    )


def create(service: WSManService, user: str = "alice", uri: str = PS_URI) -> tuple[int, bytes]:
    _, data = creation_bytes()
    shell = soap.element("rsp", "Shell")
    soap.sub(shell, "rsp", "InputStreams", "stdin pr")
    soap.sub(shell, "pwsh", "creationXml", base64.b64encode(data).decode())
    outcome = service.handle("hv1", envelope("Create", shell, uri=uri), user)
    return outcome.status, outcome.body


def shell_id_of(body: bytes) -> str:
    shell_id = parse(body).findtext("s:Body/rsp:Shell/rsp:ShellId", namespaces=soap.NS)
    assert shell_id
    return shell_id


def open_shell(service: WSManService, user: str = "alice", uri: str = PS_URI) -> str:
    status, body = create(service, user, uri)
    assert status == 200, body
    return shell_id_of(body)


def quota_fault(body: bytes) -> tuple[str, str, int, str]:
    """(Code, Subcode, WSManFault Code, f:Message) of a fault answer."""
    fault = parse(body).find("s:Body/s:Fault", soap.NS)
    assert fault is not None
    detail = fault.find("s:Detail/f:WSManFault", soap.NS)
    assert detail is not None
    return (
        fault.findtext("s:Code/s:Value", namespaces=soap.NS) or "",
        fault.findtext("s:Code/s:Subcode/s:Value", namespaces=soap.NS) or "",
        int(detail.attrib["Code"]),
        detail.findtext("f:Message", namespaces=soap.NS) or "",
    )


def test_the_shell_past_max_shells_per_user_gets_the_real_fault_and_a_delete_frees_a_slot() -> None:
    service = quota_service(WinRMQuotas(max_shells_per_user=3))
    shells = [open_shell(service) for _ in range(3)]

    status, body = create(service)
    assert status == 500
    value, subcode, code, message = quota_fault(body)
    assert (value, subcode, code) == ("s:Receiver", "w:QuotaLimit", 2150859173)
    assert message.startswith(
        "The WS-Management service cannot process the request. This user is allowed a maximum number of "
        "3 concurrent shells, which has been exceeded."
    )
    assert service.counters.quota_refusals("MaxShellsPerUser") == 1
    assert len(service.shells("hv1")) == 3  # the refused shell was never kept

    # positive control: a Delete frees the slot, the next Create is served
    assert service.handle("hv1", envelope("Delete", shell_id=shells[0]), "alice").status == 200
    open_shell(service)
    assert service.counters.quota_refusals() == 1
    assert service.counters.peak_shells_per_user("hv1") == 3


def test_the_peak_of_shells_is_kept_per_host_and_user_after_the_shells_are_gone() -> None:
    """A bench proves a run stayed under the quotas from these peaks: they must see every shell."""
    service = quota_service(WinRMQuotas())
    alice = [open_shell(service, "alice") for _ in range(7)]
    open_shell(service, "Bob")
    open_shell(service, "bob")
    for shell_id in alice:
        assert service.handle("hv1", envelope("Delete", shell_id=shell_id), "alice").status == 200
    open_shell(service, "alice")  # one again: the peak stays 7

    snap = service.counters.snapshot()
    assert snap.peak_shells_by_user == {"hv1": {"alice": 7, "bob": 2}}
    assert service.counters.peak_shells_per_user("hv1", "ALICE") == 7
    assert service.counters.quota_faults("hv1") == 0  # under every quota: no fault answered
    assert snap.quota_faults_by_host == {}


def test_every_quota_limit_fault_is_counted_on_its_host() -> None:
    """Positive control of the peaks: past the quota the peak stops at the limit, each fault counts."""
    service = quota_service(WinRMQuotas(max_shells_per_user=4))
    for _ in range(4):
        open_shell(service)
    for _ in range(3):
        assert create(service)[0] == 500
    assert service.counters.peak_shells_per_user("hv1", "alice") == 4
    assert service.counters.quota_faults("hv1") == 3
    assert service.counters.snapshot().quota_faults_by_host == {"hv1": 3}
    service.counters.reset()
    assert service.counters.quota_faults() == 0 and service.counters.peak_shells_per_user("hv1", "alice") == 0


def test_with_the_real_defaults_the_powershell_plugin_refuses_the_26th_shell() -> None:
    service = quota_service(WinRMQuotas())
    for _ in range(25):
        open_shell(service)
    status, body = create(service)
    assert status == 500
    _, subcode, code, message = quota_fault(body)
    assert (subcode, code) == ("w:QuotaLimit", 2150859236)  # ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ
    assert "maximum number of concurrent shells allowed for this plugin" in message
    assert service.counters.quota_refusals("plugin MaxShellsPerUser") == 1


def test_winrms_own_limit_applies_across_endpoints_and_the_plugins_per_endpoint() -> None:
    service = quota_service(WinRMQuotas(max_shells_per_user=3, plugin=PluginQuotas(max_shells_per_user=2)))
    open_shell(service)
    open_shell(service)
    status, body = create(service)  # a third on microsoft.powershell: the plugin's limit of 2
    assert status == 500 and quota_fault(body)[2] == 2150859236
    open_shell(service, uri=JEA_URI)  # another endpoint is another plugin: served
    status, body = create(service, uri=JEA_URI)  # but WinRM counts all three
    assert status == 500 and quota_fault(body)[2] == 2150859173


def test_disconnected_shells_hold_their_slot_until_their_idle_timeout_on_the_injected_clock() -> None:
    now = [0.0]
    service = quota_service(WinRMQuotas(max_shells_per_user=2), clock=now)
    first = open_shell(service)
    open_shell(service)
    disconnect = soap.element("rsp", "Disconnect")
    soap.sub(disconnect, "rsp", "IdleTimeOut", "PT60S")
    assert service.handle("hv1", envelope("Disconnect", disconnect, first), "alice").status == 200

    now[0] = 59.0  # still inside its idle timeout: the disconnected shell counts
    status, body = create(service)
    assert status == 500 and quota_fault(body)[2] == 2150859173

    now[0] = 61.0  # past it: the host deletes the shell and the slot is free again
    open_shell(service)
    assert first not in {s.shell_id for s in service.shells("hv1")}
    assert service.counters.quota_refusals("MaxShellsPerUser") == 1


def test_max_concurrent_users_refuses_a_new_user_but_not_a_second_shell_of_a_known_one() -> None:
    service = quota_service(WinRMQuotas(max_concurrent_users=2))
    open_shell(service, "alice")
    open_shell(service, "bob")
    status, body = create(service, "carol")
    assert status == 500
    _, subcode, code, message = quota_fault(body)
    assert (subcode, code) == ("w:QuotaLimit", 2150859179)  # ERROR_WSMAN_QUOTA_MAX_SHELLUSERS
    assert "maximum number of users executing shell operations" in message
    open_shell(service, "alice")  # alice already holds a shell: no new user


def test_the_plugins_max_concurrent_users_is_its_own_quota() -> None:
    service = quota_service(WinRMQuotas(plugin=PluginQuotas(max_concurrent_users=1)))
    open_shell(service, "alice")
    status, body = create(service, "bob")
    assert status == 500 and quota_fault(body)[2] == 2150859237  # ERROR_WSMAN_QUOTA_MAX_USERS_PPQ
    open_shell(service, "bob", uri=JEA_URI)


def test_the_fleet_file_sets_a_hosts_quotas_and_names_a_bad_value(tmp_path: Path) -> None:
    fleet = Fleet.load(
        {
            "hosts": [
                {
                    "name": "hv-01",
                    "winrm": {"max_shells_per_user": 40, "plugin": {"max_shells_per_user": 30}},
                },
                {"name": "hv-02"},
            ]
        },
        root_dir=tmp_path,
        clock=ManualClock(),
        faults=FaultPlan(),
    )
    assert fleet.winrm_quotas["hv-01"] == WinRMQuotas(
        max_shells_per_user=40, plugin=PluginQuotas(max_shells_per_user=30)
    )
    assert fleet.winrm_quotas["hv-02"] == WinRMQuotas()
    with pytest.raises(FleetError, match=r"hv-01.*winrm\.plugin\.max_shells.*at least 1"):
        Fleet.load(
            {"hosts": [{"name": "hv-01", "winrm": {"plugin": {"max_shells": 0}}}]},
            root_dir=tmp_path,
            clock=ManualClock(),
            faults=FaultPlan(),
        )
    with pytest.raises(FleetError, match=r"winrm\.max_shells_per_host.*unknown quota"):
        Fleet.load(
            {"hosts": [{"name": "hv-01", "winrm": {"max_shells_per_host": 3}}]},
            root_dir=tmp_path,
            clock=ManualClock(),
            faults=FaultPlan(),
        )


# -- MaxConcurrentOperationsPerUser, over the real client ------------------------------------------


@pytest.fixture
def one_operation_server() -> Iterator[WSManServer]:
    hosts = {"hv1": ScriptedHost("hv1", error=NOT_FOUND)}
    with WSManServer(
        hosts,
        username=USER,
        password=PASSWORD,
        auth="basic",
        receive_wait_cap=0.3,
        quotas={"hv1": WinRMQuotas(max_concurrent_operations_per_user=1)},
    ) as srv:
        yield srv


def test_a_command_past_max_concurrent_operations_gets_the_busy_fault(
    one_operation_server: WSManServer,
) -> None:
    srv = one_operation_server
    kwargs = srv.pypsrp_kwargs("hv1") | {"operation_timeout": 5, "read_timeout": 10, "encryption": "never"}
    with RunspacePool(WSMan(**kwargs)) as busy, RunspacePool(WSMan(**kwargs)) as other:
        running = PowerShell(busy)
        running.add_cmdlet("Sleep-X").add_parameter("Count", 200).add_parameter("Seconds", 0.05)
        running.begin_invoke()
        refused = PowerShell(other)
        refused.add_cmdlet("Echo-X").add_parameter("Name", "x")
        with pytest.raises(WSManFaultError) as err:
            refused.invoke()
        assert err.value.code == 2150859174 and "maximum number of 1 concurrent operations" in str(
            err.value.reason
        )
        assert srv.counters.quota_refusals("MaxConcurrentOperationsPerUser") == 1
        assert srv.counters.quota_faults("hv1") == 1
        assert srv.counters.peak_operations("hv1", USER) == 1  # the refused one never ran
        running.stop()
        # positive control: with the first command over, the same command is served
        again = PowerShell(other)
        again.add_cmdlet("Echo-X").add_parameter("Name", "y")
        again.invoke()
        assert not again.had_errors


def test_the_emulator_reports_peak_shells_and_faults_next_to_each_hosts_quotas(tmp_path: Path) -> None:
    """``Emulator.quota_usage`` over the real client: N pools held at once read as a peak of N."""
    from hyperv_emulator.api import Emulator

    fleet = {"hosts": [{"name": "hv-01", "winrm": {"max_shells_per_user": 3}}, {"name": "hv-02"}]}
    with Emulator(fleet=fleet, root_dir=tmp_path, auth="basic") as emu:
        kwargs = emu.server.pypsrp_kwargs("hv-01") | {"operation_timeout": 5, "read_timeout": 10}
        pools = [RunspacePool(WSMan(**kwargs)) for _ in range(3)]
        for pool in pools:
            pool.open()
        with pytest.raises(WSManFaultError) as err:  # the fourth: past max_shells_per_user
            RunspacePool(WSMan(**kwargs)).open()
        assert err.value.code == 2150859173
        for pool in pools:
            pool.close()
        rows = {row["host"]: row for row in emu.quota_usage()}

    user = emu.username.lower()
    assert rows["hv-01"] == {
        "host": "hv-01",
        "user": user,
        "peak_shells": 3,
        "max_shells_per_user": 3,
        "plugin_max_shells_per_user": 25,
        "peak_operations": 0,
        "max_operations_per_user": 1500,
        "quota_faults": 1,
    }
    assert rows["hv-02"]["user"] == "" and rows["hv-02"]["peak_shells"] == 0
