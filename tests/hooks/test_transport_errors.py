"""A transport failure names its root cause, keeps its class (transient or not) and chains the original.

Every address here is on this machine: a closed port on 127.0.0.1, the emulator's TLS listener, and a
``.invalid`` name (RFC 6761: never resolves) whose lookup is answered here, so no DNS query leaves.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests

from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv.errors import AuthenticationFailedError, TransientTransportError, TransportError
from hyperv_emulator.api import Emulator
from hyperv_emulator.faults import Fault
from tests.support.emulated import settings_for


def _settings(host: str, port: int, **extra: Any) -> ConnectionSettings:
    extra = {"auth": "basic", "encryption": "never", "connection_timeout": 5, "retry_attempts": 1, **extra}
    return ConnectionSettings.from_connection(host=host, port=port, login="u", password="p", extra=extra)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def no_dns_for_invalid(monkeypatch):
    """Answer lookups of ``*.invalid`` the way RFC 6761 says a resolver must (no such name), here,
    without a query to the network's DNS server. Everything else resolves as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name.rstrip(".").lower().endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_connection_refused_names_the_address_and_stays_transient():
    port = _closed_port()
    hook = HyperVHook(settings=_settings("127.0.0.1", port))
    with pytest.raises(TransientTransportError) as info:
        hook.open()
    message = str(info.value)
    assert f"connection refused by 127.0.0.1:{port}" in message, message
    assert "ConnectionError" not in message
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)
    ok, text = hook.test_connection()
    assert not ok and f"connection refused by 127.0.0.1:{port}" in text


def test_an_unresolvable_name_says_so_and_stays_transient(no_dns_for_invalid):
    hook = HyperVHook(settings=_settings("nonexistent.invalid", 5985))
    with pytest.raises(TransientTransportError) as info:
        hook.open()
    message = str(info.value)
    assert "cannot resolve host 'nonexistent.invalid'" in message, message
    assert "refused" not in message
    cause = info.value.__cause__
    assert isinstance(cause, requests.exceptions.ConnectionError)
    assert "NameResolutionError" in repr(cause)


def test_refused_and_unresolvable_read_differently(no_dns_for_invalid):
    messages = set()
    for host, port in (("127.0.0.1", _closed_port()), ("nonexistent.invalid", 5985)):
        ok, message = HyperVHook(settings=_settings(host, port)).test_connection()
        assert not ok
        messages.add(message.split(" failed: ", 1)[1])
    assert len(messages) == 2, messages


def test_reads_are_still_retried_on_a_refused_connection():
    settings = _settings("127.0.0.1", _closed_port(), retry_attempts=3, retry_max_seconds=10)
    hook = HyperVHook(settings=settings)
    hook.retry_wait_multiplier, hook.retry_wait_max = 0.01, 0.02
    attempts = []
    original = hook.open

    def counting_open() -> None:
        attempts.append(1)
        original()

    hook.open = counting_open  # type: ignore[method-assign]
    from airflow_hyperv.hyperv import pipelines

    with pytest.raises(TransientTransportError, match="connection refused"):
        hook.run_repeatable(pipelines.host_info())
    assert len(attempts) == 3


def test_an_untrusted_certificate_is_a_tls_verification_failure_and_not_retried(tmp_path):
    with Emulator(root_dir=tmp_path / "h", auth="basic", tls=True, time_scale=1000.0) as emu:
        settings = settings_for(emu, "hv-01", ca_bundle=None)
        hook = HyperVHook(settings=settings)
        with pytest.raises(TransportError) as info:
            hook.open()
        assert not isinstance(info.value, TransientTransportError)
        message = str(info.value)
        assert "TLS certificate verification failed" in message and "ca_bundle" in message, message
        assert isinstance(info.value.__cause__, requests.exceptions.SSLError)
        assert emu.counters.snapshot().pools_opened == 0


def test_https_to_a_plain_http_listener_says_what_is_wrong(emulator):
    settings = settings_for(emulator, "hv-01", use_tls=True, encryption="auto")
    with pytest.raises(TransportError) as info:
        HyperVHook(settings=settings).open()
    assert not isinstance(info.value, TransientTransportError)
    assert "TLS with https://" in str(info.value), str(info.value)


def test_a_dropped_answer_is_named_and_transient(emulator):
    emulator.faults.inject(Fault.DROP_BEFORE_RUN, cmdlet="Get-VMHost", times=None)
    settings = settings_for(emulator, "hv-01", retry_attempts=1)
    with HyperVHook(settings=settings) as hv, pytest.raises(TransientTransportError) as info:
        hv.host_info()
    assert f"127.0.0.1:{emulator.port} closed the connection without answering" in str(info.value)
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)


def test_rejected_logins_still_hide_pypsrps_message(emulator):
    emulator.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    with pytest.raises(AuthenticationFailedError) as info:
        HyperVHook(settings=settings_for(emulator, "hv-01")).open()
    assert info.value.__cause__ is None  # pypsrp's message names the user: not chained


def test_a_listener_that_never_answers_is_a_read_timeout_and_transient():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # the kernel completes the handshake; nobody ever reads or answers
        port = server.getsockname()[1]
        hook = HyperVHook(settings=_settings("127.0.0.1", port, read_timeout=1, operation_timeout=1))
        with pytest.raises(TransientTransportError) as info:
            hook.open()
    assert f"no answer from 127.0.0.1:{port} within the read timeout" in str(info.value), str(info.value)
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)
