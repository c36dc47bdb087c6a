"""Airflow plugins of the Hyper-V provider."""
