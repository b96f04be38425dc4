"""Slack listeners for partner pre-screening: DMs, the /prescreen modal, the global shortcut, buttons.

- A direct message that asks to check a named organisation ("prescreen HIT", "can you check
  Skoltech for a battery project?") is screened (``route_dm``, called by the answering listener
  before it answers a DM); an unclear one gets two buttons, "Screen this partner" and "Answer
  from guidance"; anything else is answered from the guidance as before.
- ``/prescreen`` and the global shortcut open a form; on submit the result is sent to the
  user's DM with the bot.
- A red or amber result opens a case, or offers one with a button, as ``cases.prescreen_red``
  and ``cases.prescreen_amber`` say (only when cases are enabled). The case is written first,
  with the whole screening attached; the team's card goes through the outbox; the result the
  researcher gets names the case's reference.

Buttons carry only what re-running the screen needs, and the user who asked: a click by anyone
else is refused. Results are screened again on a click, never taken from the button.

Error boundary as in ``bot.slack.answers``: a mistake the user can fix gets its own message;
anything else an apology with a reference id, logged with the traceback. Partner names and
message text are never logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.config import Config
from bot.screening import PartnerQuery, PartnerQueryError, Route, Screening, route_message
from bot.slack import prescreen_render as render
from bot.slack.deps import BotDeps

logger = logging.getLogger(__name__)


def register(app: App, config: Config) -> None:
    """Wire the pre-screening listeners: the command, the shortcut, the form and the buttons."""
    app.command(config.screening.command)(handle_prescreen_command)
    app.shortcut(render.SHORTCUT_PRESCREEN)(handle_shortcut)
    app.view(render.VIEW_PRESCREEN)(handle_submission)
    app.action(render.ACTION_OPEN_CASE)(handle_open_case)
    app.action(render.ACTION_NEW_SCREEN)(handle_new_screen)
    app.action(render.ACTION_ROUTE_SCREEN)(handle_route_screen)
    app.action(render.ACTION_ROUTE_GUIDANCE)(handle_route_guidance)


def open_prescreen(config: Config, answerer: Any) -> Any:
    """The screener for ``trbot serve``, on the answerer's loaded model (``bot.screening.open_screener``).

    Raises:
        ScreeningRuleError: the rules file is malformed (``trbot serve`` stops, naming the rule).
        WatchlistError: the watchlist database cannot be opened.
    """
    from bot.screening import open_screener

    screener = open_screener(config, answerer)
    logger.info(
        "pre-screening: %d list entries, %d research areas in the rules",
        len(screener.matcher),
        len(screener.rules.areas),
    )
    return screener


def manifest_commands(config: Config, request_url: str | None) -> list[dict[str, Any]]:
    """The /prescreen command for ``trbot manifest``."""
    command = {
        "command": config.screening.command,
        "description": "Pre-screen a prospective research partner (the result comes to your DMs)",
        "usage_hint": "[organisation]",
        "should_escape": False,
    }
    if request_url:
        command["url"] = request_url
    return [command]


def manifest_shortcuts() -> list[dict[str, str]]:
    """The global shortcut that opens the pre-screening form."""
    return [
        {
            "name": "Screen a partner",
            "type": "global",
            "callback_id": render.SHORTCUT_PRESCREEN,
            "description": "A first screen of a prospective research partner",
        }
    ]


# -- direct messages -------------------------------------------------------------------------


def route_dm(event: dict, context: BoltContext, client: WebClient, deps: BotDeps) -> bool:
    """Screen a DM that asks to check a partner, or ask when unsure; False: answer it as usual."""
    screener = getattr(deps, "screener", None)
    if screener is None or not deps.config.screening.dm_routing:
        return False
    from bot.slack.answers import question_from_text

    text = question_from_text(event.get("text", ""), context.bot_user_id)
    route = _route(text, screener)
    if route.kind == "guidance" or route.query is None:
        return False
    channel, user = event.get("channel", ""), event.get("user", "")
    thread_ts = event.get("thread_ts")
    key = f"prescreen:{channel}:{event.get('ts', '')}"
    logger.info("DM routed to pre-screening (%s) in %s", route.kind, channel)
    if route.kind == "unsure":
        message = render.build_route_question(route.query, text, user, thread_ts)
        _post(client, deps, channel, message, thread_ts=thread_ts, kind="prescreen_route", key=f"{key}:ask")
        return True
    query = route.query
    _hand_over(
        deps,
        lambda reply_key: screen_and_reply(
            query, client, deps, user=user, channel=channel, thread_ts=thread_ts, key=reply_key or key
        ),
        f"prescreen in {channel}",
    )
    return True


def _hand_over(deps: BotDeps, job: Callable[[str | None], Any], label: str) -> None:
    """Run a DM's screening on the answering thread, as an answer is (``answers.hand_over``):
    the event (its ticket) is done once the reply is queued, under the event's reply key (one
    reply per event, however often it is redone); if the queue is full, the event stays
    received and is screened later."""
    from bot.slack import answers

    def run(ticket: answers.EventTicket | None) -> None:
        reply_key = ticket.reply_key if ticket is not None else None
        if deps.work is None:  # answered in the listener: answers.tracked finishes the event
            job(reply_key)
            return
        try:
            job(reply_key)
        except Exception:
            logger.exception("could not pre-screen (%s)", label)
            if ticket is not None:
                ticket.failed()
            return
        if ticket is not None:
            ticket.finish()

    answers.hand_over(deps, run, label=label, later="screened", unrecorded=run)


def _route(text: str, screener: Any) -> Route:
    try:
        return route_message(text, rules=screener.rules, matcher=screener.matcher)
    except Exception:  # routing must never lose the message: answer it from the guidance instead
        logger.exception("could not route a DM; answering it from the guidance")
        return Route("guidance")


# -- the screening path ----------------------------------------------------------------------


def screen_and_reply(
    query: PartnerQuery,
    client: WebClient,
    deps: BotDeps,
    *,
    user: str,
    channel: str,
    thread_ts: str | None = None,
    key: str,
) -> Screening | None:
    """Screen, open or offer a case as the settings say, and send the result to ``channel``."""
    try:
        screening = _screen(deps, query)
    except PartnerQueryError as exc:
        _post(
            client,
            deps,
            channel,
            render.build_notice(str(exc)),
            thread_ts=thread_ts,
            kind="prescreen",
            key=key,
        )
        return None
    except Exception:
        _apologise(client, deps, channel, thread_ts, key)
        return None
    action = case_action(deps, screening.rating)
    note = None
    if action == "open":
        screening, note = _open_case(
            deps, screening, user=user, channel=channel, thread_ts=thread_ts, key=key
        )
    message = render.build_result_message(
        screening,
        deps.config.institution.team_name,
        user=user,
        case_offer=action == "offer" or (action == "open" and screening.case is None),
        case_note=note,
    )
    try:
        _post(
            client,
            deps,
            channel,
            message,
            thread_ts=thread_ts,
            kind="prescreen",
            key=key,
            case=screening.case,
        )
    except Exception:
        _apologise(client, deps, channel, thread_ts, f"{key}:apology")
    return screening


def _screen(deps: BotDeps, query: PartnerQuery) -> Screening:
    with deps.answer_lock:  # the screener shares the answerer's model
        return deps.screener.screen(query)  # type: ignore[union-attr]


def case_action(deps: BotDeps, rating: str) -> str:
    """What the settings say to do about a case for this rating: open, offer or off."""
    cases = deps.config.cases
    if getattr(deps, "cases", None) is None or not cases.enabled or rating == "green":
        return "off"
    return cases.prescreen_red if rating == "red" else cases.prescreen_amber


def _open_case(
    deps: BotDeps, screening: Screening, *, user: str, channel: str, thread_ts: str | None, key: str
) -> tuple[Screening, str | None]:
    """Open a pre-screen case with the whole screening attached; the result then names it."""
    # Rule ids name the organisation too: the same person screening another partner is another
    # concern (bot.cases joins an open case only on the same rule ids).
    partner = " ".join(screening.query.organisation.lower().split())[:80]
    rules = [
        {
            "id": f"prescreen:{reason.rule}:{partner}",
            "description": f"Pre-screen, {render.KIND_LABELS[reason.kind].lower()}",
            "reason": reason.text,
        }
        for reason in screening.reasons
        if reason.level in ("red", "amber")
    ]
    try:
        result = deps.cases.escalate(  # type: ignore[union-attr]
            source="pre-screen",
            severity="high" if screening.rating == "red" else "medium",
            requester=user,
            channel=channel,
            question=f"Partner pre-screen ({screening.rating}): {screening.query.organisation}",
            rules=rules,
            thread_ts=thread_ts,
            attachment=screening.to_attachment(),
            actor=user,
            dedupe_key=f"case:{key}",
            notify_requester=False,  # the result itself names the reference
        )
    except Exception:
        reference = new_reference()
        logger.exception("could not open a pre-screen case (reference %s)", reference)
        team = deps.config.institution
        return screening, (
            f"A case could not be opened automatically (reference {reference}). Please send this "
            f"result to the {team.team_name} at {team.email}."
        )
    logger.info("pre-screen case %s (%s) for a %s result", result.case.ref, result.outcome, screening.rating)
    return screening.with_case(result.case.ref), None


# -- the slash command, the shortcut and the form --------------------------------------------


def handle_prescreen_command(ack: Ack, command: dict, client: WebClient, deps: BotDeps) -> None:
    """``/prescreen [organisation]``: open the form (with the organisation filled in, if given)."""
    ack()
    from bot.slack.answers import question_from_text

    organisation = question_from_text(command.get("text", ""), None) or None
    _open_modal(client, deps, command.get("trigger_id"), organisation, command.get("channel_id"), command)


def handle_shortcut(ack: Ack, shortcut: dict, client: WebClient, deps: BotDeps) -> None:
    """The global shortcut "Screen a partner": open the form."""
    ack()
    _open_modal(client, deps, shortcut.get("trigger_id"), None, None, shortcut)


def _open_modal(
    client: WebClient,
    deps: BotDeps,
    trigger_id: str | None,
    organisation: str | None,
    channel: str | None,
    body: dict,
) -> None:
    screener = getattr(deps, "screener", None)
    user = (body.get("user") or {}).get("id") or body.get("user_id") or ""
    if screener is None:
        _tell(client, deps, body, user, channel, _unavailable_text(deps))
        return
    view = render.build_prescreen_modal(
        screener.rules,
        organisation=organisation,
        private_metadata=json.dumps({"channel": channel or ""}),
        team_name=deps.config.institution.team_name,
    )
    try:
        client.views_open(trigger_id=trigger_id, view=view)
    except Exception:
        reference = new_reference()
        logger.exception("could not open the pre-screen form (reference %s)", reference)
        _tell(
            client, deps, body, user, channel, f"Sorry, the form could not be opened (reference {reference})."
        )


def handle_submission(ack: Ack, body: dict, view: dict, client: WebClient, deps: BotDeps) -> None:
    """The form was sent: check it (errors shown in the form), then screen and DM the result."""
    user = (body.get("user") or {}).get("id", "")
    query = render.query_from_view(view)
    screener = getattr(deps, "screener", None)
    if screener is None:
        ack(response_action="errors", errors={render.FIELD_ORGANISATION: _unavailable_text(deps)})
        return
    try:
        query = screener.check_query(query)
    except PartnerQueryError as exc:
        ack(response_action="errors", errors={_field_of(str(exc)): str(exc)[:150]})
        return
    ack(response_action="update", view=render.build_submitted_view(query.organisation))
    key = f"prescreen:view:{view.get('id', '')}:{view.get('hash', '')}"
    _run(deps, lambda: screen_and_reply(query, client, deps, user=user, channel=user, key=key), "prescreen")


def _field_of(message: str) -> str:
    lowered = message.lower()
    for field in (render.FIELD_COUNTRY, render.FIELD_AREA, render.FIELD_FUNDING, render.FIELD_NOTES):
        if f"the {field} " in lowered:
            return field
    return render.FIELD_KIND if "kind of collaboration" in lowered else render.FIELD_ORGANISATION


# -- buttons ---------------------------------------------------------------------------------


def handle_open_case(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """ "Open a case with the team" on an amber (or red) result: screen again, open, show the reference."""
    ack()
    user = (body.get("user") or {}).get("id", "")
    channel = _channel_of(body)
    try:
        query, asker = render.decode_query_value(action.get("value", ""))
    except (ValueError, json.JSONDecodeError):
        _tell(client, deps, body, user, channel, "Sorry, that button no longer works; please screen again.")
        return
    if asker and asker != user:
        _tell(client, deps, body, user, channel, render.build_not_yours_text())
        return
    if getattr(deps, "cases", None) is None or not deps.config.cases.enabled:
        _tell(client, deps, body, user, channel, _no_cases_text(deps))
        return

    def run() -> None:
        try:
            screening = _screen(deps, query)
        except Exception:
            _apologise(client, deps, channel, _thread_of(body), f"prescreen:case:{_action_ts(action)}")
            return
        key = f"prescreen:button:{channel}:{_message_ts(body)}"
        screening, note = _open_case(
            deps, screening, user=user, channel=channel, thread_ts=_thread_of(body), key=key
        )
        message = render.build_result_message(
            screening, deps.config.institution.team_name, user=user, case_note=note
        )
        _replace(client, deps, body, message, key=f"{key}:result", case=screening.case)

    _run(deps, run, "prescreen-case")


def handle_new_screen(ack: Ack, body: dict, client: WebClient, deps: BotDeps) -> None:
    """ "Screen another partner": open the form."""
    ack()
    _open_modal(client, deps, body.get("trigger_id"), None, _channel_of(body), body)


def handle_route_screen(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """ "Screen this partner" on the unsure question: screen what the message named."""
    ack()
    user = (body.get("user") or {}).get("id", "")
    channel = _channel_of(body)
    try:
        query, asker = render.decode_query_value(action.get("value", ""))
    except (ValueError, json.JSONDecodeError):
        _tell(client, deps, body, user, channel, "Sorry, that button no longer works; please ask again.")
        return
    if asker != user:
        _tell(client, deps, body, user, channel, render.build_not_yours_text())
        return
    if getattr(deps, "screener", None) is None:
        _tell(client, deps, body, user, channel, _unavailable_text(deps))
        return
    key = f"prescreen:route:{channel}:{_message_ts(body)}"
    _replace(client, deps, body, render.build_chosen_text("screen", query.organisation), key=f"{key}:chosen")
    thread_ts = _thread_of(body)
    _run(
        deps,
        lambda: screen_and_reply(
            query, client, deps, user=user, channel=channel, thread_ts=thread_ts, key=key
        ),
        "prescreen",
    )


def handle_route_guidance(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """ "Answer from guidance" on the unsure question: answer the message as a question."""
    ack()
    user = (body.get("user") or {}).get("id", "")
    channel = _channel_of(body)
    try:
        text, asker, thread_ts = render.decode_guidance_value(action.get("value", ""))
    except (ValueError, json.JSONDecodeError):
        _tell(client, deps, body, user, channel, "Sorry, that button no longer works; please ask again.")
        return
    if asker != user:
        _tell(client, deps, body, user, channel, render.build_not_yours_text())
        return
    from bot.slack.answers import Ask, answer_and_reply

    key = f"prescreen:route:{channel}:{_message_ts(body)}"
    _replace(client, deps, body, render.build_chosen_text("guidance"), key=f"{key}:chosen")
    ask = Ask(question=text, channel=channel, user=user, thread_ts=thread_ts)
    _run(deps, lambda: answer_and_reply(ask, client, deps), "answer")


# -- sending ---------------------------------------------------------------------------------


def _post(
    client: WebClient,
    deps: BotDeps,
    channel: str,
    message: dict[str, Any],
    *,
    thread_ts: str | None,
    kind: str,
    key: str,
    case: str | None = None,
) -> None:
    """``chat.postMessage`` through the outbox (``bot.slack.answers.deliver``: with backoff, once per key)."""
    from bot.slack.answers import deliver

    payload = {
        "channel": channel,
        "thread_ts": thread_ts,
        **message,
        "unfurl_links": False,
        "unfurl_media": False,
    }
    deliver(deps, client, "chat.postMessage", payload, kind=kind, dedupe_key=key)


def _replace(
    client: WebClient,
    deps: BotDeps,
    body: dict,
    message: dict[str, Any],
    *,
    key: str,
    case: str | None = None,
) -> None:
    """Replace the message whose button was clicked (through its response_url), or post anew."""
    url = body.get("response_url")
    if not url:
        channel = _channel_of(body)
        _post(
            client, deps, channel, message, thread_ts=_thread_of(body), kind="prescreen", key=key, case=case
        )
        return
    from bot.slack.answers import send_to_response_url

    send_to_response_url(url, {"replace_original": True, **message}, deps, kind="prescreen", dedupe_key=key)


def _tell(client: WebClient, deps: BotDeps, body: dict, user: str, channel: str | None, text: str) -> None:
    """A private note to the user (ephemeral through the response_url, else a DM)."""
    from bot.slack.answers import deliver, send_to_response_url

    message = render.build_notice(text)
    try:
        url = body.get("response_url")
        if url:
            ephemeral = {"response_type": "ephemeral", "replace_original": False, **message}
            send_to_response_url(url, ephemeral, deps, kind="notice")
        elif user:
            deliver(deps, client, "chat.postMessage", {"channel": user, **message}, kind="notice")
    except Exception:
        logger.exception("could not tell a user about a pre-screen problem in %s", channel)


def _apologise(client: WebClient, deps: BotDeps, channel: str, thread_ts: str | None, key: str) -> str:
    reference = new_reference()
    logger.exception("could not pre-screen in %s (reference %s)", channel, reference)
    team = deps.config.institution
    text = (
        f"Sorry, something went wrong while screening (reference {reference}). Please try again, or "
        f"ask the {team.team_name} ({team.email})."
    )
    try:
        _post(client, deps, channel, render.build_notice(text), thread_ts=thread_ts, kind="apology", key=key)
    except Exception:
        logger.exception("could not send the apology (reference %s)", reference)
    return reference


def _run(deps: BotDeps, job: Callable[[], None], label: str) -> None:
    """Run on the work queue when there is one (so the listener only acks), else now."""
    work = getattr(deps, "work", None)
    if work is not None and work.submit(job, label):
        return
    job()


def new_reference() -> str:
    from bot.slack.answers import new_reference as answers_reference

    return answers_reference()


def _unavailable_text(deps: BotDeps) -> str:
    team = deps.config.institution
    return (
        f"Partner pre-screening is not available right now; please ask the {team.team_name} ({team.email})."
    )


def _no_cases_text(deps: BotDeps) -> str:
    team = deps.config.institution
    return f"Cases are not switched on here: please send this result to the {team.team_name} at {team.email}."


def _channel_of(body: dict) -> str:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""


def _message_ts(body: dict) -> str:
    return (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get("ts") or ""


def _thread_of(body: dict) -> str | None:
    return (body.get("message") or {}).get("thread_ts")


def _action_ts(action: dict) -> str:
    return str(action.get("action_ts") or "")
