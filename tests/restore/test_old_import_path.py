"""``airflow_hyperv.operators.restore_test`` was the module's name: DAG files that import from it keep
working, with a DeprecationWarning, and no ``*_test.py`` file is left in the package for pytest."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import airflow_hyperv
from airflow_hyperv.operators import restore_verification

PUBLIC = (
    "HyperVRestoreTestOperator",
    "HyperVRestoreCleanupOperator",
    "newest_export",
    "restore_asset",
    "RESTORE_ALIAS",
    "COPY_PREFIX",
)


def test_from_the_old_path_imports_the_same_objects_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"restore_test is deprecated.*restore_verification"):
        from airflow_hyperv.operators.restore_test import (
            HyperVRestoreCleanupOperator,
            HyperVRestoreTestOperator,
        )
    assert HyperVRestoreTestOperator is restore_verification.HyperVRestoreTestOperator
    assert HyperVRestoreCleanupOperator is restore_verification.HyperVRestoreCleanupOperator


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_there_under_the_old_module(name):
    old = importlib.import_module("airflow_hyperv.operators.restore_test")
    with pytest.warns(DeprecationWarning):
        assert getattr(old, name) is getattr(restore_verification, name)


def test_import_of_the_old_module_and_attribute_access_work():
    import airflow_hyperv.operators.restore_test as old

    with pytest.warns(DeprecationWarning):
        assert old.RESTORE_ALIAS == "hyperv-restore-tests"
    with pytest.raises(AttributeError), pytest.warns(DeprecationWarning):
        _ = old.no_such_name


def test_no_file_in_the_package_matches_pytests_test_file_patterns():
    package = Path(airflow_hyperv.__file__).parent
    assert [p for p in package.rglob("*_test.py")] == []
    assert [p for p in package.rglob("test_*.py")] == []
