"""Rejected credentials fail a task at once, with no task retry and exactly one rejected login, through
real Airflow (``dag.test()`` honours ``retries`` and ``retry_policy``): when the operator opens its hook,
and when a deferred wait's trigger is the one whose login is refused."""

from __future__ import annotations

import textwrap

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy
from airflow.sdk.exceptions import AirflowException

from airflow_hyperv.hyperv.errors import AuthenticationFailedError
from airflow_hyperv.operators.base import NeverRetryRejectedLogins
from airflow_hyperv.operators.verify import HyperVVerifyOperator
from hyperv_emulator.faults import Fault
from tests.support.dags import write_dag
from tests.support.emulated import uri_for

BODY = """
import datetime as dt
import pendulum
from airflow.sdk import DAG
from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator
from airflow_hyperv.sensors.vm import HyperVVMStateSensor

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={{"retries": 2, "retry_delay": dt.timedelta(0)}}) as dag:
    {task}
"""
CHECKPOINT = 'HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="application")'
SENSOR = (
    'HyperVVMStateSensor(task_id="wait_off", vm="web-01", target_state="Off", deferrable=True, '
    "poll_interval=0.05, timeout=60)"
)


def load(dag_id: str, task: str):
    return write_dag(dag_id, textwrap.dedent(BODY.format(dag_id=dag_id, task=task)))


@pytest.fixture
def conn(airflow_db, emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    return emulator


def only_ti(run):
    (ti,) = run.get_task_instances()
    return ti


def test_a_rejected_login_fails_the_task_once_without_retries(conn):
    dag = load("auth_sync", CHECKPOINT)
    conn.faults.inject(Fault.REJECT_CREDENTIALS, times=None)  # the password was changed in AD
    run = dag.test()
    ti = only_ti(run)
    assert str(run.state) == "failed" and str(ti.state) == "failed"
    assert ti.try_number == 1  # retries=2, none used
    assert conn.counters.rejected_logins("hv-01") == 1
    assert conn.audit.entries() == []  # nothing ran on the host


def test_a_deferred_wait_whose_trigger_is_refused_fails_once_without_retries(conn, monkeypatch):
    from airflow_hyperv.triggers.hyperv import HyperVHostStateTrigger

    dag = load("auth_deferred", SENSOR)
    run_trigger = HyperVHostStateTrigger.run

    async def refused_from_now_on(self):  # the task logged in fine; the password changes while it waits
        conn.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
        async for event in run_trigger(self):
            yield event

    monkeypatch.setattr(HyperVHostStateTrigger, "run", refused_from_now_on)
    run = dag.test()
    ti = only_ti(run)
    assert str(run.state) == "failed" and str(ti.state) == "failed"
    assert ti.try_number == 1
    assert conn.faults.count_fired(Fault.REJECT_CREDENTIALS) == 1  # the trigger's login, and no other
    assert conn.counters.rejected_logins("hv-01") == 1


class AlwaysRetry(RetryPolicy):
    def evaluate(self, exception, try_number, max_tries, context=None):
        return RetryDecision.retry(reason="user policy")


def test_every_operator_carries_the_policy_and_a_users_own_policy_is_wrapped_not_lost():
    plain = HyperVVerifyOperator(task_id="v", vm="web-01")
    assert isinstance(plain.retry_policy, NeverRetryRejectedLogins) and plain.retry_policy.inner is None
    mine = AlwaysRetry()
    custom = HyperVVerifyOperator(task_id="v2", vm="web-01", retry_policy=mine)
    assert isinstance(custom.retry_policy, NeverRetryRejectedLogins) and custom.retry_policy.inner is mine
    custom.retry_policy = custom.retry_policy  # assigning again does not wrap twice
    assert custom.retry_policy.inner is mine
    try:
        try:
            raise AuthenticationFailedError("hv-01 rejected the credentials")
        except AuthenticationFailedError as exc:
            raise AirflowException("checkpoint failed") from exc
    except AirflowException as wrapped:
        chained = wrapped
    assert custom.retry_policy.evaluate(chained, 1, 3).action is RetryAction.FAIL
    assert custom.retry_policy.evaluate(AirflowException("busy"), 1, 3).action is RetryAction.RETRY
    assert plain.retry_policy.evaluate(AirflowException("busy"), 1, 3).action is RetryAction.DEFAULT
