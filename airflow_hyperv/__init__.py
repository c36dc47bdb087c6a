"""airflow-hyperv: Apache Airflow provider for Hyper-V production checkpoints.

Importing the package imports no transport code, so DAG files stay fast to parse.
"""

__version__ = "0.1.0"
