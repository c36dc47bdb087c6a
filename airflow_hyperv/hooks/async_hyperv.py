"""The async face of HyperVHook for triggers.

pypsrp is synchronous. Every call runs in a worker thread (``asyncio.to_thread``) so the triggerer's
event loop never blocks; calls through one async hook are serialised on its one runspace pool, and
a process-wide semaphore bounds how many threads all triggers together may hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from airflow.sdk import BaseHook

from airflow_hyperv.config import DEFAULT_ASYNC_MAX_THREADS, async_max_threads
from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv.errors import AuthenticationFailedError

T = TypeVar("T")

# Threads all async hooks in one process may use at once: [hyperv] async_max_threads, read when a
# loop first needs them (this default when the option is unset).
MAX_THREADS = DEFAULT_ASYNC_MAX_THREADS
_thread_slots: dict[int, asyncio.Semaphore] = {}


def _slots() -> asyncio.Semaphore:
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _thread_slots:
        _thread_slots[loop_id] = asyncio.Semaphore(async_max_threads())
    return _thread_slots[loop_id]


class HyperVAsyncHook:
    """The async face of ``HyperVHook`` for triggers: each call runs in a worker thread, so the
    triggerer's event loop never blocks.

    Calls through one async hook are serialised on its one runspace pool; all async hooks of a
    process together hold at most ``[hyperv] async_max_threads`` threads. Use it as an async context
    manager (``async with HyperVAsyncHook(conn_id) as hook:``) so the pool is closed on the host.

    :param hyperv_conn_id: The Airflow connection (type ``hyperv``) of the Hyper-V host. Default
        ``hyperv_default``.
    :param settings: Already parsed connection settings, used instead of reading ``hyperv_conn_id``.
        Default None: read the connection (without blocking) on first use.
    """

    def __init__(
        self,
        hyperv_conn_id: str = HyperVHook.default_conn_name,
        *,
        settings: ConnectionSettings | None = None,
    ):
        self.hyperv_conn_id = hyperv_conn_id
        self._settings = settings
        self._hook: HyperVHook | None = None
        self._lock = asyncio.Lock()
        self._rejected: AuthenticationFailedError | None = None

    async def settings(self) -> ConnectionSettings:
        """The connection's settings, read with ``BaseHook.aget_connection`` (the synchronous read would
        block the event loop) and parsed once.

        :return: The parsed connection settings.
        """
        if self._settings is None:
            # The sync get_connection would block the loop (and raises DeadlockImminentError there).
            conn = await BaseHook.aget_connection(self.hyperv_conn_id)
            self._settings = ConnectionSettings.from_connection(
                host=conn.host, port=conn.port, login=conn.login, password=conn.password, extra=conn.extra
            )
        return self._settings

    async def call(self, fn: Callable[[HyperVHook], T]) -> T:
        """Run ``fn(hook)`` in a thread on this async hook's runspace pool.

        Once the host rejected the login, every later call raises that ``AuthenticationFailedError``
        at once, without logging in again, even after ``close()``.

        :param fn: A function of the synchronous ``HyperVHook`` (e.g. ``lambda hv: hv.host_state()``).
        :return: What ``fn`` returned.
        """
        if self._rejected is not None:
            raise AuthenticationFailedError(str(self._rejected))
        settings = await self.settings()
        async with self._lock, _slots():
            if self._hook is None:
                self._hook = HyperVHook(self.hyperv_conn_id, settings=settings)
            try:
                return await asyncio.to_thread(fn, self._hook)
            except AuthenticationFailedError as exc:
                self._rejected = exc
                raise

    async def close(self) -> None:
        """Close the runspace pool on the host, in a thread; the next ``call`` opens a new one."""
        async with self._lock:
            hook, self._hook = self._hook, None
            if hook is not None:
                await asyncio.to_thread(hook.close)

    async def __aenter__(self) -> HyperVAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
