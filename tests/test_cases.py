"""Cases (bot/cases.py): references, the workflow, the audit log, joining, reminders, the team, escalation."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.cases import (
    STATUSES,
    TRANSITIONS,
    CaseError,
    CaseNotFoundError,
    CaseSettingsError,
    CaseStore,
    CaseTransitionError,
    Escalation,
    Team,
    card_key,
    check_settings,
    export_cases,
    sort_for_triage,
)
from bot.config import CaseSettings, ConfigError, OutboxSettings, config_from_dict
from bot.outbox import Outbox

TEAM_CHANNEL = "G0SECURITY"
OFFICER = "U0OFFICER"
RESEARCHER = "U0RESEARCHER"
RULES = [
    {"id": "military_end_use", "description": "Military or WMD end use", "reason": "mentions 'missile'"},
    {"id": "sanctioned_partner", "description": "Sanctioned partner", "reason": "names NUDT"},
]
QUESTION = "Can I share our missile guidance code with NUDT?"


class Clock:
    """A settable UTC clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings() -> CaseSettings:
    return CaseSettings(enabled=True, channel=TEAM_CHANNEL, team_users=(OFFICER,))


@pytest.fixture
def store(tmp_path, settings, clock):
    store = CaseStore(tmp_path / "state.db", settings, clock=clock)
    yield store
    store.close()


def open_case(store: CaseStore, **overrides):
    fields = dict(
        source="trigger",
        severity="high",
        requester=RESEARCHER,
        channel="C0GENERAL",
        question=QUESTION,
        rules=RULES,
        thread_ts="1700000000.000100",
        message_ts="1700000000.000100",
    )
    return store.open_case(**(fields | overrides))


# -- references and records ------------------------------------------------------------------


def test_references_are_prefix_year_and_a_number_in_sequence_within_the_year(tmp_path, clock):
    store = CaseStore(tmp_path / "s.db", CaseSettings(reference_prefix="TR"), clock=clock)
    assert [open_case(store).ref for _ in range(3)] == ["TR-2026-0001", "TR-2026-0002", "TR-2026-0003"]
    clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert open_case(store).ref == "TR-2027-0001"
    clock.now = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)  # a clock set back cannot reuse a number
    assert open_case(store).ref == "TR-2026-0004"


def test_references_are_unique_when_opened_from_many_threads(tmp_path, settings):
    store = CaseStore(tmp_path / "s.db", settings)
    refs: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            ref = open_case(store, thread_ts=None).ref
            with lock:
                refs.append(ref)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    year = datetime.now(UTC).year
    assert sorted(refs) == [f"RS-{year}-{n:04d}" for n in range(1, 61)]


def test_a_case_keeps_everything_the_team_needs(store, clock):
    screening = {"rating": "red", "matches": [{"entry": "NUDT", "list": "starter"}]}
    case = open_case(
        store, source="pre-screen", permalink="https://x.slack.com/archives/C/p1", attachment=screening
    )
    got = store.get(case.ref.lower())
    assert got == case
    assert (got.status, got.severity, got.source, got.requester) == ("new", "high", "pre-screen", RESEARCHER)
    assert got.created_at == got.updated_at == "2026-03-02T09:00:00+00:00"
    assert got.rule_ids == ("military_end_use", "sanctioned_partner")
    assert (
        got.rules[0].description == "Military or WMD end use" and got.rules[0].reason == "mentions 'missile'"
    )
    assert got.attachment == screening and got.permalink.endswith("/p1")
    assert got.assignee is None and got.outcome is None and got.notes == ()
    assert json.loads(json.dumps(got.to_dict()))["rules"][1]["id"] == "sanctioned_partner"


def test_rules_can_be_the_triggers_records(store):
    from bot.triggers import RuleMatch

    match = RuleMatch(
        "talent_programme", "medium", "Talent programmes", "mentions 'Thousand Talents'", "g.md"
    )
    case = open_case(store, severity="medium", rules=[match])
    assert case.rules[0].id == "talent_programme" and case.rules[0].reason == "mentions 'Thousand Talents'"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": "email"}, "unknown case source"),
        ({"severity": "critical"}, "unknown severity"),
        ({"question": "   "}, "needs the question"),
        ({"rules": [{"description": "no id"}]}, "needs an id"),
        ({"attachment": {"x": object()}}, None),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(store, change, message):
    if message is None:  # an object is stored as its text (json default=str), not refused
        assert open_case(store, **change).attachment["x"].startswith("<object")
        return
    with pytest.raises(CaseError, match=message):
        open_case(store, **change)
    assert store.list() == []


