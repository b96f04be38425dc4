from __future__ import annotations

import dataclasses
import socket
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.records import Referral
from bot.state import (
    BUSY,
    DONE,
    EVENT_LEASE,
    EVENT_RETENTION,
    NEW,
    REDO,
    RENAMED_EARLY_KEPT,
    StateStore,
    Thread,
    migrations,
    owner_alive,
)


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
    assert names[:2] == ["m001_create_tables", "m002_event_receipts"]
    assert all(m.name.startswith("m0") for m in migrations._migrations)
    assert {"events", "threads", "feedback"} <= tables
    assert journal == "wal"


def _body(text: str = "Can I ship the prototype to Iran?") -> dict:
    return {
        "body": {"type": "event_callback", "event": {"type": "message", "text": text}},
        "bot_user_id": "U0BOT",
    }


def test_an_event_is_received_then_done_and_its_body_kept_only_until_done(tmp_path):
    path = tmp_path / "state.db"
    store = StateStore(path)
    assert store.receive_event("Ev1", _body()) == NEW
    assert store.event_status("Ev1") == "received" and store.unfinished_events() == 1
    assert store.receive_event("Ev1", _body()) == BUSY  # Slack's retry while this process has it
    store.finish_event("Ev1")
    assert store.receive_event("Ev1", _body()) == DONE
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT body FROM events WHERE event_id = 'Ev1'").fetchone() == (None,)
    conn.close()
    again = StateStore(path)  # a restart: still done
    assert again.receive_event("Ev1", _body()) == DONE and again.unfinished_events() == 0
    again.close()


