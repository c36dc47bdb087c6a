"""The hostname a Celery worker of the test reports for the tasks it runs (``[core] hostname_callable``,
set per worker by tests/support/airflow_stack.py): the workers share one machine, and the test tells
them apart by the REST API's task instance ``hostname``. In docker/docker-compose.yaml each worker is a
container with a hostname of its own, and Airflow's default callable is used."""

from __future__ import annotations

import os


def hostname() -> str:
    return os.environ["AIRFLOW_HYPERV_WORKER_HOSTNAME"]
