"""Thin per-cmdlet handlers over the Hyper-V model, parameter binding, serialisation and the audit log.

``HyperVCommandHost`` is the entry point: a ``runtime.CommandHost`` for one emulated host.
"""

from airflow_hyperv.emulator.cmdlets.audit import AuditEntry, AuditLog
from airflow_hyperv.emulator.cmdlets.base import REGISTRY
from airflow_hyperv.emulator.cmdlets.command_host import HyperVCommandHost

__all__ = ["REGISTRY", "AuditEntry", "AuditLog", "HyperVCommandHost"]