def test_a_retry_of_an_event_whose_process_died_is_processed(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    crashed = StateStore(path)
    assert crashed.receive_event("Ev2", _body()) == NEW  # received, never finished: the process died
    crashed.close()
    restarted = StateStore(path)
    assert restarted.receive_event("Ev2", _body()) == BUSY  # its lease may still be held by a live process
    _expire_leases(path)
    assert restarted.receive_event("Ev2", _body()) == REDO  # no live owner: Slack's retry is processed
    assert restarted.receive_event("Ev2", _body()) == BUSY  # ...once
    restarted.close()


def test_a_restart_takes_over_the_events_left_unfinished(tmp_path):
    path = tmp_path / "state.db"
    first = StateStore(path)
    for n in range(3):
        first.receive_event(f"Ev{n}", _body(f"q{n}"), kind="command" if n == 2 else "event")
    first.finish_event("Ev1")
    assert first.claim_stale_events() == []  # its own, and alive
    first.release_events()  # a SIGTERM: handed over
    first.close()
    second = StateStore(path)
    taken = second.claim_stale_events()
    assert [(e.event_id, e.kind, e.body["body"]["event"]["text"]) for e in taken] == [
        ("Ev0", "event", "q0"),
        ("Ev2", "command", "q2"),
    ]
    assert second.claim_stale_events() == []  # now this process's
    assert second.receive_event("Ev0", _body()) == BUSY
    second.close()


def test_leases_are_renewed_while_alive_and_lapse_after_a_crash(tmp_path):
    path = tmp_path / "state.db"
    alive = StateStore(path)
    alive.receive_event("Ev3", _body())
    other = StateStore(path)  # a second process on the same database
    assert other.claim_stale_events() == []
    _expire_leases(path)
    assert alive.renew_events() == 1  # the owner is alive: renewed
    assert other.claim_stale_events() == []
    _expire_leases(path)  # ...and then it died
    assert [e.event_id for e in other.claim_stale_events()] == ["Ev3"]
    alive.close()
    other.close()


def test_an_event_that_keeps_failing_is_given_up(store):
    store.receive_event("Ev4", _body())
    assert store.fail_event_attempt("Ev4") is True
    assert store.fail_event_attempt("Ev4") is True
    assert store.fail_event_attempt("Ev4") is False
    assert store.event_status("Ev4") == "done"


def test_receive_event_is_atomic_across_threads(store):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def receive() -> None:
        barrier.wait()
        results.append(store.receive_event("EvRace", _body()))

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [BUSY] * 7 + [NEW]


def test_a_thread_remembered_under_a_placeholder_takes_the_real_ts(store):
    store.remember_thread("D1", "pending:7", "Can I take my laptop abroad?")
    assert store.rename_thread("D1", "pending:7", "1700000001.000100") is True
    assert store.thread_question("D1", "1700000001.000100") == "Can I take my laptop abroad?"
    assert store.thread_question("D1", "pending:7") is None


def test_an_answer_posted_before_its_thread_is_remembered_still_gets_the_thread(store):
    # the delivery worker posted the answer before the answering thread remembered it
    assert store.rename_thread("D1", "pending:8", "1700000002.000200") is False
    store.remember_thread("D1", "pending:8", "Can I take my laptop abroad?", asker="U1")
    assert store.thread_question("D1", "1700000002.000200") == "Can I take my laptop abroad?"
    assert store.thread_question("D1", "pending:8") is None
    store.remember_thread("D1", "pending:8", "a later placeholder of the same name is its own")
    assert store.thread_question("D1", "pending:8") == "a later placeholder of the same name is its own"


def test_posted_answers_no_thread_claims_are_not_kept_without_bound(store):
    for number in range(RENAMED_EARLY_KEPT + 50):
        store.rename_thread("C1", f"pending:{number}", f"1.{number}")
    store.remember_thread("C1", "pending:0", "the oldest was let go")
    store.remember_thread("C1", f"pending:{RENAMED_EARLY_KEPT + 49}", "the newest is kept")
    assert store.thread_question("C1", "pending:0") == "the oldest was let go"
    assert store.thread_question("C1", f"1.{RENAMED_EARLY_KEPT + 49}") == "the newest is kept"


def test_racing_delivery_and_remembering_never_lose_a_thread(store):
    def post(number: int) -> None:
        store.rename_thread("D1", f"pending:{number}", f"2.{number}")

    def remember(number: int) -> None:
        store.remember_thread("D1", f"pending:{number}", f"question {number}")

    for number in range(40):
        racers = [
            threading.Thread(target=post, args=(number,)),
            threading.Thread(target=remember, args=(number,)),
        ]
        for racer in racers[:: 1 if number % 2 else -1]:
            racer.start()
        for racer in racers:
            racer.join()
    assert all(store.thread_question("D1", f"2.{n}") == f"question {n}" for n in range(40))


def _expire_leases(path) -> None:
    past = (datetime.now(UTC) - EVENT_LEASE - timedelta(seconds=1)).isoformat(timespec="seconds")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE events SET lease_until = ?", [past])
    conn.commit()
    conn.close()


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
    store.receive_event("EvOld", _body())
    store.remember_thread("C1", "1.1", "q")
    assert store.prune(datetime.now(UTC) + EVENT_RETENTION + timedelta(days=60)) == 2
    assert store.event_status("EvOld") is None
    assert store.thread_question("C1", "1.1") is None


def test_memory_databases_are_refused():
    with pytest.raises(ValueError):
        StateStore(":memory:")


# -- retention, permissions, stored answers (issue 9) -------------------------------------------


def test_state_files_and_new_folders_are_private(tmp_path):
    path = tmp_path / "new" / "var" / "state.db"
    store = StateStore(path)
    store.remember_thread("C1", "1.1", "q")  # writes the -wal and -shm files
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}, modes
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700 and path.parent.stat().st_mode & 0o777 == 0o700
    store.close()


