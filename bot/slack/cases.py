"""Slack listeners for cases: escalation from the answer path, card buttons, modals, /trcase, App Home.

The core (``bot.cases``) does the work; these parse the payload, check that the user is in the
research-security team (``deps.team``), call one core function, and send through the outbox.
Anyone else gets a polite ephemeral refusal, written to the audit log, and the case is unchanged.
Case details go only to the team's channel, team members' App Home, modals and ephemeral
replies, and (just the reference) to the requester. Question text is never logged.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.cases import CaseError, CaseNotFoundError, CaseStore, Escalated, Escalation, Team
from bot.config import Config
from bot.slack import answers_render
from bot.slack import cases_render as render
from bot.slack.blocks import escape_mrkdwn
from bot.slack.deps import BotDeps

logger = logging.getLogger(__name__)

# Card buttons -> core actions (note and resolve open a modal first).
BUTTON_ACTIONS = {
    render.ACTION_ACKNOWLEDGE: "acknowledge",
    render.ACTION_ASSIGN: "assign",
    render.ACTION_CLOSE: "close",
    render.ACTION_REOPEN: "reopen",
    render.ACTION_NOTE: "note",
    render.ACTION_RESOLVE: "resolve",
}
NOT_IN_TEAM = "not a member of the research-security team"
REMINDER_INTERVAL_SECONDS = 60.0
PERMALINK_TIMEOUT_SECONDS = 3


def register(app: App, config: Config) -> None:
    """Wire the cases listeners (only when cases are enabled) and the "Talk to a person" button.

    Registered before the answering listeners, so that team members' App Home gets the cases
    (bolt runs the first listener that matches; the others see the normal home).
    """
    app.action(answers_render.ACTION_TALK)(handle_talk_to_person)
    if not config.cases.enabled:
        return
    app.event("app_home_opened")(handle_home_opened)
    app.command(config.cases.command)(handle_trcase)
    for action_id in BUTTON_ACTIONS:
        app.action(action_id)(handle_card_action)
    app.action(render.ACTION_VIEW)(handle_view_action)
    app.view(render.VIEW_NOTE)(handle_note_submission)
    app.view(render.VIEW_RESOLVE)(handle_resolve_submission)


def attach_services(deps: BotDeps, client: WebClient, *, triager: Any = None) -> BotDeps:
    """``deps`` with the cases services (when enabled) and the triager; called by ``create_app``.

    The escalation queues through ``deps.outbox`` (the one the delivery worker watches) when
    there is one, else through an ``Outbox`` of its own on the same database.
    """
    config = deps.config
    if not config.cases.enabled:
        return replace(deps, triager=triager)
    from bot.outbox import Outbox

    outbox = getattr(deps, "outbox", None) or Outbox(config.paths.state_db, config.outbox)
    worker = getattr(deps, "outbox_worker", None)
    escalation = Escalation(
        CaseStore(config.paths.state_db, config.cases),
        outbox,
        config.cases,
        team_name=config.institution.team_name,
        wake=worker.wake if worker is not None else None,
    )
    return replace(deps, cases=escalation, team=build_team(config, client), triager=triager)


def build_team(config: Config, client: WebClient) -> Team:
    """The team, with the user group's members read through ``usergroups.users.list``."""

    def fetch(group: str) -> list[str]:
        quick = _quick_client(client)
        return list(quick.usergroups_users_list(usergroup=group).get("users") or [])

    return Team(config.cases, fetch)


# -- from the answer path --------------------------------------------------------------------


def escalate_ask(ask: Any, client: WebClient, deps: BotDeps, *, after: str | None = None) -> Escalated | None:
    """``escalate_question`` for an answer path's ``Ask``; ``after``: the answer's outbox key (the
    researcher's notice is sent after the answer)."""
    return escalate_question(
        deps,
        client,
        question=ask.question,
        channel=ask.channel,
        user=ask.user,
        thread_ts=ask.thread_ts,
        message_ts=ask.message_ts,
        response_url=ask.response_url,
        context=ask.context,
        after=after,
    )


