"""Retries, authentication, TLS, hostile names and the connection test, against the emulator."""

from __future__ import annotations

import pytest

from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.errors import (
    AuthenticationFailedError,
    InvalidInputError,
    TransportError,
    VMNotFoundError,
    WildcardNameError,
)
from hyperv_emulator.api import Emulator
from hyperv_emulator.faults import Fault
from tests.support.emulated import settings_for, uri_for


def fast(hook: HyperVHook) -> HyperVHook:
    hook.retry_wait_multiplier, hook.retry_wait_max = 0.01, 0.05
    return hook


def test_a_read_is_retried_after_a_dropped_connection(emulator):
    emulator.faults.inject(Fault.DROP_BEFORE_RUN, cmdlet="Get-VM")
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        assert hv.get_vm(name="dc-01").name == "dc-01"
    assert emulator.faults.count_fired(Fault.DROP_BEFORE_RUN) == 1


def test_a_lost_answer_after_checkpoint_vm_ran_makes_exactly_one_checkpoint(emulator):
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        dc = hv.get_vm(name="dc-01")
        emulator.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Checkpoint-VM")
        name = "airflow-hyperv 20261125T0100Z 111111111111"
        result = hv.create_checkpoint(dc.id, name, consistency=Consistency.APPLICATION)
        assert result.checkpoint.name == name
        assert [c.name for c in hv.list_checkpoints(dc.id)] == [name]
    assert emulator.faults.count_fired(Fault.DROP_AFTER_RUN) == 1
    assert len(emulator.audit.entries(cmdlet="Checkpoint-VM")) == 1


@pytest.mark.parametrize("fault", [Fault.WSMAN_BUSY, Fault.WSMAN_TIMEOUT])
def test_busy_and_timeout_faults_are_retried(emulator, fault):
    emulator.faults.inject(fault, cmdlet="Get-VMHost")
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        assert hv.host_info().host.name
    assert emulator.faults.count_fired(fault) == 1


def test_retries_are_bounded(emulator):
    emulator.faults.inject(Fault.DROP_BEFORE_RUN, cmdlet="Get-VMHost", times=None)
    settings = settings_for(emulator, "hv-01", retry_attempts=3)
    with fast(HyperVHook(settings=settings)) as hv, pytest.raises(TransportError):
        hv.host_info()
    assert emulator.faults.count_fired(Fault.DROP_BEFORE_RUN) == 3


def test_rejected_credentials_are_never_retried(emulator):
    emulator.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    hv = fast(HyperVHook(settings=settings_for(emulator, "hv-01")))
    with pytest.raises(AuthenticationFailedError) as info:
        hv.open()
    assert emulator.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1
    assert emulator.password not in str(info.value)


def test_wrong_password_fails_the_connection_test_without_leaking_it(emulator):
    settings = settings_for(emulator, "hv-01")
    wrong = ConnectionSettings.from_connection(
        host=settings.host, port=settings.port, login=settings.username, password="not-the-password",
        extra=emulator.connection_extra("hv-01"),
    )  # fmt: skip
    ok, message = HyperVHook(settings=wrong).test_connection()
    assert not ok and "rejected the credentials" in message and "not-the-password" not in message
    assert "not-the-password" not in repr(wrong)


def test_connection_test_through_airflows_own_path(emulator, monkeypatch):
    from airflow.models.connection import Connection

    monkeypatch.setenv("AIRFLOW_CONN_HV_EMULATED", uri_for(emulator, "hv-02"))
    ok, message = Connection.get_connection_from_secrets("hv_emulated").test_connection()
    assert ok, message
    assert "hv-02/wsman" in message and emulator.password not in message


@pytest.mark.parametrize(
    "name", ["*", "?c-01", "[d]c-01", "dc-0[1]", "dc`-01", "dc-01\nRemove-VM", "x" * 150]
)
def test_hostile_names_are_refused_before_the_host_is_contacted(emulator, name):
    before = emulator.counters.snapshot()
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        opened = emulator.counters.snapshot()
        with pytest.raises(InvalidInputError):
            hv.get_vm(name=name)
        assert emulator.counters.snapshot().pipelines_run == opened.pipelines_run
    assert len(emulator.audit) == 0 and before.pipelines_run == 0


