"""Block Kit for cases: the team's card, the researcher's notice, modals, /trcase and App Home views.

Pure functions from ``bot.cases`` records to Block Kit dicts; no Slack imports. Everything from
outside (questions, notes, rule descriptions, outcomes) goes through ``escape_mrkdwn``. What the
researcher sees (``build_researcher_notice``, ``build_talk_*``) never repeats the question, the
rules or anything else from the case but its reference: it may be shown in a public channel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.cases import OUTCOMES, AuditEntry, Case, DueReminder, sort_for_triage
from bot.records import Contact
from bot.slack.blocks import (
    MAX_BLOCKS,
    MAX_METADATA_CHARS,
    MAX_SECTION_CHARS,
    button,
    contact_line,
    context_block,
    escape_mrkdwn,
    fit_escaped,
    fit_mrkdwn,
    header_block,
    link,
    plain_text,
    section_block,
    truncate,
    user_mention,
)

ACTION_ACKNOWLEDGE = "trcase_acknowledge"
ACTION_ASSIGN = "trcase_assign_me"
ACTION_NOTE = "trcase_note"
ACTION_RESOLVE = "trcase_resolve"
ACTION_CLOSE = "trcase_close"
ACTION_REOPEN = "trcase_reopen"
ACTION_VIEW = "trcase_view"
CARD_ACTIONS = (ACTION_ACKNOWLEDGE, ACTION_ASSIGN, ACTION_NOTE, ACTION_RESOLVE, ACTION_CLOSE, ACTION_REOPEN)
VIEW_NOTE = "trcase_note_modal"
VIEW_RESOLVE = "trcase_resolve_modal"
NOTE_BLOCK = "note"
NOTE_ACTION = "note"
OUTCOME_BLOCK = "outcome"
OUTCOME_ACTION = "outcome"
MAX_QUESTION_SHOWN = 2500
MAX_LIST_QUESTION = 110
MAX_LISTED = 40
MAX_TIMELINE = 25
MAX_MODAL_BLOCKS = 100

_STATUS = {
    "new": ":new: New",
    "acknowledged": ":eyes: Acknowledged",
    "in_progress": ":hammer_and_wrench: In progress",
    "resolved": ":white_check_mark: Resolved",
    "closed": ":lock: Closed",
}
_SEVERITY = {"high": ":red_circle: High", "medium": ":large_orange_circle: Medium"}
_SOURCE = {
    "trigger": "escalation rule",
    "pre-screen": "partner pre-screening",
    "researcher-request": "researcher asked",
}


# -- the team's card -------------------------------------------------------------------------


def build_case_card(case: Case) -> dict[str, Any]:
    """The card in the team's channel: severity, reference, status, why it matched, who asked, the question.

    Returns ``{"text", "blocks"}`` (the text is the notification's fallback).
    """
    blocks = [
        header_block(f"{'🚨' if case.severity == 'high' else '⚠️'} {case.ref} · {case.severity} severity"),
        _fields_block(
            [
                f"*Status*\n{_status(case.status)}",
                f"*Severity*\n{_SEVERITY.get(case.severity, escape_mrkdwn(case.severity))}",
                f"*Assignee*\n{user_mention(case.assignee) if case.assignee else '_unassigned_'}",
                f"*Opened*\n{_date(case.created_at)}",
            ]
        ),
        section_block(_asked_line(case)),
    ]
    if case.rules:
        blocks.append(section_block(_rules_text(case)))
    question = fit_escaped(case.question, MAX_QUESTION_SHOWN)
    blocks.append(section_block(f"*Question*\n{_quote(question)}"))
    if case.attachment:
        blocks.append(section_block(_attachment_text(case.attachment)))
    if case.outcome:
        blocks.append(section_block(f"*Outcome:* {escape_mrkdwn(truncate(case.outcome, 200))}"))
    if case.latest_note:
        note = fit_escaped(case.latest_note, 1200)
        blocks.append(context_block(f"*Latest note* ({user_mention(case.latest_note_by)}): {note}"))
    blocks.append(card_actions_block(case))
    blocks.append(context_block(f"Updated {_date(case.updated_at)} · the timeline is in this thread"))
    text = f"{_severity_word(case)} case {case.ref} ({case.status.replace('_', ' ')})"
    return {"text": text, "blocks": blocks[:MAX_BLOCKS]}


def card_actions_block(case: Case) -> dict[str, Any]:
    """The buttons that make sense in the case's status (the core still checks each action)."""
    ref = case_value(case.ref)
    elements = []
    if case.status == "new":
        elements.append(button("Acknowledge", ACTION_ACKNOWLEDGE, ref, style="primary"))
    if case.is_open:
        elements.append(button("Assign to me", ACTION_ASSIGN, ref))
    elements.append(button("Add note", ACTION_NOTE, ref))
    if case.is_open:
        elements.append(button("Resolve…", ACTION_RESOLVE, ref))
    if case.status == "resolved":
        elements.append(button("Close", ACTION_CLOSE, ref, style="primary"))
    if case.status in ("resolved", "closed"):
        elements.append(button("Reopen", ACTION_REOPEN, ref))
    return {"type": "actions", "block_id": f"trcase_actions:{case.ref}", "elements": elements}


def case_value(ref: str) -> str:
    """A case button's value: ``{"case": ref}`` (the handlers check membership and status anew)."""
    return json.dumps({"case": ref}, separators=(",", ":"))


def ref_from_value(raw: str | None) -> str:
    """The reference in a case button's value ("" if it is not one)."""
    try:
        data = json.loads(raw or "")
    except ValueError:
        return ""
    ref = data.get("case") if isinstance(data, dict) else None
    return ref[:40] if isinstance(ref, str) else ""


def _asked_line(case: Case) -> str:
    where = _where(case.channel)
    message = case.permalink or message_link(case.channel, case.message_ts or case.thread_ts)
    parts = [f"*Asked by* {user_mention(case.requester)} {where}"]
    if message:
        parts.append(link(message, "view the message"))
    parts.append(f"source: {_SOURCE.get(case.source, escape_mrkdwn(case.source))}")
    return " · ".join(parts)


def _rules_text(case: Case) -> str:
    lines = ["*Why it matched*"]
    for rule in case.rules[:10]:
        description = escape_mrkdwn(truncate(rule.description or rule.id, 200))
        reason = f" — {escape_mrkdwn(truncate(rule.reason, 300))}" if rule.reason else ""
        lines.append(f"• *{description}*{reason} (`{escape_mrkdwn(truncate(rule.id, 60))}`)")
    if len(case.rules) > 10:
        lines.append(f"_and {len(case.rules) - 10} more_")
    return "\n".join(lines)


def _attachment_text(attachment: dict[str, Any]) -> str:
    """A short summary of what came with the case (a screening: its rating, partner and matches)."""
    lines = ["*Attached*"]
    rating = attachment.get("rating")
    partner = attachment.get("organisation") or (attachment.get("query") or {}).get("organisation")
    if rating:
        lines.append(f"Screening rating: *{escape_mrkdwn(str(rating).upper())}*")
    if partner:
        lines.append(f"Partner: {escape_mrkdwn(truncate(str(partner), 200))}")
    for match in (attachment.get("matches") or [])[:3]:
        if isinstance(match, dict):
            entry = escape_mrkdwn(truncate(str(match.get("entry", "")), 120))
            listed = escape_mrkdwn(truncate(str(match.get("list", match.get("list_name", ""))), 80))
            lines.append(f"• {entry} ({listed})")
    if len(lines) == 1:
        lines.append(f"{len(attachment)} field(s): `trbot cases show` has them all")
    return "\n".join(lines)


def message_link(channel: str | None, ts: str | None) -> str | None:
    """A link to a message built from its channel and ts (Slack redirects it to the workspace)."""
    if not channel or not ts:
        return None
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


# -- the card's thread and reminders ---------------------------------------------------------


def build_thread_update(case: Case, entry: AuditEntry) -> dict[str, Any]:
    """One line in the card's thread for an action, so the timeline can be read in Slack."""
    who = user_mention(entry.actor)
    detail = entry.detail or {}
    action = entry.action
    if action == "acknowledge":
        text = f":eyes: {who} acknowledged the case."
    elif action == "assign":
        to = detail.get("to")
        text = (
            f":raising_hand: {who} took the case."
            if to == entry.actor
            else (f":raising_hand: {who} assigned the case to {user_mention(to)}.")
        )
    elif action == "note":
        text = f":memo: {who} added a note:\n{_quote(fit_escaped(detail.get('text', ''), 2800))}"
    elif action == "resolve":
        text = f":white_check_mark: {who} resolved the case: *{escape_mrkdwn(detail.get('outcome', ''))}*"
    elif action == "close":
        text = f":lock: {who} closed the case."
    elif action == "reopen":
        text = f":arrows_counterclockwise: {who} reopened the case; it is now {_status(case.status)}."
    elif action in ("follow_up", "joined"):
        question = _quote(fit_escaped(str(detail.get("question", "")), 2500))
        how = (
            "followed up in the thread"
            if action == "follow_up"
            else (f"raised the same concern again {_where(str(detail.get('channel', '')))}")
        )
        text = f":speech_balloon: {user_mention(entry.actor)} {how}:\n{question}"
        if detail.get("severity_raised"):
            text += "\n:red_circle: Severity raised to *high*."
    elif action == "researcher_request":
        text = f":wave: {user_mention(entry.actor)} asked to talk to a person about this."
    else:
        text = f"{who}: {escape_mrkdwn(action.replace('_', ' '))}"
    if detail.get("note") and action != "note":
        text += f"\n{_quote(fit_escaped(detail['note'], 2000))}"
    return {"text": fit_mrkdwn(text, MAX_SECTION_CHARS)}


def build_reminder(case: Case, reminder: DueReminder) -> dict[str, Any]:
    """A reminder (in the card's thread, also sent to the channel) for a case nobody has acknowledged."""
    waited = _hours_text(reminder.period * reminder.hours)
    text = (
        f":alarm_clock: *{case.ref}* ({case.severity} severity) has not been acknowledged after {waited}. "
        "Please acknowledge it or assign it to someone."
    )
    return {"text": text, "blocks": [section_block(text), card_actions_block(case)]}


# -- what the researcher sees ----------------------------------------------------------------


def build_researcher_notice(case: Case, *, team_name: str, outcome: str = "opened") -> dict[str, Any]:
    """A calm note with the reference, and nothing else from the case (it may be seen in a channel)."""
    team = escape_mrkdwn(team_name)
    ref = f"*{escape_mrkdwn(case.ref)}*"
    if outcome == "joined":
        text = (
            f":shield: I've added this to your open case {ref}, which the {team} already has. "
            "They will follow up with you."
        )
    elif case.source == "researcher-request":
        text = f":wave: Thanks. I've asked the {team} to get in touch with you. Your reference is {ref}."
    else:
        text = (
            f":shield: I've also passed your question to the {team}, who will follow up with you "
            f"directly. This is routine for questions like this. Your reference is {ref}; "
            "you don't need to do anything else for now."
        )
    return {"text": text, "blocks": [section_block(text)]}


def build_talk_unavailable(contact: Contact) -> str:
    """ "Talk to a person" when cases are not enabled: whom to contact instead."""
    return f"To talk to a person, contact the {contact_line(contact)}."


def build_talk_failed(reference: str, contact: Contact) -> str:
    return (
        f":warning: Sorry, I couldn't pass that on (reference `{escape_mrkdwn(reference)}`). "
        f"Please contact the {contact_line(contact)}."
    )


# -- refusals and errors ---------------------------------------------------------------------


def build_refusal_text() -> str:
    """For anyone outside the research-security team who tries to see or work a case."""
    return (
        "Sorry, only the research-security team can see or work on cases. "
        "If you think you should have access, ask the team."
    )


def build_refused_action_text(reason: str) -> str:
    return f":no_entry_sign: {escape_mrkdwn(reason)}"


def build_done_text(case: Case, entry: AuditEntry) -> str:
    return f"Done: {escape_mrkdwn(case.ref)} is now {_status(case.status)}."


# -- modals ----------------------------------------------------------------------------------


def build_note_modal(case: Case) -> dict[str, Any]:
    """Add a note to a case."""
    return {
        "type": "modal",
        "callback_id": VIEW_NOTE,
        "private_metadata": case.ref[:MAX_METADATA_CHARS],
        "title": plain_text(f"Note on {case.ref}", 24),
        "submit": plain_text("Add note", 24),
        "close": plain_text("Cancel", 24),
        "blocks": [
            context_block(f"{_SEVERITY.get(case.severity, '')} · {_status(case.status)}"),
            _text_input(NOTE_BLOCK, NOTE_ACTION, "Note (the team sees it; the researcher doesn't)", False),
        ],
    }


def build_resolve_modal(case: Case) -> dict[str, Any]:
    """Resolve a case: an outcome (required) and an optional note."""
    options = [{"text": plain_text(outcome, 75), "value": outcome[:150]} for outcome in OUTCOMES]
    return {
        "type": "modal",
        "callback_id": VIEW_RESOLVE,
        "private_metadata": case.ref[:MAX_METADATA_CHARS],
        "title": plain_text(f"Resolve {case.ref}", 24),
        "submit": plain_text("Resolve", 24),
        "close": plain_text("Cancel", 24),
        "blocks": [
            {
                "type": "input",
                "block_id": OUTCOME_BLOCK,
                "label": plain_text("Outcome", 2000),
                "element": {
                    "type": "static_select",
                    "action_id": OUTCOME_ACTION,
                    "placeholder": plain_text("Choose an outcome", 150),
                    "options": options,
                },
            },
            _text_input(NOTE_BLOCK, NOTE_ACTION, "Note (optional)", True),
        ],
    }


def build_case_modal(case: Case, entries: Sequence[AuditEntry]) -> dict[str, Any]:
    """A read-only modal with the case and its timeline (from App Home or a list)."""
    blocks = build_case_detail(case, entries)
    return {
        "type": "modal",
        "title": plain_text(case.ref, 24),
        "close": plain_text("Close", 24),
        "blocks": blocks[:MAX_MODAL_BLOCKS],
    }


def _text_input(block_id: str, action_id: str, label: str, optional: bool) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain_text(label, 2000),
        "element": {
            "type": "plain_text_input",
            "action_id": action_id,
            "multiline": True,
            "max_length": 3000,
        },
    }