def escalate_question(
    deps: BotDeps,
    client: WebClient,
    *,
    question: str,
    channel: str,
    user: str,
    thread_ts: str | None = None,
    message_ts: str | None = None,
    response_url: str | None = None,
    context: str | None = None,
    after: str | None = None,
) -> Escalated | None:
    """Triage a question that is being answered and open (or add to) a case if it needs one.

    Called by the answer path once the answer is computed and before it is sent; the answer is
    given whatever happens here (every error is logged with the channel, never the question).
    A question in the thread of an open case is added to it even if it matches no rule.
    """
    if deps.cases is None or not question:
        return None
    try:
        triage = _triage(deps, question, context)
        in_case_thread = bool(thread_ts) and deps.cases.store.has_open_case(channel, thread_ts)
        if (triage is None or not triage.escalate) and not in_case_thread:
            return None
        matches = triage.matches if triage is not None else ()
        result = deps.cases.escalate(
            source="trigger",
            severity=(triage.severity if triage is not None else None) or "medium",
            requester=user,
            channel=channel,
            question=question,
            rules=[{"id": m.id, "description": m.description, "reason": m.reason} for m in matches],
            thread_ts=thread_ts,
            message_ts=message_ts,
            permalink=permalink(client, channel, message_ts),
            dedupe_key=f"message:{channel}:{message_ts}" if message_ts else None,
            response_url=response_url,
            notice_after=after,
        )
        return result
    except Exception:
        logger.exception("could not escalate a question in %s; the answer is still sent", channel)
        return None


def _triage(deps: BotDeps, question: str, context: str | None) -> Any:
    if deps.triager is None:
        return None
    triage = deps.triager.triage(question)
    if not triage.escalate and context:  # a follow-up can complete a concern ("and to NUDT?")
        triage = deps.triager.triage(f"{context}\n{question}")
    return triage


def permalink(client: WebClient, channel: str, ts: str | None) -> str | None:
    """A link to the message: ``chat.getPermalink``, or one built from channel and ts if Slack fails."""
    if not ts or not channel:
        return None
    try:
        link = _quick_client(client).chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        if isinstance(link, str) and link.startswith("https://"):
            return link
    except Exception as exc:  # Slack down or slow: the built link is good enough for the card
        logger.info("chat.getPermalink failed in %s (%s); building the link", channel, type(exc).__name__)
    return render.message_link(channel, ts)


def _quick_client(client: WebClient) -> WebClient:
    """A client for look-ups on the request path: short timeout, no retries (fall back instead)."""
    return WebClient(
        token=client.token, base_url=client.base_url, timeout=PERMALINK_TIMEOUT_SECONDS, retry_handlers=[]
    )


# -- "Talk to a person" ----------------------------------------------------------------------