def test_unknown_reference_and_status(store):
    with pytest.raises(CaseNotFoundError, match="no case 'RS-2026-0099'"):
        store.get("RS-2026-0099")
    with pytest.raises(CaseError, match="unknown status 'pending'"):
        store.list("pending")


# -- the workflow ----------------------------------------------------------------------------


def _case_in(store: CaseStore, status: str, assigned: bool = False):
    case = open_case(store, thread_ts=None)
    steps = {
        "new": [],
        "acknowledged": ["acknowledge"],
        "in_progress": ["assign"],
        "resolved": ["resolve"],
        "closed": ["resolve", "close"],
    }[status]
    if assigned and status in ("resolved", "closed"):
        steps = ["assign", *steps]
    for action in steps:
        store.transition(case.ref, action, OFFICER, outcome="Advice given to the researcher")
    assert store.get(case.ref).status == status
    return store.get(case.ref)


EXPECTED_TO = {
    ("acknowledge", "new"): "acknowledged",
    ("assign", "new"): "in_progress",
    ("assign", "acknowledged"): "in_progress",
    ("resolve", "new"): "resolved",
    ("resolve", "acknowledged"): "resolved",
    ("resolve", "in_progress"): "resolved",
    ("close", "resolved"): "closed",
    ("reopen", "resolved"): "new",  # unassigned: back to the queue
    ("reopen", "closed"): "new",
    **{("note", status): status for status in STATUSES},
}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", list(TRANSITIONS))
def test_every_action_from_every_status(store, action, status):
    case = _case_in(store, status)
    expected = EXPECTED_TO.get((action, status))
    if action == "assign" and status == "in_progress":  # assigned to the officer already: another may take it
        change = store.transition(case.ref, "assign", "U0COLLEAGUE")
        assert (change.case.status, change.case.assignee) == ("in_progress", "U0COLLEAGUE")
        return
    kwargs = {"note": "checked with legal", "outcome": "Collaboration declined"}
    before = len(store.audit(case.ref))
    if expected is None:
        with pytest.raises(CaseTransitionError) as refused:
            store.transition(case.ref, action, OFFICER, **kwargs)
        assert case.ref in str(refused.value)
        assert store.get(case.ref) == case  # unchanged
        entries = store.audit(case.ref)
        assert len(entries) == before + 1 and entries[-1].action == "refused"
        assert entries[-1].detail["attempted"] == action and entries[-1].actor == OFFICER
        return
    change = store.transition(case.ref, action, OFFICER, **kwargs)
    assert change.case.status == expected
    assert change.entry.action == action and change.entry.actor == OFFICER
    assert (change.entry.from_status, change.entry.to_status) == (status, expected)
    assert change.case.status_since == change.case.updated_at or expected == status


def test_reopen_returns_an_assigned_case_to_its_assignee(store):
    case = _case_in(store, "closed", assigned=True)
    change = store.transition(case.ref, "reopen", OFFICER, note="the partner came back")
    assert change.case.status == "in_progress" and change.case.assignee == OFFICER
    assert change.case.outcome is None and change.case.resolved_at is None and change.case.closed_at is None
    assert change.case.reopen_count == 1 and change.entry.detail["previous_outcome"]


def test_resolve_needs_an_outcome_and_a_note_needs_text(store):
    case = open_case(store)
    with pytest.raises(CaseTransitionError, match="needs an outcome"):
        store.transition(case.ref, "resolve", OFFICER, outcome="  ")
    with pytest.raises(CaseTransitionError, match="needs some text"):
        store.transition(case.ref, "note", OFFICER, note="")
    with pytest.raises(CaseError, match="unknown action"):
        store.transition(case.ref, "escalate", OFFICER)
    with pytest.raises(CaseNotFoundError):
        store.transition("RS-2026-0404", "acknowledge", OFFICER)
    assert store.get(case.ref).status == "new"
    assert [e.action for e in store.audit(case.ref)] == ["created", "refused", "refused"]


