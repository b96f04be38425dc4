"""Tracked cases for the research-security team: the record, its workflow and its audit log.

A case is opened when a question matches an escalation rule (source ``trigger``), when a partner
pre-screening is red or amber (``pre-screen``), or when a researcher asks for a person
(``researcher-request``). It lives in the bot's state database (``paths.state_db``), through the
``trbot-cases`` migrations, with a reference ``<prefix>-<year>-<number>`` (``RS-2026-0001``):
the year the case was opened, and a number allocated atomically, in sequence within that year.

The workflow (``TRANSITIONS``; anything else is refused with ``CaseTransitionError``)::

    action       allowed from                          to
    acknowledge  new                                   acknowledged
    assign       new, acknowledged, in_progress        in_progress  (sets the assignee)
    note         any status                            unchanged    (a note is required)
    resolve      new, acknowledged, in_progress        resolved     (an outcome is required)
    close        resolved                              closed
    reopen       resolved, closed                      in_progress if assigned, else new

Every action is written to ``case_events``, an append-only audit log (SQLite triggers refuse
UPDATE and DELETE on it, and this module has no API for either): created, joined and
follow-ups, each notification queued, sent or failed, status changes, assignments, notes,
reminders and refused attempts, each with its actor and time.

``CaseStore`` is the database; ``Team`` says who may see and work cases; ``Escalation`` opens or
joins a case and then, never before, queues the team's card and the researcher's notice through
the outbox. No Slack imports here: Block Kit comes from the renderer ``Escalation`` is given.
Question text is never logged (references, ids and counts are).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.config import CaseSettings
from bot.database import Connections, iso_utc

logger = logging.getLogger(__name__)

migrations = Migrations("trbot-cases")

STATUSES = ("new", "acknowledged", "in_progress", "resolved", "closed")
OPEN_STATUSES = ("new", "acknowledged", "in_progress")
SEVERITIES = ("high", "medium")
SOURCES = ("trigger", "pre-screen", "researcher-request")
ACTIONS = ("acknowledge", "assign", "note", "resolve", "close", "reopen")
# action -> the statuses it is allowed from, and the status it leads to (None: unchanged).
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "acknowledge": (frozenset({"new"}), "acknowledged"),
    "assign": (frozenset(OPEN_STATUSES), "in_progress"),
    "note": (frozenset(STATUSES), None),
    "resolve": (frozenset(OPEN_STATUSES), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
    "reopen": (frozenset({"resolved", "closed"}), "in_progress or new"),
}
# The outcomes the resolve modal offers; any other short text is accepted from the core's callers.
OUTCOMES = (
    "No concern: guidance was enough",
    "Advice given to the researcher",
    "Due diligence completed: proceed",
    "Proceed with conditions",
    "Export licence or ATAS application needed",
    "Referred (legal, export control or NSI)",
    "Collaboration declined",
    "Reported to the authorities",
    "Other (see the note)",
)
SYSTEM_ACTOR = "trbot"
# Outbox kinds whose queueing, delivery and failure go into the audit log. Card updates and
# messages in the card's thread follow every action: only their failures are logged.
NOTIFICATION_KINDS = frozenset({"case_card", "case_notice", "case_notice_dm", "case_reminder"})
MAX_NOTE_CHARS = 3000
MAX_OUTCOME_CHARS = 200
MAX_QUESTION_CHARS = 4000
_SEVERITY_ORDER = {"high": 0, "medium": 1}


class CaseError(Exception):
    """A case operation a user asked for cannot be done; the message says why."""


class CaseNotFoundError(CaseError):
    """No case has this reference."""


class CaseTransitionError(CaseError):
    """The workflow does not allow this action on the case in its current status."""


class CaseSettingsError(CaseError):
    """Cases are enabled but the settings cannot work (no channel, no team)."""


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedRule:
    """Why a case was opened: one rule, described for the team, and why it matched."""

    id: str
    description: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Note:
    at: str
    actor: str
    text: str


@dataclass(frozen=True)
class Case:
    """One case, as stored; ``notes`` come from the audit log, oldest first."""

    ref: str
    created_at: str
    updated_at: str
    status: str
    status_since: str
    severity: str
    source: str
    requester: str
    channel: str
    thread_ts: str | None
    message_ts: str | None
    permalink: str | None
    question: str
    rules: tuple[MatchedRule, ...]
    attachment: dict[str, Any] | None
    assignee: str | None
    outcome: str | None
    latest_note: str | None
    latest_note_by: str | None
    acknowledged_at: str | None
    resolved_at: str | None
    closed_at: str | None
    reopen_count: int
    notes: tuple[Note, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.rules)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules"] = [asdict(rule) for rule in self.rules]
        data["notes"] = [asdict(note) for note in self.notes]
        return data


@dataclass(frozen=True)
class AuditEntry:
    """One line of a case's audit log (``ref`` is None for a refused attempt on no case)."""

    id: int
    ref: str | None
    at: str
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CaseChange:
    """A case after an action, and the audit entry that recorded the action."""

    case: Case
    entry: AuditEntry


@dataclass(frozen=True)
class Escalated:
    """What ``escalate`` did: ``opened`` a case, added a ``follow_up`` in its thread, ``joined``
    the same person's open case on the same concern, or found a ``duplicate`` (a retried event)."""

    case: Case
    outcome: str
    entry: AuditEntry | None = None

    @property
    def opened(self) -> bool:
        return self.outcome == "opened"


@dataclass(frozen=True)
class DueReminder:
    case: Case
    period: int  # how many reminder delays have passed since the case became "new"
    key: str  # the outbox dedupe key: one reminder per case and period, across restarts
    hours: float


# -- the schema ------------------------------------------------------------------------------


