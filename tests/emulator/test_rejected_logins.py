"""The emulator counts rejected logins per host, as a domain controller counts bad passwords towards
an account's lockout; a bare authentication challenge is not a rejected login."""

from __future__ import annotations

import pytest
from pypsrp.exceptions import AuthenticationError, WinRMTransportError
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan
from spnego.exceptions import BadBindingsError, InvalidTokenError

from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hooks.transport import translate
from airflow_hyperv.hyperv.errors import AuthenticationFailedError
from hyperv_emulator.api import Emulator
from hyperv_emulator.faults import Fault
from tests.support.emulated import settings_for


def open_pool(emu: Emulator, host: str, **overrides: object) -> None:
    kwargs = emu.server.pypsrp_kwargs(host) | overrides
    with RunspacePool(WSMan(**kwargs)):
        pass


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_a_wrong_password_is_one_rejected_login_on_that_host(tmp_path, auth):
    with Emulator(root_dir=tmp_path / "h", auth=auth) as emu:
        open_pool(emu, "hv-01")  # positive control: a good login (NTLM: challenged first) counts nothing
        assert emu.counters.rejected_logins() == 0
        with pytest.raises(AuthenticationError):
            open_pool(emu, "hv-02", password="not-the-password")
        snapshot = emu.counters.snapshot()
        assert snapshot.rejected_logins == 1
        assert snapshot.rejected_logins_by_host == {"hv-02": 1}
        assert emu.counters.rejected_logins("hv-01") == 0


def test_the_reject_credentials_fault_is_a_rejected_login(tmp_path):
    with Emulator(root_dir=tmp_path / "h", auth="ntlm") as emu:
        emu.faults.inject(Fault.REJECT_CREDENTIALS)
        with pytest.raises(AuthenticationError):
            open_pool(emu, "hv-01")
        assert emu.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1
        assert emu.counters.rejected_logins("hv-01") == 1
        before = emu.counters.snapshot()
        open_pool(emu, "hv-01")
        assert (emu.counters.snapshot() - before).rejected_logins == 0


def test_the_hook_logs_in_once_and_never_again_after_a_rejection(emulator):
    settings = settings_for(emulator, "hv-01")
    wrong = ConnectionSettings.from_connection(
        host=settings.host, port=settings.port, login=settings.username, password="not-the-password",
        extra=emulator.connection_extra("hv-01"),
    )  # fmt: skip
    hv = HyperVHook(settings=wrong)
    for _ in range(3):  # a caller that retries, or a cleanup path after the failure
        with pytest.raises(AuthenticationFailedError) as info:
            hv.get_vm(name="dc-01")
        assert "not-the-password" not in str(info.value)
    hv.close()
    assert emulator.counters.rejected_logins("hv-01") == 1


def test_a_401_in_the_middle_of_a_session_is_not_retried_either(emulator):
    """Basic sends the password with every request: a rejection after the pool opened also stops."""
    with HyperVHook(settings=settings_for(emulator, "hv-01")) as hv:
        hv.get_vm(name="dc-01")
        emulator.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
        with pytest.raises(AuthenticationFailedError):
            hv.host_info()
        with pytest.raises(AuthenticationFailedError):
            hv.host_info()
    assert emulator.counters.rejected_logins("hv-01") == 1
    assert emulator.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1


def test_the_hook_over_ntlm_counts_one_rejected_login(tmp_path):
    with Emulator(root_dir=tmp_path / "h", auth="ntlm") as emu:
        settings = settings_for(emu, "hv-01")
        wrong = ConnectionSettings.from_connection(
            host=settings.host, port=settings.port, login=settings.username, password="not-the-password",
            extra=emu.connection_extra("hv-01"),
        )  # fmt: skip
        hv = HyperVHook(settings=wrong)
        for _ in range(2):
            with pytest.raises(AuthenticationFailedError):
                hv.host_info()
        assert emu.counters.rejected_logins("hv-01") == 1


@pytest.mark.parametrize(
    "exc",
    [
        AuthenticationError("Failed to authenticate the user someone with ntlm"),
        WinRMTransportError("http", 401, ""),
        InvalidTokenError(context_msg="bad token"),
        BadBindingsError(context_msg="channel binding"),
    ],
    ids=["pypsrp-401", "http-401", "spnego-token", "spnego-bindings"],
)
def test_every_refused_login_is_classified_as_an_authentication_failure(exc):
    error = translate(exc, "https://hv-01:5986/wsman")
    assert isinstance(error, AuthenticationFailedError) and not error.retryable
    assert "someone" not in str(error)  # pypsrp's text names the user; ours names the endpoint only