def test_assigning_twice_to_the_same_person_is_refused(store):
    case = open_case(store)
    store.transition(case.ref, "assign", OFFICER)
    with pytest.raises(CaseTransitionError, match="already assigned to you"):
        store.transition(case.ref, "assign", OFFICER)


def test_the_audit_log_records_the_whole_life_of_a_case(store, clock):
    case = open_case(store)
    clock.advance(minutes=5)
    store.transition(case.ref, "acknowledge", OFFICER)
    clock.advance(minutes=5)
    store.transition(case.ref, "assign", OFFICER)
    store.transition(case.ref, "note", OFFICER, note="Spoke to the researcher; no data shared yet.")
    store.record_refusal("U0INTRUDER", "acknowledge", ref=case.ref, reason="not a team member")
    clock.advance(hours=2)
    store.transition(case.ref, "resolve", OFFICER, outcome="Collaboration declined", note="Declined by PVC.")
    store.transition(case.ref, "close", OFFICER)
    entries = store.audit(case.ref)
    assert [(e.action, e.actor) for e in entries] == [
        ("created", RESEARCHER),
        ("acknowledge", OFFICER),
        ("assign", OFFICER),
        ("note", OFFICER),
        ("refused", "U0INTRUDER"),
        ("resolve", OFFICER),
        ("note", OFFICER),
        ("close", OFFICER),
    ]
    assert entries[0].at == "2026-03-02T09:00:00+00:00" and entries[1].at == "2026-03-02T09:05:00+00:00"
    assert entries[2].detail == {"from": None, "to": OFFICER}
    assert entries[5].detail == {"outcome": "Collaboration declined", "note": "Declined by PVC."}
    final = store.get(case.ref)
    assert final.status == "closed" and final.outcome == "Collaboration declined"
    assert final.acknowledged_at == "2026-03-02T09:05:00+00:00" and final.closed_at == final.updated_at
    assert [note.text for note in final.notes] == [
        "Spoke to the researcher; no data shared yet.",
        "Declined by PVC.",
    ]
    assert final.latest_note == "Declined by PVC." and final.latest_note_by == OFFICER
    assert store.counts()["closed"] == 1


def test_the_audit_log_cannot_be_changed_or_deleted(store):
    case = open_case(store)
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE case_events SET actor = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM case_events")
    db.close()
    assert not hasattr(store, "delete") and not hasattr(store, "update_audit")
    assert store.audit(case.ref)[0].actor == RESEARCHER


# -- one case per concern --------------------------------------------------------------------


def test_a_retried_event_gives_one_case(store):
    first = store.open_or_join(**_fields(), dedupe_key="message:C0GENERAL:1.1")
    again = store.open_or_join(**_fields(), dedupe_key="message:C0GENERAL:1.1")
    assert first.outcome == "opened" and again.outcome == "duplicate" and again.case.ref == first.case.ref
    assert len(store.list()) == 1 and len(store.audit(first.case.ref)) == 1
    assert store.open_case(**_fields(), dedupe_key="message:C0GENERAL:1.1").ref == first.case.ref


def _fields(**overrides):
    fields = dict(
        source="trigger",
        severity="medium",
        requester=RESEARCHER,
        channel="C0GENERAL",
        question=QUESTION,
        rules=RULES[:1],
        thread_ts="1.1",
        message_ts="1.1",
    )
    return fields | overrides


def test_a_follow_up_in_the_thread_adds_to_the_open_case(store):
    opened = store.open_or_join(**_fields())
    follow = store.open_or_join(
        **_fields(question="and the guidance firmware?", rules=[], message_ts="1.2", severity="high")
    )
    assert follow.outcome == "follow_up" and follow.case.ref == opened.case.ref
    assert follow.case.severity == "high"  # raised by the follow-up, never lowered
    assert (
        follow.entry.action == "follow_up" and follow.entry.detail["question"] == "and the guidance firmware?"
    )
    assert follow.entry.detail["severity_raised"] == "medium -> high"
    assert len(store.list()) == 1 and store.has_open_case("C0GENERAL", "1.1")
    store.transition(opened.case.ref, "resolve", OFFICER, outcome="Advice given to the researcher")
    assert not store.has_open_case("C0GENERAL", "1.1")
    later = store.open_or_join(**_fields(message_ts="1.3"))
    assert later.outcome == "opened"  # a resolved case is not added to: a new one is opened


