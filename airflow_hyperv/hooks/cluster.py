"""Routing a cluster connection to the node a VM runs on (docs/hook.md, "Clusters").

A ``hyperv`` connection with the ``cluster`` extra names a failover cluster, not one host. Hyper-V acts
on a VM only on the node that owns it (``Get-VM`` elsewhere does not list it), so the hook asks the
cluster where the VM is (``Get-ClusterGroup -VMId <guid>`` on any node that answers, bound parameters
only, no ``-Cluster``: that would be a second hop from the node) and then talks to the owner node
directly, with the same credentials, on a runspace pool of its own. A role in transition (``Pending``:
a live migration, a move) is waited for, bounded by ``migration_timeout`` and logged.

``ClusterRouter`` holds one hook per node (each an ordinary single-host hook, opened on first use) and
knows which node the hook's work currently goes to. It imports no hook module: the owning hook hands it
a factory, so the layering stays one-way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_hyperv.hyperv import pipelines
from airflow_hyperv.hyperv.enums import ClusterNodeState
from airflow_hyperv.hyperv.errors import (
    AuthenticationFailedError,
    HyperVError,
    InvalidInputError,
    OperationInProgressError,
    TransientTransportError,
    VMNotFoundError,
    classify,
)
from airflow_hyperv.hyperv.records import CLUSTER_NODE_TYPE, ClusterNode, ClusterRole, has_type

if TYPE_CHECKING:
    from airflow_hyperv.hooks.base import HyperVBaseHook
    from airflow_hyperv.hooks.connection import ConnectionSettings

log = logging.getLogger(__name__)


class ClusterRouter:
    """The nodes of one cluster connection, one hook per node, and the node work goes to now."""

    # Seconds between two looks at a role that is moving; tests make it small.
    poll_interval = 5.0

    def __init__(
        self, settings: ConnectionSettings, make_hook: Callable[[ConnectionSettings], HyperVBaseHook]
    ):
        if settings.cluster is None:
            raise InvalidInputError("a cluster router needs a cluster connection")
        self.settings = settings
        self.cluster: str = settings.cluster
        self._make_hook = make_hook
        self._hooks: dict[str, HyperVBaseHook] = {}
        self.current: str | None = None  # the node the hook's work goes to now
        self.focus: uuid.UUID | None = None  # the VM that node was chosen for
        self._down: set[str] = set()  # nodes that did not answer (or the cluster says are down)
        self._states: dict[str, ClusterNodeState] = {}

    # --- node hooks --------------------------------------------------------------------------------

    def hook(self, node: str) -> HyperVBaseHook:
        key = node.lower()
        if key not in self._hooks:
            self._hooks[key] = self._make_hook(self.settings.for_node(node))
        return self._hooks[key]

    def current_hook(self) -> HyperVBaseHook:
        if self.current is None:
            self.current = self.ask_node()
        return self.hook(self.current)

    def close(self) -> None:
        hooks, self._hooks = list(self._hooks.values()), {}
        for hook in hooks:
            hook.close()
        self.current = None

    def candidates(self) -> list[str]:
        """Nodes to ask about the cluster: the current one, then the configured ones (or the connection
        host when none are), those that did not answer last."""
        names = [n for n, _ in self.settings.nodes] or [self.settings.host]
        ordered = ([self.current] if self.current else []) + [n for n in names if n != self.current]
        ordered = [
            n for n in ordered if self._states.get(n, ClusterNodeState.Up) is not ClusterNodeState.Down
        ]
        return [n for n in ordered if n not in self._down] + [n for n in ordered if n in self._down]

    def ask(self, pipeline: pipelines.Pipeline) -> tuple[str, Any]:
        """Run a cluster query on the first node that answers (one try per node: a node that is down
        must not cost the whole retry budget). A rejected login is raised at once."""
        last: Exception | None = None
        for node in self.candidates():
            try:
                result = self.hook(node).run_pipeline(pipeline)
            except AuthenticationFailedError:
                raise
            except TransientTransportError as exc:
                log.warning(
                    "Node %s of cluster %s did not answer (%s); asking another node", node, self.cluster, exc
                )
                self._down.add(node)
                last = exc
                continue
            self._down.discard(node)
            return node, result
        raise TransientTransportError(f"no node of cluster {self.cluster} answered: {last}")

    def ask_node(self) -> str:
        """Any node that answers (for work that any node can do: files on cluster storage)."""
        return self.ask(pipelines.cluster_nodes())[0]

    # --- what the cluster says ---------------------------------------------------------------------

    def nodes(self) -> list[ClusterNode]:
        """Every node of the cluster with its state (Get-ClusterNode on a node that answers)."""
        node, result = self.ask(pipelines.cluster_nodes())
        found = [ClusterNode.decode(o) for o in result.output if has_type(o, CLUSTER_NODE_TYPE)]
        if not found:
            error = classify(result.errors[0]) if result.errors else None
            raise HyperVError(f"node {node} did not list the nodes of cluster {self.cluster}: {error}")
        other = {n.cluster for n in found if n.cluster and n.cluster.lower() != self.cluster.lower()}
        if other:
            raise InvalidInputError(
                f"node {node} belongs to cluster {', '.join(sorted(other))}, not {self.cluster}: check the "
                "connection's cluster and nodes extras"
            )
        self._states = {n.name: n.state for n in found}
        return found

    def role(self, *, vm_id: uuid.UUID | None = None, name: str | None = None) -> ClusterRole | None:
        """The clustered role of a VM (by Id, or by its exact name), or None when the cluster has none."""
        pipeline = (
            pipelines.cluster_role_of_vm(vm_id)
            if vm_id is not None
            else pipelines.cluster_role_by_name(str(name))
        )
        node, result = self.ask(pipeline)
        roles = [ClusterRole.decode(o) for o in result.output]
        if len(roles) > 1:
            raise HyperVError(f"cluster {self.cluster} has {len(roles)} roles for {vm_id or name!r}")
        if roles:
            return roles[0]
        if result.errors and result.errors[0].category != "ObjectNotFound":
            error = classify(result.errors[0])
            raise type(error)(
                f"asking cluster {self.cluster} (node {node}) for {vm_id or name}: {error}", error.info
            )
        return None

    def settled_role(
        self, *, vm_id: uuid.UUID | None = None, name: str | None = None, timeout: float | None = None
    ) -> ClusterRole:
        """The VM's role once it is not moving: a Pending role (a live migration) is waited for, up to
        ``timeout`` seconds (the connection's ``migration_timeout``), every ``poll_interval`` seconds."""
        what = str(vm_id or name)
        limit = self.settings.migration_timeout if timeout is None else timeout
        started = time.monotonic()
        while True:
            role = self.role(vm_id=vm_id, name=name)
            if role is None:
                raise VMNotFoundError(
                    f"VM {what} is not a clustered role of cluster {self.cluster} (a VM that is not clustered "
                    "is reached with a connection to its node)"
                )
            if role.settled:
                return role
            waited = time.monotonic() - started
            if waited >= limit:
                raise OperationInProgressError(
                    f"VM {role.name} on cluster {self.cluster} is still in transition ({role.state.name}, on "
                    f"{role.owner_node}) after {waited:.0f}s (migration_timeout {limit:g}s)"
                )
            log.info(
                "VM %s is moving (cluster role %s, owner %s); waiting for it to settle (%.0fs of %gs)",
                role.name,
                role.state.name,
                role.owner_node,
                waited,
                limit,
            )
            time.sleep(min(self.poll_interval, max(limit - waited, 0.0)) or self.poll_interval)

    def go_to(self, node: str, vm_id: uuid.UUID | None) -> None:
        """Send the hook's work to ``node`` from now on (for the VM ``vm_id``)."""
        if self.current is not None and self.current.lower() != node.lower():
            log.info(
                "VM %s is on node %s of cluster %s (was working on %s)",
                vm_id,
                node,
                self.cluster,
                self.current,
            )
        elif self.current is None:
            log.info("VM %s is on node %s of cluster %s", vm_id, node, self.cluster)
        self.current = node
        self.focus = vm_id
