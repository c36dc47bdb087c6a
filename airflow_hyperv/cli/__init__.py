"""cli layer of airflow-hyperv."""
