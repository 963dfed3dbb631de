"""One writer at a time on SQLite, queued by the kernel instead of SQLite's sleep-and-retry.

SQLite lets one connection write at a time. A connection that finds the database locked
sleeps and tries again (its busy handler: 1, 2, 5, 10 ... 100 ms), so under load many
writers waste most of their time asleep while the lock is free, and the slowest answers
take seconds. Here every connection takes an exclusive ``flock`` on a file next to the
database (``<database>-writer.lock``) before its first write statement, and gives it
back when the connection returns to the pool (after its commit or rollback). Waiting
writers, in any thread or gunicorn worker, sleep in the kernel and wake as soon as the
lock is free; readers never take it (WAL: they do not block the writer).

Only for file databases; switched off with ``SQLITE_WRITER_LOCK = False``. Code that
writes on two connections at once from one thread would wait for itself: the server
never does (one session, one connection, per request).
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["install_writer_lock", "take_writer_lock", "give_back_writer_lock"]

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def take_writer_lock(info: dict[str, Any]) -> None:
    """Wait for the writer lock of the pooled connection whose ``info`` this is (no-op if held or not installed).

    For code that writes on the DB-API connection itself (the answer path), where the
    engine's ``before_cursor_execute`` event does not fire; given back by
    :func:`give_back_writer_lock`, at the latest when the connection returns to the pool.
    """
    if not info.get("writer_held") and "writer_fd" in info:
        fcntl.flock(info["writer_fd"], fcntl.LOCK_EX)
        info["writer_held"] = True


def give_back_writer_lock(info: dict[str, Any]) -> None:
    """Give the writer lock back now (after the commit), not when the connection returns to the pool."""
    if info.get("writer_held"):
        fcntl.flock(info["writer_fd"], fcntl.LOCK_UN)
        info["writer_held"] = False


def install_writer_lock(engine: Engine, database_path: str) -> None:
    """Serialise the write transactions of every connection of ``engine`` (and of other processes) with flock."""
    lock_path = f"{database_path}-writer.lock"

    @event.listens_for(engine, "connect")
    def _open(dbapi_connection: Any, record: Any) -> None:
        record.info["writer_fd"] = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        record.info["writer_held"] = False

    @event.listens_for(engine, "before_cursor_execute")
    def _take(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        info = conn.connection.info
        if info.get("writer_held") or "writer_fd" not in info:
            return  # (checked before looking at the statement: most statements of a transaction come after its lock)
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            take_writer_lock(info)

    def _give_back(record: Any) -> None:
        if record is not None:
            give_back_writer_lock(record.info)

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        _give_back(record)

    @event.listens_for(engine, "close")
    def _close(dbapi_connection: Any, record: Any) -> None:
        _give_back(record)
        fd = record.info.pop("writer_fd", None)
        if fd is not None:
            os.close(fd)
