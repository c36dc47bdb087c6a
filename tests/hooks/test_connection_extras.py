"""Connection extras as a first-party provider takes them: PsrpHook's names where they mean the same,
every other key refused before anything connects. Against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_hyperv.hooks.connection import ALIASES, EXTRAS, ConnectionSettings, connection_uri
from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv.errors import InvalidInputError
from hyperv_emulator.api import Emulator

SECRET = "pw-s3cret-value-7d1f"


def _settings(emu: Emulator, extra: dict[str, Any]) -> ConnectionSettings:
    """The emulator's host, port and account, with exactly ``extra`` (none of the emulator's own)."""
    conn = emu.client_connection("hv-01")
    return ConnectionSettings.from_connection(
        host=conn.host, port=conn.port, login=conn.login, password=conn.password, extra=extra
    )


def _fast(hook: HyperVHook) -> HyperVHook:
    hook.retry_wait_multiplier, hook.retry_wait_max = 0.01, 0.05
    return hook


@pytest.fixture
def tls_emulator(tmp_path):
    with Emulator(root_dir=tmp_path / "h", auth="basic", tls=True, time_scale=1000.0) as emu:
        yield emu


def test_ssl_true_connects_over_https(tls_emulator):
    """Once silently ignored (the hook spoke HTTP to an HTTPS listener); now PsrpHook's ssl is use_tls."""
    emu = tls_emulator
    settings = _settings(
        emu, {"auth": "basic", "ssl": True, "cert_validation": emu.ca_cert_path, "path": "hv-01/wsman"}
    )
    assert settings.use_tls and settings.cert_validation and settings.ca_bundle == emu.ca_cert_path
    assert settings.endpoint == f"https://127.0.0.1:{emu.port}/hv-01/wsman"
    ok, message = _fast(HyperVHook(settings=settings)).test_connection()
    assert ok, message
    assert message.startswith("Connected to https://")


def test_ssl_true_validates_the_certificate_by_default(tls_emulator):
    settings = _settings(tls_emulator, {"auth": "basic", "ssl": "true", "path": "hv-01/wsman"})
    ok, message = _fast(HyperVHook(settings=settings)).test_connection()
    assert not ok and "TLS certificate verification failed" in message, message


def test_a_psrp_style_connection_works_through_airflows_own_path(tls_emulator, monkeypatch):
    """A connection written for PsrpHook (its extra names, string values as a URI gives them)."""
    from airflow.models.connection import Connection

    emu = tls_emulator
    conn = emu.client_connection("hv-01")
    psrp_extra = {
        "auth": "basic",
        "ssl": "true",
        "cert_validation": emu.ca_cert_path,
        "configuration_name": "Microsoft.PowerShell",
        "connection_timeout": "5",
        "read_timeout": "10",
        "operation_timeout": "5",
        "locale": "de-DE",
        "encryption": "auto",
        "path": "hv-01/wsman",
    }
    uri = connection_uri(
        host=conn.host, port=conn.port, login=conn.login, password=conn.password, extra=psrp_extra
    )
    monkeypatch.setenv("AIRFLOW_CONN_HV_PSRP_STYLE", uri)
    ok, message = Connection.get_connection_from_secrets("hv_psrp_style").test_connection()
    assert ok, message
    hook = HyperVHook("hv_psrp_style")
    assert (hook.settings.locale, hook.settings.read_timeout, hook.settings.use_tls) == ("de-DE", 10.0, True)
    with hook:
        assert hook.get_conn().connection.locale == "de-DE"  # what pypsrp sends as wsmv:Locale
        assert hook.get_vm(name="dc-01").name == "dc-01"