@pytest.mark.parametrize(
    "name",
    [
        "x'; Remove-VM dc-01",
        "dc-01'; Stop-VM -Name dc-01",
        '"dc-01"',
        "$(Remove-VM dc-01)",
        "a; b",
        "dc-01 | Remove-VM",
    ],
)
def test_names_with_quotes_and_operators_are_just_names(emulator, name):
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        with pytest.raises(VMNotFoundError):
            hv.get_vm(name=name)
        states = {
            vm.name: vm.state for vm in (hv.get_vm(name=n) for n in ("dc-01", "sql-01", "web-01", "app-01"))
        }
    entries = emulator.audit.entries()
    assert {e.cmdlet for e in entries} == {"Get-VM"}  # nothing else ran
    assert entries[0].parameters.get("Name") == name  # bound verbatim, as one literal value
    assert entries[0].targets == []  # the hostile name matched no VM, so nothing was acted on
    assert set(states) == {"dc-01", "sql-01", "web-01", "app-01"}


def test_wildcard_name_on_a_real_host_matches_many_which_is_why_we_refuse_it(emulator):
    """What the refusal protects against: the host itself expands -Name patterns."""
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import WSMan

    settings = settings_for(emulator, "hv-01")
    with RunspacePool(WSMan(**settings.wsman_kwargs())) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", "*-01")
        names = sorted(str(o.adapted_properties["Name"]) for o in ps.invoke())
    assert names == ["app-01", "dc-01", "sql-01", "web-01"]


def test_tls_validates_the_certificate(tmp_path):
    with Emulator(root_dir=tmp_path / "h", auth="basic", tls=True, time_scale=1000) as emu:
        trusted = settings_for(emu, "hv-01")
        assert trusted.ca_bundle and trusted.cert_validation
        assert fast(HyperVHook(settings=trusted)).test_connection()[0]

        untrusted = settings_for(emu, "hv-01", ca_bundle=None)
        ok, message = fast(HyperVHook(settings=untrusted)).test_connection()
        assert not ok and "TLS" in message

        unvalidated = settings_for(emu, "hv-01", ca_bundle=None, cert_validation=False)
        assert fast(HyperVHook(settings=unvalidated)).test_connection()[0]


def test_ntlm_with_message_encryption(tmp_path):
    with Emulator(root_dir=tmp_path / "h", auth="ntlm", time_scale=1000) as emu:
        settings = settings_for(emu, "hv-01")
        assert settings.auth == "ntlm" and settings.encryption == "auto" and not settings.use_tls
        with fast(HyperVHook(settings=settings)) as hv:
            dc = hv.get_vm(name="dc-01")
            assert hv.integration_services(dc.id)
        assert emu.counters.snapshot().pools_opened == 1


def test_one_pool_serves_every_call(emulator):
    with fast(HyperVHook(settings=settings_for(emulator, "hv-01"))) as hv:
        dc = hv.get_vm(name="dc-01")
        hv.integration_services(dc.id)
        hv.list_checkpoints(dc.id)
        hv.host_info("D")
    snap = emulator.counters.snapshot()
    assert snap.pools_opened == 1 and snap.pipelines_run == 4


@pytest.mark.parametrize(
    ("host", "extra", "problem"),
    [
        ("https://hv-01:5986/wsman", {}, "looks like a URL"),
        ("hv-01", {"auth": "basic"}, "clear text"),
        ("hv-01", {"auth": "magic"}, "must be one of"),
        ("hv-01", {"use_tls": "maybe"}, "true or false"),
        ("hv-01", "{not json", "not valid JSON"),
        ("", {}, "no host"),
    ],
)
def test_bad_connections_are_refused_with_the_reason(host, extra, problem):
    with pytest.raises(InvalidInputError, match=problem):
        ConnectionSettings.from_connection(host=host, port=None, login="u", password="p", extra=extra)


def test_ports_follow_tls_unless_given():
    plain = ConnectionSettings.from_connection(host="hv-01", port=None, login="u", password="p", extra={})
    tls = ConnectionSettings.from_connection(
        host="hv-01", port=None, login="u", password="p", extra={"use_tls": True}
    )
    custom = ConnectionSettings.from_connection(host="hv-01", port=15985, login="u", password="p", extra={})
    assert (plain.port, tls.port, custom.port) == (5985, 5986, 15985)
    assert custom.wsman_kwargs()["port"] == 15985


def test_wildcard_error_names_the_problem():
    with pytest.raises(WildcardNameError, match="Give the exact name"):
        HyperVHook(settings=ConnectionSettings.from_connection(
            host="hv-01", port=None, login="u", password="p", extra={})).get_vm(name="web*")  # fmt: skip
