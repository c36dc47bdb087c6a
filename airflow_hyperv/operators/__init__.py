"""operators layer of airflow-hyperv."""
