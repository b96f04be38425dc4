"""The outbox: every message the bot must deliver, written to the state database first.

Answers, apologies, case cards, card updates, notices and reminders are queued here with
``Outbox.enqueue`` and delivered by a background worker (``bot.slack.delivery.OutboxWorker``),
which retries with exponential backoff while Slack is down, slow or rate-limiting, also across a
restart of the bot. Plain Python: no Slack imports; the worker classifies Slack's answers and
reports them back with ``mark_delivered`` or ``record_failure``.

Delivery is at-least-once, made effectively once by three rules:

- a ``dedupe_key`` is unique: enqueueing the same key again returns the first message's id and
  queues nothing (a retried Slack event cannot give a second reply, a case a second card);
- a message is claimed atomically (``claim``) with a short lease, so one sender has it at a time,
  and a sender that dies mid-send leaves it to be retried once the lease expires;
- ``mark_delivered`` records Slack's result and the delivered status in one transaction, so a
  message that was delivered and recorded is never sent again.

A payload value ``{"$delivered": "<dedupe_key>", "field": "ts"}`` is replaced at send time by
that field of the referenced message's Slack result (a case card's ``ts`` for ``chat.update``,
or as ``thread_ts`` for a reply in the card's thread); the message waits until the referenced one
is delivered, and fails if that one failed.

Statuses: ``pending`` (waiting for its next try), ``sending`` (claimed), ``delivered``, ``failed``
(a permanent error, or still failing ``give_up_after_hours`` after it was queued: logged at ERROR
with its id, kind and case reference, never its text). A delivered message's payload is dropped;
only the result fields Slack's answer needs to be referenced (``ts``, ``channel``) are kept.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.config import OutboxSettings
from bot.database import Connections
from bot.state import new_owner, owner_alive

logger = logging.getLogger(__name__)

migrations = Migrations("trbot-outbox")

STATUSES = ("pending", "sending", "delivered", "failed")
# The fields of Slack's answer kept as a delivered message's result (what references need).
RESULT_FIELDS = ("ts", "channel", "message_ts")
RESPONSE_URL = "response_url"
# How a rate-limit failure's error starts (the delivery worker writes it; make_due spares those).
RATE_LIMITED = "rate limited"
REFERENCE = "$delivered"
# A message waiting for a referenced one is looked at again after this (it is also woken at once
# when that one is delivered).
WAIT_RECHECK_SECONDS = 30.0
# A message to send after one that is not in the outbox yet (about to be queued: a case notice is
# queued just before the answer it follows) waits this long for it, then goes anyway.
AFTER_GRACE_SECONDS = 30.0
MAX_ERROR_CHARS = 300


class OutboxError(Exception):
    """A request the outbox cannot take (a payload that is not JSON, an unknown status)."""


@migrations()
def m001_create_outbox(db: Database) -> None:
    db["outbox"].create(
        {
            "id": int,
            "kind": str,
            "method": str,
            "payload": str,  # JSON; dropped once delivered
            "dedupe_key": str,
            "case_ref": str,
            "status": str,
            "attempts": int,
            "next_attempt_at": str,
            "lease_until": str,
            "give_up_at": str,
            "last_error": str,
            "created_at": str,
            "delivered_at": str,
            "result": str,  # JSON: ts, channel (what references need)
            "waits_for": str,  # JSON list of the dedupe keys its payload refers to
            "fallback": str,  # JSON: {"on": [errors], "method", "payload"}, sent if one of those errors
            "after_key": str,  # sent only once the message with this dedupe key is delivered or failed
        },
        pk="id",
        not_null={"kind", "method", "status", "attempts", "created_at", "give_up_at"},
        defaults={"status": "pending", "attempts": 0},
    )
    db["outbox"].create_index(["dedupe_key"], unique=True)
    db["outbox"].create_index(["status", "next_attempt_at"])
    db["outbox"].create_index(["case_ref"])


@migrations()
def m002_lease_owner(db: Database) -> None:
    """Who holds a sending lease: a restarted bot takes a dead sender's messages over at once."""
    db["outbox"].add_column("lease_owner", str)


