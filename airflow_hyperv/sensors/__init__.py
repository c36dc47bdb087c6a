"""sensors layer of airflow-hyperv."""
