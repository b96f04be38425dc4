from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.state import EVENT_RETENTION, StateStore, migrations


@pytest.fixture
def store(tmp_path):
    store = StateStore(tmp_path / "var" / "state.db")
    yield store
    store.close()


def test_creates_the_folder_and_applies_numbered_migrations(tmp_path):
    path = tmp_path / "new" / "state.db"
    store = StateStore(path)
    store.close()
    conn = sqlite3.connect(path)
    names = [
        row[0]
        for row in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'trbot-state'")
    ]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert names == ["m001_create_tables"] and all(m.name.startswith("m0") for m in migrations._migrations)
    assert {"events", "threads", "feedback"} <= tables
    assert journal == "wal"


def test_claim_event_is_true_once_and_survives_a_restart(tmp_path):
    path = tmp_path / "state.db"
    first = StateStore(path)
    assert first.claim_event("Ev1") is True
    assert first.claim_event("Ev1") is False
    assert first.claim_event("Ev2") is True
    first.close()
    again = StateStore(path)  # a restart: same file, migrations not re-run
    assert again.claim_event("Ev1") is False
    again.close()


def test_claim_event_is_atomic_across_threads(store):
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        results.append(store.claim_event("EvRace"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_threads_remember_the_question_for_follow_ups(store):
    assert store.thread_question("C1", "1.1") is None
    store.remember_thread("C1", "1.1", "Do I need a licence?")
    store.remember_thread("C1", "1.1", "What about software?")
    assert store.thread_question("C1", "1.1") == "What about software?"
    assert store.thread_question("C2", "1.1") is None


def test_feedback_round_trip_with_reason_only_from_its_user(store):
    first = store.add_feedback(user="U1", channel="C1", question="q1", chunk_ids=["a#1", "b#2"], helpful=True)
    second = store.add_feedback(user="U2", channel="D2", question="q2", chunk_ids=(), helpful=False)
    assert store.set_feedback_reason(second, "missing", user="U1") is False
    assert store.set_feedback_reason(second, "x" * 5000, user="U2") is True
    rows = store.list_feedback()
    assert [row.id for row in rows] == [first, second]
    assert rows[0].chunk_ids == ("a#1", "b#2") and rows[0].helpful is True and rows[0].reason is None
    assert rows[1].helpful is False and len(rows[1].reason) == 2000
    assert rows[1].to_dict()["chunk_ids"] == []


def test_prune_forgets_old_events_and_threads(store):
    store.claim_event("EvOld")
    store.remember_thread("C1", "1.1", "q")
    assert store.prune(datetime.now(UTC) + EVENT_RETENTION + timedelta(days=60)) == 2
    assert store.claim_event("EvOld") is True
    assert store.thread_question("C1", "1.1") is None


def test_memory_databases_are_refused():
    with pytest.raises(ValueError):
        StateStore(":memory:")