@dataclass(frozen=True)
class Message:
    """One row of the outbox, as ``list`` returns it (``payload`` is None once delivered)."""

    id: int
    kind: str
    method: str
    status: str
    attempts: int
    created_at: str
    give_up_at: str
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    last_error: str | None = None
    dedupe_key: str | None = None
    case_ref: str | None = None
    result: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """Everything but the payload (which holds user text): what ``trbot outbox list`` shows."""
        return {key: value for key, value in self.__dict__.items() if key != "payload"}


@dataclass(frozen=True)
class Delivery:
    """A claimed message, its references resolved, ready to send."""

    id: int
    kind: str
    method: str
    payload: dict[str, Any]
    attempts: int
    dedupe_key: str | None = None
    case_ref: str | None = None

    def describe(self) -> str:
        """For log lines: id, kind, method and case reference (never the text)."""
        case = f", case {self.case_ref}" if self.case_ref else ""
        return f"outbox message {self.id} ({self.kind}, {self.method}{case})"


class Outbox:
    """The outbox table in the state database at ``path`` (created and migrated on first use).

    Safe to use from several threads (each gets its own connection) and several processes
    (claims are ``BEGIN IMMEDIATE`` transactions).

    Args:
        path: The state database (``config.paths.state_db``).
        settings: Backoff, give-up and lease settings (``config.outbox``).
        clock: Seconds since the epoch (``time.time``); tests pass a fake one.
        rng: The source of backoff jitter.
    """

    def __init__(
        self,
        path: str | Path,
        settings: OutboxSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if str(path) == ":memory:":
            raise OutboxError("the outbox needs a database file: each thread opens its own connection")
        self.path = Path(path)
        self.settings = settings or OutboxSettings()
        self.clock = clock
        self._rng = rng or random.Random()
        self._listeners: list[Callable[[], None]] = []
        self.owner = new_owner()  # this process's name on the leases it takes
        self._connections = Connections(self.path, timeout=15, autocommit=True, rows=True)
        migrations.apply(Database(self._conn))

    # -- connections -------------------------------------------------------------------------
    @property
    def _conn(self) -> sqlite3.Connection:
        return self._connections.connection()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._connections.immediate()

    def close(self) -> None:
        """Close every thread's connection."""
        self._connections.close()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each enqueue (the delivery worker's ``wake``)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- queueing ----------------------------------------------------------------------------
    def enqueue(
        self,
        method: str,
        payload: dict[str, Any],
        *,
        kind: str,
        dedupe_key: str | None = None,
        case_ref: str | None = None,
        fallback: tuple[str, dict[str, Any], frozenset[str] | set[str] | tuple[str, ...]] | None = None,
        after: str | None = None,
    ) -> int:
        """Queue a message; returns its id (the first message's id if ``dedupe_key`` was queued before).

        Args:
            method: A Slack Web API method ("chat.postMessage", "chat.update", "reactions.remove"...)
                or "response_url" (payload ``{"url": ..., "message": {...}}``).
            payload: The method's arguments (JSON-serialisable); values may be ``$delivered`` references.
            kind: What it is, for the operator: answer, apology, case_card, card_update, notice, reminder...
            dedupe_key: A key unique to this message; the same key again queues nothing.
            case_ref: The case it belongs to, if any (kept with the row; logged on failure).
            fallback: ``(method, payload, errors)``: if Slack answers one of ``errors`` (for example
                not_in_channel), the message is sent that way instead (same id and dedupe key).
            after: A dedupe key: send this message only once that one is delivered or failed (for
                example, remove the progress reaction only after the answer is posted). If no
                message has that key yet, this one waits up to ``AFTER_GRACE_SECONDS`` for it.

        Raises:
            OutboxError: the method, kind or payload is unusable.
        """
        if not method or not isinstance(method, str) or not kind:
            raise OutboxError("enqueue needs a method and a kind")
        if method == RESPONSE_URL and not (isinstance(payload.get("url"), str) and "message" in payload):
            raise OutboxError('a response_url message needs a payload {"url": ..., "message": {...}}')
        try:
            payload_json = json.dumps(payload, ensure_ascii=False)
            fallback_json = None
            if fallback is not None:
                fb_method, fb_payload, fb_errors = fallback
                fallback_json = json.dumps(
                    {"method": fb_method, "payload": fb_payload, "on": sorted(fb_errors)}, ensure_ascii=False
                )
        except (TypeError, ValueError) as exc:
            raise OutboxError(f"the payload of a {kind} message is not JSON: {exc}") from exc
        now = self.clock()
        window = (
            self.settings.response_url_give_up_after_minutes * 60
            if method == RESPONSE_URL
            else self.settings.give_up_after_hours * 3600
        )
        waits_for = sorted(_references(payload))
        row = [
            kind,
            method,
            payload_json,
            dedupe_key,
            case_ref,
            _iso(now),
            _iso(now + window),
            _iso(now),
            json.dumps(waits_for) if waits_for else None,
            fallback_json,
            after,
        ]
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO outbox (kind, method, payload, dedupe_key, case_ref, status, attempts,"
                " next_attempt_at, give_up_at, created_at, waits_for, fallback, after_key)"
                " VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)",
                row,
            )
            if cursor.rowcount == 1:
                message_id = int(cursor.lastrowid or 0)
                created = True
            else:
                found = conn.execute("SELECT id FROM outbox WHERE dedupe_key = ?", [dedupe_key]).fetchone()
                message_id = int(found["id"])
                created = False
        if created:
            for listener in list(self._listeners):
                listener()
        return message_id

    # -- delivering --------------------------------------------------------------------------
    def claim(self, limit: int = 1) -> list[Delivery]:
        """Take up to ``limit`` due messages for sending (status ``sending``, with a lease).

        Due: pending with its next try now or earlier, or sending with an expired lease (its sender
        died). A message whose references are not delivered yet waits; one whose reference failed
        fails too.
        """
        now = self.clock()
        claimed: list[Delivery] = []
        failed: list[str] = []
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM outbox WHERE (status = 'pending' AND next_attempt_at <= ?)"
                " OR (status = 'sending' AND (lease_until <= ? OR lease_owner != ?))"
                " ORDER BY next_attempt_at, id LIMIT ?",
                [_iso(now), _iso(now), self.owner, max(limit * 4, 20)],
            ).fetchall()
            for row in rows:
                if row["status"] == "sending" and _epoch(row["lease_until"]) > now:
                    if owner_alive(row["lease_owner"]) is not False:
                        continue  # a live sender has it
                if len(claimed) >= limit:
                    break
                payload = json.loads(row["payload"] or "{}")
                try:
                    if row["after_key"]:
                        queued_for = now - _epoch(row["created_at"])
                        _wait_for_settled(
                            conn, row["after_key"], missing_waits=queued_for < AFTER_GRACE_SECONDS
                        )
                    resolved = _resolve(payload, lambda key: _reference_row(conn, key))
                except _Waiting as waiting:
                    if now >= _epoch(row["give_up_at"]):
                        failed.append(
                            self._fail(conn, row, f"gave up waiting for {waiting.key} to be delivered", now)
                        )
                    else:
                        conn.execute(
                            "UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                            [_iso(now + WAIT_RECHECK_SECONDS), row["id"]],
                        )
                    continue
                except _BrokenReference as broken:
                    failed.append(self._fail(conn, row, str(broken), now))
                    continue
                conn.execute(
                    "UPDATE outbox SET status = 'sending', attempts = attempts + 1, lease_until = ?,"
                    " lease_owner = ? WHERE id = ?",
                    [_iso(now + self.settings.lease_seconds), self.owner, row["id"]],
                )
                claimed.append(
                    Delivery(
                        id=row["id"],
                        kind=row["kind"],
                        method=row["method"],
                        payload=resolved,
                        attempts=row["attempts"] + 1,
                        dedupe_key=row["dedupe_key"],
                        case_ref=row["case_ref"],
                    )
                )
        for line in failed:
            logger.error("%s", line)
        return claimed

    def mark_delivered(self, message_id: int, result: dict[str, Any] | None = None) -> None:
        """Record Slack's answer and the delivered status together; wakes messages waiting for it."""
        now = self.clock()
        kept = {key: result[key] for key in RESULT_FIELDS if result and result.get(key) is not None}
        with self._transaction() as conn:
            row = conn.execute("SELECT dedupe_key FROM outbox WHERE id = ?", [message_id]).fetchone()
            conn.execute(
                "UPDATE outbox SET status = 'delivered', result = ?, delivered_at = ?, payload = NULL,"
                " fallback = NULL, lease_until = NULL, next_attempt_at = NULL WHERE id = ?",
                [json.dumps(kept), _iso(now), message_id],
            )
            if row is not None and row["dedupe_key"] is not None:
                self._wake_dependents(conn, row["dedupe_key"], now)

    def _wake_dependents(self, conn: sqlite3.Connection, key: str, now: float) -> None:
        conn.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' AND next_attempt_at > ?"
            " AND (after_key = ? OR (waits_for IS NOT NULL AND instr(waits_for, ?) > 0))",
            [_iso(now), _iso(now), key, json.dumps(key)],
        )

    def record_failure(
        self, message_id: int, error: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> str:
        """A try failed: schedule the next one with backoff (or ``retry_after``), or fail the message.

        Args:
            message_id: The claimed message.
            error: What went wrong, short and without message text (a Slack error code, "HTTP 503").
            permanent: True for errors a retry cannot fix (channel_not_found, invalid_blocks...).
            retry_after: Seconds Slack asked us to wait (a 429's Retry-After).

        Returns:
            The message's new status: "pending" or "failed".
        """
        now = self.clock()
        error = error[:MAX_ERROR_CHARS]
        line: str | None = None
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM outbox WHERE id = ?", [message_id]).fetchone()
            if row is None or row["status"] in ("delivered", "failed"):
                return row["status"] if row is not None else "failed"
            give_up_at = _epoch(row["give_up_at"])
            fallback = json.loads(row["fallback"]) if row["fallback"] else None
            if permanent and fallback and error in fallback["on"]:
                line = self._switch_to_fallback(conn, row, fallback, error, now)
                status = "pending"
            elif permanent or now >= give_up_at:
                reason = error if permanent else f"still failing after {_hours(now, row)}: {error}"
                if not permanent and row["method"] == RESPONSE_URL:
                    reason += " (Slack expires a response_url after 30 minutes: the reply is given up)"
                line = self._fail(conn, row, reason, now)
                status = "failed"
            else:
                delay = retry_after if retry_after is not None else self.backoff(row["attempts"])
                conn.execute(
                    "UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ?,"
                    " lease_until = NULL WHERE id = ?",
                    [error, _iso(min(now + max(delay, 0.0), give_up_at)), message_id],
                )
                status = "pending"
        if line and status == "pending":
            logger.warning("%s", line)
            self._notify()
        elif line:
            logger.error("%s", line)
        return status

    def release(self, message_id: int) -> None:
        """Put a claimed message back, due now, without counting the try (a sender shutting down)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = max(attempts - 1, 0), lease_until = NULL,"
                " next_attempt_at = ? WHERE id = ? AND status = 'sending'",
                [_iso(self.clock()), message_id],
            )

    def make_due(self, *, limit: int | None = None, spare_rate_limited: bool = False) -> int:
        """Make pending messages due now, whatever their backoff; returns how many.

        At start-up every message is tried at once; after an outage, one message probes whether
        Slack is back (``limit=1``) and, once it is, the rest follow (``spare_rate_limited``: not
        those waiting out a 429's Retry-After).
        """
        now = _iso(self.clock())
        where = "status = 'pending' AND next_attempt_at > ?"
        params: list[Any] = [now]
        if spare_rate_limited:
            where += " AND (last_error IS NULL OR last_error NOT LIKE ?)"
            params.append(f"{RATE_LIMITED}%")
        sql = f"UPDATE outbox SET next_attempt_at = ? WHERE id IN (SELECT id FROM outbox WHERE {where}"
        sql += " ORDER BY next_attempt_at, id" + (" LIMIT ?)" if limit is not None else ")")
        if limit is not None:
            params.append(limit)
        with self._transaction() as conn:
            return conn.execute(sql, [now, *params]).rowcount

    def backoff(self, attempts: int) -> float:
        """The wait after ``attempts`` failed tries: doubling from the initial wait, capped, with jitter."""
        settings = self.settings
        base = min(settings.backoff_max_seconds, settings.backoff_initial_seconds * 2 ** max(attempts - 1, 0))
        return base * (1 - settings.backoff_jitter * self._rng.random())

    def _fail(self, conn: sqlite3.Connection, row: sqlite3.Row, error: str, now: float) -> str:
        conn.execute(
            "UPDATE outbox SET status = 'failed', last_error = ?, lease_until = NULL, next_attempt_at = NULL,"
            " delivered_at = NULL WHERE id = ?",
            [error[:MAX_ERROR_CHARS], row["id"]],
        )
        if row["dedupe_key"] is not None:
            self._wake_dependents(conn, row["dedupe_key"], now)
        case = f", case {row['case_ref']}" if row["case_ref"] else ""
        return (
            f"outbox message {row['id']} ({row['kind']}, {row['method']}{case}) failed after "
            f"{row['attempts']} attempt(s): {error}"
        )

    def _switch_to_fallback(
        self, conn: sqlite3.Connection, row: sqlite3.Row, fallback: dict, error: str, now: float
    ) -> str:
        """The message becomes its fallback (same id and dedupe key: what waits for it still waits)."""
        give_up_at = _epoch(row["give_up_at"])
        if fallback["method"] == RESPONSE_URL:
            expiry = _epoch(row["created_at"]) + self.settings.response_url_give_up_after_minutes * 60
            give_up_at = min(give_up_at, expiry)
        conn.execute(
            "UPDATE outbox SET method = ?, payload = ?, fallback = NULL, status = 'pending',"
            " lease_until = NULL,"
            " next_attempt_at = ?, give_up_at = ?, last_error = ? WHERE id = ?",
            [
                fallback["method"],
                json.dumps(fallback["payload"], ensure_ascii=False),
                _iso(now),
                _iso(give_up_at),
                f"{error}: sent by {fallback['method']} instead",
                row["id"],
            ],
        )
        case = f", case {row['case_ref']}" if row["case_ref"] else ""
        return (
            f"outbox message {row['id']} ({row['kind']}, {row['method']}{case}) answered {error}:"
            f" sending it by {fallback['method']} instead"
        )

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- reading -----------------------------------------------------------------------------
    def delivered_result(self, dedupe_key: str) -> dict[str, Any] | None:
        """Slack's result (``ts``, ``channel``) of the delivered message with this key, else None."""
        row = self._conn.execute(
            "SELECT result FROM outbox WHERE dedupe_key = ? AND status = 'delivered'", [dedupe_key]
        ).fetchone()
        return json.loads(row["result"] or "{}") if row else None

    def get(self, message_id: int) -> Message | None:
        row = self._conn.execute("SELECT * FROM outbox WHERE id = ?", [message_id]).fetchone()
        return _message(row) if row else None

    def find(self, dedupe_key: str) -> Message | None:
        row = self._conn.execute("SELECT * FROM outbox WHERE dedupe_key = ?", [dedupe_key]).fetchone()
        return _message(row) if row else None

    def list(self, status: str | None = None, *, limit: int | None = None) -> list[Message]:
        """Messages, newest first; only those with ``status`` if given.

        Raises:
            OutboxError: ``status`` is not one of pending, sending, delivered, failed.
        """
        if status is not None and status not in STATUSES:
            raise OutboxError(f"unknown outbox status {status!r} (expected one of {', '.join(STATUSES)})")
        sql = "SELECT * FROM outbox" + (" WHERE status = ?" if status else "") + " ORDER BY id DESC"
        params: list[Any] = [status] if status else []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_message(row) for row in self._conn.execute(sql, params).fetchall()]

    def counts(self) -> dict[str, int]:
        """How many messages have each status."""
        rows = self._conn.execute("SELECT status, count(*) AS n FROM outbox GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | {row["status"]: row["n"] for row in rows}

    def outstanding(self) -> int:
        """How many messages are still to deliver (pending or sending)."""
        row = self._conn.execute(
            "SELECT count(*) AS n FROM outbox WHERE status IN ('pending', 'sending')"
        ).fetchone()
        return int(row["n"])

    def seconds_until_due(self) -> float | None:
        """Seconds until the next message is due (0 if one is due now), or None if none is waiting."""
        row = self._conn.execute(
            "SELECT min(due) AS due FROM (SELECT min(next_attempt_at) AS due FROM outbox"
            " WHERE status = 'pending'"
            " UNION ALL SELECT min(lease_until) FROM outbox WHERE status = 'sending')"
        ).fetchone()
        if row is None or row["due"] is None:
            return None
        return max(_epoch(row["due"]) - self.clock(), 0.0)

    def prune(self) -> int:
        """Delete delivered and failed messages older than ``keep_days`` that belong to no case.

        Messages of a case are kept (their results are referenced by later card updates) but a
        failed one's payload is dropped then. Returns the rows deleted.
        """
        cutoff = _iso(self.clock() - self.settings.keep_days * 86400)
        with self._transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM outbox WHERE status IN ('delivered', 'failed') AND case_ref IS NULL"
                " AND coalesce(delivered_at, created_at) < ?",
                [cutoff],
            ).rowcount
            conn.execute(
                "UPDATE outbox SET payload = NULL, fallback = NULL"
                " WHERE status = 'failed' AND created_at < ?",
                [cutoff],
            )
        return deleted


# -- references ------------------------------------------------------------------------------


class _Waiting(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _BrokenReference(Exception):
    pass


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and REFERENCE in value and set(value) <= {REFERENCE, "field"}


def _references(value: Any) -> set[str]:
    if _is_reference(value):
        return {str(value[REFERENCE])}
    if isinstance(value, dict):
        return set().union(*(_references(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value)) if value else set()
    return set()


def _resolve(value: Any, lookup: Callable[[str], sqlite3.Row | None]) -> Any:
    if _is_reference(value):
        key, field = str(value[REFERENCE]), str(value.get("field", "ts"))
        row = lookup(key)
        if row is None or row["status"] in ("pending", "sending"):
            raise _Waiting(key)
        if row["status"] == "failed":
            raise _BrokenReference(f"the message it refers to ({key}) failed")
        result = json.loads(row["result"] or "{}")
        if result.get(field) is None:
            raise _BrokenReference(f"the message it refers to ({key}) has no {field}")
        return result[field]
    if isinstance(value, dict):
        return {name: _resolve(item, lookup) for name, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, lookup) for item in value]
    return value


def _wait_for_settled(conn: sqlite3.Connection, key: str, *, missing_waits: bool) -> None:
    row = conn.execute("SELECT status FROM outbox WHERE dedupe_key = ?", [key]).fetchone()
    if (row is None and missing_waits) or (row is not None and row["status"] in ("pending", "sending")):
        raise _Waiting(key)


def _reference_row(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    return conn.execute("SELECT status, result FROM outbox WHERE dedupe_key = ?", [key]).fetchone()


# -- rows and times --------------------------------------------------------------------------


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        kind=row["kind"],
        method=row["method"],
        status=row["status"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        give_up_at=row["give_up_at"],
        next_attempt_at=row["next_attempt_at"] if row["status"] in ("pending", "sending") else None,
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        dedupe_key=row["dedupe_key"],
        case_ref=row["case_ref"],
        result=json.loads(row["result"]) if row["result"] else None,
        payload=json.loads(row["payload"]) if row["payload"] else None,
    )


def _iso(seconds: float) -> str:
    """A fixed-width UTC timestamp (so text order is time order in SQL)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _hours(now: float, row: sqlite3.Row) -> str:
    hours = (now - _epoch(row["created_at"])) / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