def test_the_same_person_and_concern_within_the_window_joins_the_open_case(store, clock):
    opened = store.open_or_join(**_fields())
    clock.advance(hours=100)
    joined = store.open_or_join(**_fields(channel="D0DM", thread_ts=None, message_ts="2.1"))
    assert joined.outcome == "joined" and joined.case.ref == opened.case.ref
    other_person = store.open_or_join(**_fields(requester="U0OTHER", thread_ts=None, message_ts="2.2"))
    other_concern = store.open_or_join(**_fields(rules=RULES[1:], thread_ts=None, message_ts="2.3"))
    assert other_person.outcome == other_concern.outcome == "opened"
    clock.advance(hours=167)  # within the window of the last question (the join), not the first
    assert store.open_or_join(**_fields(thread_ts=None, message_ts="2.4")).outcome == "joined"
    clock.advance(hours=169)
    assert store.open_or_join(**_fields(thread_ts=None, message_ts="2.5")).outcome == "opened"


def test_no_rules_never_joins_by_concern(store):
    store.open_or_join(**_fields(rules=[], source="researcher-request", thread_ts=None))
    again = store.open_or_join(
        **_fields(rules=[], source="researcher-request", thread_ts=None, message_ts="9")
    )
    assert again.outcome == "opened"


# -- reminders -------------------------------------------------------------------------------


def test_an_unacknowledged_case_is_due_one_reminder_per_period(store, clock):
    high = open_case(store, thread_ts=None)
    medium = open_case(store, severity="medium", thread_ts=None)
    clock.advance(hours=3, minutes=59)
    assert store.due_reminders() == []
    clock.advance(minutes=2)
    [due] = store.due_reminders()
    assert (due.case.ref, due.period, due.key) == (high.ref, 1, f"reminder:{high.ref}:1")
    assert store.record_reminder(due) and not store.record_reminder(due)
    assert store.due_reminders() == []
    clock.advance(hours=4)
    assert [d.key for d in store.due_reminders()] == [f"reminder:{high.ref}:2"]
    clock.advance(hours=40)  # 48 h: the medium case is due its first; the high one only its current period
    assert sorted(d.key for d in store.due_reminders()) == [
        f"reminder:{high.ref}:12",
        f"reminder:{medium.ref}:1",
    ]
    store.transition(high.ref, "acknowledge", OFFICER)
    assert [d.case.ref for d in store.due_reminders()] == [medium.ref]
    assert store.audit(high.ref)[1].action == "reminder"


def test_reminders_can_be_turned_off_and_restart_after_a_reopen(tmp_path, clock):
    settings = CaseSettings(remind_medium_after_hours=0)
    store = CaseStore(tmp_path / "s.db", settings, clock=clock)
    open_case(store, severity="medium", thread_ts=None)
    case = open_case(store, thread_ts=None)
    store.transition(case.ref, "resolve", OFFICER, outcome="No concern: guidance was enough")
    clock.advance(hours=10)
    store.transition(case.ref, "reopen", OFFICER)
    assert store.due_reminders() == []
    clock.advance(hours=4)
    assert [d.key for d in store.due_reminders()] == [f"reminder:{case.ref}:1:r1"]


# -- the team --------------------------------------------------------------------------------


def test_team_members_are_the_listed_users_and_the_user_group_cached_and_refreshed():
    now = [0.0]
    fetched: list[str] = []
    members = {"S0TEAM": ["U0GROUP1"]}

    def fetch(group: str) -> list[str]:
        fetched.append(group)
        if members.get(group) is None:
            raise RuntimeError("Slack is down")
        return members[group]

    settings = CaseSettings(team_users=(OFFICER,), team_usergroup="S0TEAM", usergroup_refresh_minutes=10)
    team = Team(settings, fetch, monotonic=lambda: now[0])
    assert team.is_member(OFFICER) and team.is_member("U0GROUP1") and not team.is_member("U0OTHER")
    assert not team.is_member("") and not team.is_member(None)
    assert fetched == ["S0TEAM"]  # cached
    members["S0TEAM"] = ["U0GROUP2"]
    now[0] = 599
    assert team.is_member("U0GROUP1")
    now[0] = 600
    assert team.is_member("U0GROUP2") and not team.is_member("U0GROUP1")
    members["S0TEAM"] = None  # a failed refresh keeps the last known list
    now[0] = 1300
    assert team.is_member("U0GROUP2") and team.members() == {OFFICER, "U0GROUP2"}


