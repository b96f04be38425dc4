"""The bot's own SQLite files: one connection per thread, private file modes, write transactions.

The state database (events, threads, answers, feedback, cases, the outbox) is shared by bolt's
listener threads, the answering worker and the delivery worker, and by a restarted process
while the old one drains, so every store opens it through ``Connections``: each thread gets its
own connection, the file runs in WAL mode, and ``immediate()`` takes SQLite's write lock at
the start of a transaction so two writers never interleave a read-then-write.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

FILE_MODE = 0o600
FOLDER_MODE = 0o700


class Connections:
    """Per-thread connections to one database file.

    Args:
        path: The SQLite file; created 0600 (and its missing folders 0700) if absent.
        timeout: Seconds a connection waits for another writer's lock.
        autocommit: Open connections in autocommit mode (``isolation_level=None``), for stores
            that open their own transactions with ``immediate()``.
        rows: Return rows as ``sqlite3.Row`` (by name) instead of tuples.
    """

    def __init__(
        self, path: str | Path, *, timeout: float = 10, autocommit: bool = False, rows: bool = False
    ):
        if str(path) == ":memory:":
            raise ValueError("the bot's database must be a file: each thread opens its own connection")
        self.path = Path(path)
        self._options = {"timeout": timeout, "check_same_thread": False}
        if autocommit:
            self._options["isolation_level"] = None
        self._rows = rows
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []
        secure_file(self.path)
        self.connection().execute("PRAGMA journal_mode=WAL")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, **self._options)
            if self._rows:
                conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                self._open.append(conn)
            self._local.conn = conn
        return conn

    def database(self) -> Database:
        """This thread's connection as a sqlite-utils ``Database``."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = Database(self.connection())
        return db

    @contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
        self._local = threading.local()


def secure_file(path: Path) -> None:
    """Create ``path`` (an SQLite file) as 0600, its missing folders as 0700; tighten an existing file.

    SQLite gives the -wal and -shm files the main file's mode, so they are 0600 too.
    """
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        os.chmod(folder, FOLDER_MODE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists() and name.stat().st_mode & 0o777 != FILE_MODE:
            try:
                os.chmod(name, FILE_MODE)
            except PermissionError:  # not ours: leave it, the owner decides
                pass


def iso_utc(moment: datetime) -> str:
    """A UTC timestamp to the second, as the cases, state and watchlist tables keep them
    (fixed width, so text order is time order in SQL)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")
