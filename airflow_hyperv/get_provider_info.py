"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any


def _field(label: str, type_: Any, description: str, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_}
    schema.update(extra)
    return {"label": label, "schema": schema, "description": description}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-hyperv",
        "name": "Hyper-V",
        "description": "Protect Hyper-V virtual machines with production checkpoints, exports and merges.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Microsoft Hyper-V",
                "external-doc-url": "https://learn.microsoft.com/windows-server/virtualization/hyper-v/",
                "tags": ["service"],
            }
        ],
        "triggers": [
            {"integration-name": "Microsoft Hyper-V", "python-modules": ["airflow_hyperv.triggers.hyperv"]}
        ],
        "hooks": [
            {"integration-name": "Microsoft Hyper-V", "python-modules": ["airflow_hyperv.hooks.hyperv"]}
        ],
        "connection-types": [
            {
                "connection-type": "hyperv",
                "hook-class-name": "airflow_hyperv.hooks.hyperv.HyperVHook",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {"host": "Hyper-V host", "login": "User (DOMAIN\\user)"},
                    "placeholders": {"host": "hv-01.corp.example", "port": "5985 (HTTP) / 5986 (HTTPS)"},
                },
                "conn-fields": {
                    "auth": _field(
                        "Authentication",
                        "string",
                        "negotiate (default), ntlm, kerberos, credssp, basic or certificate",
                        enum=["negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate"],
                        default="negotiate",
                    ),
                    "use_tls": _field("Use TLS (HTTPS, port 5986)", "boolean", "", default=False),
                    "cert_validation": _field(
                        "Validate the server certificate", "boolean", "Keep on outside tests.", default=True
                    ),
                    "ca_bundle": _field("CA bundle", ["string", "null"], "Path of a PEM bundle to trust"),
                    "encryption": _field(
                        "Message encryption",
                        "string",
                        "auto: encrypt over HTTP with NTLM/Kerberos/CredSSP; always; never (test hosts only)",
                        enum=["auto", "always", "never"],
                        default="auto",
                    ),
                    "configuration_name": _field(
                        "PowerShell endpoint (JEA configuration)",
                        ["string", "null"],
                        "Session configuration name; default Microsoft.PowerShell",
                    ),
                    "operation_timeout": _field("Operation timeout (s)", "number", "WS-Man OperationTimeout"),
                    "read_timeout": _field("Read timeout (s)", "number", "HTTP read timeout"),
                    "connection_timeout": _field("Connection timeout (s)", "number", "TCP connect timeout"),
                    "proxy": _field("HTTP proxy", ["string", "null"], "Proxy URL; empty: no proxy"),
                    "retry_attempts": _field("Retry attempts", "integer", "Transient transport faults only"),
                    "retry_max_seconds": _field("Retry budget (s)", "number", "Total time for retries"),
                    "wsman_path": _field("WS-Man path", ["string", "null"], "URL path, default wsman"),
                    "certificate_pem": _field("Client certificate (PEM path)", ["string", "null"], ""),
                    "certificate_key_pem": _field(
                        "Client certificate key (PEM path)", ["string", "null"], "", format="password"
                    ),
                },
            }
        ],
    }
