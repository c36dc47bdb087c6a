"""hyperv layer of airflow-hyperv."""
