"""hooks layer of airflow-hyperv."""
