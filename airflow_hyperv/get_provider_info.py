"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_hyperv import __version__
from airflow_hyperv.config import (
    DEFAULT_ASYNC_MAX_THREADS,
    DEFAULT_EXPORT_RESUME_BEFORE_END,
    DEFAULT_MERGE_DEFER_AFTER,
    DEFAULT_REPORT_DAG_ID,
    DEFAULT_WAIT_ERROR_BUDGET,
    SECTION,
)
from airflow_hyperv.hyperv.defaults import NUMBER_DEFAULTS

INTEGRATION = "Microsoft Hyper-V"


def _default(name: str) -> Any:
    """The connection's own default, so the form and the hook never disagree (no hook import here:
    every Airflow component reads this module)."""
    return NUMBER_DEFAULTS[name]


def _field(label: str, type_: Any, description: str, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_}
    schema.update(extra)
    return {"label": label, "schema": schema, "description": description}


def _option(description: str, type_: str, default: Any, example: Any = None) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.2.0",
        "type": type_,
        "example": example,
        "default": None if default is None else str(default),
    }


# The [hyperv] section (airflow_hyperv.config reads it): `airflow config list` shows it.
CONFIG: dict[str, Any] = {
    SECTION: {
        "description": "The Hyper-V provider (airflow-hyperv).",
        "options": {
            "report_dir": _option(
                "Folder the protection_report DAG also writes its HTML page to. Empty: "
                "$AIRFLOW_HYPERV_REPORT_DIR, else $AIRFLOW_HOME/hyperv-reports. The report view in the UI "
                "does not read it (it reads the metadata database), so it need not be shared.",
                "string",
                "",
                "/opt/airflow/hyperv-reports",
            ),
            "report_dag_id": _option(
                "The DAG whose `report` task's rows the Hyper-V protection view of the UI shows.",
                "string",
                DEFAULT_REPORT_DAG_ID,
            ),
            "async_max_threads": _option(
                "Threads all Hyper-V triggers of one triggerer process may hold at once (pypsrp is "
                "synchronous: each host call of a trigger runs in a thread).",
                "integer",
                DEFAULT_ASYNC_MAX_THREADS,
            ),
            "merge_defer_after": _option(
                "Seconds a deferrable merge first waits in the worker before it defers to the "
                "triggerer (the operator's `defer_after` overrides it). A small AVHDX merges in "
                "seconds: it then costs no deferral and no resumed task. 0: defer at once.",
                "float",
                DEFAULT_MERGE_DEFER_AFTER,
            ),
            "export_resume_before_end": _option(
                "Seconds before the end an export's progress predicts at which its trigger hands the "
                "wait back to the task, so the task's resume overlaps the export's last seconds (the "
                "operator's `resume_before_end` overrides it). 0: only at the end.",
                "float",
                DEFAULT_EXPORT_RESUME_BEFORE_END,
            ),
            "wait_error_budget": _option(
                "Failed polls in a row a wait (trigger, export in the worker) tolerates before it gives "
                "up. A rejected login always ends a wait at once.",
                "integer",
                DEFAULT_WAIT_ERROR_BUDGET,
            ),
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-hyperv",
        "name": "Hyper-V",
        "description": "Protect Hyper-V virtual machines with production checkpoints, exports and merges.",
        "versions": [__version__],  # airflow_hyperv.__version__, the one version source
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://learn.microsoft.com/windows-server/virtualization/hyper-v/",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_hyperv.operators.checkpoint",
                    "airflow_hyperv.operators.export",
                    "airflow_hyperv.operators.restore_verification",
                    "airflow_hyperv.operators.verify",
                ],
            }
        ],
        # Every module with a trigger class (tests/provider checks none is missing): the wait triggers
        # (HyperVHostStateTrigger, alias HyperVWaitTrigger; HyperVOperationTrigger; HyperVLeaseTrigger)
        # and the event-log watcher (HyperVEventTrigger).
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_hyperv.triggers.hyperv", "airflow_hyperv.triggers.events"],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_hyperv.sensors.checkpoint", "airflow_hyperv.sensors.vm"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_hyperv.hooks.hyperv"]}],
        # hyperv://<host>/vms/<vm id>/exports | /restore-tests, hyperv://<host>/events
        "asset-uris": [{"schemes": ["hyperv"], "handler": "airflow_hyperv.hyperv.assets.sanitize_uri"}],
        "config": CONFIG,
        # No "executors": Airflow 3.3 then wants a "cli" section of executor commands, and warns on every
        # command without one. PreloadingLocalExecutor is set by its path (docs/operations.md).
        "plugins": [
            {
                "name": "hyperv_protection_report",
                "plugin-class": "airflow_hyperv.plugins.report_view.HyperVReportPlugin",
            }
        ],
        "connection-types": [
            {
                "connection-type": "hyperv",
                "hook-name": "Hyper-V",
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
                    "use_tls": _field(
                        "Use TLS (HTTPS, port 5986)", "boolean", "HTTPS to the WinRM listener", default=False
                    ),
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
                    "operation_timeout": _field(
                        "Operation timeout (s)",
                        ["number", "null"],
                        "WS-Man OperationTimeout",
                        default=_default("operation_timeout"),
                    ),
                    "read_timeout": _field(
                        "Read timeout (s)",
                        ["number", "null"],
                        "HTTP read timeout",
                        default=_default("read_timeout"),
                    ),
                    "connection_timeout": _field(
                        "Connection timeout (s)",
                        ["number", "null"],
                        "TCP connect timeout",
                        default=_default("connection_timeout"),
                    ),
                    "proxy": _field("HTTP proxy", ["string", "null"], "Proxy URL; empty: no proxy"),
                    "retry_attempts": _field(
                        "Retry attempts",
                        ["integer", "null"],
                        "Tries per call on transient transport faults (never on rejected credentials)",
                        default=_default("retry_attempts"),
                    ),
                    "retry_max_seconds": _field(
                        "Retry budget (s)",
                        ["number", "null"],
                        "Total time for retries of one call",
                        default=_default("retry_max_seconds"),
                    ),
                    "wsman_path": _field("WS-Man path", ["string", "null"], "URL path, default wsman"),
                    "cluster": _field(
                        "Failover cluster name",
                        ["string", "null"],
                        "A cluster instead of one host: each VM is reached on the node that owns it",
                    ),
                    "nodes": _field(
                        "Cluster nodes",
                        ["string", "null"],
                        "Comma-separated node names (name=address where a node answers elsewhere); empty: "
                        "ask the host for Get-ClusterNode",
                    ),
                    "migration_timeout": _field(
                        "Live-migration wait (s)",
                        ["number", "null"],
                        "Cluster: how long a step waits for a VM that is moving between nodes",
                        default=_default("migration_timeout"),
                    ),
                    "lease_folder": _field(
                        "Lease folder",
                        ["string", "null"],
                        "Per-VM protection leases; a cluster needs a folder on a CSV or share (default "
                        "C:\\ClusterStorage\\Volume1\\airflow-hyperv\\leases)",
                    ),
                    "certificate_pem": _field(
                        "Client certificate (PEM path)",
                        ["string", "null"],
                        "Path of the client certificate on the worker (auth: certificate)",
                    ),
                    "certificate_key_pem": _field(
                        "Client certificate key (PEM path)",
                        ["string", "null"],
                        "Path of the certificate's private key on the worker (a path, not the key)",
                    ),
                },
            }
        ],
    }