# -- /trcase and App Home --------------------------------------------------------------------


def build_trcase_usage(command: str) -> str:
    cmd = escape_mrkdwn(command)
    return (
        f"`{cmd} list`: open cases, high severity and longest waiting first · "
        f"`{cmd} mine`: open cases assigned to you · `{cmd} show RS-2026-0001`: a case and its timeline"
    )


def build_case_list(cases: Sequence[Case], title: str, *, now: datetime, empty: str) -> list[dict[str, Any]]:
    """A list of cases, most urgent first, each with a button to open it."""
    ordered = sort_for_triage(cases)
    blocks: list[dict[str, Any]] = [section_block(f"*{escape_mrkdwn(title)}* ({len(ordered)})")]
    if not ordered:
        return blocks + [context_block(escape_mrkdwn(empty))]
    for case in ordered[:MAX_LISTED]:
        blocks.append(_list_item(case, now))
    if len(ordered) > MAX_LISTED:
        blocks.append(
            context_block(f"and {len(ordered) - MAX_LISTED} more: `trbot cases list --status open`")
        )
    return blocks[:MAX_BLOCKS]


def _list_item(case: Case, now: datetime) -> dict[str, Any]:
    who = user_mention(case.assignee) if case.assignee else "_unassigned_"
    why = (
        (case.rules[0].description or case.rules[0].id)
        if case.rules
        else _SOURCE.get(case.source, case.source)
    )
    text = (
        f"*{escape_mrkdwn(case.ref)}* · {_SEVERITY.get(case.severity, '')} · {_status(case.status)} · "
        f"{_age(case.created_at, now)} old · {who}\n"
        f"{escape_mrkdwn(truncate(why, 120))}: _{fit_escaped(case.question, MAX_LIST_QUESTION)}_"
    )
    block = section_block(text)
    block["accessory"] = button("Open", ACTION_VIEW, case_value(case.ref))
    return block


