"""The shared mixins live in one module, which operators and sensors both import; the names DAGs
import from ``airflow_hyperv.operators.base`` are still there, and are the same objects."""

from __future__ import annotations

import subprocess
import sys

import airflow_hyperv.mixins as mixins
import airflow_hyperv.operators.base as operators_base

SHARED = (
    "DEFAULT_CONN_ID",
    "FINAL_ERRORS",
    "REJECTED_LOGIN_REASON",
    "DeferrableMixin",
    "HyperVConnectionMixin",
    "HyperVOperatorMixin",
    "NeverRetryRejectedLogins",
    "NeverRetryRejectedLoginsMixin",
    "is_rejected_login",
)


def test_operators_base_re_exports_the_shared_mixins():
    for name in SHARED:
        assert getattr(operators_base, name) is getattr(mixins, name), name


def test_one_mixin_per_concern_and_every_operator_and_sensor_carries_them():
    from airflow_hyperv.operators.checkpoint import HyperVMergeCheckpointOperator
    from airflow_hyperv.sensors.vm import HyperVVMStateSensor

    assert issubclass(mixins.HyperVOperatorMixin, mixins.NeverRetryRejectedLoginsMixin)
    assert issubclass(mixins.HyperVOperatorMixin, mixins.HyperVConnectionMixin)
    for cls in (HyperVMergeCheckpointOperator, HyperVVMStateSensor):
        assert issubclass(cls, mixins.HyperVOperatorMixin) and issubclass(cls, mixins.DeferrableMixin)


def test_sensors_do_not_import_the_operators():
    code = (
        "import sys, airflow_hyperv.sensors.vm, airflow_hyperv.sensors.checkpoint; "
        "print(sorted(m for m in sys.modules if m.startswith('airflow_hyperv.operators')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
