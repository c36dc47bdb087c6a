"""``Emulator``: the fleet model and the WS-Man server in one object, for tests, the demo and the CLI."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hyperv_emulator.counters import Counters
from hyperv_emulator.faults import FaultPlan

if TYPE_CHECKING:
    from hyperv_emulator.cmdlets import AuditLog, HyperVCommandHost
    from hyperv_emulator.cmdlets.jea import RoleCapability
    from hyperv_emulator.model.fleet import Fleet

EXAMPLE_FLEET = Path(__file__).parent / "fleets" / "example.yaml"


@dataclass(frozen=True)
class ClientConnection:
    """The fields of a connection to one emulated host (``host``, ``port``, ``login``, ``password``,
    ``extra``): what an Airflow ``hyperv`` connection holds."""

    host: str
    port: int
    login: str
    password: str
    extra: dict[str, Any]

    def as_fields(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "login": self.login,
            "password": self.password,
            "extra": dict(self.extra),
        }


def command_hosts(
    fleet: Fleet, *, audit: AuditLog | None = None, role: RoleCapability | None = None
) -> dict[str, HyperVCommandHost]:
    """One PowerShell command host per Hyper-V host of ``fleet``, in fleet order, sharing one audit log
    (a new one unless ``audit`` is given); restricted to a JEA role capability when ``role`` is given."""
    from hyperv_emulator.cmdlets import AuditLog, HyperVCommandHost

    shared = audit if audit is not None else AuditLog()
    return {name: HyperVCommandHost(host, audit=shared, role=role) for name, host in fleet.hosts.items()}


class Emulator:
    """An emulated Hyper-V fleet on 127.0.0.1. Use as a context manager; every host's files live under
    ``root_dir`` (a temp dir removed on stop unless you gave one)."""

    def __init__(
        self,
        fleet: Path | str | dict[str, Any] = EXAMPLE_FLEET,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        auth: Literal["ntlm", "basic"] = "basic",
        tls: bool = False,
        username: str = "hyperv-admin",
        password: str | None = None,
        root_dir: Path | None = None,
        time_scale: float = 1.0,
        clock: Any = None,
        idle_timeout: float = 7200.0,
        receive_wait_cap: float = 0.5,
        restricted: bool = False,
        role_capability: Path | str | None = None,
    ) -> None:
        """``restricted``: behave like a JEA endpoint with the role capability in ``role_capability``
        (a ``.psrc``, or a Markdown file's role block), which restricted mode requires: there is no
        default. Giving ``role_capability`` alone also restricts."""
        from hyperv_emulator.cmdlets.audit import AuditLog
        from hyperv_emulator.model.clock import ScaledClock
        from hyperv_emulator.model.fleet import Fleet

        self.role: Any = None  # a JEA RoleCapability in restricted mode (loaded first: it may fail)
        if restricted or role_capability is not None:
            from hyperv_emulator.cmdlets.jea import RoleCapability

            if role_capability is None:
                raise ValueError("restricted mode needs a role capability file (role_capability=...)")
            self.role = RoleCapability.load(Path(role_capability))
        self.username = username
        self.password = password or secrets.token_urlsafe(18)
        self.auth = auth
        self.tls = tls
        self._own_root = root_dir is None
        self.root_dir = Path(root_dir) if root_dir else Path(tempfile.mkdtemp(prefix="hyperv-emulator-"))
        self.faults = FaultPlan()
        self.counters = Counters()
        self.audit = AuditLog()
        self.clock = clock or ScaledClock(time_scale)
        self.fleet = Fleet.load(fleet, root_dir=self.root_dir, clock=self.clock, faults=self.faults)
        self._bind, self._port = bind, port
        self._idle_timeout, self._receive_wait_cap = idle_timeout, receive_wait_cap
        self._server: Any = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> Emulator:
        from hyperv_emulator.server import WSManServer

        if self._server is None:
            server = WSManServer(
                command_hosts(self.fleet, audit=self.audit, role=self.role),
                username=self.username,
                password=self.password,
                auth=self.auth,
                tls=self.tls,
                bind=self._bind,
                port=self._port,
                faults=self.faults,
                counters=self.counters,
                idle_timeout=self._idle_timeout,
                receive_wait_cap=self._receive_wait_cap,
                quotas=self.fleet.winrm_quotas,
            )
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._own_root:
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where and how to connect -----------------------------------------------------------------
    @property
    def server(self) -> Any:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        return str(self.server.url)

    def url_for(self, host_name: str) -> str:
        return str(self.server.url_for(host_name))

    @property
    def ca_cert_path(self) -> str | None:
        return self.server.ca_cert_path if self._server is not None and self.tls else None

    @property
    def host_names(self) -> list[str]:
        return list(self.fleet.hosts)

    def host(self, name: str | None = None) -> Any:
        """The model of one host (the first if no name is given)."""
        return self.fleet.hosts[name or self.host_names[0]]

    def cluster(self, name: str | None = None) -> Any:
        """The model of one failover cluster of the fleet (the first if no name is given)."""
        clusters = self.fleet.clusters
        if not clusters:
            raise KeyError("this fleet has no cluster")
        return clusters[name or next(iter(clusters))]

    def cluster_connection(self, name: str | None = None, **overrides: Any) -> ClientConnection:
        """A ``hyperv`` connection that names a cluster: its name, each node and where it answers (every
        emulated node is a route of this one server: ``{node}`` in the WS-Man path)."""
        cluster = self.cluster(name)
        extra = self.connection_extra(
            next(iter(cluster.nodes)),
            cluster=cluster.name,
            nodes={node: "127.0.0.1" for node in cluster.nodes},
            wsman_path="{node}/wsman",
        )
        extra.update(overrides)
        return ClientConnection(
            host="127.0.0.1", port=self.port, login=self.username, password=self.password, extra=extra
        )

    def quota_usage(self) -> list[dict[str, Any]]:
        """Per host and user: the peak shells and running commands since the last counters reset and
        the QuotaLimit faults answered, next to that host's quotas, so a bench can show the headroom
        (a host no one used has one row with user "")."""
        snap = self.counters.snapshot()
        rows: list[dict[str, Any]] = []
        for host in self.host_names:
            quotas = self.fleet.winrm_quotas[host]
            shells = snap.peak_shells_by_user.get(host, {})
            ops = snap.peak_operations_by_user.get(host, {})
            for user in sorted(set(shells) | set(ops)) or [""]:
                rows.append({
                    "host": host,
                    "user": user,
                    "peak_shells": shells.get(user, 0),
                    "max_shells_per_user": quotas.max_shells_per_user,
                    "plugin_max_shells_per_user": quotas.plugin.max_shells_per_user,
                    "peak_operations": ops.get(user, 0),
                    "max_operations_per_user": quotas.max_concurrent_operations_per_user,
                    "quota_faults": snap.quota_faults_by_host.get(host, 0),
                })  # fmt: skip
        return rows

    def connection_extra(self, host_name: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The ``extra`` of a ``hyperv`` Airflow connection that reaches one emulated host."""
        extra: dict[str, Any] = {
            "auth": "ntlm" if self.auth == "ntlm" else "basic",
            "use_tls": self.tls,
            "wsman_path": f"{host_name or self.host_names[0]}/wsman",
            "operation_timeout": 5,
            "read_timeout": 10,
            "retry_attempts": 4,
            "retry_max_seconds": 20,
        }
        if self.auth == "basic" and not self.tls:
            extra["encryption"] = "never"
        if self.tls and self.ca_cert_path:
            extra["ca_bundle"] = self.ca_cert_path
        extra.update(overrides)
        return extra

    def client_connection(self, host_name: str | None = None, **overrides: Any) -> ClientConnection:
        """What a client needs to reach one emulated host: the fields of an Airflow ``hyperv``
        connection, as plain data (the emulator never imports its client)."""
        return ClientConnection(
            host="127.0.0.1",
            port=self.port,
            login=self.username,
            password=self.password,
            extra=self.connection_extra(host_name, **overrides),
        )

    def write_credentials_file(self) -> Path:
        """Write ``username:password`` to a file only the owner can read, and return its path."""
        path = self.root_dir / "credentials"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{self.username}:{self.password}\n")
        return path