@migrations()
def m001_create_tables(db: Database) -> None:
    db["case_counters"].create({"year": int, "last": int}, pk="year")
    db["cases"].create(
        {
            "ref": str,
            "year": int,
            "number": int,
            "created_at": str,
            "updated_at": str,
            "status": str,
            "status_since": str,
            "severity": str,
            "source": str,
            "requester": str,
            "channel": str,
            "thread_ts": str,
            "message_ts": str,
            "permalink": str,
            "question": str,
            "rules": str,
            "concern": str,
            "attachment": str,
            "assignee": str,
            "outcome": str,
            "latest_note": str,
            "latest_note_by": str,
            "acknowledged_at": str,
            "resolved_at": str,
            "closed_at": str,
            "reopen_count": int,
            "last_asked_at": str,
        },
        pk="ref",
        not_null={"year", "number", "created_at", "status", "severity", "source", "question"},
    )
    db["cases"].create_index(["year", "number"], unique=True)
    db["cases"].create_index(["status"])
    db["cases"].create_index(["channel", "thread_ts"])
    db["cases"].create_index(["requester", "concern"])
    db["case_keys"].create({"key": str, "ref": str, "created_at": str}, pk="key")
    db["case_events"].create(
        {
            "id": int,
            "ref": str,
            "at": str,
            "actor": str,
            "action": str,
            "from_status": str,
            "to_status": str,
            "detail": str,
        },
        pk="id",
        not_null={"at", "actor", "action"},
    )
    db["case_events"].create_index(["ref"])
    db["case_reminders"].create({"ref": str, "key": str, "sent_at": str}, pk=("ref", "key"))
    # Outbox messages whose fate (sent or failed) is already in the audit log.
    db["case_notifications"].create({"outbox_id": int, "ref": str, "status": str}, pk="outbox_id")
    db.execute(
        """CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
           BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END"""
    )
    db.execute(
        """CREATE TRIGGER case_events_no_delete BEFORE DELETE ON case_events
           BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END"""
    )
    db.execute(
        """CREATE VIEW open_cases AS
           SELECT ref, severity, status, created_at, assignee, source, requester, channel, latest_note
           FROM cases WHERE status IN ('new', 'acknowledged', 'in_progress')
           ORDER BY CASE severity WHEN 'high' THEN 0 ELSE 1 END, created_at"""
    )


# -- the store -------------------------------------------------------------------------------


Clock = Callable[[], datetime]