def test_a_team_whose_group_was_never_read_is_only_the_listed_users():
    def fetch(group: str) -> list[str]:
        raise RuntimeError("no")

    team = Team(CaseSettings(team_users=(OFFICER,), team_usergroup="S0TEAM"), fetch)
    assert team.is_member(OFFICER) and not team.is_member("U0GROUP1")
    assert not Team(CaseSettings()).is_member(OFFICER)


# -- settings --------------------------------------------------------------------------------


def test_enabled_cases_need_a_channel_and_a_team():
    check_settings(CaseSettings())  # disabled: nothing needed
    with pytest.raises(CaseSettingsError, match="cases.channel is empty"):
        check_settings(CaseSettings(enabled=True, team_users=(OFFICER,)))
    with pytest.raises(CaseSettingsError, match="cases.team_users"):
        check_settings(CaseSettings(enabled=True, channel=TEAM_CHANNEL))
    check_settings(CaseSettings(enabled=True, channel=TEAM_CHANNEL, team_usergroup="S0TEAM"))


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ({"channel": "#research-security"}, "cases.channel'.*channel id"),
        ({"team_users": ["@alice"]}, "cases.team_users'.*user ids"),
        ({"team_usergroup": "research-security"}, "cases.team_usergroup'"),
        ({"reference_prefix": "rs-"}, "cases.reference_prefix'"),
        ({"remind_high_after_hours": -1}, "cases.remind_high_after_hours'"),
        ({"usergroup_refresh_minutes": 0}, "cases.usergroup_refresh_minutes'"),
        ({"prescreen_red": "maybe"}, "cases.prescreen_red'"),
        ({"command": "trcase"}, "cases.command'"),
    ],
)
def test_bad_case_settings_name_the_key(cases, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"cases": cases})


def test_case_settings_from_yaml_and_the_environment(tmp_path):
    from bot.config import load_config

    file = tmp_path / "app.yml"
    file.write_text("cases:\n  enabled: true\n  channel: G0SECURITY\n  prescreen_amber: off\n")
    config = load_config(file, env={"TRBOT_CASES_TEAM_USERS": "U0ONE, U0TWO"})
    assert config.cases.team_users == ("U0ONE", "U0TWO") and config.cases.prescreen_amber == "off"


# -- escalation through the outbox -----------------------------------------------------------


@pytest.fixture
def outbox(tmp_path):
    outbox = Outbox(tmp_path / "state.db", OutboxSettings())
    yield outbox
    outbox.close()


@pytest.fixture
def escalation(store, outbox, settings):
    return Escalation(store, outbox, settings, team_name="Research Security Team")


def _queued(outbox: Outbox) -> dict[str, object]:
    return {message.dedupe_key: message for message in outbox.list()}


def test_escalating_from_a_channel_writes_the_case_then_queues_the_card_and_a_private_notice(
    escalation, outbox
):
    result = escalation.escalate(**_fields(severity="high"), dedupe_key="message:C0GENERAL:1.1")
    ref = result.case.ref
    queued = _queued(outbox)
    assert set(queued) == {card_key(ref), f"case-notice:{ref}", f"case-notice-dm:{ref}"}
    card = queued[card_key(ref)]
    assert card.method == "chat.postMessage" and card.case_ref == ref and card.kind == "case_card"
    assert card.payload["channel"] == TEAM_CHANNEL and ref in json.dumps(card.payload)
    assert "missile guidance code" in json.dumps(card.payload)  # the team sees the question
    notice, dm = queued[f"case-notice:{ref}"], queued[f"case-notice-dm:{ref}"]
    assert notice.method == "chat.postEphemeral" and notice.payload["user"] == RESEARCHER
    assert notice.payload["channel"] == "C0GENERAL" and notice.payload["thread_ts"] == "1.1"
    assert dm.method == "chat.postMessage" and dm.payload["channel"] == RESEARCHER
    for message in (notice, dm):  # calm, with the reference, and nothing from the case
        text = json.dumps(message.payload)
        assert ref in text and "missile" not in text and "NUDT" not in text and "Military" not in text
    assert [e.action for e in escalation.store.audit(ref)] == ["created"] + ["notification_queued"] * 3


