"""Every public operator, sensor and trigger, and every public method of the hooks, documents what a user
passes as ``:param name:`` (the convention of Airflow's own providers); the check is proven to fail.

Classes: each parameter of every ``__init__`` in the class's own MRO (the provider's classes only, not
BaseOperator's ``task_id`` & co.) is in the class's *own* docstring, so an inherited ``hyperv_conn_id``
or ``poll_interval`` is documented where a user reads it. Methods: each parameter in the method's
docstring, and a ``:return:`` unless it returns None.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger

from airflow_hyperv.get_provider_info import get_provider_info

OWN = ("airflow_hyperv.",)
SKIPPED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
NO_RETURN = ("None", "NoReturn", "Iterator[None]")
# The modules of the bases users subclass or meet in tracebacks; get_provider_info lists the leaves.
BASE_MODULES = ("airflow_hyperv.operators.base", "airflow_hyperv.sensors.base")


def _params(fn: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("self", "cls") and p.kind not in SKIPPED_KINDS
    ]


def _own(owner: type, own: tuple[str, ...]) -> bool:
    return owner.__module__.startswith(own)


def undocumented_init_params(cls: type, own: tuple[str, ...] = OWN) -> list[str]:
    """The constructor parameters (of every provider ``__init__`` in the MRO) the class's own docstring
    does not document as ``:param name:``."""
    doc = cls.__dict__.get("__doc__") or ""
    seen: list[str] = []
    for owner in cls.__mro__:
        init = owner.__dict__.get("__init__")
        if init is None or not _own(owner, own):
            continue
        seen += [p for p in _params(init) if p not in seen]
    return [p for p in seen if f":param {p}:" not in doc]


def undocumented_in_method(fn: Callable[..., Any]) -> list[str]:
    """What the method's docstring lacks: a docstring at all, a ``:param`` per parameter, a ``:return:``
    (unless it returns None)."""
    doc = inspect.getdoc(fn) or ""
    if not doc.strip():
        return ["<docstring>"]
    missing = [p for p in _params(fn) if f":param {p}:" not in doc]
    returns = inspect.signature(fn).return_annotation
    if returns is not inspect.Signature.empty and str(returns) not in NO_RETURN and ":return:" not in doc:
        missing.append(":return:")
    return missing


def public_methods(cls: type, own: tuple[str, ...] = OWN) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every public function (plain, static or class method) the provider's classes in the MRO define."""
    seen: set[str] = set()
    for owner in cls.__mro__:
        if not _own(owner, own):
            continue
        for name, raw in vars(owner).items():
            if name.startswith("_") or name in seen:
                continue
            if isinstance(raw, (staticmethod, classmethod)) or inspect.isfunction(raw):
                seen.add(name)
                yield name, getattr(cls, name)


