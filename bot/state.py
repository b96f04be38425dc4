"""The bot's own SQLite database: seen Slack events, answered threads and feedback.

Kept apart from the index database (``paths.state_db``) because the index is rebuilt and
swapped atomically, while this state must survive. The schema evolves by numbered
migrations (``m001_...``); later issues add ``cases`` and ``case_events`` the same way.

Safe to use from bolt's worker threads: each thread gets its own connection, the database
runs in WAL mode, and ``claim_event`` is a single atomic ``INSERT OR IGNORE``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("trbot-state")

# Slack re-sends an event for about five minutes; a week covers any restart or backlog.
EVENT_RETENTION = timedelta(days=7)
# A thread's question is kept for follow-ups for this long (it is user text: keep no more).
THREAD_RETENTION = timedelta(days=30)
MAX_REASON_CHARS = 2000


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
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) == ":memory:":
            raise ValueError("StateStore needs a file: each thread opens its own connection")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        db = self._db
        db.enable_wal()
        migrations.apply(db)

    @property
    def _db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                self._connections.append(conn)
            db = self._local.db = Database(conn)
        return db

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- events ------------------------------------------------------------------------------
    def claim_event(self, event_id: str) -> bool:
        """Record a Slack event id; True the first time it is seen, False for a repeat (a retry)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO events (event_id, first_seen) VALUES (?, ?)", [event_id, _now()]
        )
        return cursor.rowcount == 1

    def prune(self, now: datetime | None = None) -> int:
        """Forget events and threads older than their retention; returns the rows removed."""
        now = now or datetime.now(UTC)
        events = self._db.execute(
            "DELETE FROM events WHERE first_seen < ?", [_iso(now - EVENT_RETENTION)]
        ).rowcount
        threads = self._db.execute(
            "DELETE FROM threads WHERE updated_at < ?", [_iso(now - THREAD_RETENTION)]
        ).rowcount
        return events + threads

    # -- threads -----------------------------------------------------------------------------
    def remember_thread(self, channel: str, thread_ts: str, question: str) -> None:
        """Record the question answered in a thread, the context for its follow-ups."""
        self._db["threads"].upsert(
            {"channel": channel, "thread_ts": thread_ts, "question": question, "updated_at": _now()},
            pk=("channel", "thread_ts"),
        )

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
            "question": question,
            "chunk_ids": json.dumps(list(chunk_ids)),
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


def _now() -> str:
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
