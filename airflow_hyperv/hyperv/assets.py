"""The ``hyperv://`` asset URIs this provider publishes, and their sanitizer (provider metadata
``asset-uris``: Airflow calls :func:`sanitize_uri` on every ``hyperv://`` URI a DAG declares).

* ``hyperv://<host>/vms/<vm id>/exports``: a VM's verified exports (``HyperVExportCheckpointOperator``)
* ``hyperv://<host>/vms/<vm id>/restore-tests``: its restore tests (``HyperVRestoreVerificationOperator``)
* ``hyperv://<host>/events``: the host's Hyper-V event log (``HyperVEventTrigger``)

``<host>`` is the connection's label (its host, or the route of a multi-host endpoint, which may
add path segments before ``/vms``), ``<vm id>`` the VM's Id (a GUID, lower case). Pure: no Airflow.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import SplitResult

SCHEME = "hyperv"
_NETLOC = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])(?::\d+)?$")
_VM_KINDS = ("exports", "restore-tests")


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Check a ``hyperv://`` URI (already split and normalized by Airflow) and normalize the VM Id.

    :param uri: the URI as ``urllib.parse.urlsplit`` returns it, scheme ``hyperv``.
    :return: the same URI with the VM Id in lower case.
    :raises ValueError: when the URI carries a user, a query or a fragment, names no host, or its path
        ends in none of ``/events``, ``/vms/<vm id>/exports``, ``/vms/<vm id>/restore-tests``.
    """
    if "@" in uri.netloc:
        raise ValueError("a hyperv:// asset URI carries no user or password")
    if not _NETLOC.fullmatch(uri.netloc):
        raise ValueError(f"a hyperv:// asset URI names a host (the connection's label), not {uri.netloc!r}")
    if uri.query or uri.fragment:
        raise ValueError("a hyperv:// asset URI has no query or fragment")
    parts = uri.path.strip("/").split("/")
    if parts[-1:] == ["events"] and all(parts):
        return uri
    if len(parts) >= 3 and parts[-3] == "vms" and parts[-1] in _VM_KINDS and all(parts):
        try:
            vm_id = uuid.UUID(parts[-2])
        except ValueError:
            raise ValueError(f"{parts[-2]!r} in a hyperv:// asset URI is not a VM Id (a GUID)") from None
        return uri._replace(path="/" + "/".join([*parts[:-2], str(vm_id), parts[-1]]))
    raise ValueError(
        f"unknown hyperv:// asset path {uri.path!r}: expected /events, /vms/<vm id>/exports or "
        "/vms/<vm id>/restore-tests"
    )
