"""Everything a task of this provider imports, for a process that forks task processes to import first.

``PreloadingLocalExecutor`` imports this module in the scheduler before it forks its workers, and each
worker forks a process per task: that process then finds the provider, pypsrp and the NTLM code
imported and does not import them again (docs/operations.md, "Task processes that start warm";
tests/provider/test_preload.py checks that a whole cycle imports nothing more of them). Importing it only
imports: the provider's modules read no configuration, connection or network at import, and no thread
is started, so the scheduler may fork after it.
"""

from __future__ import annotations

import importlib

TASK_MODULES: tuple[str, ...] = (
    # The provider's task-time faces, which pull in its hooks, its domain and pypsrp's client.
    "airflow_hyperv.authoring.inventory",
    "airflow_hyperv.authoring.protect",
    "airflow_hyperv.operators",
    "airflow_hyperv.sensors",
    "airflow_hyperv.triggers",
    "airflow_hyperv.hooks.hyperv",
    "airflow_hyperv.hooks.cluster",
    "airflow_hyperv.hooks.disconnected",
    "airflow_hyperv.hooks.waiter",
    "airflow_hyperv.hyperv.assets",
    # What Airflow loads on a task's first connection lookup and first asset event.
    "airflow.sdk.definitions.connection",
    "airflow.sdk.execution_time.cache",
    "airflow.providers.common.io.assets.file",
    # The NTLM and message-encryption code pypsrp loads only when it first authenticates, and the
    # codecs its messages use.
    "pypsrp.encryption",
    "pypsrp.negotiate",
    "spnego._ntlm",
    "spnego._ntlm_raw.crypto",
    "spnego._spnego",
    "cryptography.hazmat.backends.openssl",
    "getpass",
    "encodings.utf_16_le",
    "encodings.utf_16_be",
)

for _name in TASK_MODULES:
    importlib.import_module(_name)
