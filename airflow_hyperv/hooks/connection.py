"""The ``hyperv`` connection: typed settings parsed and checked before any socket is opened."""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_hyperv.hyperv import defaults
from airflow_hyperv.hyperv.errors import InvalidInputError
from airflow_hyperv.hyperv.lease import DEFAULT_CLUSTER_LEASE_FOLDER, DEFAULT_LEASE_FOLDER, is_cluster_wide
from airflow_hyperv.hyperv.names import require_host_path

AUTH_CHOICES = ("negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate")
ENCRYPTION_CHOICES = ("auto", "always", "never")
HTTP_PORT, HTTPS_PORT = 5985, 5986
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$|^[0-9A-Fa-f:]+$")
_LOCALE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")  # RFC 3066, as wsmv:Locale takes it
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

# Every extra a ``hyperv`` connection accepts, under its own name (docs/hook.md, docs/connection.md).
EXTRAS = (
    "auth",
    "use_tls",
    "cert_validation",
    "ca_bundle",
    "encryption",
    "configuration_name",
    "locale",
    "operation_timeout",
    "read_timeout",
    "connection_timeout",
    "retry_attempts",
    "retry_max_seconds",
    "wsman_path",
    "certificate_pem",
    "certificate_key_pem",
    "proxy",
    "lease_folder",
    "cluster",
    "nodes",
    "migration_timeout",
)
NODE_PLACEHOLDER = (
    "{node}"  # in wsman_path: each node's own path (the emulator serves every node on one port)
)
# The names the peer ``microsoft-psrp`` provider (PsrpHook) and pypsrp's WSMan give the same settings.
# PsrpHook's own extras auth, cert_validation, configuration_name, connection_timeout, locale and
# read_timeout are already ours, with the same meaning (cert_validation may also be a CA bundle path).
ALIASES = {"ssl": "use_tls", "path": "wsman_path"}
# Names PsrpHook or WSMan know that this connection refuses, with the reason and what to use instead.
_RETRIES = (
    "the hook retries transient faults itself and never repeats a write blindly: use retry_attempts "
    "and retry_max_seconds"
)
REFUSED = {
    "reconnection_retries": _RETRIES,
    "reconnection_backoff": _RETRIES,
    "no_proxy": "the hook never reads proxy environment variables: set proxy to use a proxy",
    "server": "give the host in the connection's host field",
    "port": "give the port in the connection's port field",
    "username": "give the account in the connection's login field",
    "password": "give the password in the connection's password field, which is kept secret",
}
# Airflow 2's connection form saved its custom fields as ``extra__<conn_type>__<name>``.
_FORM_PREFIX = "extra__hyperv__"


def _is_empty(value: Any) -> bool:
    """A form field left empty (saved as null or ""): the setting's default."""
    return value is None or (isinstance(value, str) and not value.strip())


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"connection extra {key!r} must be true or false, not {value!r}")


def _flag(extra: dict[str, Any], key: str, default: bool) -> bool:
    value = extra.get(key)
    return default if _is_empty(value) else _bool(key, value)


def _text(extra: dict[str, Any], key: str) -> str | None:
    """A text extra (a name, a path, a URL), or None when empty. Its value is never quoted in the
    message: certificate_key_pem may hold a private key and proxy a password."""
    value = extra.get(key)
    if _is_empty(value):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InvalidInputError(f"connection extra {key!r} must be text, not {type(value).__name__}")
    return value.strip()


