"""A WinRM quota fault is transient: the hook backs off and retries it (bounded, jittered), names the
quota, and never reads it as rejected credentials. Against the emulator over real WinRM; the shell
that fills the quota is another hook's runspace pool."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from pypsrp.exceptions import AuthenticationError, WSManFaultError

from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hooks.transport import translate
from airflow_hyperv.hyperv.errors import (
    AuthenticationFailedError,
    TransientTransportError,
    TransportError,
    WinRMQuotaError,
)
from hyperv_emulator.api import Emulator
from hyperv_emulator.faults import Fault
from tests.support.emulated import settings_for

# One shell per user: the second runspace pool of the same account is refused.
FLEET = {"hosts": [{"name": "hv-q", "winrm": {"max_shells_per_user": 1}, "vms": [{"name": "vm1"}]}]}


@pytest.fixture
def emu(tmp_path) -> Iterator[Emulator]:
    with Emulator(FLEET, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emulator:
        yield emulator


def fast(hook: HyperVHook) -> HyperVHook:
    hook.retry_wait_multiplier, hook.retry_wait_max = 0.01, 0.2
    return hook


def test_a_quota_fault_is_retried_and_succeeds_once_a_shell_is_freed(emu, caplog):
    holder = HyperVHook(settings=settings_for(emu))
    holder.open()  # holds the user's only shell

    def free_the_slot_after_the_first_refusal() -> None:
        if emu.counters.wait_for_quota_refusals(1, timeout=60):
            holder.close()

    releaser = threading.Thread(target=free_the_slot_after_the_first_refusal)
    releaser.start()
    settings = settings_for(emu, retry_attempts=100, retry_max_seconds=120)
    try:
        with caplog.at_level(logging.WARNING), fast(HyperVHook(settings=settings)) as hv:
            info = hv.host_info()
    finally:
        releaser.join()
        holder.close()
    assert info.host.name
    refused = emu.counters.quota_refusals("MaxShellsPerUser")
    assert refused >= 1  # the fault really fired before the call went through
    retried = [r.getMessage() for r in caplog.records if "Transient fault" in r.getMessage()]
    assert len(retried) == refused and "MaxShellsPerUser (winrm/config/winrs)" in retried[0]
    assert emu.counters.rejected_logins() == 0


def test_a_persistent_quota_fault_ends_after_the_bounded_retries_naming_the_quota(emu):
    holder = HyperVHook(settings=settings_for(emu))
    holder.open()
    hv = fast(HyperVHook(settings=settings_for(emu, retry_attempts=3)))
    try:
        with pytest.raises(WinRMQuotaError) as info:
            hv.host_info()
        assert emu.counters.quota_refusals("MaxShellsPerUser") == 3  # exactly the bounded attempts
        error = info.value
        assert isinstance(error, TransientTransportError) and not isinstance(error, AuthenticationFailedError)
        assert error.code == 2150859173 and error.quota == "MaxShellsPerUser (winrm/config/winrs)"
        message = str(error)
        assert "WinRM quota MaxShellsPerUser (winrm/config/winrs) exceeded on" in message
        assert "maximum number of 1 concurrent shells" in message
        assert "still refused after 3 attempt(s)" in message
        assert isinstance(error.__cause__, WinRMQuotaError)
        assert emu.counters.rejected_logins() == 0
        assert hv._rejected is None  # the hook will log in again: nothing was wrong with the login
        # positive control: the same call goes through once the other shell is deleted
        holder.close()
        assert hv.host_info().host.name
    finally:
        holder.close()
        hv.close()


def test_a_refused_command_deletes_its_shell_and_retries_on_a_fresh_one(emu):
    """A busy (MaxConcurrentOperationsPerUser) answer to a Command means nothing ran: the hook deletes
    the shell and retries on a new one. Abandoning it would leave a shell holding a slot until the
    host's idle timeout: with one shell per user the retry could never get a new one."""
    emu.faults.inject(Fault.WSMAN_BUSY, cmdlet="Get-VMHost")
    with fast(HyperVHook(settings=settings_for(emu))) as hv:
        assert hv.host_info().host.name
    assert emu.faults.count_fired(Fault.WSMAN_BUSY) == 1
    assert emu.counters.snapshot().pools_opened == 2
    assert emu.counters.quota_refusals("MaxShellsPerUser") == 0  # the refused shell was deleted first
    assert emu.server.service.shells("hv-q") == []  # nothing left behind on the host


@pytest.mark.parametrize(
    ("code", "quota"),
    [
        (2150859173, "MaxShellsPerUser (winrm/config/winrs)"),
        (2150859179, "MaxConcurrentUsers (winrm/config/winrs)"),
        (2150859174, "MaxConcurrentOperationsPerUser (winrm/config/service)"),
        (
            2150859236,
            "MaxShellsPerUser of the PowerShell endpoint (New-PSTransportOption -MaxSessionsPerUser)",
        ),
        (2150859237, "MaxConcurrentUsers of the PowerShell endpoint (New-PSTransportOption)"),
        ("w:QuotaLimit", "an unnamed WinRM quota (w:QuotaLimit)"),
    ],
)
def test_every_quota_fault_is_a_named_transient_quota_error(code, quota):
    fault = WSManFaultError(
        code, "hv-q", "The WS-Management service cannot process the request.", None, None, None
    )
    error = translate(fault, "https://hv-q:5986/wsman")
    assert isinstance(error, WinRMQuotaError) and error.retryable
    assert error.quota == quota and quota in str(error)


def test_a_rejected_login_is_never_a_quota_error_and_another_fault_is_not_transient():
    rejected = translate(AuthenticationError("401"), "https://hv-q:5986/wsman")
    assert isinstance(rejected, AuthenticationFailedError) and not isinstance(rejected, WinRMQuotaError)
    other = translate(
        WSManFaultError(
            2150858778, "hv-q", "The WS-Management service cannot process the request.", None, None, None
        ),
        "https://hv-q:5986/wsman",
    )
    assert type(other) is TransportError