class CaseStore:
    """Cases and their audit log in the state database at ``path`` (created and migrated on first use).

    Safe across bolt's worker threads: each thread has its own connection (WAL mode), and every
    change is one ``BEGIN IMMEDIATE`` transaction, so references are never handed out twice.

    Args:
        path: The SQLite file (``config.paths.state_db``).
        settings: The ``cases`` settings (the reference prefix and the windows).
        clock: Returns the current time (UTC); tests pass a fake one.
    """

    def __init__(self, path: str | Path, settings: CaseSettings | None = None, *, clock: Clock | None = None):
        self.path = Path(path)
        self.settings = settings or CaseSettings()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._connections = Connections(self.path, autocommit=True)
        with self._write():  # under the write lock: two processes starting together migrate once
            migrations.apply(self._db)

    # -- connections -------------------------------------------------------------------------
    @property
    def _db(self) -> Database:
        return self._connections.database()

    def close(self) -> None:
        """Close every thread's connection."""
        self._connections.close()

    @contextmanager
    def _write(self) -> Iterator[Database]:
        with self._connections.immediate():
            yield self._db

    def _now(self) -> str:
        return iso_utc(self.clock())

    # -- opening -----------------------------------------------------------------------------
    def open_case(self, **request: Any) -> Case:
        """Open a new case, never joining an open one (the arguments are ``open_or_join``'s); a
        ``dedupe_key`` seen before returns that key's case instead.

        Raises:
            CaseError: a bad source, severity or empty question.
        """
        return self.open_or_join(**request, join=False).case

    def open_or_join(
        self,
        *,
        source: str,
        severity: str,
        requester: str,
        channel: str,
        question: str,
        rules: Iterable[Any] = (),
        thread_ts: str | None = None,
        message_ts: str | None = None,
        permalink: str | None = None,
        attachment: Mapping[str, Any] | None = None,
        actor: str | None = None,
        dedupe_key: str | None = None,
        join: bool = True,
    ) -> Escalated:
        """Open a case, unless this belongs to one that is open already.

        In one transaction: a ``dedupe_key`` seen before is a ``duplicate`` (Slack retried the
        event); a message in the thread of an open case is a ``follow_up`` to it; the same
        requester with the same concern (the same rule ids) within ``rejoin_window_hours`` of
        their last question ``joined`` their open case. Otherwise (or with ``join=False``) a new
        case is ``opened``.

        Args:
            source: "trigger", "pre-screen" or "researcher-request".
            severity: "high" or "medium".
            requester: The Slack user id who asked.
            channel: Where they asked (a channel or DM id).
            question: Their words (stored for the team; never logged).
            rules: The matched rules: dicts or objects with ``id``, ``description``, ``reason``.
            thread_ts, message_ts: The thread and the message the case is about.
            permalink: A link to the message.
            attachment: Anything JSON-serialisable to keep with the case (e.g. a whole screening).
            actor: Who opened it (default: the requester).
            dedupe_key: Makes opening idempotent (e.g. the Slack message's channel and ts).

        Raises:
            CaseError: a bad source, severity or empty question.
        """
        fields = _case_fields(source, severity, requester, channel, question, rules, attachment)
        now = self._now()
        detail = {
            "question": fields["question"],
            "channel": channel,
            "message_ts": message_ts,
            "rules": [rule["id"] for rule in json.loads(fields["rules"])],
            "source": source,
        }
        with self._write() as db:
            if dedupe_key and (ref := _keyed_ref(db, dedupe_key)):
                return Escalated(self._get(db, ref), "duplicate")
            ref, outcome = (self._open_case_for(db, fields, thread_ts) if join else None), "follow_up"
            if join and ref is None and fields["concern"] and self.settings.rejoin_window_hours > 0:
                ref, outcome = self._open_case_for_concern(db, fields, now), "joined"
            if ref is None:
                ref = self._insert_case(db, fields, thread_ts, message_ts, permalink, actor, dedupe_key)
                outcome, entry = "opened", None
            else:
                action = "researcher_request" if source == "researcher-request" else outcome
                status, was = db.execute("SELECT status, severity FROM cases WHERE ref = ?", [ref]).fetchone()
                if severity == "high" and was != "high":  # a follow-up can raise the severity, never lower it
                    detail["severity_raised"] = f"{was} -> high"
                    db.execute("UPDATE cases SET severity = 'high' WHERE ref = ?", [ref])
                entry_id = self._log(db, ref, actor or requester, action, status, status, detail, now)
                db.execute(
                    "UPDATE cases SET updated_at = ?, last_asked_at = ? WHERE ref = ?", [now, now, ref]
                )
                if dedupe_key:
                    _remember_key(db, dedupe_key, ref, now)
                entry = self._entry(db, entry_id)
            case = self._get(db, ref)
        logger.info("%s case %s (source=%s severity=%s)", outcome.replace("_", "-"), ref, source, severity)
        return Escalated(case, outcome, entry)

    def _open_case_for(self, db: Database, fields: dict[str, Any], thread_ts: str | None) -> str | None:
        if not thread_ts:
            return None
        row = db.execute(
            f"SELECT ref FROM cases WHERE channel = ? AND thread_ts = ? AND status IN {_OPEN_SQL} "
            "ORDER BY created_at DESC, number DESC LIMIT 1",
            [fields["channel"], thread_ts],
        ).fetchone()
        return row[0] if row else None

    def _open_case_for_concern(self, db: Database, fields: dict[str, Any], now: str) -> str | None:
        since = iso_utc(_parse(now) - timedelta(hours=self.settings.rejoin_window_hours))
        row = db.execute(
            f"SELECT ref FROM cases WHERE requester = ? AND concern = ? AND status IN {_OPEN_SQL} "
            "AND last_asked_at >= ? ORDER BY created_at DESC, number DESC LIMIT 1",
            [fields["requester"], fields["concern"], since],
        ).fetchone()
        return row[0] if row else None

    def _insert_case(
        self,
        db: Database,
        fields: dict[str, Any],
        thread_ts: str | None,
        message_ts: str | None,
        permalink: str | None,
        actor: str | None,
        dedupe_key: str | None,
    ) -> str:
        moment = self.clock()
        now = iso_utc(moment)
        number = db.execute(
            "INSERT INTO case_counters (year, last) VALUES (?, 1) "
            "ON CONFLICT(year) DO UPDATE SET last = last + 1 RETURNING last",
            [moment.year],
        ).fetchone()[0]
        ref = f"{self.settings.reference_prefix}-{moment.year}-{number:04d}"
        row = fields | {
            "ref": ref,
            "year": moment.year,
            "number": number,
            "created_at": now,
            "updated_at": now,
            "status": "new",
            "status_since": now,
            "thread_ts": thread_ts,
            "message_ts": message_ts,
            "permalink": permalink,
            "reopen_count": 0,
            "last_asked_at": now,
        }
        db["cases"].insert(row)
        detail = {"source": fields["source"], "severity": fields["severity"], "rules": _ids(fields)}
        self._log(db, ref, actor or fields["requester"], "created", None, "new", detail, now)
        if dedupe_key:
            _remember_key(db, dedupe_key, ref, now)
        return ref

    # -- reading -----------------------------------------------------------------------------
    def get(self, ref: str) -> Case:
        """The case with this reference (case-insensitive); ``CaseNotFoundError`` if there is none."""
        return self._get(self._db, ref)

    def _get(self, db: Database, ref: str) -> Case:
        wanted = (ref or "").strip().upper()
        cursor = db.execute("SELECT * FROM cases WHERE ref = ?", [wanted])
        row = cursor.fetchone()
        if row is None:
            raise CaseNotFoundError(f"no case {ref!r}: `trbot cases list` shows the references")
        data = dict(zip([c[0] for c in cursor.description], row, strict=True))
        notes = tuple(
            Note(at, actor, json.loads(detail or "{}").get("text", ""))
            for at, actor, detail in db.execute(
                "SELECT at, actor, detail FROM case_events WHERE ref = ? AND action = 'note' ORDER BY id",
                [wanted],
            ).fetchall()
        )
        return _case_from_row(data, notes)

    def list(
        self,
        status: str | Iterable[str] | None = None,
        *,
        assignee: str | None = None,
        requester: str | None = None,
        limit: int | None = None,
    ) -> list[Case]:
        """Cases, oldest first, filtered by status (one, several, or "open") and assignee.

        Raises:
            CaseError: an unknown status.
        """
        wanted = _statuses(status)
        where, params = [], []
        if wanted:
            where.append(f"status IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        if assignee:
            where.append("assignee = ?")
            params.append(assignee)
        if requester:
            where.append("requester = ?")
            params.append(requester)
        sql = "SELECT ref FROM cases" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY year, number" + (f" LIMIT {int(limit)}" if limit else "")
        return [self.get(ref) for (ref,) in self._db.execute(sql, params).fetchall()]

    def exists(self, ref: str) -> bool:
        return _known_ref(self._db, ref) is not None

    def has_open_case(self, channel: str, thread_ts: str | None) -> bool:
        """Whether the thread has an open case (its next message is a follow-up to it)."""
        return bool(thread_ts) and self._open_case_for(self._db, {"channel": channel}, thread_ts) is not None

    def audit(self, ref: str | None = None) -> list[AuditEntry]:
        """The audit log, oldest first: one case's (``CaseNotFoundError`` if unknown) or all of it."""
        if ref is None:
            rows = self._db.execute("SELECT * FROM case_events ORDER BY id").fetchall()
        else:
            ref = self.get(ref).ref
            rows = self._db.execute("SELECT * FROM case_events WHERE ref = ? ORDER BY id", [ref]).fetchall()
        return [_entry_from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many cases there are in each status."""
        rows = dict(self._db.execute("SELECT status, count(*) FROM cases GROUP BY status").fetchall())
        return {status: int(rows.get(status, 0)) for status in STATUSES}

    # -- working a case ----------------------------------------------------------------------
    def transition(
        self,
        ref: str,
        action: str,
        actor: str,
        note: str | None = None,
        outcome: str | None = None,
        *,
        assignee: str | None = None,
    ) -> CaseChange:
        """Do ``action`` on the case as ``actor`` and record it; see ``TRANSITIONS``.

        ``assign`` assigns to ``assignee`` (default: the actor). ``note`` needs the note's text,
        ``resolve`` an outcome (and takes an optional note); the other actions take an optional note.

        Raises:
            CaseNotFoundError: no such case.
            CaseTransitionError: the workflow does not allow it now, or text it needs is missing;
                the refusal is written to the audit log, and the case is unchanged.
            CaseError: an unknown action or no actor.
        """
        if action not in TRANSITIONS:
            raise CaseError(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
        if not actor:
            raise CaseError("an action on a case needs an actor")
        note = _clean_text(note, MAX_NOTE_CHARS)
        outcome = _clean_text(outcome, MAX_OUTCOME_CHARS)
        try:
            with self._write() as db:
                case = self._get(db, ref)
                update, detail = _apply(case, action, actor, note, outcome, assignee or actor)
                now = self._now()
                to_status = update.get("status", case.status)
                if to_status != case.status:
                    update |= {"status_since": now} | _status_stamps(case, to_status, now)
                update["updated_at"] = now
                if note:
                    update |= {"latest_note": note, "latest_note_by": actor}
                sets = ", ".join(f"{name} = ?" for name in update)
                db.execute(f"UPDATE cases SET {sets} WHERE ref = ?", [*update.values(), case.ref])
                if note and action != "note":
                    detail["note"] = note
                entry_id = self._log(db, case.ref, actor, action, case.status, to_status, detail, now)
                if note and action != "note":  # so that notes are one kind of entry, whatever came with them
                    self._log(db, case.ref, actor, "note", to_status, to_status, {"text": note}, now)
                change = CaseChange(self._get(db, case.ref), self._entry(db, entry_id))
        except CaseTransitionError as refusal:
            self.record_refusal(actor, action, ref=_known_ref(self._db, ref), reason=str(refusal))
            raise
        logger.info("case %s: %s by %s (%s -> %s)", change.case.ref, action, actor, case.status, to_status)
        return change

    def record_refusal(self, actor: str, action: str, *, ref: str | None = None, reason: str) -> AuditEntry:
        """Write a refused attempt (not a team member, or not allowed now) to the audit log."""
        with self._write() as db:
            status = None
            if ref:
                row = db.execute("SELECT status FROM cases WHERE ref = ?", [ref]).fetchone()
                status = row[0] if row else None
            detail = {"attempted": action, "reason": reason[:500]}
            entry_id = self._log(db, ref, actor or "unknown", "refused", status, status, detail, self._now())
            entry = self._entry(db, entry_id)
        logger.info("refused %s on %s for %s", action, ref or "no case", actor or "unknown")
        return entry

    def record_notification(
        self, ref: str, what: str, status: str, *, error: str | None = None, actor: str = SYSTEM_ACTOR
    ) -> AuditEntry:
        """Write a notification's fate to the audit log: ``status`` is queued, sent or failed.

        ``what`` names the message (its outbox dedupe key, e.g. ``case-card:RS-2026-0001``).
        """
        if status not in ("queued", "sent", "failed"):
            raise CaseError(f"unknown notification status {status!r} (expected queued, sent or failed)")
        detail = {"message": what} | ({"error": error[:500]} if error else {})
        with self._write() as db:
            row = db.execute("SELECT status FROM cases WHERE ref = ?", [ref]).fetchone()
            if row is None:
                raise CaseNotFoundError(f"no case {ref!r}")
            entry_id = self._log(
                db, ref, actor, f"notification_{status}", row[0], row[0], detail, self._now()
            )
            return self._entry(db, entry_id)

    def sync_notifications(self) -> int:
        """Copy the fate of the cases' outbox messages (delivered, failed) into the audit log, once each.

        The delivery worker knows only the outbox; this reads its table (``case_ref``, ``status``)
        in the same database. Called by the reminder loop and before a case is shown. Returns the
        entries written.
        """
        db = self._db
        if not db["outbox"].exists():
            return 0
        written = 0
        with self._write() as db:
            rows = db.execute(
                "SELECT o.id, o.case_ref, o.kind, o.dedupe_key, o.status, o.attempts, o.last_error,"
                " o.delivered_at FROM outbox o LEFT JOIN case_notifications n ON n.outbox_id = o.id"
                " WHERE o.case_ref IS NOT NULL AND o.status IN ('delivered', 'failed')"
                " AND n.outbox_id IS NULL"
                " ORDER BY o.id"
            ).fetchall()
            for outbox_id, ref, kind, key, status, attempts, error, delivered_at in rows:
                db.execute(
                    "INSERT INTO case_notifications (outbox_id, ref, status) VALUES (?, ?, ?)",
                    [outbox_id, ref, status],
                )
                if status == "delivered" and kind not in NOTIFICATION_KINDS:
                    continue
                found = db.execute("SELECT status FROM cases WHERE ref = ?", [ref]).fetchone()
                if found is None:
                    continue
                detail: dict[str, Any] = {"message": key or f"outbox {outbox_id}", "kind": kind}
                detail["attempts"] = attempts
                if status == "delivered":
                    detail["delivered_at"] = delivered_at
                else:
                    detail["error"] = (error or "")[:500]
                action = "notification_sent" if status == "delivered" else "notification_failed"
                self._log(db, ref, SYSTEM_ACTOR, action, found[0], found[0], detail, self._now())
                written += 1
        return written

    # -- reminders ---------------------------------------------------------------------------
    def due_reminders(self, now: datetime | None = None) -> list[DueReminder]:
        """New (unacknowledged) cases whose reminder delay has passed, at most one per case and period.

        A case that became "new" at T with delay D is due at T+D, T+2D...; after downtime only the
        current period is due (no backlog). The key includes the reopen count, so a reopened case
        starts its periods again.
        """
        now = now or self.clock()
        due = []
        for case in self.list("new"):
            hours = reminder_hours(self.settings, case.severity)
            if hours <= 0:
                continue
            period = int((now - _parse(case.status_since)) / timedelta(hours=hours))
            if period < 1:
                continue
            key = f"reminder:{case.ref}:{period}" + (f":r{case.reopen_count}" if case.reopen_count else "")
            sent = self._db.execute(
                "SELECT 1 FROM case_reminders WHERE ref = ? AND key = ?", [case.ref, key]
            ).fetchone()
            if not sent:
                due.append(DueReminder(case, period, key, hours))
        return due

    def record_reminder(self, reminder: DueReminder) -> bool:
        """Mark a reminder as sent (queued); False if it was already (another process, a restart)."""
        now = self._now()
        with self._write() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO case_reminders (ref, key, sent_at) VALUES (?, ?, ?)",
                [reminder.case.ref, reminder.key, now],
            ).rowcount
            if inserted:
                detail = {"period": reminder.period, "after_hours": reminder.hours, "message": reminder.key}
                status = reminder.case.status
                self._log(db, reminder.case.ref, SYSTEM_ACTOR, "reminder", status, status, detail, now)
        return bool(inserted)

    # -- audit helpers -----------------------------------------------------------------------
    def _log(
        self,
        db: Database,
        ref: str | None,
        actor: str,
        action: str,
        from_status: str | None,
        to_status: str | None,
        detail: Mapping[str, Any],
        at: str,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO case_events (ref, at, actor, action, from_status, to_status, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [ref, at, actor, action, from_status, to_status, json.dumps(dict(detail), ensure_ascii=False)],
        )
        return int(cursor.lastrowid)

    def _entry(self, db: Database, entry_id: int) -> AuditEntry:
        return _entry_from_row(db.execute("SELECT * FROM case_events WHERE id = ?", [entry_id]).fetchone())


_OPEN_SQL = "('new', 'acknowledged', 'in_progress')"


def _apply(
    case: Case, action: str, actor: str, note: str | None, outcome: str | None, assignee: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The column changes and audit detail for ``action``; CaseTransitionError if not allowed."""
    allowed, _ = TRANSITIONS[action]
    if case.status not in allowed:
        raise CaseTransitionError(_refusal(case, action))
    if action == "acknowledge":
        return {"status": "acknowledged"}, {}
    if action == "assign":
        if case.assignee == assignee:
            whom = "you" if assignee == actor else assignee
            raise CaseTransitionError(f"{case.ref} is already assigned to {whom}")
        return {"status": "in_progress", "assignee": assignee}, {"from": case.assignee, "to": assignee}
    if action == "note":
        if not note:
            raise CaseTransitionError("a note needs some text")
        return {}, {"text": note}
    if action == "resolve":
        if not outcome:
            raise CaseTransitionError(f"resolving {case.ref} needs an outcome")
        return {"status": "resolved", "outcome": outcome}, {"outcome": outcome}
    if action == "close":
        return {"status": "closed"}, {}
    # reopen: back to whoever had it, or to the queue
    status = "in_progress" if case.assignee else "new"
    return {"status": status, "outcome": None, "reopen_count": case.reopen_count + 1}, {
        "previous_outcome": case.outcome
    }


def _refusal(case: Case, action: str) -> str:
    status = case.status.replace("_", " ")
    if action == "acknowledge":
        return f"{case.ref} is {status}: only a new case can be acknowledged"
    if action == "reopen":
        return f"{case.ref} is {status}: only a resolved or closed case can be reopened"
    if action == "close":
        return f"{case.ref} is {status}: resolve it (with an outcome) before closing it"
    return f"{case.ref} is {status}: reopen it first to {action} it"


def _status_stamps(case: Case, status: str, now: str) -> dict[str, Any]:
    if status in ("acknowledged", "in_progress"):
        stamps = {} if case.acknowledged_at else {"acknowledged_at": now}  # the first response counts
        return stamps | (
            {"resolved_at": None, "closed_at": None} if case.status in ("resolved", "closed") else {}
        )
    if status == "resolved":
        return {"resolved_at": now}
    if status == "closed":
        return {"closed_at": now}
    return {"resolved_at": None, "closed_at": None}  # reopened to new


def reminder_hours(settings: CaseSettings, severity: str) -> float:
    """The reminder delay for a severity (0: no reminders)."""
    return settings.remind_high_after_hours if severity == "high" else settings.remind_medium_after_hours


def sort_for_triage(cases: Iterable[Case]) -> list[Case]:
    """High severity first, then the longest waiting (oldest) first: the order the team works in."""
    return sorted(cases, key=lambda c: (_SEVERITY_ORDER.get(c.severity, 9), c.created_at, c.ref))


def check_settings(settings: CaseSettings) -> None:
    """Stop start-up when cases are enabled but cannot work.

    Raises:
        CaseSettingsError: no channel, or nobody in the team.
    """
    if not settings.enabled:
        return
    if not settings.channel:
        raise CaseSettingsError(
            "cases.enabled is true but cases.channel is empty: set it to the research-security team's "
            "private channel id (channel details → About → Channel ID), or set cases.enabled: false"
        )
    if not settings.team_users and not settings.team_usergroup:
        raise CaseSettingsError(
            "cases.enabled is true but there is no team: list the team's Slack user ids in "
            "cases.team_users or give a user group id in cases.team_usergroup"
        )


# -- the team --------------------------------------------------------------------------------


class Team:
    """Who may see and work cases: ``team_users``, and the members of ``team_usergroup``.

    The user group's members come from ``fetch_members(group_id)`` (the Slack adapter passes
    ``usergroups.users.list``), cached for ``usergroup_refresh_minutes``. If a refresh fails the
    last known list stays in use; if there never was one, only ``team_users`` count.
    """

    def __init__(
        self,
        settings: CaseSettings,
        fetch_members: Callable[[str], Sequence[str]] | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.fetch_members = fetch_members
        self.monotonic = monotonic
        self._group: frozenset[str] = frozenset()
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def is_member(self, user: str | None) -> bool:
        if not user:
            return False
        return user in self.settings.team_users or user in self._group_members()

    def members(self) -> frozenset[str]:
        return frozenset(self.settings.team_users) | self._group_members()

    def refresh(self) -> None:
        """Fetch the user group's members now (errors keep the last known list)."""
        group = self.settings.team_usergroup
        if not group or self.fetch_members is None:
            return
        with self._lock:
            self._refresh(group)

    def _group_members(self) -> frozenset[str]:
        group = self.settings.team_usergroup
        if not group or self.fetch_members is None:
            return frozenset()
        with self._lock:
            stale = self._fetched_at is None or (
                self.monotonic() - self._fetched_at >= self.settings.usergroup_refresh_minutes * 60
            )
            if stale:
                self._refresh(group)
            return self._group

    def _refresh(self, group: str) -> None:
        try:
            self._group = frozenset(str(user) for user in self.fetch_members(group))
            logger.info("team user group %s: %d members", group, len(self._group))
        except Exception as exc:  # keep the last list; the next check tries again after the interval
            logger.warning(
                "could not refresh team user group %s (%s); keeping %d members", group, exc, len(self._group)
            )
        self._fetched_at = self.monotonic()


# -- escalation ------------------------------------------------------------------------------


class SupportsEnqueue(Protocol):
    def enqueue(
        self,
        method: str,
        payload: dict,
        *,
        kind: str,
        dedupe_key: str | None = None,
        case_ref: str | None = None,
    ) -> int: ...


class CaseMessages(Protocol):
    """The Block Kit renderer ``Escalation`` uses (``bot.slack.cases_render`` is one)."""

    def build_case_card(self, case: Case) -> dict[str, Any]: ...

    def build_researcher_notice(self, case: Case, *, team_name: str, outcome: str) -> dict[str, Any]: ...

    def build_thread_update(self, case: Case, entry: AuditEntry) -> dict[str, Any]: ...

    def build_reminder(self, case: Case, reminder: DueReminder) -> dict[str, Any]: ...


def card_key(ref: str) -> str:
    """The outbox dedupe key of a case's card; ``{"$delivered": card_key(ref), "field": "ts"}`` is its ts."""
    return f"case-card:{ref}"


def card_ts(ref: str) -> dict[str, str]:
    """A payload value the outbox replaces with the card's ts once the card is delivered."""
    return {"$delivered": card_key(ref), "field": "ts"}


class Escalation:
    """Opens (or joins) cases and tells the team and the researcher, through the outbox.

    The case is always written first; only then are messages queued, each with a dedupe key, so
    a retried event, a restart or a Slack outage can neither lose a case nor send a card twice.

    Args:
        store: The cases database.
        outbox: Anything with ``enqueue(method, payload, *, kind, dedupe_key, case_ref)``.
        settings: The ``cases`` settings (the team's channel).
        messages: The renderer (default ``bot.slack.cases_render``, which is pure).
        team_name: How the researcher notice names the team.
        wake: Called after queueing, to wake the delivery worker (may be None).
    """

    def __init__(
        self,
        store: CaseStore,
        outbox: SupportsEnqueue,
        settings: CaseSettings,
        *,
        messages: CaseMessages | None = None,
        team_name: str = "Research Security Team",
        wake: Callable[[], None] | None = None,
    ) -> None:
        if messages is None:
            from bot.slack import cases_render as messages  # pure Block Kit, no Slack libraries
        self.store = store
        self.outbox = outbox
        self.settings = settings
        self.messages = messages
        self.team_name = team_name
        self.wake = wake

    # -- the shared interface ----------------------------------------------------------------
    def open_case(
        self, *, notify_requester: bool = True, response_url: str | None = None, **fields: Any
    ) -> Case:
        """``CaseStore.open_or_join`` with the same arguments, then the card and notices; returns the case."""
        return self.escalate(notify_requester=notify_requester, response_url=response_url, **fields).case

    def escalate(
        self,
        *,
        source: str,
        severity: str,
        requester: str,
        channel: str,
        question: str,
        rules: Iterable[Any] = (),
        thread_ts: str | None = None,
        message_ts: str | None = None,
        permalink: str | None = None,
        attachment: Mapping[str, Any] | None = None,
        actor: str | None = None,
        dedupe_key: str | None = None,
        response_url: str | None = None,
        notify_requester: bool = True,
        notice_after: str | None = None,
    ) -> Escalated:
        """Open or join a case (``CaseStore.open_or_join``), then queue what the people need to see.

        Opened: the case card to the team's channel (dedupe key ``case-card:<ref>``) and a calm
        notice with the reference to the researcher: in their DM thread, or, from a channel, a
        private (ephemeral, or ``response_url``) note in their thread plus a copy in their DM;
        never the question or the rules. A follow-up or a joined concern: a note in the card's
        thread, and (joined) a notice to the researcher. A duplicate: nothing.
        ``notify_requester=False`` leaves the researcher to the caller (e.g. a screening result
        that shows the reference itself); ``notice_after`` (an outbox dedupe key, e.g. the
        answer's) holds the notice until that message is sent.
        """
        result = self.store.open_or_join(
            source=source,
            severity=severity,
            requester=requester,
            channel=channel,
            question=question,
            rules=rules,
            thread_ts=thread_ts,
            message_ts=message_ts,
            permalink=permalink,
            attachment=attachment,
            actor=actor,
            dedupe_key=dedupe_key,
        )
        if result.outcome == "duplicate":
            return result
        case = result.case
        if result.opened:
            self._queue(case, "chat.postMessage", self._card_payload(case), "case_card", card_key(case.ref))
        elif result.entry is not None:
            self._queue_thread_update(case, result.entry)
            if result.entry.detail.get("severity_raised"):  # the card must show it
                self.refresh_card(case, result.entry)
        # The researcher hears of a new case, of joining their open one, and (asking for a person)
        # always: not of each follow-up in a thread they already have the reference in.
        asked = source == "researcher-request"
        notify = notify_requester and (result.opened or result.outcome == "joined" or asked)
        if notify:
            suffix = "" if result.opened else f":{result.entry.id if result.entry else 'join'}"
            self._queue_notice(case, result.outcome, channel, thread_ts, response_url, suffix, notice_after)
        self._wake()
        return result

    def transition(
        self,
        ref: str,
        action: str,
        actor: str,
        note: str | None = None,
        outcome: str | None = None,
        *,
        assignee: str | None = None,
    ) -> CaseChange:
        """``CaseStore.transition``, then the card updated in place and the action in its thread."""
        change = self.store.transition(ref, action, actor, note, outcome, assignee=assignee)
        self.refresh_card(change.case, change.entry)
        self._queue_thread_update(change.case, change.entry)
        self._wake()
        return change

    def refresh_card(self, case: Case, entry: AuditEntry) -> None:
        """Queue a ``chat.update`` of the case's card (sent once the card itself is delivered)."""
        payload = self._card_payload(case) | {"ts": card_ts(case.ref)}
        payload.pop("unfurl_links", None)
        payload.pop("unfurl_media", None)
        self._queue(
            case, "chat.update", payload, "case_card_update", f"case-card-update:{case.ref}:{entry.id}"
        )

    def send_due_reminders(self, now: datetime | None = None) -> int:
        """Queue a reminder in the team's channel for each case due one; returns how many were queued.

        Queued with the dedupe key ``reminder:<ref>:<period>`` before being recorded, so a crash in
        between queues nothing twice, and a restart does not remind again within the period.
        """
        sent = 0
        for reminder in self.store.due_reminders(now):
            message = self.messages.build_reminder(reminder.case, reminder)
            payload = {"channel": self.settings.channel, "thread_ts": card_ts(reminder.case.ref)}
            payload |= {"reply_broadcast": True, "unfurl_links": False, "unfurl_media": False} | message
            self.outbox.enqueue(
                "chat.postMessage",
                payload,
                kind="case_reminder",
                dedupe_key=reminder.key,
                case_ref=reminder.case.ref,
            )
            if self.store.record_reminder(reminder):
                sent += 1
                logger.info("reminder %d queued for case %s", reminder.period, reminder.case.ref)
        if sent:
            self._wake()
        return sent

    # -- queueing ----------------------------------------------------------------------------
    def _card_payload(self, case: Case) -> dict[str, Any]:
        card = self.messages.build_case_card(case)
        return {"channel": self.settings.channel, "unfurl_links": False, "unfurl_media": False} | card

    def _queue_thread_update(self, case: Case, entry: AuditEntry) -> None:
        message = self.messages.build_thread_update(case, entry)
        payload = {"channel": self.settings.channel, "thread_ts": card_ts(case.ref)}
        payload |= {"unfurl_links": False, "unfurl_media": False} | message
        self._queue(case, "chat.postMessage", payload, "case_thread", f"case-event:{case.ref}:{entry.id}")

    def _queue_notice(
        self,
        case: Case,
        outcome: str,
        channel: str,
        thread_ts: str | None,
        response_url: str | None,
        suffix: str,
        after: str | None = None,
    ) -> None:
        notice = self.messages.build_researcher_notice(case, team_name=self.team_name, outcome=outcome)
        key = f"case-notice:{case.ref}{suffix}"
        plain = {"unfurl_links": False, "unfurl_media": False}
        if channel.startswith("D") and not response_url:  # their DM with the bot: reply there
            payload = {"channel": channel} | plain | notice | _thread(thread_ts)
            self._queue(case, "chat.postMessage", payload, "case_notice", key, after)
            return
        if response_url:
            message = {"response_type": "ephemeral", "replace_original": False} | notice
            payload = {"url": response_url, "message": message}
            self._queue(case, "response_url", payload, "case_notice", key, after)
        elif channel:
            payload = {"channel": channel, "user": case.requester} | notice | _thread(thread_ts)
            self._queue(case, "chat.postEphemeral", payload, "case_notice", key, after)
        # A copy in their DM keeps the reference where others cannot see it, and where it lasts.
        payload = {"channel": case.requester} | plain | notice
        self._queue(
            case, "chat.postMessage", payload, "case_notice_dm", f"case-notice-dm:{case.ref}{suffix}", after
        )

    def _queue(
        self,
        case: Case,
        method: str,
        payload: dict[str, Any],
        kind: str,
        key: str,
        after: str | None = None,
    ) -> None:
        options = {"after": after} if after else {}
        self.outbox.enqueue(method, payload, kind=kind, dedupe_key=key, case_ref=case.ref, **options)
        if kind not in NOTIFICATION_KINDS:
            return
        try:
            self.store.record_notification(case.ref, key, "queued")
        except sqlite3.Error:  # the message is queued; only its audit line is missing
            logger.exception("could not record the queued notification %s", key)

    def _wake(self) -> None:
        if self.wake is not None:
            try:
                self.wake()
            except Exception:  # the worker also polls; a failed wake only delays delivery
                logger.exception("could not wake the delivery worker")


def _thread(thread_ts: str | None) -> dict[str, str]:
    return {"thread_ts": thread_ts} if thread_ts else {}


# -- export ----------------------------------------------------------------------------------

CASE_FIELDS = (
    "ref",
    "created_at",
    "updated_at",
    "status",
    "severity",
    "source",
    "requester",
    "channel",
    "thread_ts",
    "message_ts",
    "permalink",
    "question",
    "rules",
    "assignee",
    "outcome",
    "latest_note",
    "latest_note_by",
    "acknowledged_at",
    "resolved_at",
    "closed_at",
    "reopen_count",
    "attachment",
)
AUDIT_FIELDS = ("id", "ref", "at", "actor", "action", "from_status", "to_status", "detail")


def export_cases(store: CaseStore, fmt: str, *, audit: bool = False, status: str | None = None) -> str:
    """Cases (or, with ``audit``, the audit log) as ``csv`` or ``json`` text.

    JSON cases carry their notes and their whole audit log; CSV has one row per case (or entry),
    lists and objects as JSON text, and cells that a spreadsheet would run as a formula prefixed with '.
    """
    if fmt not in ("csv", "json"):
        raise CaseError(f"unknown export format {fmt!r} (expected csv or json)")
    if audit:
        rows = [entry.to_dict() for entry in store.audit()]
        fields = AUDIT_FIELDS
    else:
        cases = store.list(status)
        rows = [case.to_dict() for case in cases]
        if fmt == "json":
            for row, case in zip(rows, cases, strict=True):
                row["audit"] = [entry.to_dict() for entry in store.audit(case.ref)]
        fields = CASE_FIELDS
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(row.get(key)) for key in fields})
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # keep spreadsheets from running user text as a formula
    return value


# -- helpers ---------------------------------------------------------------------------------


def _case_fields(
    source: str,
    severity: str,
    requester: str,
    channel: str,
    question: str,
    rules: Iterable[Any],
    attachment: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if source not in SOURCES:
        raise CaseError(f"unknown case source {source!r} (expected one of {', '.join(SOURCES)})")
    if severity not in SEVERITIES:
        raise CaseError(f"unknown severity {severity!r} (expected one of {', '.join(SEVERITIES)})")
    question = " ".join((question or "").split())
    if not question:
        raise CaseError("a case needs the question (or what the researcher asked for)")
    matched = [asdict(_rule(item)) for item in rules]
    try:
        attached = json.dumps(dict(attachment), ensure_ascii=False, default=str) if attachment else None
    except (TypeError, ValueError) as exc:
        raise CaseError(f"the case attachment cannot be stored as JSON ({exc})") from exc
    return {
        "source": source,
        "severity": severity,
        "requester": requester or "",
        "channel": channel or "",
        "question": question[:MAX_QUESTION_CHARS],
        "rules": json.dumps(matched, ensure_ascii=False),
        "concern": ",".join(sorted({rule["id"] for rule in matched})),
        "attachment": attached,
    }


def _rule(item: Any) -> MatchedRule:
    if isinstance(item, MatchedRule):
        return item
    get = item.get if isinstance(item, Mapping) else lambda name, default="": getattr(item, name, default)
    rule_id = str(get("id", "") or "").strip()
    if not rule_id:
        raise CaseError("a matched rule needs an id")
    return MatchedRule(rule_id, str(get("description", "") or ""), str(get("reason", "") or ""))


def _ids(fields: Mapping[str, Any]) -> list[str]:
    return [rule["id"] for rule in json.loads(fields["rules"])]


def _statuses(status: str | Iterable[str] | None) -> tuple[str, ...]:
    if status is None:
        return ()
    wanted = [status] if isinstance(status, str) else list(status)
    expanded: list[str] = []
    for item in wanted:
        item = item.strip().lower().replace("-", "_").replace(" ", "_")
        if item == "open":
            expanded.extend(OPEN_STATUSES)
        elif item in STATUSES:
            expanded.append(item)
        else:
            raise CaseError(f"unknown status {item!r} (expected one of {', '.join(STATUSES)}, or open)")
    return tuple(dict.fromkeys(expanded))


def _clean_text(text: str | None, limit: int) -> str | None:
    text = (text or "").strip()
    return text[:limit] if text else None


def _keyed_ref(db: Database, key: str) -> str | None:
    row = db.execute("SELECT ref FROM case_keys WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def _remember_key(db: Database, key: str, ref: str, now: str) -> None:
    db.execute("INSERT OR IGNORE INTO case_keys (key, ref, created_at) VALUES (?, ?, ?)", [key, ref, now])


def _known_ref(db: Database, ref: str) -> str | None:
    wanted = (ref or "").strip().upper()
    return wanted if db.execute("SELECT 1 FROM cases WHERE ref = ?", [wanted]).fetchone() else None


def _case_from_row(row: Mapping[str, Any], notes: tuple[Note, ...]) -> Case:
    return Case(
        ref=row["ref"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status=row["status"],
        status_since=row["status_since"],
        severity=row["severity"],
        source=row["source"],
        requester=row["requester"] or "",
        channel=row["channel"] or "",
        thread_ts=row["thread_ts"],
        message_ts=row["message_ts"],
        permalink=row["permalink"],
        question=row["question"],
        rules=tuple(MatchedRule(**rule) for rule in json.loads(row["rules"] or "[]")),
        attachment=json.loads(row["attachment"]) if row["attachment"] else None,
        assignee=row["assignee"],
        outcome=row["outcome"],
        latest_note=row["latest_note"],
        latest_note_by=row["latest_note_by"],
        acknowledged_at=row["acknowledged_at"],
        resolved_at=row["resolved_at"],
        closed_at=row["closed_at"],
        reopen_count=int(row["reopen_count"] or 0),
        notes=notes,
    )


def _entry_from_row(row: Sequence[Any]) -> AuditEntry:
    entry_id, ref, at, actor, action, from_status, to_status, detail = row
    return AuditEntry(entry_id, ref, at, actor, action, from_status, to_status, json.loads(detail or "{}"))


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