def test_escalating_from_a_dm_or_a_slash_command(escalation, outbox):
    dm = escalation.escalate(**_fields(channel="D0DM", thread_ts=None, message_ts="5.5"))
    notice = _queued(outbox)[f"case-notice:{dm.case.ref}"]
    assert notice.method == "chat.postMessage" and notice.payload["channel"] == "D0DM"
    assert "thread_ts" not in notice.payload
    slash = escalation.escalate(
        **_fields(thread_ts=None, message_ts=None, rules=RULES[1:]), response_url="https://hooks.example/r"
    )
    reply = _queued(outbox)[f"case-notice:{slash.case.ref}"]
    assert reply.method == "response_url" and reply.payload["url"] == "https://hooks.example/r"
    assert reply.payload["message"]["response_type"] == "ephemeral"


def test_a_duplicate_queues_nothing_and_a_follow_up_only_a_line_in_the_cards_thread(escalation, outbox):
    first = escalation.escalate(**_fields(), dedupe_key="k1")
    count = len(outbox.list())
    assert escalation.escalate(**_fields(), dedupe_key="k1").outcome == "duplicate"
    assert len(outbox.list()) == count
    follow = escalation.escalate(
        **_fields(question="and for the firmware?", message_ts="1.2"), dedupe_key="k2"
    )
    [line] = [m for m in outbox.list() if m.kind == "case_thread"]
    assert follow.outcome == "follow_up" and line.case_ref == first.case.ref
    assert line.payload["thread_ts"] == {"$delivered": card_key(first.case.ref), "field": "ts"}
    assert "and for the firmware?" in line.payload["text"]
    assert outbox.find(f"case-card-update:{first.case.ref}:{follow.entry.id}") is None  # nothing to show
    raised = escalation.escalate(**_fields(question="now with a missile", message_ts="1.3", severity="high"))
    update = outbox.find(f"case-card-update:{first.case.ref}:{raised.entry.id}")
    assert raised.case.severity == "high" and "high severity" in json.dumps(update.payload)
    assert not [m for m in outbox.list() if m.kind.startswith("case_notice") and m.id > line.id]


def test_joining_tells_the_researcher_which_case(escalation, outbox):
    first = escalation.escalate(**_fields())
    joined = escalation.escalate(**_fields(channel="D0DM", thread_ts=None, message_ts="7.7"))
    assert joined.outcome == "joined"
    notices = [m for m in outbox.list() if m.kind == "case_notice" and m.payload["channel"] == "D0DM"]
    assert len(notices) == 1 and first.case.ref in notices[0].payload["text"]
    assert "added this to your open case" in notices[0].payload["text"]


def test_the_case_is_kept_when_queueing_fails(store, settings):
    class BrokenOutbox:
        def enqueue(self, *args, **kwargs):
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        Escalation(store, BrokenOutbox(), settings).escalate(**_fields())
    [case] = store.list()
    assert case.status == "new"


def test_an_action_updates_the_card_in_place_and_posts_in_its_thread(escalation, outbox):
    ref = escalation.escalate(**_fields()).case.ref
    change = escalation.transition(ref, "assign", OFFICER)
    update = outbox.find(f"case-card-update:{ref}:{change.entry.id}")
    line = outbox.find(f"case-event:{ref}:{change.entry.id}")
    assert update.method == "chat.update" and update.payload["channel"] == TEAM_CHANNEL
    assert update.payload["ts"] == {"$delivered": f"case-card:{ref}", "field": "ts"}
    assert "In progress" in json.dumps(update.payload) and f"<@{OFFICER}>" in json.dumps(update.payload)
    assert line.payload["thread_ts"] == {"$delivered": f"case-card:{ref}", "field": "ts"}
    assert f"<@{OFFICER}> took the case" in line.payload["text"]
    with pytest.raises(CaseTransitionError):
        escalation.transition(ref, "close", OFFICER)
    assert outbox.find(f"case-card-update:{ref}:{change.entry.id + 1}") is None


