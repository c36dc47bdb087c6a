"""The ``hyperv`` connection: typed settings parsed and checked before any socket is opened."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_hyperv.hyperv import defaults
from airflow_hyperv.hyperv.errors import InvalidInputError
from airflow_hyperv.hyperv.lease import DEFAULT_LEASE_FOLDER
from airflow_hyperv.hyperv.names import require_host_path

AUTH_CHOICES = ("negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate")
ENCRYPTION_CHOICES = ("auto", "always", "never")
HTTP_PORT, HTTPS_PORT = 5985, 5986
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$|^[0-9A-Fa-f:]+$")


def _flag(extra: dict[str, Any], key: str, default: bool) -> bool:
    value = extra.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise InvalidInputError(f"connection extra {key!r} must be true or false, not {value!r}")


def _number(extra: dict[str, Any], key: str, default: float, *, minimum: float = 0) -> float:
    value = extra.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        value = default  # a form field left empty (saved as null) means the default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"connection extra {key!r} must be a number, not {value!r}") from None
    if number < minimum:
        raise InvalidInputError(f"connection extra {key!r} must be at least {minimum}, not {number}")
    return number


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything pypsrp needs to reach one Hyper-V host. ``password`` never appears in a repr."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    auth: str = "negotiate"
    use_tls: bool = False
    cert_validation: bool = True
    ca_bundle: str | None = None
    encryption: str = "auto"
    configuration_name: str = "Microsoft.PowerShell"
    operation_timeout: float = defaults.OPERATION_TIMEOUT
    read_timeout: float = defaults.READ_TIMEOUT
    connection_timeout: float = defaults.CONNECTION_TIMEOUT
    retry_attempts: int = defaults.RETRY_ATTEMPTS
    retry_max_seconds: float = defaults.RETRY_MAX_SECONDS
    wsman_path: str = "wsman"
    certificate_pem: str | None = None
    certificate_key_pem: str | None = field(default=None, repr=False)
    proxy: str | None = None
    lease_folder: str = DEFAULT_LEASE_FOLDER  # on the host: one lease file per VM (docs/operations.md)

    @property
    def endpoint(self) -> str:
        """Where we connect, for logs and messages (no credentials in it)."""
        scheme = "https" if self.use_tls else "http"
        return f"{scheme}://{self.host}:{self.port}/{self.wsman_path}"

    @property
    def host_label(self) -> str:
        """How reports name the host: its name, or the route of a multi-host endpoint (``hv-01/wsman``)."""
        route = self.wsman_path.removesuffix("wsman").strip("/")
        return route or self.host

    @classmethod
    def from_connection(
        cls, *, host: str | None, port: int | None, login: str | None, password: str | None, extra: Any
    ) -> ConnectionSettings:
        """Parse an Airflow Connection's fields; every problem is named before anything connects."""
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"connection extra is not valid JSON: {exc.msg}") from None
        extra = dict(extra or {})
        host = (host or "").strip()
        if not host:
            raise InvalidInputError("the hyperv connection has no host")
        if "://" in host or "/" in host:
            raise InvalidInputError(
                f"the connection host {host!r} looks like a URL: give only the host name or address; "
                "set the port in the port field and TLS with the use_tls extra"
            )
        if not _HOST.match(host):
            raise InvalidInputError(f"the connection host {host!r} is not a valid host name or address")
        auth = str(extra.get("auth", "negotiate")).strip().lower()
        if auth not in AUTH_CHOICES:
            raise InvalidInputError(
                f"connection extra 'auth' must be one of {', '.join(AUTH_CHOICES)}, not {auth!r}"
            )
        encryption = str(extra.get("encryption", "auto")).strip().lower()
        if encryption not in ENCRYPTION_CHOICES:
            raise InvalidInputError(
                f"connection extra 'encryption' must be one of {', '.join(ENCRYPTION_CHOICES)}, not {encryption!r}"
            )
        use_tls = _flag(extra, "use_tls", False)
        if auth == "basic" and not use_tls and encryption != "never":
            raise InvalidInputError(
                "basic auth over plain HTTP sends the password in clear text: set use_tls, or (only for a "
                "test host) set encryption to 'never'"
            )
        if auth == "certificate" and not use_tls:
            raise InvalidInputError("certificate auth needs use_tls")
        if auth == "certificate" and not (extra.get("certificate_pem") and extra.get("certificate_key_pem")):
            raise InvalidInputError(
                "certificate auth needs the certificate_pem and certificate_key_pem extras"
            )
        if auth not in ("certificate",) and not login:
            raise InvalidInputError(f"{auth} auth needs a login")
        if port is not None and not 0 < int(port) < 65536:
            raise InvalidInputError(f"connection port {port} is out of range")
        ca_bundle = extra.get("ca_bundle") or None
        path = str(extra.get("wsman_path", "wsman")).strip("/") or "wsman"
        if not re.fullmatch(r"[A-Za-z0-9._\-/]+", path):
            raise InvalidInputError(
                f"connection extra 'wsman_path' {path!r} has characters a URL path cannot hold"
            )
        lease_folder = require_host_path(
            str(extra.get("lease_folder") or DEFAULT_LEASE_FOLDER).rstrip("\\"),
            "connection extra 'lease_folder'",
        )
        return cls(
            host=host,
            port=int(port) if port else (HTTPS_PORT if use_tls else HTTP_PORT),
            username=login or None,
            password=password or None,
            auth=auth,
            use_tls=use_tls,
            cert_validation=_flag(extra, "cert_validation", True),
            ca_bundle=str(ca_bundle) if ca_bundle else None,
            encryption=encryption,
            configuration_name=str(extra.get("configuration_name") or "Microsoft.PowerShell"),
            operation_timeout=_number(extra, "operation_timeout", defaults.OPERATION_TIMEOUT, minimum=1),
            read_timeout=_number(extra, "read_timeout", defaults.READ_TIMEOUT, minimum=1),
            connection_timeout=_number(extra, "connection_timeout", defaults.CONNECTION_TIMEOUT, minimum=1),
            retry_attempts=int(_number(extra, "retry_attempts", defaults.RETRY_ATTEMPTS, minimum=1)),
            retry_max_seconds=_number(extra, "retry_max_seconds", defaults.RETRY_MAX_SECONDS, minimum=0),
            wsman_path=path,
            certificate_pem=extra.get("certificate_pem") or None,
            certificate_key_pem=extra.get("certificate_key_pem") or None,
            proxy=extra.get("proxy") or None,
            lease_folder=lease_folder,
        )

    def wsman_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pypsrp.wsman.WSMan``."""
        kwargs: dict[str, Any] = {
            "server": self.host,
            "port": self.port,
            "path": self.wsman_path,
            "ssl": self.use_tls,
            "auth": self.auth,
            "encryption": self.encryption,
            "cert_validation": (self.ca_bundle or True) if self.cert_validation else False,
            "operation_timeout": int(self.operation_timeout),
            "read_timeout": int(self.read_timeout),
            "connection_timeout": int(self.connection_timeout),
            "reconnection_retries": 0,  # retries are ours (tenacity), bounded and classified
        }
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.auth == "certificate":
            kwargs["certificate_pem"] = self.certificate_pem
            kwargs["certificate_key_pem"] = self.certificate_key_pem
        if self.proxy:
            kwargs["proxy"] = self.proxy
        else:
            kwargs["no_proxy"] = True
        return kwargs


def connection_uri(
    *,
    host: str,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any],
    conn_id: str = "hyperv",
) -> str:
    """An ``AIRFLOW_CONN_...`` value for a ``hyperv`` connection with these fields."""
    from airflow.sdk import Connection

    conn = Connection(
        conn_id=conn_id,
        conn_type="hyperv",
        host=host,
        port=port,
        login=login,
        password=password,
        extra=json.dumps(extra),
    )
    return str(conn.get_uri())
