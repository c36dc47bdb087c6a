"""The example DAGs, shipped with the provider so that the demo and ``make airflow`` find them from
an installed package (``EXAMPLE_DAGS``), not from a source checkout."""

from pathlib import Path

EXAMPLE_DAGS = Path(__file__).parent