def _public_classes(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    found = {
        cls
        for name, cls in vars(module).items()
        if inspect.isclass(cls)
        and not name.startswith("_")
        and cls.__module__ == module_name
        and issubclass(cls, (BaseOperator, BaseTrigger))
    }
    return sorted(found, key=lambda c: c.__qualname__)


def _task_and_trigger_modules() -> list[str]:
    info = get_provider_info()
    modules = [
        m for kind in ("operators", "sensors", "triggers") for e in info[kind] for m in e["python-modules"]
    ]
    return sorted({*modules, *BASE_MODULES})


CLASSES = [cls for module in _task_and_trigger_modules() for cls in _public_classes(module)]


def _hook_classes() -> list[type]:
    from airflow_hyperv.hooks.async_hyperv import HyperVAsyncHook
    from airflow_hyperv.hooks.base import HyperVBaseHook
    from airflow_hyperv.hooks.hyperv import HyperVHook

    return [HyperVBaseHook, HyperVHook, HyperVAsyncHook]


def _mixins() -> list[type]:
    from airflow_hyperv import mixins

    return [
        mixins.HyperVConnectionMixin,
        mixins.NeverRetryRejectedLoginsMixin,
        mixins.HyperVOperatorMixin,
        mixins.DeferrableMixin,
    ]


METHODS = [
    (f"{cls.__name__}.{name}", fn)
    for cls in [*_hook_classes(), *_mixins()]
    for name, fn in public_methods(cls)
]


def test_every_task_and_trigger_class_is_found():
    names = {cls.__name__ for cls in CLASSES}
    assert {
        "HyperVBaseOperator",
        "HyperVVerifyOperator",
        "HyperVCheckpointBranchOperator",
        "HyperVCreateCheckpointOperator",
        "HyperVMergeCheckpointOperator",
        "HyperVRestoreCheckpointOperator",
        "HyperVSetCheckpointTypeOperator",
        "HyperVExportCheckpointOperator",
        "HyperVRetentionOperator",
        "HyperVRestoreTestOperator",
        "HyperVRestoreCleanupOperator",
        "HyperVHostWaitSensor",
        "HyperVVMStateSensor",
        "HyperVCheckpointMergedSensor",
        "HyperVBaseWaitTrigger",
        "HyperVHostStateTrigger",
        "HyperVOperationTrigger",
        "HyperVLeaseTrigger",
        "HyperVEventTrigger",
    } <= names


def test_every_public_hook_method_is_found():
    names = {name for name, _ in METHODS}
    assert {
        "HyperVHook.get_vm",
        "HyperVHook.create_checkpoint",
        "HyperVHook.run_checked_write",
        "HyperVHook.get_conn",
        "HyperVAsyncHook.call",
        "DeferrableMixin.wait_for_host_state",
    } <= names
    assert len([n for n in names if n.startswith("HyperVHook.")]) >= 50


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_constructor_parameter_is_documented(cls: type):
    assert undocumented_init_params(cls) == [], f"{cls.__name__}: add `:param <name>:` to its docstring"


@pytest.mark.parametrize("cls", [*_hook_classes()], ids=lambda c: c.__name__)
def test_each_hook_constructor_parameter_is_documented(cls: type):
    assert undocumented_init_params(cls) == []


@pytest.mark.parametrize(("name", "fn"), METHODS, ids=[n for n, _ in METHODS])
def test_each_public_hook_method_documents_its_parameters_and_return(name: str, fn: Callable[..., Any]):
    assert undocumented_in_method(fn) == [], name


# -- positive controls: the checks fail on what they must catch ------------------------------------------
class _Base:
    """A base.

    :param conn_id: documented here only.
    """

    def __init__(self, *, conn_id: str = "c", **kwargs: Any) -> None:
        self.conn_id = conn_id


class _Documented(_Base):
    """Everything.

    :param size: the size.
    :param conn_id: the connection.
    """

    def __init__(self, *args: Any, size: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class _MissingOwn(_Base):
    """One of its own is missing.

    :param conn_id: the connection.
    :param size: the size.
    """

    def __init__(self, *, size: int = 1, color: str = "red", **kwargs: Any) -> None:
        super().__init__(**kwargs)


class _MissingInherited(_Base):
    """The inherited ``conn_id`` is not documented here (only in the base).

    :param size: the size.
    """

    def __init__(self, *, size: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class _Undocumented(_Base):
    def __init__(self, *, size: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class _Hook:
    def good(self, path: str, *, force: bool = False) -> int:
        """Good.

        :param path: a path.
        :param force: force it.
        :return: a number.
        """
        return 0

    def no_return_doc(self, path: str) -> int:
        """Says nothing of what it returns.

        :param path: a path.
        """
        return 0

    def missing_param(self, path: str, force: bool) -> None:
        """Forgets force.

        :param path: a path.
        """

    def bare(self) -> None:
        pass

    @staticmethod
    def static(event: dict[str, Any] | None) -> None:
        """No parameter documented."""


HERE = (__name__,)


def test_control_a_fully_documented_class_passes():
    assert undocumented_init_params(_Documented, HERE) == []


def test_control_a_missing_own_parameter_is_caught():
    assert undocumented_init_params(_MissingOwn, HERE) == ["color"]


def test_control_an_inherited_parameter_documented_only_in_the_base_is_caught():
    assert undocumented_init_params(_MissingInherited, HERE) == ["conn_id"]


def test_control_a_class_without_its_own_docstring_is_caught():
    assert undocumented_init_params(_Undocumented, HERE) == ["size", "conn_id"]


def test_control_foreign_bases_are_not_required():
    # BaseOperator's own parameters (task_id, ...) are Airflow's to document, not the provider's.
    assert undocumented_init_params(_Documented, ("elsewhere.",)) == []


def test_control_methods():
    methods = dict(public_methods(_Hook, HERE))
    assert set(methods) == {"good", "no_return_doc", "missing_param", "bare", "static"}
    assert undocumented_in_method(methods["good"]) == []
    assert undocumented_in_method(methods["no_return_doc"]) == [":return:"]
    assert undocumented_in_method(methods["missing_param"]) == ["force"]
    assert undocumented_in_method(methods["bare"]) == ["<docstring>"]
    assert undocumented_in_method(methods["static"]) == ["event"]