def handle_talk_to_person(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """The button under every answer: open a case (source researcher-request), even with no rule.

    The question, its thread and channel come from the stored answer the button names
    (``answers.resolve_action_value``), never from the payload.
    """
    from bot.slack import answers

    ack()
    body = answers.checked_body(body, deps)
    user = _user_of(body)
    contact = deps.config.institution.contact()
    if deps.cases is None:
        _tell(deps, client, body, render.build_talk_unavailable(contact))
        return
    try:
        value = answers.resolve_action_value(action.get("value", ""), deps)
        if value is None:  # an answer too old to be kept: the team's contact instead
            _tell(deps, client, body, render.build_talk_unavailable(contact))
            return
        channel = value.channel or _channel_of(body)
        triage = _triage(deps, value.question, value.context)
        matches = triage.matches if triage is not None and triage.escalate else ()
        container_ts = (body.get("container") or {}).get("message_ts")
        result = deps.cases.escalate(
            source="researcher-request",
            severity=(triage.severity if matches else None) or "medium",
            requester=user,
            channel=channel,
            question=value.question,
            rules=[{"id": m.id, "description": m.description, "reason": m.reason} for m in matches],
            thread_ts=value.thread_ts,
            message_ts=container_ts,
            permalink=permalink(client, channel, value.thread_ts or container_ts),
            dedupe_key=f"talk:{user}:{value.answer_id}",
            response_url=body.get("response_url"),
        )
        if result.outcome == "duplicate":  # clicked again: the same reference
            team = contact.team_name
            notice = render.build_researcher_notice(result.case, team_name=team, outcome="joined")
            _tell(deps, client, body, notice["text"])
    except Exception:
        reference = answers_new_reference()
        logger.exception("could not open a researcher's case (reference %s)", reference)
        _tell(deps, client, body, render.build_talk_failed(reference, contact))


# -- the card's buttons and modals -----------------------------------------------------------


def handle_card_action(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """Acknowledge, assign to me, close, reopen: do it; add note and resolve: open their modal."""
    ack()
    body = _checked(body, deps)
    user = _user_of(body)
    ref = render.ref_from_value(action.get("value"))
    name = BUTTON_ACTIONS.get(action.get("action_id", ""), "unknown")
    if not _allowed(deps, client, body, user, name, ref):
        return
    try:
        if name in ("note", "resolve"):
            case = deps.cases.store.get(ref)
            modal = render.build_note_modal(case) if name == "note" else render.build_resolve_modal(case)
            client.views_open(trigger_id=body["trigger_id"], view=modal)
            return
        change = deps.cases.transition(ref, name, user)
        if _channel_of(body) != deps.config.cases.channel:  # not on the card itself: say it worked
            _tell(deps, client, body, render.build_done_text(change.case, change.entry))
    except CaseError as exc:  # not allowed now (already acknowledged, resolved...): say why
        _tell(deps, client, body, render.build_refused_action_text(str(exc)))
    except Exception:
        _apologise(deps, client, body, f"{name} on {ref}")


def handle_note_submission(ack: Ack, body: dict, view: dict, deps: BotDeps) -> None:
    """The note modal was sent: add the note (the card and its thread show it)."""
    _submit(ack, body, view, deps, "note", render.NOTE_BLOCK)


def handle_resolve_submission(ack: Ack, body: dict, view: dict, deps: BotDeps) -> None:
    """The resolve modal was sent: resolve with the outcome chosen and the optional note."""
    _submit(ack, body, view, deps, "resolve", render.OUTCOME_BLOCK)


def _submit(ack: Ack, body: dict, view: dict, deps: BotDeps, name: str, error_block: str) -> None:
    user = _user_of(body)
    ref = str(view.get("private_metadata") or "")
    if deps.cases is None or deps.team is None or not deps.team.is_member(user):
        _record_refusal(deps, user, name, ref)
        ack(response_action="errors", errors={error_block: render.build_refusal_text()})
        return
    values = view.get("state", {}).get("values", {})
    note = (values.get(render.NOTE_BLOCK, {}).get(render.NOTE_ACTION, {}) or {}).get("value")
    selected = (values.get(render.OUTCOME_BLOCK, {}).get(render.OUTCOME_ACTION, {}) or {}).get(
        "selected_option"
    )
    outcome = (selected or {}).get("value")
    try:
        deps.cases.transition(ref, name, user, note=note, outcome=outcome)
    except CaseError as exc:
        ack(response_action="errors", errors={error_block: str(exc)[:150]})
        return
    except Exception:
        reference = answers_new_reference()
        logger.exception("could not %s case %s (reference %s)", name, ref, reference)
        ack(response_action="errors", errors={error_block: f"Sorry, that failed (reference {reference})."})
        return
    ack()


def handle_view_action(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """ "Open" next to a case in App Home or a list: the case and its timeline in a modal."""
    ack()
    body = _checked(body, deps)
    user = _user_of(body)
    ref = render.ref_from_value(action.get("value"))
    if not _allowed(deps, client, body, user, "view", ref):
        return
    try:
        deps.cases.store.sync_notifications()
        case = deps.cases.store.get(ref)
        client.views_open(
            trigger_id=body["trigger_id"], view=render.build_case_modal(case, deps.cases.store.audit(ref))
        )
    except CaseNotFoundError as exc:
        _tell(deps, client, body, render.build_refused_action_text(str(exc)))
    except Exception:
        _apologise(deps, client, body, f"view {ref}")


# -- /trcase and App Home --------------------------------------------------------------------


def handle_trcase(ack: Ack, command: dict, deps: BotDeps) -> None:
    """``/trcase list | mine | show REF``: the team's views, only the caller sees them."""
    user = command.get("user_id", "")
    text = " ".join((command.get("text") or "").split())
    sub, _, rest = text.partition(" ")
    sub = sub.lower()
    if deps.cases is None or deps.team is None or not deps.team.is_member(user):
        _record_refusal(deps, user, f"/trcase {sub}".strip(), rest.strip().upper() or None)
        ack(text=render.build_refusal_text())
        return
    store = deps.cases.store
    now = datetime.now(UTC)
    command_name = deps.config.cases.command
    try:
        if sub == "list":
            blocks = render.build_case_list(store.list("open"), "Open cases", now=now, empty="No open cases.")
            ack(text="Open cases", blocks=blocks)
        elif sub == "mine":
            mine = store.list("open", assignee=user)
            blocks = render.build_case_list(
                mine, "Your open cases", now=now, empty="No open cases are assigned to you."
            )
            ack(text="Your open cases", blocks=blocks)
        elif sub == "show" and rest.strip():
            store.sync_notifications()
            case = store.get(rest.strip())
            ack(text=f"Case {case.ref}", blocks=render.build_case_detail(case, store.audit(case.ref)))
        else:
            ack(text=render.build_trcase_usage(command_name))
    except CaseNotFoundError:
        missing = escape_mrkdwn(rest.strip())
        ack(text=f"No case {missing}. `{escape_mrkdwn(command_name)} list` shows the open ones.")
    except Exception:
        reference = answers_new_reference()
        logger.exception("%s %s failed (reference %s)", command_name, sub, reference)
        ack(text=f"Sorry, that failed (reference {reference}).")


def handle_home_opened(event: dict, client: WebClient, deps: BotDeps) -> None:
    """App Home: team members see the open cases above the normal home; everyone else the normal home."""
    from bot.slack import answers

    user = event.get("user")
    if event.get("tab", "home") != "home" or not user:
        return
    if deps.cases is None or deps.team is None or not deps.team.is_member(user):
        answers.handle_home_opened(event=event, client=client, deps=deps)
        return
    home = answers_render.build_home_view(deps.config.institution, command=deps.config.slack.command)
    section = render.build_home_section(
        deps.cases.store.list("open"), now=datetime.now(UTC), command=deps.config.cases.command
    )
    payload = {"user_id": user, "view": render.add_home_section(home, section)}
    answers.deliver(deps, client, "views.publish", payload, kind="home")


# -- start-up (trbot serve) ------------------------------------------------------------------


def open_case_triager(config: Config, answerer: Any) -> Any:
    """The escalation rules (``paths.triggers``) when cases are enabled, on the answerer's loaded model.

    Raises:
        TriggerRuleError: a bad rule (its id and the problem): ``trbot serve`` stops.
    """
    if not config.cases.enabled:
        return None
    from bot.triggers import open_triager

    index = getattr(answerer, "index", None)
    embedder = getattr(index, "embedder", None)
    triager = open_triager(config, embedder=embedder, warn=logger.warning)
    logger.info("cases: %d escalation rule(s) loaded", len(triager.rules))
    return triager


def start_case_reminders(deps: BotDeps) -> threading.Event | None:
    """Start the reminder loop when cases are enabled (``trbot serve``); returns its stop event."""
    if deps.cases is None:
        return None
    return start_reminders(deps.cases, deps.team)


def manifest_commands(config: Config, request_url: str | None) -> list[dict[str, Any]]:
    """The team's slash command for ``trbot manifest`` (none when cases are off)."""
    if not config.cases.enabled:
        return []
    command = {
        "command": config.cases.command,
        "description": "Research-security team: open cases, yours, or one case and its timeline",
        "usage_hint": "list | mine | show RS-2026-0001",
        "should_escape": False,
    }
    return [command | ({"url": request_url} if request_url else {})]


def manifest_scopes(config: Config, already: tuple[str, ...] = ()) -> list[str]:
    """Scopes cases need besides the app's: conversations.info on the private team channel, and
    usergroups.users.list for ``team_usergroup``."""
    if not config.cases.enabled:
        return []
    scopes = ["groups:read"] + (["usergroups:read"] if config.cases.team_usergroup else [])
    return [scope for scope in scopes if scope not in already]


# -- reminders -------------------------------------------------------------------------------


def start_reminders(
    escalation: Escalation, team: Team | None = None, *, interval: float = REMINDER_INTERVAL_SECONDS
) -> threading.Event:
    """Every ``interval`` seconds: queue due reminders, copy delivery results into the audit log,
    and keep the team's user group fresh. Returns an event that stops the thread when set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                escalation.send_due_reminders()
                escalation.store.sync_notifications()
                if team is not None:
                    team.members()  # re-reads the user group once its cache is stale
            except Exception:  # the next round tries again; nothing is lost (the cases are stored)
                logger.exception("the case reminder round failed")
            stop.wait(interval)

    threading.Thread(target=loop, name="trbot-case-reminders", daemon=True).start()
    return stop


# -- helpers ---------------------------------------------------------------------------------


def _checked(body: dict, deps: BotDeps) -> dict:
    from bot.slack.answers import checked_body

    return checked_body(body, deps)


def _allowed(deps: BotDeps, client: WebClient, body: dict, user: str, action: str, ref: str) -> bool:
    if deps.cases is not None and deps.team is not None and deps.team.is_member(user):
        return True
    _record_refusal(deps, user, action, ref)
    _tell(deps, client, body, render.build_refusal_text())
    return False


def _record_refusal(deps: BotDeps, user: str, action: str, ref: str | None) -> None:
    if deps.cases is None:
        return
    store = deps.cases.store
    try:
        known = ref if ref and store.exists(ref) else None
        store.record_refusal(user, action, ref=known, reason=NOT_IN_TEAM)
    except Exception:
        logger.exception("could not record a refused %s", action)


def _tell(deps: BotDeps, client: WebClient, body: dict, text: str) -> None:
    """An ephemeral note to the user who clicked (through the outbox, like every message)."""
    from bot.slack.answers import deliver

    user, channel = _user_of(body), _channel_of(body)
    url = body.get("response_url")
    if url:
        message = {"response_type": "ephemeral", "replace_original": False, "text": text}
        deliver(deps, client, "response_url", {"url": url, "message": message}, kind="case_reply")
    elif channel and user:
        payload = {"channel": channel, "user": user, "text": text}
        deliver(deps, client, "chat.postEphemeral", payload, kind="case_reply")


def _apologise(deps: BotDeps, client: WebClient, body: dict, what: str) -> None:
    reference = answers_new_reference()
    logger.exception("case action %s failed (reference %s)", what, reference)
    try:
        _tell(deps, client, body, render.build_talk_failed(reference, deps.config.institution.contact()))
    except Exception:
        logger.exception("could not send the apology (reference %s)", reference)


def answers_new_reference() -> str:
    from bot.slack.answers import new_reference

    return new_reference()


def _user_of(body: dict) -> str:
    return (body.get("user") or {}).get("id", "")


def _channel_of(body: dict) -> str:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
