import datetime as dt

import pytest

from airflow_hyperv.hyperv.errors import InvalidInputError, WildcardNameError
from airflow_hyperv.hyperv.names import (
    checkpoint_name,
    is_provider_checkpoint,
    join_host_path,
    require_exact_name,
    require_host_path,
)

HOSTILE_WILDCARDS = ["*", "web-?", "[a]db", "sql`*", "x'; Remove-VM *"]


@pytest.mark.parametrize("name", HOSTILE_WILDCARDS)
def test_wildcard_names_are_refused_with_the_reason(name):
    with pytest.raises(WildcardNameError, match="wildcard characters"):
        require_exact_name(name)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("  ", "empty"),
        (" web", "white space"),
        ("web\nRemove-VM", "control characters"),
        ("a" * 101, "limit is 100"),
        (42, "must be a string"),
    ],
)
def test_bad_names_name_the_problem(name, problem):
    with pytest.raises(InvalidInputError, match=problem):
        require_exact_name(name)


@pytest.mark.parametrize(
    "name", ["web-01", "x'; Remove-VM x", "$(Stop-Computer)", "Ünïcødé VM", "db 01 (prod)"]
)
def test_odd_but_exact_names_pass_untouched(name):
    # Quotes and $() are harmless as bound parameters: they are just characters of a name.
    assert require_exact_name(name) == name


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("D:\\Backups\\..\\Windows", "'..'"),
        ("Backups\\x", "absolute Windows path"),
        ("D:/Backups", "'/'"),
        ("D:\\Back*ups", "forbids"),
        ("D:\\Backups\\a:b", "forbids"),
        ("D:\\Backups\nC:\\", "control characters"),
        ("D:\\" + "x" * 300, "limit"),
        ("", "non-empty"),
    ],
)
def test_bad_host_paths_are_refused(path, problem):
    with pytest.raises(InvalidInputError, match=problem):
        require_host_path(path)


def test_good_host_paths():
    assert require_host_path("D:\\Backups\\") == "D:\\Backups"
    assert require_host_path("\\\\nas01\\hyperv\\exports") == "\\\\nas01\\hyperv\\exports"
    assert join_host_path("D:\\Backups\\", "\\web-01", "run 1") == "D:\\Backups\\web-01\\run 1"


def test_checkpoint_names_are_deterministic_per_run_and_vm():
    when = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.timezone.utc)
    a = checkpoint_name(dag_id="nightly", run_id="scheduled__1", vm_id="ABC", logical_date=when)
    assert a == checkpoint_name(dag_id="nightly", run_id="scheduled__1", vm_id="abc", logical_date=when)
    assert a != checkpoint_name(dag_id="nightly", run_id="scheduled__2", vm_id="abc", logical_date=when)
    assert a != checkpoint_name(dag_id="nightly", run_id="scheduled__1", vm_id="def", logical_date=when)
    assert a.startswith("airflow-hyperv 20261125T0100Z ")
    assert is_provider_checkpoint(a)
    assert not set(a) & set("*?[]`")


@pytest.mark.parametrize(
    "name", ["web-01 - (11/25/2026 - 01:00:00)", "airflow-hyperv", "airflow-hyperv manual", "Veeam recovery"]
)
def test_other_tools_checkpoints_are_not_ours(name):
    assert not is_provider_checkpoint(name)
