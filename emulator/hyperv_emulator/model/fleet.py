"""Load and validate a YAML fleet file: several Hyper-V hosts and their VMs.

A bad file fails with a ``FleetError`` naming the file, the host/VM and the field, so whoever edits a
fleet sees at once what to fix.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.model.clock import Clock
from hyperv_emulator.model.cluster import DEFAULT_LIVE_MIGRATION_SECONDS, Cluster, SharedStorage
from hyperv_emulator.model.culture import LOCALES, WINDOWS_VERSIONS, HostCulture
from hyperv_emulator.model.disk import GiB, MiB, VirtualDisk
from hyperv_emulator.model.enums import CheckpointType, VhdType, VMState
from hyperv_emulator.model.host import HostModel, Timing
from hyperv_emulator.model.paths import Volume
from hyperv_emulator.model.vm import (
    INTEGRATION_SERVICES,
    HardDrive,
    IntegrationService,
    VirtualMachine,
)
from hyperv_emulator.quotas import WinRMQuotas

_HOST_KEYS = {
    "name",
    "volumes",
    "vms",
    "vm_path",
    "logical_processors",
    "memory_gb",
    "golden_images",
    "winrm",
}
_CULTURE_KEYS = {"locale", "utc_offset", "windows", "hyperv_admin"}  # what a host prints (model/culture.py)
_VM_KEYS = {
    "name",
    "id",
    "state",
    "guest",
    "vss",
    "heartbeat",
    "integration_services",
    "checkpoint_type",
    "automatic_checkpoints",
    "generation",
    "cpus",
    "memory_mb",
    "churn_mb",
    "disks",
    "notes",
    "path",
    "clustered",
}
_DISK_KEYS = {"path", "name", "size_gb", "file_gb", "type", "volume", "parent"}
_VOLUME_KEYS = {"capacity_gb", "used_gb", "label", "file_system"}
_GOLDEN_KEYS = {"path", "size_gb", "file_gb"}
_CLUSTER_KEYS = {"name", "nodes", "shared_volumes", "live_migration_seconds"}
_FILE_SYSTEMS = ("NTFS", "ReFS", "CSVFS")
# Every real VMState by name: a VM whose health is not OK sits in a Critical twin (PausedCritical).
_STATES = {state.name.lower(): state for state in VMState}


class FleetError(ValueError):
    """A fleet file that cannot be loaded; the message names file, host/VM and field."""


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, field: str, problem: str) -> FleetError:
        loc = f" {where}" if where else ""
        return FleetError(f"{self.source}:{loc}: field '{field}': {problem}")


def _num(ctx: _Ctx, where: str, field: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.fail(where, field, f"expected a number, got {value!r}")
    if value < minimum:
        raise ctx.fail(where, field, f"must be >= {minimum}, got {value!r}")
    return float(value)


def _bool(ctx: _Ctx, where: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ctx.fail(where, field, f"expected true or false, got {value!r}")
    return value


def _mapping(ctx: _Ctx, where: str, field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.fail(where, field, f"expected a mapping, got {type(value).__name__}")
    return value


def _unknown(ctx: _Ctx, where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(map(str, data)) - allowed)
    if extra:
        raise ctx.fail(where, extra[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")


_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


def _culture(ctx: _Ctx, where: str, raw: Mapping[str, Any]) -> HostCulture:
    """``locale`` (en-US, de-DE, da-DK), ``utc_offset`` ("+01:00") and ``windows`` (2012R2 … 2025)."""
    locale = str(raw.get("locale", "en-US"))
    if locale not in LOCALES:
        raise ctx.fail(where, "locale", f"{locale!r} is not one of {', '.join(LOCALES)}")
    offset_text = str(raw.get("utc_offset", "+00:00"))
    match = _OFFSET.fullmatch(offset_text)
    if match is None or int(match[2]) > 14 or int(match[3]) > 59:
        raise ctx.fail(where, "utc_offset", f"{offset_text!r} is not an offset like +01:00 or -05:30")
    offset = timedelta(hours=int(match[2]), minutes=int(match[3])) * (-1 if match[1] == "-" else 1)
    windows = str(raw.get("windows", "2022"))
    if windows not in WINDOWS_VERSIONS:
        raise ctx.fail(where, "windows", f"{windows!r} is not one of {', '.join(WINDOWS_VERSIONS)}")
    return HostCulture(locale=locale, utc_offset=offset, windows=windows)


class Fleet:
    """Hosts built from a fleet file, sharing one clock, fault plan and ``timing``.

    The model only: the PowerShell command hosts in front of these hosts (and their audit log) are
    composed in ``hyperv_emulator.api.command_hosts``. ``winrm_quotas``: each host's WinRM quotas
    (the fleet file's ``winrm`` section, else the defaults), which the WS-Man service enforces."""

    def __init__(
        self,
        hosts: dict[str, HostModel],
        timing: Timing,
        winrm_quotas: dict[str, WinRMQuotas] | None = None,
        clusters: dict[str, Cluster] | None = None,
    ) -> None:
        self.hosts = hosts
        self.timing = timing
        self.winrm_quotas = {name: (winrm_quotas or {}).get(name, WinRMQuotas()) for name in hosts}
        self.clusters = clusters or {}

    @classmethod
    def load(
        cls,
        source: str | Path | Mapping[str, Any],
        *,
        root_dir: Path,
        clock: Clock,
        faults: FaultPlan,
        timing: Timing | None = None,
    ) -> Fleet:
        """Build the fleet. ``timing`` (if given) overrides the file's ``timing`` section entirely."""
        if isinstance(source, Mapping):
            ctx, data = _Ctx("<fleet dict>"), source
        else:
            path = Path(source)
            ctx = _Ctx(str(path))
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise FleetError(f"{path}: cannot read fleet file: {exc}") from exc
            except yaml.YAMLError as exc:
                raise FleetError(f"{path}: not valid YAML: {exc}") from exc
        data = _mapping(ctx, "", "(top level)", data)
        _unknown(ctx, "", data, {"hosts", "timing", "clusters"})
        if timing is None:
            timing = cls._timing(ctx, data.get("timing") or {})
        hosts_raw = data.get("hosts")
        if not isinstance(hosts_raw, list) or not hosts_raw:
            raise ctx.fail("", "hosts", "expected a non-empty list of hosts")
        specs = cls._cluster_specs(ctx, data.get("clusters") or [], hosts_raw, root_dir)
        node_of = {node.lower(): spec for spec in specs for node in spec["nodes"]}
        hosts: dict[str, HostModel] = {}
        quotas: dict[str, WinRMQuotas] = {}
        for hi, raw in enumerate(hosts_raw):
            name = str(raw.get("name", "")) if isinstance(raw, Mapping) else ""
            shared = node_of[name.lower()]["shared"] if name.lower() in node_of else []
            host = cls._host(
                ctx, hi, raw, root_dir=root_dir, clock=clock, faults=faults, timing=timing, shared=shared
            )
            if host.name.lower() in {h.lower() for h in hosts}:
                raise ctx.fail(f"hosts[{hi}] '{host.name}'", "name", "duplicate host name")
            hosts[host.name] = host
            quotas[host.name] = cls._winrm(ctx, f"hosts[{hi}] '{host.name}'", raw.get("winrm") or {})
        clusters = {spec["name"]: cls._cluster(ctx, spec, hosts, clock) for spec in specs}
        return cls(hosts, timing, quotas, clusters)

    @staticmethod
    def _winrm(ctx: _Ctx, where: str, raw: Any) -> WinRMQuotas:
        """A host's ``winrm`` section: its WinRM quotas (``max_shells_per_user`` …, ``plugin:`` …)."""
        raw = _mapping(ctx, where, "winrm", raw)
        try:
            return WinRMQuotas.from_mapping(dict(raw))
        except ValueError as exc:
            field, _, problem = str(exc).partition(": ")
            raise ctx.fail(where, f"winrm.{field}", problem) from exc

    @staticmethod
    def _cluster_specs(ctx: _Ctx, raw: Any, hosts_raw: list[Any], root_dir: Path) -> list[dict[str, Any]]:
        """``clusters``: each a name, its nodes (hosts of this file) and its Cluster Shared Volumes."""
        if not isinstance(raw, list):
            raise ctx.fail("", "clusters", "expected a list of clusters")
        host_names = {
            str(h.get("name", "")).lower(): str(h.get("name")) for h in hosts_raw if isinstance(h, Mapping)
        }
        specs: list[dict[str, Any]] = []
        taken: set[str] = set()
        for ci, craw in enumerate(raw):
            where = f"clusters[{ci}]"
            craw = _mapping(ctx, where, "clusters", craw)
            name = craw.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,14}", name):
                raise ctx.fail(where, "name", f"expected a cluster name (a NetBIOS name), got {name!r}")
            where = f"clusters[{ci}] '{name}'"
            _unknown(ctx, where, craw, _CLUSTER_KEYS)
            nodes_raw = craw.get("nodes")
            if not isinstance(nodes_raw, list) or not nodes_raw:
                raise ctx.fail(where, "nodes", "expected a non-empty list of host names")
            nodes: list[str] = []
            for node in nodes_raw:
                real = host_names.get(str(node).lower())
                if real is None:
                    raise ctx.fail(where, "nodes", f"{node!r} is not a host of this fleet")
                if real.lower() in taken:
                    raise ctx.fail(where, "nodes", f"{real!r} is already a node of another cluster")
                taken.add(real.lower())
                nodes.append(real)
            vols = _mapping(ctx, where, "shared_volumes", craw.get("shared_volumes") or {})
            if not vols:
                raise ctx.fail(where, "shared_volumes", "a cluster needs at least one Cluster Shared Volume")
            shared: list[SharedStorage] = []
            for key, spec in vols.items():
                mount = str(key)
                if not mount.lower().startswith("c:\\clusterstorage\\") or len(mount.rstrip("\\")) <= 17:
                    raise ctx.fail(
                        where,
                        f"shared_volumes.{mount}",
                        "a CSV is a folder under C:\\ClusterStorage\\ (C:\\ClusterStorage\\Volume1)",
                    )
                spec = _mapping(ctx, where, f"shared_volumes.{mount}", spec)
                _unknown(ctx, f"{where} shared_volumes.{mount}", spec, _VOLUME_KEYS - {"file_system"})
                cap = _num(
                    ctx, where, f"shared_volumes.{mount}.capacity_gb", spec.get("capacity_gb"), minimum=0.001
                )
                used = _num(ctx, where, f"shared_volumes.{mount}.used_gb", spec.get("used_gb", 0))
                vol = Volume(
                    "",
                    int(cap * GiB),
                    int(used * GiB),
                    str(spec.get("label", "")),
                    mount_point=mount.rstrip("\\"),
                    file_system="CSVFS",
                    guid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"csv:{name}/{mount.lower()}")),
                )
                leaf = mount.rstrip("\\").rsplit("\\", 1)[-1]
                shared.append(SharedStorage(vol, root_dir / ".clusters" / name / leaf))
            seconds = _num(
                ctx,
                where,
                "live_migration_seconds",
                craw.get("live_migration_seconds", DEFAULT_LIVE_MIGRATION_SECONDS),
            )
            specs.append({"name": name, "nodes": nodes, "shared": shared, "seconds": seconds, "where": where})
        return specs

    @staticmethod
    def _cluster(ctx: _Ctx, spec: dict[str, Any], hosts: dict[str, HostModel], clock: Clock) -> Cluster:
        """The cluster over its nodes: every VM of a node is a clustered role (``clustered: false``
        keeps one local), and a clustered VM must live on the cluster's shared volumes."""
        cluster = Cluster(
            spec["name"],
            {n: hosts[n] for n in spec["nodes"]},
            clock,
            spec["shared"],
            live_migration_seconds=spec["seconds"],
        )
        mounts = [s.volume.mount_point.lower() + "\\" for s in spec["shared"]]
        for node in spec["nodes"]:
            host = hosts[node]
            for vm in host.vms():
                if not vm.clustered:
                    continue
                paths = [vm.path, *(d.disk.path for d in vm.hard_drives)]
                local = [p for p in paths if not any(p.lower().startswith(m) for m in mounts)]
                if local:
                    raise ctx.fail(
                        f"hosts '{node}' vm '{vm.name}'",
                        "path",
                        f"a clustered VM lives on the cluster's shared volumes, not {local[0]} "
                        "(set clustered: false for a VM local to its node)",
                    )
                if any(g.name.lower() == vm.name.lower() for g in cluster.groups.values()):
                    raise ctx.fail(
                        f"hosts '{node}' vm '{vm.name}'", "name", "two clustered roles of one name"
                    )
                cluster.add_role(vm, node)
        return cluster

    @staticmethod
    def _timing(ctx: _Ctx, raw: Any) -> Timing:
        raw = _mapping(ctx, "timing", "timing", raw)
        names = {f.name for f in dataclasses.fields(Timing)}
        _unknown(ctx, "timing", raw, names)
        values = {k: _num(ctx, "timing", k, v) for k, v in raw.items()}
        timing = Timing(**values)
        try:
            timing.validate()
        except ValueError as exc:
            raise ctx.fail("timing", str(exc).split()[0].removeprefix("timing."), str(exc)) from exc
        return timing

    @classmethod
    def _host(
        cls,
        ctx: _Ctx,
        hi: int,
        raw: Any,
        *,
        root_dir: Path,
        clock: Clock,
        faults: FaultPlan,
        timing: Timing,
        shared: Sequence[SharedStorage] = (),
    ) -> HostModel:
        where = f"hosts[{hi}]"
        raw = _mapping(ctx, where, "hosts", raw)
        name = raw.get("name")
        if (
            not isinstance(name, str)
            or not name
            or any(c in name for c in '\\/:*?"<>| ')
            or name in (".", "..")
        ):
            raise ctx.fail(where, "name", f"expected a host name without path characters, got {name!r}")
        where = f"hosts[{hi}] '{name}'"
        _unknown(ctx, where, raw, _HOST_KEYS | _CULTURE_KEYS)
        vols_raw = _mapping(ctx, where, "volumes", raw.get("volumes") or {"C": {"capacity_gb": 500}})
        volumes: dict[str, Volume] = {}
        mounts: list[Volume] = []
        for key, spec in vols_raw.items():
            letter = str(key)
            is_letter = len(letter) == 1 and letter.isalpha()
            is_folder = len(letter) > 3 and letter[0].isalpha() and letter[1:3] == ":\\"
            if not (is_letter or is_folder):
                raise ctx.fail(
                    where,
                    f"volumes.{letter}",
                    "a volume key is one drive letter, or the folder it is mounted on (C:\\ClusterStorage\\Volume1)",
                )
            spec = _mapping(ctx, where, f"volumes.{letter}", spec)
            _unknown(ctx, f"{where} volumes.{letter}", spec, _VOLUME_KEYS)
            cap = _num(ctx, where, f"volumes.{letter}.capacity_gb", spec.get("capacity_gb"), minimum=0.001)
            used = _num(ctx, where, f"volumes.{letter}.used_gb", spec.get("used_gb", 0))
            fs_raw = str(
                spec.get("file_system", "CSVFS" if "\\clusterstorage\\" in letter.lower() else "NTFS")
            )
            file_system = next((f for f in _FILE_SYSTEMS if f.lower() == fs_raw.lower()), None)
            if file_system is None:
                raise ctx.fail(
                    where,
                    f"volumes.{letter}.file_system",
                    f"{fs_raw!r} is not one of {', '.join(_FILE_SYSTEMS)}",
                )
            vol = Volume(
                letter.upper() if is_letter else "",
                int(cap * GiB),
                int(used * GiB),
                str(spec.get("label", "")),
                mount_point="" if is_letter else letter,
                file_system=file_system,
                guid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"volume:{name}/{letter.lower()}")),
            )
            if is_letter:
                volumes[letter.upper()] = vol
            else:
                mounts.append(vol)
        if "C" not in volumes:
            raise ctx.fail(where, "volumes", "a host needs a C: volume")
        vm_path = str(raw.get("vm_path", "C:\\Hyper-V"))
        host = HostModel(
            name,
            root_dir=root_dir / name,
            volumes=volumes,
            clock=clock,
            faults=faults,
            timing=timing,
            logical_processors=int(
                _num(ctx, where, "logical_processors", raw.get("logical_processors", 16), minimum=1)
            ),
            memory_capacity=int(_num(ctx, where, "memory_gb", raw.get("memory_gb", 256), minimum=1) * GiB),
            vm_path=vm_path,
            vhd_path=vm_path,
        )
        host.culture = _culture(ctx, where, raw)
        host.caller_is_hyperv_admin = _bool(ctx, where, "hyperv_admin", raw.get("hyperv_admin", True))
        for vol in mounts:
            if vol.mount_point[0].upper() not in volumes:
                raise ctx.fail(
                    where, f"volumes.{vol.mount_point}", f"host has no volume {vol.mount_point[0].upper()}:"
                )
            try:
                host.fs.add_mount(vol)
            except Exception as exc:
                raise ctx.fail(where, f"volumes.{vol.mount_point}", str(exc)) from exc
        for storage in shared:  # the cluster's CSVs, one real folder for every node
            try:
                host.fs.add_shared_mount(storage.volume, storage.real, storage.sizes, storage.lock)
            except Exception as exc:
                raise ctx.fail(where, f"volumes.{storage.volume.mount_point}", str(exc)) from exc
        golden = cls._golden_images(ctx, where, raw.get("golden_images") or [], host)
        vms_raw = raw.get("vms") or []
        if not isinstance(vms_raw, list):
            raise ctx.fail(where, "vms", "expected a list of VMs")
        for vi, vraw in enumerate(vms_raw):
            cls._vm(ctx, where, vi, vraw, host, clock.now(), golden)
        return host

    @staticmethod
    def _golden_images(ctx: _Ctx, where: str, raw: Any, host: HostModel) -> dict[str, VirtualDisk]:
        """Shared parent disks (golden images) that VMs' differencing ``.vhdx`` disks are built on."""
        if not isinstance(raw, list):
            raise ctx.fail(where, "golden_images", "expected a list of {path, size_gb, file_gb}")
        images: dict[str, VirtualDisk] = {}
        for gi, graw in enumerate(raw):
            gwhere = f"{where} golden_images[{gi}]"
            graw = _mapping(ctx, gwhere, "golden_images", graw)
            _unknown(ctx, gwhere, graw, _GOLDEN_KEYS)
            path = graw.get("path")
            if not isinstance(path, str) or not path.lower().endswith((".vhdx", ".vhd")):
                raise ctx.fail(gwhere, "path", f"expected the path of a .vhdx file, got {path!r}")
            size = int(_num(ctx, gwhere, "size_gb", graw.get("size_gb", 40), minimum=0.001) * GiB)
            file_size = int(_num(ctx, gwhere, "file_gb", graw.get("file_gb", size / GiB / 4)) * GiB)
            try:
                disk = VirtualDisk(path=host.fs.normalize(path), size=size, file_size=file_size, golden=True)
            except Exception as exc:
                raise ctx.fail(gwhere, "path", str(exc)) from exc
            images[disk.path.lower()] = disk
        return images

    @staticmethod
    def _vm(
        ctx: _Ctx,
        host_where: str,
        vi: int,
        raw: Any,
        host: HostModel,
        now: float,
        golden: dict[str, VirtualDisk] | None = None,
    ) -> None:
        where = f"{host_where} vms[{vi}]"
        raw = _mapping(ctx, where, "vms", raw)
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ctx.fail(where, "name", f"expected a VM name, got {name!r}")
        where = f"{host_where} vm '{name}'"
        _unknown(ctx, where, raw, _VM_KEYS)
        # Hyper-V allows two VMs of one name on a host (Import-VM -Copy -GenerateNewId makes one):
        # a second one gets an Id and a folder of its own.
        twin = any(v.name.lower() == name.lower() for v in host.vms())
        try:
            vm_id = (
                uuid.UUID(str(raw["id"]))
                if "id" in raw
                else uuid.uuid5(uuid.NAMESPACE_DNS, f"{host.name}/{name}" + (f"#{vi}" if twin else ""))
            )
        except ValueError as exc:
            raise ctx.fail(where, "id", f"not a GUID: {raw['id']!r}") from exc
        if isinstance(raw.get("state"), bool):
            raise ctx.fail(
                where, "state", f"{raw['state']!r} is a YAML boolean: quote the state, e.g. state: 'Off'"
            )
        state = _STATES.get(str(raw.get("state", "Running")).lower())
        if state is None:
            raise ctx.fail(
                where, "state", f"{raw.get('state')!r} is not one of {', '.join(v.name for v in VMState)}"
            )
        guest = str(raw.get("guest", "windows")).lower()
        if guest not in ("windows", "linux"):
            raise ctx.fail(where, "guest", f"{raw.get('guest')!r} is not one of windows, linux")
        ct_raw = str(raw.get("checkpoint_type", "Production"))
        ctype = next((c for c in CheckpointType if c.name.lower() == ct_raw.lower()), None)
        if ctype is None:
            raise ctx.fail(
                where,
                "checkpoint_type",
                f"{ct_raw!r} is not one of {', '.join(c.name for c in CheckpointType)}",
            )
        services = [IntegrationService(n) for n in INTEGRATION_SERVICES]
        svc_raw = _mapping(ctx, where, "integration_services", raw.get("integration_services") or {})
        for sname, enabled in svc_raw.items():
            svc = next((s for s in services if s.name.lower() == str(sname).lower()), None)
            if svc is None:
                raise ctx.fail(
                    where,
                    f"integration_services.{sname}",
                    f"unknown service (known: {', '.join(INTEGRATION_SERVICES)})",
                )
            svc.enabled = _bool(ctx, where, f"integration_services.{sname}", enabled)
        safe = "".join("_" if c in '<>:"/\\|?*' else c for c in name)  # folder names cannot hold these
        folder = safe if not twin else f"{safe} ({str(vm_id)[:8]})"
        vm_dir = str(raw.get("path") or f"{host.vm_path}\\{folder}")
        vm = VirtualMachine(
            id=vm_id,
            name=name,
            state=state,
            guest_os="linux" if guest == "linux" else "windows",
            guest_vss=_bool(ctx, where, "vss", raw.get("vss", True)),
            guest_heartbeat=_bool(ctx, where, "heartbeat", raw.get("heartbeat", True)),
            checkpoint_type=ctype,
            automatic_checkpoints_enabled=_bool(
                ctx, where, "automatic_checkpoints", raw.get("automatic_checkpoints", False)
            ),
            generation=int(_num(ctx, where, "generation", raw.get("generation", 2), minimum=1)),
            processor_count=int(_num(ctx, where, "cpus", raw.get("cpus", 2), minimum=1)),
            memory_startup=int(_num(ctx, where, "memory_mb", raw.get("memory_mb", 4096), minimum=32) * MiB),
            churn_bytes=int(_num(ctx, where, "churn_mb", raw.get("churn_mb", 256)) * MiB),
            path=vm_dir,
            snapshot_path=vm_dir,
            creation_time=now - 86400 * 30,
            started_at=now - 3600 if state is VMState.Running else None,
            notes=str(raw.get("notes", "")),
            integration=services,
        )
        vm.clustered = _bool(ctx, where, "clustered", raw.get("clustered", True))
        disks_raw = raw.get("disks") or [{"size_gb": 40, "file_gb": 10}]
        if not isinstance(disks_raw, list):
            raise ctx.fail(where, "disks", "expected a list of disks")
        for di, draw in enumerate(disks_raw):
            dwhere = f"{where} disks[{di}]"
            draw = _mapping(ctx, dwhere, "disks", draw)
            _unknown(ctx, dwhere, draw, _DISK_KEYS)
            size = int(_num(ctx, dwhere, "size_gb", draw.get("size_gb", 40), minimum=0.001) * GiB)
            vtype = str(draw.get("type", "Dynamic"))
            if vtype.lower() not in ("dynamic", "fixed"):
                raise ctx.fail(dwhere, "type", f"{vtype!r} is not one of Dynamic, Fixed")
            fixed = vtype.lower() == "fixed"
            file_size = (
                size
                if fixed
                else int(_num(ctx, dwhere, "file_gb", draw.get("file_gb", size / GiB / 4)) * GiB)
            )
            if file_size > size:
                raise ctx.fail(dwhere, "file_gb", "a disk file cannot be larger than its size_gb")
            volume = str(draw.get("volume", vm_dir[0])).upper()
            default_name = f"{safe}.vhdx" if di == 0 else f"{safe}-{di}.vhdx"
            dpath = (
                draw.get("path")
                or f"{volume}:{vm_dir[2:]}\\Virtual Hard Disks\\{draw.get('name', default_name)}"
            )
            if volume not in host.fs.volumes:
                raise ctx.fail(dwhere, "volume", f"host has no volume {volume}:")
            parent: VirtualDisk | None = None
            if "parent" in draw:
                try:
                    parent = (golden or {}).get(host.fs.normalize(str(draw["parent"])).lower())
                except Exception:
                    parent = None
                if parent is None:
                    raise ctx.fail(
                        dwhere, "parent", f"{draw['parent']!r} is not one of the host's golden_images"
                    )
                if fixed:
                    raise ctx.fail(dwhere, "type", "a disk with a parent is a differencing disk, not Fixed")
                size = parent.size
                file_size = int(_num(ctx, dwhere, "file_gb", draw.get("file_gb", 1)) * GiB)
            disk = VirtualDisk(
                path=str(dpath),
                size=size,
                file_size=file_size,
                vhd_type=VhdType.Differencing
                if parent is not None
                else VhdType.Fixed
                if fixed
                else VhdType.Dynamic,
                parent=parent,
            )
            vm.hard_drives.append(HardDrive(disk=disk, controller_number=0, controller_location=di))
        try:
            host.add_vm(vm, allow_duplicate_name=True)
        except ValueError as exc:
            raise ctx.fail(where, "id" if "id" in str(exc) else "name", str(exc)) from exc
        except Exception as exc:  # a path the host refuses (bad drive, illegal characters)
            raise ctx.fail(where, "disks", str(exc)) from exc
