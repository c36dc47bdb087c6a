"""Executors: Airflow's LocalExecutor, with task processes that start with this provider imported."""