def test_an_unknown_key_is_refused_before_anything_connects(emulator, monkeypatch):
    extra = {**emulator.connection_extra("hv-01"), "ssl_verify": False, "token": SECRET}
    conn = emulator.client_connection("hv-01")
    monkeypatch.setenv(
        "AIRFLOW_CONN_HV_TYPO",
        connection_uri(host=conn.host, port=conn.port, login=conn.login, password=conn.password, extra=extra),
    )
    before = emulator.counters.snapshot()
    ok, message = HyperVHook("hv_typo").test_connection()
    assert not ok
    assert "unknown connection extras 'ssl_verify'" in message and "'token'" in message, message
    for accepted in (*EXTRAS, *ALIASES):
        assert accepted in message, accepted
    assert SECRET not in message and conn.password not in message
    assert emulator.counters.snapshot().http_requests == before.http_requests  # not one request


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"ssl": True, "use_tls": False}, "'ssl' and 'use_tls' both set use_tls but disagree"),
        ({"path": "hv-01/wsman", "wsman_path": "hv-02/wsman"}, "both set wsman_path but disagree"),
        ({"cert_validation": "/etc/a.pem", "ca_bundle": "/etc/b.pem"}, "both set ca_bundle"),
        ({"cert_validation": "flase"}, "true, false or the path of a CA bundle"),
        ({"reconnection_retries": 3}, "use retry_attempts and retry_max_seconds"),
        ({"reconnection_backoff": 2.0}, "retries transient faults itself"),
        ({"no_proxy": True}, "set proxy"),
        ({"port": 5986}, "port field"),
        ({"locale": "en_US; x"}, "language tag"),
        ({"configuration_name": 7}, "must be text"),
        ({"sssl": True}, "did you mean 'ssl'"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_extras_are_refused_with_the_reason(extra, problem):
    with pytest.raises(InvalidInputError, match=problem.replace("(", r"\(")):
        ConnectionSettings.from_connection(host="hv-01", port=None, login="u", password="p", extra=extra)


@pytest.mark.parametrize(
    "extra",
    [
        {"password": SECRET},
        {"secret_token": SECRET},
        {"api_key": SECRET, "ssl": True},
        {"proxy": SECRET, "extra__hyperv__proxy": SECRET + "-other"},
        {"certificate_key_pem": ["-----BEGIN PRIVATE KEY-----", SECRET]},
        {"retry_attempts": SECRET},  # the password pasted into the wrong field
        {"use_tls": SECRET},
        {"auth": SECRET},
    ],
)
def test_no_refusal_quotes_a_value(extra):
    with pytest.raises(InvalidInputError) as info:
        ConnectionSettings.from_connection(host="hv-01", port=None, login="u", password=SECRET, extra=extra)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_equal_aliases_and_airflow_2_form_names_are_accepted():
    settings = ConnectionSettings.from_connection(
        host="hv-01",
        port=None,
        login="u",
        password="p",
        extra={
            "ssl": "yes",
            "use_tls": True,
            "path": "/hv-01/wsman/",
            "wsman_path": "hv-01/wsman",
            "extra__hyperv__auth": "ntlm",
            "extra__hyperv__configuration_name": "AirflowHyperV",
            "cert_validation": False,
            "ca_bundle": "",  # an emptied form field: the default
            "read_timeout": None,
        },
    )
    assert (settings.use_tls, settings.port, settings.wsman_path) == (True, 5986, "hv-01/wsman")
    assert (settings.auth, settings.configuration_name) == ("ntlm", "AirflowHyperV")
    assert settings.cert_validation is False and settings.ca_bundle is None
    assert settings.wsman_kwargs()["cert_validation"] is False


def test_an_emptied_cert_validation_field_keeps_validation_on():
    settings = ConnectionSettings.from_connection(
        host="hv-01", port=None, login="u", password="p", extra={"cert_validation": "", "use_tls": True}
    )
    assert settings.cert_validation is True


def test_every_extra_the_form_offers_is_accepted():
    from airflow_hyperv.get_provider_info import get_provider_info

    (conn_type,) = get_provider_info()["connection-types"]
    assert set(conn_type["conn-fields"]) <= set(EXTRAS)
