"""The fleet inventory the example DAGs read: hosts (parse time) and their VMs (run time)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airflow_hyperv.hyperv.names import require_exact_name, require_host_path
from airflow_hyperv.hyperv.verify import Policy

VARIABLE = "hyperv_inventory"
# A queue name the CeleryExecutor routes by (and a shell-safe word in a worker's --queues list).
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


class InventoryError(ValueError):
    pass


@dataclass(frozen=True)
class HostEntry:
    name: str
    conn_id: str
    pool: str
    pool_slots: int
    export_root: str | None
    vms: list[dict[str, str]] = field(default_factory=list)
    # The executor queue of the host's tasks (one per site, served by the workers there); None: the
    # default queue ([operators] default_queue).
    queue: str | None = None

    @property
    def group_id(self) -> str:
        return "host_" + "".join(c if c.isalnum() else "_" for c in self.name)

    @property
    def task_options(self) -> dict[str, Any]:
        """What every task of this host takes: its queue, when the inventory names one."""
        return {"queue": self.queue} if self.queue else {}


@dataclass(frozen=True)
class Inventory:
    timezone: str
    schedule: str | None
    keep_exports: int | None
    hosts: list[HostEntry]

    def host(self, name: str) -> HostEntry:
        for host in self.hosts:
            if host.name == name:
                return host
        raise InventoryError(f"no host {name!r} in the inventory")


def _vms(raw: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(raw, list):
        raise InventoryError(f"{where}: 'vms' must be a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item:
            raise InventoryError(f"{where}: vms[{i}] needs a name")
        try:
            name = require_exact_name(item["name"])
            policy = Policy.parse(item.get("policy", "require")).value
        except ValueError as exc:
            raise InventoryError(f"{where}: vms[{i}]: {exc}") from None
        out.append({"vm": name, "policy": policy})
    return out


def parse(data: Any, source: str = "inventory") -> Inventory:
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list) or not data["hosts"]:
        raise InventoryError(f"{source}: needs a non-empty 'hosts' list")
    hosts = []
    for i, h in enumerate(data["hosts"]):
        where = f"{source}: hosts[{i}]"
        if not isinstance(h, dict) or not h.get("name") or not h.get("conn_id"):
            raise InventoryError(f"{where} needs a name and a conn_id")
        root = h.get("export_root")
        try:
            root = require_host_path(root, "export_root") if root else None
        except ValueError as exc:
            raise InventoryError(f"{where}: {exc}") from None
        queue = h.get("queue")
        if queue is not None and not (isinstance(queue, str) and _QUEUE.fullmatch(queue)):
            raise InventoryError(
                f"{where}: queue {queue!r} is not a queue name (letters, digits, '_', '.', '-'; "
                "starting with a letter or digit)"
            )
        hosts.append(
            HostEntry(
                name=str(h["name"]),
                conn_id=str(h["conn_id"]),
                pool=str(h.get("pool") or f"hyperv_{h['name']}"),
                pool_slots=int(h.get("pool_slots", 2)),
                export_root=root,
                vms=_vms(h.get("vms", []), where),
                queue=queue,
            )
        )
    keep = data.get("keep_exports")
    return Inventory(
        timezone=str(data.get("timezone", "UTC")),
        schedule=data.get("schedule"),
        keep_exports=int(keep) if keep else None,
        hosts=hosts,
    )


def load(path: str | Path) -> Inventory:
    path = Path(path)
    try:
        return parse(yaml.safe_load(path.read_text()), str(path))
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from None


def vms_for_host(path: str | Path, host: str, variable: str | None) -> list[dict[str, str]]:
    """The VMs to protect on ``host`` now: from the Variable (JSON) when set, else from the file."""
    inventory = parse(json.loads(variable), f"Variable {VARIABLE}") if variable else load(path)
    return inventory.host(host).vms


def conn_id_for_host(path: str | Path, host: str) -> str:
    """The connection of ``host``: from the inventory when it lists the host, else ``hyperv_<host>``."""
    try:
        return load(path).host(host).conn_id
    except (InventoryError, OSError):
        return "hyperv_" + "".join(c if c.isalnum() else "_" for c in host.lower())
