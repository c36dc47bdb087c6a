"""operators layer of airflow-hyperv.

``airflow_hyperv.operators.restore_test`` is the old name of ``restore_verification``; DAG files still
import from it. It lives here as a module object, not a file: a ``*_test.py`` file in the package is
collected by pytest as a test module.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
import warnings
from typing import Any

_OLD = f"{__name__}.restore_test"
_NEW = f"{__name__}.restore_verification"


class _MovedModule(types.ModuleType):
    """Every attribute is the new module's, fetched on first use with a DeprecationWarning, so
    importing this package costs nothing and ``from <old> import X`` warns once per import."""

    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, f"Deprecated: moved to {target}.")
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)
        self._target = target

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        warnings.warn(
            f"{self.__name__} is deprecated: import {attr} from {self._target}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(self._target), attr)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(importlib.import_module(self._target))))


# In sys.modules for ``from …restore_test import X``; as an attribute for ``import …restore_test``.
restore_test = sys.modules.setdefault(_OLD, _MovedModule(_OLD, _NEW))