def test_a_reminder_is_queued_once_across_a_restart(tmp_path, settings, clock):
    def started():
        store = CaseStore(tmp_path / "state.db", settings, clock=clock)
        outbox = Outbox(tmp_path / "state.db")
        return store, outbox, Escalation(store, outbox, settings)

    store, outbox, escalation = started()
    ref = escalation.escalate(**_fields(severity="high")).case.ref
    clock.advance(hours=5)
    assert escalation.send_due_reminders() == 1
    assert escalation.send_due_reminders() == 0
    store.close()
    outbox.close()
    store, outbox, escalation = started()  # the bot restarted
    assert escalation.send_due_reminders() == 0
    reminders = [m for m in outbox.list() if m.kind == "case_reminder"]
    assert [m.dedupe_key for m in reminders] == [f"reminder:{ref}:1"]
    assert reminders[0].payload["reply_broadcast"] is True and ref in reminders[0].payload["text"]
    clock.advance(hours=4)
    assert escalation.send_due_reminders() == 1
    assert [e.action for e in store.audit(ref)].count("reminder") == 2


def test_delivery_results_are_copied_into_the_audit_log_once(escalation, outbox, store):
    ref = escalation.escalate(**_fields()).case.ref
    messages = {m.dedupe_key: m for m in outbox.list()}
    for delivery in outbox.claim(10):
        if delivery.dedupe_key == card_key(ref):
            outbox.mark_delivered(delivery.id, {"ok": True, "ts": "9.9", "channel": TEAM_CHANNEL})
        else:
            outbox.record_failure(delivery.id, "user_not_in_channel", permanent=True)
    assert store.sync_notifications() == 3
    assert store.sync_notifications() == 0
    entries = [e for e in store.audit(ref) if e.action in ("notification_sent", "notification_failed")]
    assert [(e.action, e.detail["message"]) for e in entries] == [
        ("notification_sent", card_key(ref)),
        ("notification_failed", f"case-notice:{ref}"),
        ("notification_failed", f"case-notice-dm:{ref}"),
    ]
    assert entries[1].detail["error"] == "user_not_in_channel" and len(messages) == 3


# -- lists and export ------------------------------------------------------------------------


def test_triage_order_is_severity_then_age(store, clock):
    medium = open_case(store, severity="medium", thread_ts=None)
    clock.advance(hours=1)
    high = open_case(store, thread_ts=None)
    clock.advance(hours=1)
    newer_high = open_case(store, thread_ts=None)
    assert [c.ref for c in sort_for_triage(store.list("open"))] == [high.ref, newer_high.ref, medium.ref]
    store.transition(medium.ref, "assign", OFFICER)
    assert [c.ref for c in store.list("in_progress", assignee=OFFICER)] == [medium.ref]
    assert [c.ref for c in store.list(["new", "closed"])] == [high.ref, newer_high.ref]


def test_export_as_csv_and_json(store):
    case = open_case(store, question="=HYPERLINK('http://evil')")
    store.transition(case.ref, "note", OFFICER, note="-looks fine")
    rows = list(csv.DictReader(io.StringIO(export_cases(store, "csv"))))
    assert rows[0]["ref"] == case.ref and rows[0]["question"].startswith("'=")
    assert (
        rows[0]["latest_note"] == "'-looks fine"
        and json.loads(rows[0]["rules"])[0]["id"] == "military_end_use"
    )
    data = json.loads(export_cases(store, "json"))
    assert data[0]["question"] == "=HYPERLINK('http://evil')"
    assert [e["action"] for e in data[0]["audit"]] == ["created", "note"]
    audit = list(csv.DictReader(io.StringIO(export_cases(store, "csv", audit=True))))
    assert [row["action"] for row in audit] == ["created", "note"]
    with pytest.raises(CaseError, match="unknown export format"):
        export_cases(store, "xml")


def test_a_store_on_a_fresh_database_next_to_the_other_tables(tmp_path, settings):
    from bot.state import StateStore

    state = StateStore(tmp_path / "state.db")
    cases = CaseStore(tmp_path / "state.db", replace(settings, reference_prefix="SEC"))
    assert open_case(cases).ref.startswith("SEC-")
    assert CaseStore(tmp_path / "state.db", settings).list()[0].ref.startswith("SEC-")  # migrations ran once
    state.close()
    cases.close()


def test_stores_opened_together_on_a_new_database_migrate_once(tmp_path, settings):
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            CaseStore(tmp_path / "fresh.db", settings).close()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert open_case(CaseStore(tmp_path / "fresh.db", settings)).ref.endswith("-0001")
