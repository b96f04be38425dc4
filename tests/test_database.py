"""bot.database: per-thread connections to a private file, and write transactions."""

from __future__ import annotations

import threading

import pytest

from bot.database import Connections


def test_the_file_and_its_new_folders_are_private(tmp_path):
    path = tmp_path / "var" / "deeper" / "trbot.db"
    Connections(path).database()["t"].insert({"x": 1})

    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "var" / "deeper").stat().st_mode & 0o777 == 0o700


def test_each_thread_gets_its_own_connection(tmp_path):
    connections = Connections(tmp_path / "t.db")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(connections.connection()))
    thread.start()
    thread.join()

    assert seen[0] is not connections.connection()
    assert connections.connection() is connections.connection()


def test_an_immediate_transaction_rolls_back_on_error(tmp_path):
    connections = Connections(tmp_path / "t.db", autocommit=True)
    connections.connection().execute("CREATE TABLE t (x INTEGER)")

    with pytest.raises(RuntimeError), connections.immediate() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("crash mid-way")
    with connections.immediate() as conn:
        conn.execute("INSERT INTO t VALUES (2)")

    assert [row[0] for row in connections.connection().execute("SELECT x FROM t")] == [2]


def test_an_in_memory_database_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be a file"):
        Connections(":memory:")
