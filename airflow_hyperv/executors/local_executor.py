"""``PreloadingLocalExecutor``: Airflow's LocalExecutor, whose task processes find this provider imported.

The LocalExecutor forks its worker processes from the scheduler when it starts, and each worker forks
a process per task. A task process inherits what the scheduler had imported, which is most of Airflow
but none of this provider, pypsrp or the NTLM code: every task imported them again. This executor
imports them (``airflow_hyperv.preload``) in the scheduler just before the workers are forked, so no
task process imports them (docs/operations.md, "Task processes that start warm").
"""

from __future__ import annotations

import importlib
import multiprocessing

from airflow.executors.local_executor import LocalExecutor

PRELOAD_MODULE = "airflow_hyperv.preload"


class PreloadingLocalExecutor(LocalExecutor):
    """The LocalExecutor, unchanged but for what its workers inherit: ``[core] executor =
    airflow_hyperv.executors.local_executor.PreloadingLocalExecutor``."""

    def start(self) -> None:
        # is_mp_using_fork: the start method LocalExecutor resolved when it was created, the one its
        # workers are started with
        if self.is_mp_using_fork:
            importlib.import_module(PRELOAD_MODULE)  # before super().start() forks the workers
            self.log.info("imported %s before forking %d workers", PRELOAD_MODULE, self.parallelism)
        else:  # a forkserver or spawn worker does not inherit the scheduler's modules
            self.log.warning(
                "multiprocessing start method %r: the workers do not inherit %s; set [scheduler] "
                "mp_start_method = fork (docs/operations.md)",
                multiprocessing.get_start_method(),
                PRELOAD_MODULE,
            )
        super().start()
