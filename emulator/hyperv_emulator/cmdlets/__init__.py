"""Thin per-cmdlet handlers over the Hyper-V model, parameter binding, serialisation and the audit log.

``HyperVCommandHost`` is the entry point: a ``host_runtime.CommandHost`` for one emulated host.
"""

from hyperv_emulator.cmdlets.audit import AuditEntry, AuditLog
from hyperv_emulator.cmdlets.base import REGISTRY
from hyperv_emulator.cmdlets.command_host import HyperVCommandHost

__all__ = ["REGISTRY", "AuditEntry", "AuditLog", "HyperVCommandHost"]
