"""The real-Airflow modules' shared fixtures: a work directory per module (kept when a test failed) and
a PostgreSQL cluster in it (tests/support/airflow_stack.py). A module names its directory's prefix
with ``WORKDIR_PREFIX``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_stack import postgres_or_skip, work_directory


@pytest.fixture(scope="module")
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    prefix = getattr(request.module, "WORKDIR_PREFIX", "airflow-hyperv-e2e-")
    with work_directory(prefix, request=request) as path:
        yield path


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[str]:
    with postgres_or_skip(workdir) as url:
        yield url
