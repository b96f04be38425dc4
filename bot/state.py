"""The bot's own SQLite database: seen Slack events, answered threads and feedback.

Kept apart from the index database (``paths.state_db``) because the index is rebuilt and
swapped atomically, while this state must survive. The schema evolves by numbered
migrations (``m001_...``); later issues add ``cases`` and ``case_events`` the same way.

Safe to use from bolt's worker threads: each thread gets its own connection, the database
runs in WAL mode, and ``receive_event`` is one ``BEGIN IMMEDIATE`` transaction.

Events are crash-safe: ``receive_event`` records a Slack event as *received*, with its body (what
is needed to redo it), before it is acknowledged; ``finish_event`` marks it *done*, and drops the
body, only once its reply is in the outbox. Each process owns the events it is working on through
a lease that it renews (``renew_events``); a Slack retry of a received event is skipped while some
live process owns it and processed otherwise, and ``claim_stale_events`` hands a restarted bot
the received events that no live process owns, to finish them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.config import RetentionSettings
from bot.database import Connections, iso_utc
from bot.records import Answer, AnswerStatus, Citation, Confidence, Contact, Passage, Referral

migrations = Migrations("trbot-state")

# Slack re-sends an event for about five minutes; a week covers any restart or backlog.
EVENT_RETENTION = timedelta(days=7)
MAX_REASON_CHARS = 2000
# What a feedback row keeps at most (the answerer refuses longer questions anyway).
MAX_STORED_QUESTION_CHARS = 2000
MAX_STORED_CHUNK_IDS = 20
# Posted answers whose thread is not remembered yet, kept at most (most never are: not every
# posted answer starts a thread the bot follows).
RENAMED_EARLY_KEPT = 512
# State files are the bot's own: readable by its user only.
# A process renews the leases of the events it is working on; a dead one's lapse after this.
EVENT_LEASE = timedelta(seconds=60)
# An event that failed this many times in a row is marked done (and logged) rather than retried.
EVENT_MAX_ATTEMPTS = 3
# What receive_event answers.
NEW, REDO, DONE, BUSY = "new", "redo", "done", "busy"


@migrations()
def m001_create_tables(db: Database) -> None:
    db["events"].create({"event_id": str, "first_seen": str}, pk="event_id")
    db["threads"].create(
        {"channel": str, "thread_ts": str, "question": str, "updated_at": str},
        pk=("channel", "thread_ts"),
    )
    db["feedback"].create(
        {
            "id": int,
            "created_at": str,
            "user": str,
            "channel": str,
            "question": str,
            "chunk_ids": str,
            "helpful": int,
            "reason": str,
        },
        pk="id",
        not_null={"created_at", "question", "chunk_ids", "helpful"},
    )
    db["feedback"].create_index(["created_at"])


@migrations()
def m002_event_receipts(db: Database) -> None:
    """Events become received/done receipts: the body is kept until done, and a lease says who works it."""
    events = db["events"]
    events.add_column("status", str)
    events.add_column("kind", str)
    events.add_column("body", str)
    events.add_column("owner", str)
    events.add_column("lease_until", str)
    events.add_column("attempts", int)
    events.add_column("done_at", str)
    db.execute("UPDATE events SET status = 'done', done_at = first_seen, attempts = 1 WHERE status IS NULL")
    events.create_index(["status", "lease_until"])


@migrations()
def m003_answers_and_thread_askers(db: Database) -> None:
    """Answers behind buttons, by a short id (what Share and feedback act on); who asked in a thread."""
    db["threads"].add_column("askers", str)
    db["answers"].create(
        {
            "id": str,
            "created_at": str,
            "user": str,
            "channel": str,
            "thread_ts": str,
            "question": str,
            "context": str,
            "answer": str,
        },
        pk="id",
        not_null={"created_at", "user", "channel", "question", "answer"},
    )
    db["answers"].create_index(["created_at"])


@dataclass(frozen=True)
class Thread:
    """A thread the bot answered in: the question it answered, and who asked there."""

    question: str
    askers: tuple[str, ...]


@dataclass(frozen=True)
class StoredAnswer:
    """An answer the bot sent with buttons: who asked, where, and what it said."""

    id: str
    created_at: str
    user: str
    channel: str
    thread_ts: str | None
    question: str
    context: str | None
    answer: Answer | None  # None if the stored record can no longer be read (re-answer the question)

    @property
    def chunk_ids(self) -> tuple[str, ...]:
        return tuple(self.answer.chunk_ids) if self.answer else ()


@dataclass(frozen=True)
class ReceivedEvent:
    """A received event that is not done yet: what ``claim_stale_events`` hands over to redo."""

    event_id: str
    kind: str
    body: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Feedback:
    """One helpful / not helpful click, with the question and the chunks that were shown."""

    id: int
    created_at: str
    user: str
    channel: str
    question: str
    chunk_ids: tuple[str, ...]
    helpful: bool
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "chunk_ids": list(self.chunk_ids)}


class StateStore:
    """The bot's state database at ``path`` (created, and migrated, on first use).

    Args:
        path: The SQLite file (``config.paths.state_db``); its folder is created if missing.
            The file (and its -wal and -shm) is made readable by its owner only (0600), and a
            folder it creates 0700.
        retention: How long people's text is kept (``config.retention``); defaults if None.
    """

    def __init__(self, path: str | Path, retention: RetentionSettings | None = None) -> None:
        self.path = Path(path)
        self.retention = retention or RetentionSettings()
        # This process's name on the events it works on (their leases).
        self.instance = new_owner()
        if str(path) == ":memory:":
            raise ValueError("StateStore needs a file: each thread opens its own connection")
        self._connections = Connections(self.path)
        migrations.apply(self._db)
        # A queued answer's thread is remembered under a placeholder that its delivery renames;
        # when the delivery comes first, its ts waits here for the placeholder (see rename_thread).
        self._threads_lock = threading.Lock()
        self._renamed_early: OrderedDict[tuple[str, str], str] = OrderedDict()

    @property
    def _db(self) -> Database:
        return self._connections.database()

    def close(self) -> None:
        """Close every thread's connection."""
        self._connections.close()

    # -- events ------------------------------------------------------------------------------
    def receive_event(self, event_id: str, body: dict[str, Any], *, kind: str = "event") -> str:
        """Record an event as received (with its body) and say whether to process it.

        Returns:
            ``NEW`` (first time: process it), ``REDO`` (received before but not done, and no live
            process owns it: process it, this process now owns it), ``DONE`` (a duplicate: skip)
            or ``BUSY`` (a process, maybe this one, is working on it now: skip).
        """
        now = datetime.now(UTC)
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT status, owner, lease_until FROM events WHERE event_id = ?", [event_id]
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO events"
                    " (event_id, first_seen, status, kind, body, owner, lease_until, attempts)"
                    " VALUES (?, ?, 'received', ?, ?, ?, ?, 0)",
                    [
                        event_id,
                        iso_utc(now),
                        kind,
                        json.dumps(body),
                        self.instance,
                        iso_utc(now + EVENT_LEASE),
                    ],
                )
                verdict = NEW
            elif row[0] == "done":
                verdict = DONE
            elif row[1] == self.instance or (
                row[2] is not None and row[2] > iso_utc(now) and owner_alive(row[1]) is not False
            ):
                verdict = BUSY
            else:
                conn.execute(
                    "UPDATE events SET owner = ?, lease_until = ?, body = coalesce(body, ?)"
                    " WHERE event_id = ?",
                    [self.instance, iso_utc(now + EVENT_LEASE), json.dumps(body), event_id],
                )
                verdict = REDO
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return verdict

    def finish_event(self, event_id: str) -> None:
        """Mark an event done (its reply is in the outbox, or it needs none) and drop its body."""
        self._db.execute(
            "UPDATE events SET status = 'done', body = NULL, owner = NULL, lease_until = NULL, done_at = ?"
            " WHERE event_id = ?",
            [_now(), event_id],
        )

    def fail_event_attempt(self, event_id: str) -> bool:
        """Count a failed attempt at an event; True if it should be tried again, False if given up
        (then it is marked done: a deterministic failure must not be redone for ever)."""
        self._db.execute(
            "UPDATE events SET attempts = coalesce(attempts, 0) + 1 WHERE event_id = ?", [event_id]
        )
        row = self._db.execute("SELECT attempts FROM events WHERE event_id = ?", [event_id]).fetchone()
        if row is not None and row[0] >= EVENT_MAX_ATTEMPTS:
            self.finish_event(event_id)
            return False
        return True

    def release_event(self, event_id: str) -> None:
        """Give up this process's lease on one event (it could not be queued): anyone may take it."""
        self._db.execute(
            "UPDATE events SET owner = NULL, lease_until = NULL WHERE event_id = ? AND status = 'received'"
            " AND owner = ?",
            [event_id, self.instance],
        )

    def release_events(self) -> int:
        """Give up every lease of this process (at shutdown): the next start finishes those events."""
        return self._db.execute(
            "UPDATE events SET owner = NULL, lease_until = NULL WHERE status = 'received' AND owner = ?",
            [self.instance],
        ).rowcount

    def renew_events(self) -> int:
        """Extend this process's leases (it is alive and still has them queued)."""
        until = iso_utc(datetime.now(UTC) + EVENT_LEASE)
        return self._db.execute(
            "UPDATE events SET lease_until = ? WHERE status = 'received' AND owner = ?",
            [until, self.instance],
        ).rowcount

    def claim_stale_events(self, limit: int = 100) -> list[ReceivedEvent]:
        """Take over received, not-done events that no live process owns, oldest first."""
        now = iso_utc(datetime.now(UTC))
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            candidates = conn.execute(
                "SELECT event_id, kind, body, attempts, owner, lease_until FROM events"
                " WHERE status = 'received' AND (owner IS NULL OR owner != ?)"
                " ORDER BY first_seen, event_id",
                [self.instance],
            ).fetchall()
            rows = [
                row
                for row in candidates
                if row[4] is None or row[5] is None or row[5] <= now or owner_alive(row[4]) is False
            ][:limit]
            until = iso_utc(datetime.now(UTC) + EVENT_LEASE)
            for row in rows:
                conn.execute(
                    "UPDATE events SET owner = ?, lease_until = ? WHERE event_id = ?",
                    [self.instance, until, row[0]],
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return [
            ReceivedEvent(row[0], row[1] or "event", json.loads(row[2] or "{}"), row[3] or 0) for row in rows
        ]

    def event_status(self, event_id: str) -> str | None:
        """The event's status (received or done), or None if it was never seen (or was pruned)."""
        row = self._db.execute("SELECT status FROM events WHERE event_id = ?", [event_id]).fetchone()
        return row[0] if row else None

    def unfinished_events(self) -> int:
        """How many events are received but not done."""
        return self._db.execute("SELECT count(*) FROM events WHERE status = 'received'").fetchone()[0]

    def prune(self, now: datetime | None = None) -> int:
        """Forget events, and people's text older than ``retention``; returns the rows removed.

        Threads and stored answers go after ``thread_days`` (``dm_days`` in direct messages, whose
        channel ids start with D), feedback after ``feedback_days``.
        """
        now = now or datetime.now(UTC)
        events = self._db.execute(
            "DELETE FROM events WHERE first_seen < ?", [iso_utc(now - EVENT_RETENTION)]
        ).rowcount
        return events + self._prune_text(now)

    def _prune_text(self, now: datetime) -> int:
        keep = self.retention
        channel_cutoff = iso_utc(now - timedelta(days=keep.thread_days))
        dm_cutoff = iso_utc(now - timedelta(days=keep.dm_days))
        removed = 0
        for table, column in (("threads", "updated_at"), ("answers", "created_at")):
            removed += self._db.execute(
                f"DELETE FROM {table} WHERE ({column} < ? AND channel NOT LIKE 'D%')"
                f" OR ({column} < ? AND channel LIKE 'D%')",
                [channel_cutoff, dm_cutoff],
            ).rowcount
        return removed + self.purge_feedback(now - timedelta(days=keep.feedback_days))

    # -- threads -----------------------------------------------------------------------------
    def remember_thread(self, channel: str, thread_ts: str, question: str, asker: str | None = None) -> None:
        """Record the question answered in a thread (the context for its follow-ups) and who asked."""
        with self._threads_lock:
            thread_ts = self._renamed_early.pop((channel, thread_ts), thread_ts)
            known = self.thread(channel, thread_ts)
            askers = list(known.askers) if known else []
            if asker and asker not in askers:
                askers.append(asker)
            self._db["threads"].upsert(
                {
                    "channel": channel,
                    "thread_ts": thread_ts,
                    "question": question,
                    "updated_at": _now(),
                    "askers": " ".join(askers),
                },
                pk=("channel", "thread_ts"),
            )

    def thread(self, channel: str, thread_ts: str) -> Thread | None:
        """The thread's question and askers, or None if the bot has not answered there."""
        row = self._db.execute(
            "SELECT question, askers FROM threads WHERE channel = ? AND thread_ts = ?", [channel, thread_ts]
        ).fetchone()
        return Thread(row[0], tuple((row[1] or "").split())) if row else None

    def rename_thread(self, channel: str, old_ts: str, new_ts: str) -> bool:
        """Move a thread's memory to another ts (a queued answer's placeholder to its real ts).

        The answer can be posted before its thread is remembered (the delivery worker is
        quicker than the answering thread): then the new ts is kept, in this process, for the
        placeholder's ``remember_thread``. Returns whether a remembered thread was moved.
        """
        with self._threads_lock:
            cursor = self._db.execute(
                "UPDATE OR REPLACE threads SET thread_ts = ? WHERE channel = ? AND thread_ts = ?",
                [new_ts, channel, old_ts],
            )
            if cursor.rowcount == 1:
                return True
            self._renamed_early[(channel, old_ts)] = new_ts
            while len(self._renamed_early) > RENAMED_EARLY_KEPT:  # answers no thread will claim
                self._renamed_early.popitem(last=False)
            return False

    def thread_question(self, channel: str, thread_ts: str) -> str | None:
        """The question the bot answered in this thread, or None if it has not answered there."""
        row = self._db.execute(
            "SELECT question FROM threads WHERE channel = ? AND thread_ts = ?", [channel, thread_ts]
        ).fetchone()
        return row[0] if row else None

    # -- feedback ----------------------------------------------------------------------------
    def add_feedback(
        self, *, user: str, channel: str, question: str, chunk_ids: list[str] | tuple[str, ...], helpful: bool
    ) -> int:
        """Store a feedback click; returns its id (a reason can be added later)."""
        row = {
            "created_at": _now(),
            "user": user,
            "channel": channel,
            "question": question[:MAX_STORED_QUESTION_CHARS],
            "chunk_ids": json.dumps([str(c)[:200] for c in chunk_ids][:MAX_STORED_CHUNK_IDS]),
            "helpful": int(helpful),
            "reason": None,
        }
        return int(self._db["feedback"].insert(row).last_pk)

    def set_feedback_reason(self, feedback_id: int, reason: str, *, user: str) -> bool:
        """Add the reason to the user's own feedback; False if there is no such feedback of theirs."""
        cursor = self._db.execute(
            "UPDATE feedback SET reason = ? WHERE id = ? AND user = ?",
            [reason[:MAX_REASON_CHARS], feedback_id, user],
        )
        return cursor.rowcount == 1

    def list_feedback(self) -> list[Feedback]:
        """All feedback, oldest first."""
        rows = self._db["feedback"].rows_where(order_by="id")
        return [_feedback_from_row(row) for row in rows]

    def purge_feedback(self, before: datetime) -> int:
        """Delete feedback given before ``before``; returns how many rows went."""
        return self._db.execute("DELETE FROM feedback WHERE created_at < ?", [iso_utc(before)]).rowcount

    # -- answers behind buttons --------------------------------------------------------------
    def save_answer(
        self,
        answer: Answer,
        *,
        user: str,
        channel: str,
        thread_ts: str | None = None,
        context: str | None = None,
    ) -> str:
        """Keep an answer that is about to be sent with buttons; returns its short id (the button value)."""
        answer_id = secrets.token_urlsafe(9)  # 12 characters, not guessable
        self._db["answers"].insert(
            {
                "id": answer_id,
                "created_at": _now(),
                "user": user,
                "channel": channel,
                "thread_ts": thread_ts,
                "question": answer.question[:MAX_STORED_QUESTION_CHARS],
                "context": (context or "")[:MAX_STORED_QUESTION_CHARS] or None,
                "answer": json.dumps(answer.to_dict(), ensure_ascii=False),
            }
        )
        return answer_id

    def stored_answer(self, answer_id: str) -> StoredAnswer | None:
        """The answer behind a button, or None (unknown, or forgotten after its retention)."""
        if not isinstance(answer_id, str) or not 0 < len(answer_id) <= 64:
            return None
        rows = list(self._db["answers"].rows_where("id = ?", [answer_id]))
        if not rows:
            return None
        data = rows[0]
        return StoredAnswer(
            id=data["id"],
            created_at=data["created_at"],
            user=data["user"],
            channel=data["channel"],
            thread_ts=data["thread_ts"] or None,
            question=data["question"],
            context=data["context"] or None,
            answer=_answer_from_json(data["answer"]),
        )


def new_owner() -> str:
    """A name for this process on the leases it takes: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process behind a lease owner (``new_owner``) is alive: True, False, or None when
    it cannot be told (another host, an unknown name). A dead owner's leases need not be waited out:
    after a kill -9, the restarted bot takes its work over at once."""
    host, _, rest = (owner or "").partition(":")
    pid_text = rest.partition(":")[0]
    if not pid_text.isdigit() or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _feedback_from_row(row: dict[str, Any]) -> Feedback:
    return Feedback(
        id=row["id"],
        created_at=row["created_at"],
        user=row["user"] or "",
        channel=row["channel"] or "",
        question=row["question"],
        chunk_ids=tuple(json.loads(row["chunk_ids"] or "[]")),
        helpful=bool(row["helpful"]),
        reason=row["reason"],
    )


def _answer_from_json(raw: str) -> Answer | None:
    try:
        data = json.loads(raw)
        return Answer(
            question=data["question"],
            status=AnswerStatus(data["status"]),
            confidence=Confidence(data["confidence"]),
            passages=tuple(Passage(**(p | {"highlights": tuple(p["highlights"])})) for p in data["passages"]),
            citations=tuple(Citation(**c) for c in data["citations"]),
            contact=Contact(**data["contact"]),
            message=data["message"],
            referral=Referral(**data["referral"]) if data.get("referral") else None,
        )
    except (ValueError, KeyError, TypeError):  # an older or newer record: the caller re-answers
        return None


def _now() -> str:
    return iso_utc(datetime.now(UTC))