def build_case_detail(case: Case, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """The card and the case's timeline (the latest ``MAX_TIMELINE`` entries)."""
    card = build_case_card(case)["blocks"]
    shown = list(entries)[-MAX_TIMELINE:]
    lines = [_timeline_line(entry) for entry in shown]
    blocks = card + [{"type": "divider"}, section_block("*Timeline*")]
    if len(entries) > len(shown):
        blocks.append(
            context_block(f"{len(entries) - len(shown)} earlier entries: `trbot cases show {case.ref}`")
        )
    chunk: list[str] = []
    for line in lines:
        if sum(len(item) + 1 for item in chunk) + len(line) > 2900:
            blocks.append(context_block("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(context_block("\n".join(chunk)))
    return blocks[:MAX_BLOCKS]


def _timeline_line(entry: AuditEntry) -> str:
    detail = entry.detail or {}
    extra = ""
    if entry.action == "note":
        extra = f": {fit_escaped(str(detail.get('text', '')), 300)}"
    elif entry.action == "resolve":
        extra = f": {escape_mrkdwn(str(detail.get('outcome', '')))}"
    elif entry.action == "assign":
        extra = f" to {user_mention(detail.get('to'))}"
    elif entry.action == "refused":
        attempted = escape_mrkdwn(str(detail.get("attempted", "")))
        extra = f" ({attempted}: {escape_mrkdwn(str(detail.get('reason', '')))})"
    elif entry.action.startswith("notification") or entry.action == "reminder":
        extra = f" ({escape_mrkdwn(str(detail.get('message', '')))})"
    status = ""
    if entry.from_status and entry.to_status and entry.from_status != entry.to_status:
        status = f" [{entry.from_status} → {entry.to_status}]"
    actor = "trbot" if entry.actor == "trbot" else user_mention(entry.actor)
    return f"{_date(entry.at)} · {actor} · *{escape_mrkdwn(entry.action.replace('_', ' '))}*{status}{extra}"


def build_home_section(cases: Sequence[Case], *, now: datetime, command: str) -> list[dict[str, Any]]:
    """The team's part of App Home: the open cases, by severity and age."""
    ordered = sort_for_triage(case for case in cases if case.is_open)
    high = sum(1 for case in ordered if case.severity == "high")
    new = sum(1 for case in ordered if case.status == "new")
    blocks: list[dict[str, Any]] = [
        header_block("Research-security cases"),
        section_block(
            f"*{len(ordered)} open* · {high} high severity · {new} not yet acknowledged. "
            f"`{escape_mrkdwn(command)} list` shows them in any channel, only to you."
        ),
    ]
    if not ordered:
        blocks.append(context_block("No open cases."))
    for case in ordered[:20]:
        blocks.append(_list_item(case, now))
    if len(ordered) > 20:
        blocks.append(context_block(f"and {len(ordered) - 20} more: `{escape_mrkdwn(command)} list`"))
    blocks.append({"type": "divider"})
    return blocks


def add_home_section(home: dict[str, Any], section: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The normal App Home view with the team's section on top (within Slack's 100 blocks for views)."""
    blocks = list(section) + list(home.get("blocks", []))
    return home | {"blocks": blocks[:MAX_MODAL_BLOCKS]}


# -- small helpers ---------------------------------------------------------------------------


def _fields_block(fields: Sequence[str]) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": text[:2000]} for text in fields[:10]]}


def _status(status: str) -> str:
    return _STATUS.get(status, escape_mrkdwn(status))


def _severity_word(case: Case) -> str:
    return "High-severity" if case.severity == "high" else "Medium-severity"


def _where(channel: str) -> str:
    if channel.startswith("D"):
        return "in a direct message"
    if channel.startswith(("C", "G")):
        return f"in <#{channel}>"
    return ""


def _quote(escaped: str) -> str:
    lines = [line.strip() for line in escaped.splitlines() if line.strip()]
    return "\n".join(f">{line}" for line in lines) or ">"


def _date(iso: str | None) -> str:
    """Slack's date formatting (each reader's own time zone), with the UTC text as the fallback."""
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return escape_mrkdwn(iso)
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _age(iso: str, now: datetime) -> str:
    try:
        hours = (now - datetime.fromisoformat(iso)).total_seconds() / 3600
    except ValueError:
        return "?"
    return _hours_text(max(hours, 0))


def _hours_text(hours: float) -> str:
    if hours < 1:
        return f"{max(int(hours * 60), 1)} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} days"