def _number(extra: dict[str, Any], key: str, default: float, *, minimum: float = 0) -> float:
    value: Any = extra.get(key)
    if _is_empty(value):
        value = default  # a form field left empty (saved as null) means the default
    if isinstance(value, bool):
        raise InvalidInputError(f"connection extra {key!r} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"connection extra {key!r} must be a number, not {value!r}") from None
    if number < minimum:
        raise InvalidInputError(f"connection extra {key!r} must be at least {minimum}, not {number}")
    return number


def _cert_validation(value: Any) -> bool | str:
    """PsrpHook's ``cert_validation``, as pypsrp takes it: true, false, or the path of a CA bundle."""
    if isinstance(value, bool):
        return value
    text = _text({"cert_validation": value}, "cert_validation") or ""
    if text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    if "/" in text or "\\" in text or text.lower().endswith((".pem", ".crt", ".cer")):
        return text
    raise InvalidInputError(
        f"connection extra 'cert_validation' must be true, false or the path of a CA bundle, not {value!r}"
    )


def _nodes(value: Any) -> tuple[tuple[str, str], ...]:
    """``nodes``: a list of node names (each reached at its name), a mapping {node name: address}, or
    the form's text ``"hv-n1, hv-n2=10.0.0.12"``. Names as the cluster reports them (OwnerNode)."""
    if _is_empty(value):
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                return _nodes(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"connection extra 'nodes' is not valid JSON: {exc.msg}") from None
        items = [part.strip() for part in text.split(",") if part.strip()]
        pairs = [
            tuple(p.strip() for p in item.split("=", 1)) if "=" in item else (item, item) for item in items
        ]
    elif isinstance(value, dict):
        pairs = [
            (str(k).strip(), str(v).strip() if not _is_empty(v) else str(k).strip()) for k, v in value.items()
        ]
    elif isinstance(value, list | tuple):
        pairs = [(str(v).strip(), str(v).strip()) for v in value]
    else:
        raise InvalidInputError(
            f"connection extra 'nodes' must be a list, a mapping or comma-separated text, not {type(value).__name__}"
        )
    seen: set[str] = set()
    for name, address in pairs:
        if not _HOST.match(name) or not _HOST.match(address):
            raise InvalidInputError(
                f"connection extra 'nodes': {name}={address} is not a host name or address"
            )
        if name.lower() in seen:
            raise InvalidInputError(f"connection extra 'nodes' names {name!r} twice")
        seen.add(name.lower())
    return tuple((n, a) for n, a in pairs)


def _accepted() -> str:
    aliases = ", ".join(f"{name} (= {ours})" for name, ours in ALIASES.items())
    return f"{', '.join(sorted(EXTRAS))}; PsrpHook's names {aliases}"


def canonical_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The extras under this connection's own names, or an error naming every key it cannot use.

    Accepts PsrpHook's names (``ALIASES``) and Airflow 2's ``extra__hyperv__`` form prefix. Refuses an
    unknown key, a known key this connection replaces (``REFUSED``), and two names of one setting
    that disagree. No message quotes a value of an unknown or conflicting key (it may be a secret).
    """
    unknown: list[str] = []
    given: dict[str, list[tuple[str, Any]]] = {}
    for key, value in extra.items():
        name = str(key)
        bare = name.removeprefix(_FORM_PREFIX)
        if bare in REFUSED:
            raise InvalidInputError(f"connection extra {name!r} is not supported: {REFUSED[bare]}")
        ours = ALIASES.get(bare, bare)
        if ours not in EXTRAS:
            unknown.append(name)
            continue
        if not _is_empty(value):
            given.setdefault(ours, []).append((name, value))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.removeprefix(_FORM_PREFIX), [*EXTRAS, *ALIASES], n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidInputError(
            f"unknown connection extra{'s' if len(hints) > 1 else ''} {', '.join(hints)}: "
            f"a hyperv connection accepts {_accepted()}"
        )
    if "cert_validation" in given:  # a CA bundle path in cert_validation is the ca_bundle setting
        for name, value in list(given["cert_validation"]):
            parsed = _cert_validation(value)
            if isinstance(parsed, str):
                given["cert_validation"].remove((name, value))
                given["cert_validation"].append((name, True))
                given.setdefault("ca_bundle", []).append((name, parsed))
    canonical: dict[str, Any] = {}
    for ours, values in given.items():
        if len({_comparable(ours, value) for _, value in values}) > 1:
            names = " and ".join(repr(name) for name, _ in values)
            raise InvalidInputError(
                f"connection extras {names} both set {ours} but disagree: give only one of them"
            )
        canonical[ours] = values[0][1]
    return canonical


def _comparable(ours: str, value: Any) -> Any:
    if ours in ("use_tls", "cert_validation"):
        return _bool(ours, value)
    if ours == "wsman_path":
        return str(value).strip().strip("/")
    if isinstance(value, str | os.PathLike):
        return os.fspath(value).strip()
    return json.dumps(value, sort_keys=True, default=str)


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
    locale: str = "en-US"  # wsmv:Locale: the language of the host's messages (errors are classified by id)
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
    # A failover cluster instead of one host (docs/hook.md, "Clusters"): its name, its nodes as
    # (name, address), and the node this settings object reaches (set by ``for_node``).
    cluster: str | None = None
    nodes: tuple[tuple[str, str], ...] = ()
    node: str | None = None
    migration_timeout: float = defaults.MIGRATION_TIMEOUT

    @property
    def path(self) -> str:
        """The URL path of this endpoint (``{node}`` in ``wsman_path`` replaced by the node's name)."""
        return self.wsman_path.replace(NODE_PLACEHOLDER, self.node or self.host)

    @property
    def endpoint(self) -> str:
        """Where we connect, for logs and messages (no credentials in it)."""
        scheme = "https" if self.use_tls else "http"
        return f"{scheme}://{self.host}:{self.port}/{self.path}"

    @property
    def host_label(self) -> str:
        """How reports name the host: the cluster's name for a cluster connection (one name wherever a
        VM runs), else the host's name, or the route of a multi-host endpoint (``hv-01/wsman``)."""
        if self.cluster:
            return self.cluster.lower()
        route = self.path.removesuffix("wsman").strip("/")
        return route or self.host

    @property
    def is_cluster(self) -> bool:
        return self.cluster is not None

    def node_address(self, name: str) -> str:
        """Where node ``name`` answers: its address from ``nodes``, else its name."""
        return next((a for n, a in self.nodes if n.lower() == name.lower()), name)

    def for_node(self, name: str) -> ConnectionSettings:
        """The same connection (credentials, transport, lease folder) to one node of the cluster."""
        if not self.cluster:
            raise InvalidInputError("for_node needs a cluster connection")
        return replace(self, host=self.node_address(name), node=name)

    @classmethod
    def from_connection(
        cls, *, host: str | None, port: int | None, login: str | None, password: str | None, extra: Any
    ) -> ConnectionSettings:
        """Parse an Airflow Connection's fields; every problem is named before anything connects.

        ``extra`` takes this connection's own names (``EXTRAS``) and the peer PsrpHook's where they
        mean the same (``ALIASES``); any other key is refused (docs/connection.md, "Coming from PsrpHook").
        No message holds the password (5 characters or more), even one pasted into the wrong extra.
        """
        try:
            return cls._parse(host=host, port=port, login=login, password=password, extra=extra)
        except InvalidInputError as exc:
            # Airflow's own masker leaves secrets under 5 characters alone ([logging]
            # min_length_masked_secret): replacing "p" would garble every message.
            if password and len(password) >= 5 and password in str(exc):
                raise InvalidInputError(str(exc).replace(password, "***")) from None
            raise

    @classmethod
    def _parse(
        cls, *, host: str | None, port: int | None, login: str | None, password: str | None, extra: Any
    ) -> ConnectionSettings:
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"connection extra is not valid JSON: {exc.msg}") from None
        if extra is not None and not isinstance(extra, dict):
            raise InvalidInputError(f"connection extra must be a JSON object, not {type(extra).__name__}")
        extra = canonical_extra(dict(extra or {}))
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
        certificate_pem, certificate_key_pem = (
            _text(extra, "certificate_pem"),
            _text(extra, "certificate_key_pem"),
        )
        if auth == "certificate" and not use_tls:
            raise InvalidInputError("certificate auth needs use_tls")
        if auth == "certificate" and not (certificate_pem and certificate_key_pem):
            raise InvalidInputError(
                "certificate auth needs the certificate_pem and certificate_key_pem extras"
            )
        if auth not in ("certificate",) and not login:
            raise InvalidInputError(f"{auth} auth needs a login")
        if port is not None and not 0 < int(port) < 65536:
            raise InvalidInputError(f"connection port {port} is out of range")
        path = (_text(extra, "wsman_path") or "wsman").strip("/") or "wsman"
        if not re.fullmatch(r"[A-Za-z0-9._\-/]+", path.replace(NODE_PLACEHOLDER, "node", 1)):
            raise InvalidInputError(
                f"connection extra 'wsman_path' {path!r} has characters a URL path cannot hold"
            )
        cluster = _text(extra, "cluster")
        if cluster is not None and not _HOST.match(cluster):
            raise InvalidInputError(f"connection extra 'cluster' {cluster!r} is not a cluster name")
        nodes = _nodes(extra.get("nodes"))
        if cluster is None and (nodes or NODE_PLACEHOLDER in path):
            raise InvalidInputError(
                "connection extras 'nodes' and a {node} wsman_path are for a cluster: set 'cluster' too"
            )
        locale = _text(extra, "locale") or "en-US"
        if not _LOCALE.match(locale):
            raise InvalidInputError(
                f"connection extra 'locale' must be a language tag like en-US, not {locale!r}"
            )
        default_leases = DEFAULT_CLUSTER_LEASE_FOLDER if cluster else DEFAULT_LEASE_FOLDER
        lease_folder = require_host_path(
            (_text(extra, "lease_folder") or default_leases).rstrip("\\"),
            "connection extra 'lease_folder'",
        )
        if cluster and not is_cluster_wide(lease_folder):
            raise InvalidInputError(
                f"connection extra 'lease_folder' {lease_folder!r} is a folder of one node: the leases of a "
                "cluster must be seen by every node, so give a folder on a Cluster Shared Volume "
                "(C:\\ClusterStorage\\VolumeN\\...) or an SMB share (docs/operations.md, Preparing a cluster)"
            )
        return cls(
            host=host,
            port=int(port) if port else (HTTPS_PORT if use_tls else HTTP_PORT),
            username=login or None,
            password=password or None,
            auth=auth,
            use_tls=use_tls,
            cert_validation=_flag(extra, "cert_validation", True),
            ca_bundle=_text(extra, "ca_bundle"),
            encryption=encryption,
            configuration_name=_text(extra, "configuration_name") or "Microsoft.PowerShell",
            locale=locale,
            operation_timeout=_number(extra, "operation_timeout", defaults.OPERATION_TIMEOUT, minimum=1),
            read_timeout=_number(extra, "read_timeout", defaults.READ_TIMEOUT, minimum=1),
            connection_timeout=_number(extra, "connection_timeout", defaults.CONNECTION_TIMEOUT, minimum=1),
            retry_attempts=int(_number(extra, "retry_attempts", defaults.RETRY_ATTEMPTS, minimum=1)),
            retry_max_seconds=_number(extra, "retry_max_seconds", defaults.RETRY_MAX_SECONDS, minimum=0),
            wsman_path=path,
            certificate_pem=certificate_pem,
            certificate_key_pem=certificate_key_pem,
            proxy=_text(extra, "proxy"),
            lease_folder=lease_folder,
            cluster=cluster,
            nodes=nodes,
            migration_timeout=_number(extra, "migration_timeout", defaults.MIGRATION_TIMEOUT, minimum=0),
        )

    def wsman_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pypsrp.wsman.WSMan``."""
        kwargs: dict[str, Any] = {
            "server": self.host,
            "port": self.port,
            "path": self.path,
            "ssl": self.use_tls,
            "auth": self.auth,
            "encryption": self.encryption,
            "locale": self.locale,
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
