"""The protection chain of one VM, for DAG files: ``protect_vm`` (a task group) and
``build_protection_chain`` (the tasks, in the current DAG or task group; also a mapped ``@task_group``).

They are defined in ``airflow_hyperv.operators.protect`` next to the operators they wire, and are the
same objects here (``airflow_hyperv.operators.protect`` keeps working, without a warning).
"""

from __future__ import annotations

from airflow_hyperv.operators.protect import build_protection_chain, default_group_id, protect_vm

__all__ = ["build_protection_chain", "default_group_id", "protect_vm"]