def test_an_existing_readable_state_file_is_tightened(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    path = folder / "state.db"
    path.touch()
    path.chmod(0o644)
    StateStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o755  # a folder it did not create is left alone


def _age(store: StateStore, table: str, column: str, days: float) -> None:
    moment = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    store._db.execute(f"UPDATE {table} SET {column} = ?", [moment])


def test_prune_keeps_text_for_its_retention_and_dms_shorter(tmp_path):
    from bot.config import RetentionSettings

    store = StateStore(tmp_path / "s.db", RetentionSettings(feedback_days=100, thread_days=20, dm_days=5))
    store.remember_thread("C1", "1.1", "channel question")
    store.remember_thread("D1", "1.1", "dm question")
    store.add_feedback(user="U1", channel="C1", question="q", chunk_ids=[], helpful=True)
    _age(store, "threads", "updated_at", 10)
    _age(store, "feedback", "created_at", 10)
    store.prune()
    assert store.thread_question("C1", "1.1") == "channel question"  # 10 days < 20
    assert store.thread_question("D1", "1.1") is None  # 10 days > 5 for a DM
    assert len(store.list_feedback()) == 1
    _age(store, "threads", "updated_at", 25)
    _age(store, "feedback", "created_at", 101)
    store.prune()
    assert store.thread_question("C1", "1.1") is None and store.list_feedback() == []
    store.close()


def test_purge_feedback_before_a_date(store):
    store.add_feedback(user="U1", channel="C1", question="old", chunk_ids=[], helpful=True)
    _age(store, "feedback", "created_at", 40)
    store.add_feedback(user="U1", channel="C1", question="new", chunk_ids=[], helpful=False)
    assert store.purge_feedback(datetime.now(UTC) - timedelta(days=30)) == 1
    assert [row.question for row in store.list_feedback()] == ["new"]


def test_threads_remember_who_asked(store):
    store.remember_thread("C1", "1.1", "q", asker="U1")
    store.remember_thread("C1", "1.1", "q2", asker="U2")
    store.remember_thread("C1", "1.1", "q3", asker="U1")
    assert store.thread("C1", "1.1") == Thread("q3", ("U1", "U2"))
    assert store.thread("C1", "9.9") is None


def test_stored_answers_round_trip_and_expire(store):
    from tests.slack_harness import make_answer

    answer = make_answer("Do I need a licence?")
    answer_id = store.save_answer(answer, user="U1", channel="C1", thread_ts="1.1", context="earlier")
    stored = store.stored_answer(answer_id)
    assert stored.answer == answer and (stored.user, stored.channel, stored.thread_ts) == ("U1", "C1", "1.1")
    assert stored.chunk_ids == tuple(answer.chunk_ids) and len(answer_id) == 12
    assert store.stored_answer("nope") is None and store.stored_answer("x" * 100) is None
    referred = dataclasses.replace(answer, referral=Referral("the DPO", "dpo@example.ac.uk", "GDPR"))
    assert store.stored_answer(store.save_answer(referred, user="U1", channel="C1")).answer == referred
    _age(store, "answers", "created_at", 31)
    store.prune()
    assert store.stored_answer(answer_id) is None


def test_feedback_never_stores_more_than_a_question(store):
    store.add_feedback(user="U1", channel="C1", question="x" * 100_000, chunk_ids=["c"] * 500, helpful=True)
    [row] = store.list_feedback()
    assert len(row.question) <= 2000 and len(row.chunk_ids) <= 20


def test_a_dead_processs_events_are_taken_over_at_once(tmp_path):
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.receive_event("Ev5", _body())
    store.receive_event("Ev6", _body())
    dead = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
    conn = sqlite3.connect(path)
    conn.execute("UPDATE events SET owner = ?", [dead])  # a kill -9: the leases are still valid
    conn.commit()
    conn.close()
    assert owner_alive(dead) is False and owner_alive(store.instance) is True
    assert owner_alive("other-host:1:x") is None  # cannot tell: wait for the lease
    assert store.receive_event("Ev5", _body()) == REDO  # Slack's retry: no live owner
    assert [e.event_id for e in store.claim_stale_events()] == ["Ev6"]
    store.close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
