"""The ``hyperv`` connection's defaults, in one place: the hook's settings and the UI's connection form
(provider metadata, read by every Airflow component) both use them, without importing the hook."""

from __future__ import annotations

OPERATION_TIMEOUT = 20.0  # WS-Man OperationTimeout, seconds
READ_TIMEOUT = 30.0  # HTTP read timeout, seconds
CONNECTION_TIMEOUT = 30.0  # TCP connect timeout, seconds
RETRY_ATTEMPTS = 4  # tries per call on transient transport faults (never on rejected credentials)
RETRY_MAX_SECONDS = 60.0  # total time for the retries of one call
MIGRATION_TIMEOUT = 600.0  # a cluster connection: how long a step waits for a VM's live migration to end

NUMBER_DEFAULTS: dict[str, float | int] = {
    "operation_timeout": OPERATION_TIMEOUT,
    "read_timeout": READ_TIMEOUT,
    "connection_timeout": CONNECTION_TIMEOUT,
    "retry_attempts": RETRY_ATTEMPTS,
    "retry_max_seconds": RETRY_MAX_SECONDS,
    "migration_timeout": MIGRATION_TIMEOUT,
}
