"""triggers layer of airflow-hyperv."""
