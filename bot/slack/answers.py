"""Slack listeners: parse the payload, call the answerer once, render, send, translate errors.

The handlers are plain functions; ``bot.slack.app.create_app`` wires them to Slack ids and puts a
``BotDeps`` into bolt's context as ``deps``, so bolt injects it like ``client`` or ``event``.
Tests call them directly with mocks.

Error boundary: a ``QuestionError`` becomes its own (safe) message; any other exception becomes a
short apology with a reference id, logged with that id and the traceback. Nothing fails silently.
Question text is never logged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.answer import QuestionError
from bot.config import Config
from bot.records import Answer, AnswerStatus
from bot.slack import answers_render as render
from bot.slack.deps import BotDeps

logger = logging.getLogger(__name__)

# Message subtypes that are still a person writing a new message; all others (edits, deletions,
# joins, bot messages...) are ignored.
HUMAN_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
# Errors from chat.postMessage that mean "the bot cannot post here": share via response_url instead.
NOT_IN_CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


@dataclass(frozen=True)
class Ask:
    """A question to answer, and where and how the reply goes."""

    question: str
    channel: str
    user: str
    context: str | None = None
    thread_ts: str | None = None  # reply in this thread (None: top level)
    message_ts: str | None = None  # the question's own message (for the progress reaction)
    private: bool = False  # an ephemeral reply only the asker sees
    response_url: str | None = None  # slash commands: reply through the response URL
    unsolicited: bool = False  # a channel set to "all": stay quiet unless on topic
    remember: bool = True  # record the thread for follow-ups


def register(app: App, config: Config) -> None:
    """Wire the answering listeners: mentions, messages, App Home, the slash command, buttons."""
    app.event("app_mention")(handle_app_mention)
    app.event("message")(handle_message)
    app.event("app_home_opened")(handle_home_opened)
    app.command(config.slack.command)(handle_command)
    app.action(render.ACTION_HELPFUL)(handle_feedback_action)
    app.action(render.ACTION_NOT_HELPFUL)(handle_feedback_action)
    app.action(render.ACTION_SHARE)(handle_share_action)
    app.view(render.VIEW_FEEDBACK)(handle_feedback_submission)


# -- middleware ------------------------------------------------------------------------------


def skip_duplicate_events(body: dict, deps: BotDeps, next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002
    """Global middleware: acknowledge, but do not process, an event id seen before (Slack retries)."""
    event_id = body.get("event_id") if body.get("type") == "event_callback" else None
    if event_id and not deps.store.claim_event(str(event_id)):
        logger.info("skipped duplicate event %s", event_id)
        return BoltResponse(status=200, body="")
    next()
    return None


# -- events ----------------------------------------------------------------------------------


def handle_app_mention(event: dict, context: BoltContext, client: WebClient, deps: BotDeps) -> None:
    """@mention in a channel: answer in the thread of the message (or privately, per channel settings)."""
    if _from_bot(event, context.bot_user_id):
        return
    channel, user = event.get("channel", ""), event.get("user", "")
    settings = deps.channel_settings(channel)
    thread_ts = event.get("thread_ts") or event.get("ts")
    if settings.mode == "off":
        _post_ephemeral(
            client, channel, user, render.build_channel_off_text(deps.config.slack.command), thread_ts
        )
        return
    ask = Ask(
        question=question_from_text(event.get("text", ""), context.bot_user_id),
        channel=channel,
        user=user,
        context=_thread_question(deps, channel, event.get("thread_ts")),
        thread_ts=thread_ts,
        message_ts=event.get("ts"),
        private=settings.visibility == "private",
    )
    answer_and_reply(ask, client, deps)


def handle_message(event: dict, context: BoltContext, client: WebClient, deps: BotDeps) -> None:
    """Messages: DMs, follow-ups in threads the bot answered, and every question in "all" channels."""
    if _ignored_message(event, context.bot_user_id):
        return
    if event.get("channel_type") == "im":
        answer_and_reply(_dm_ask(event, context, deps), client, deps)
        return
    if _mentions(event.get("text", ""), context.bot_user_id):
        return  # app_mention answers it
    ask = _channel_ask(event, context, deps)
    if ask:
        answer_and_reply(ask, client, deps)


def handle_home_opened(event: dict, client: WebClient, deps: BotDeps) -> None:
    """App Home: publish what the bot does, examples, escalation and the team's contact."""
    if event.get("tab", "home") != "home" or not event.get("user"):
        return
    view = render.build_home_view(deps.config.institution, command=deps.config.slack.command)
    client.views_publish(user_id=event["user"], view=view)


def _dm_ask(event: dict, context: BoltContext, deps: BotDeps) -> Ask:
    thread_ts = event.get("thread_ts")
    return Ask(
        question=question_from_text(event.get("text", ""), context.bot_user_id),
        channel=event.get("channel", ""),
        user=event.get("user", ""),
        context=_thread_question(deps, event.get("channel", ""), thread_ts),
        thread_ts=thread_ts,
        message_ts=event.get("ts"),
    )


def _channel_ask(event: dict, context: BoltContext, deps: BotDeps) -> Ask | None:
    channel = event.get("channel", "")
    settings = deps.channel_settings(channel)
    thread_ts = event.get("thread_ts")
    is_reply = bool(thread_ts) and thread_ts != event.get("ts")
    earlier = _thread_question(deps, channel, thread_ts) if is_reply else None
    if settings.mode == "off" or (is_reply and earlier is None) or (not is_reply and settings.mode != "all"):
        return None
    return Ask(
        question=question_from_text(event.get("text", ""), context.bot_user_id),
        channel=channel,
        user=event.get("user", ""),
        context=earlier,
        thread_ts=thread_ts or event.get("ts"),
        message_ts=event.get("ts"),
        private=settings.visibility == "private",
        unsolicited=not is_reply,
    )


def _thread_question(deps: BotDeps, channel: str, thread_ts: str | None) -> str | None:
    if not thread_ts:
        return None
    try:
        return deps.store.thread_question(channel, thread_ts)
    except sqlite3.Error:  # answer without the thread's context rather than not at all
        logger.exception("could not read the thread's question in %s", channel)
        return None


def _ignored_message(event: dict, bot_user_id: str | None) -> bool:
    subtype = event.get("subtype")
    return (
        bool(subtype and subtype not in HUMAN_SUBTYPES)
        or _from_bot(event, bot_user_id)
        or not event.get("text")
    )


def _from_bot(event: dict, bot_user_id: str | None) -> bool:
    return (
        bool(event.get("bot_id") or event.get("bot_profile"))
        or not event.get("user")
        or (event.get("user") == bot_user_id)
    )


def _mentions(text: str, bot_user_id: str | None) -> bool:
    return bool(bot_user_id) and f"<@{bot_user_id}" in text


def question_from_text(text: str, bot_user_id: str | None) -> str:
    """The question in a Slack message: the bot's mention removed and Slack's escaping undone.

    Other markup (``<!channel>``, user mentions, links) is kept as typed; the renderer escapes it
    again on the way out, so it never pings anyone.
    """
    if bot_user_id:
        text = text.replace(f"<@{bot_user_id}>", " ")
        while (start := text.find(f"<@{bot_user_id}|")) != -1 and (end := text.find(">", start)) != -1:
            text = text[:start] + " " + text[end + 1 :]
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


# -- slash command ---------------------------------------------------------------------------


def handle_command(ack: Ack, command: dict, client: WebClient, deps: BotDeps) -> None:
    """``/trusted-research <question>``: a private answer, with a button to share it in the channel."""
    question = question_from_text(command.get("text", ""), None)
    contact = deps.config.institution.contact()
    if not question or question.lower() in {"help", "?"}:
        ack(text=render.build_usage_text(deps.config.slack.command, contact))
        return
    ack(text=render.build_progress_text())
    channel = command.get("channel_id", "")
    ask = Ask(
        question=question,
        channel=channel,
        user=command.get("user_id", ""),
        private=True,
        response_url=command.get("response_url"),
        remember=False,
    )
    answer_and_reply(ask, client, deps)


# -- the answer path -------------------------------------------------------------------------


def answer_and_reply(ask: Ask, client: WebClient, deps: BotDeps) -> None:
    """Answer ``ask`` and send the reply; on failure send the error's message or an apology."""
    started = time.perf_counter()
    with _progress(client, ask, deps):
        try:
            reply = _reply_for(ask, deps)
            if reply is None:
                return
            text, blocks, answer = reply
            reply_ts = _send(client, ask, deps, text, blocks)
        except Exception:  # the error boundary: apologise with a reference id, never fail silently
            send_apology(client, ask, deps)
            return
        if answer is not None:
            _remember(ask, reply_ts, deps)
            _log_answer(ask, answer, started)


def _reply_for(ask: Ask, deps: BotDeps) -> tuple[str, list[dict] | None, Answer | None] | None:
    """The reply's text and blocks (and the answer), or None to stay quiet."""
    try:
        answer = deps.answer(ask.question, ask.context)
    except QuestionError as exc:  # the user's mistake; its message is safe to show
        return render.build_notice_text(str(exc)), None, None
    if ask.unsolicited and answer.status is AnswerStatus.OFF_TOPIC:
        logger.info("unsolicited off-topic message in %s: no reply", ask.channel)
        return None
    return (*_answer_message(ask, answer, deps), answer)


def _answer_message(ask: Ask, answer: Answer, deps: BotDeps) -> tuple[str, list[dict]]:
    blocks = render.build_answer_blocks(
        answer,
        context=ask.context,
        thread_ts=ask.thread_ts,
        shareable=ask.private and deps.channel_settings(ask.channel).mode != "off",
        echo_question=ask.response_url is not None,
    )
    return render.build_answer_text(answer), blocks


def send_apology(client: WebClient, ask: Ask, deps: BotDeps) -> str:
    """Log the current exception with a new reference id and tell the user; returns the id."""
    reference = new_reference()
    logger.exception("could not answer in %s (reference %s)", ask.channel, reference)
    contact = deps.config.institution.contact()
    try:
        _send(
            client,
            ask,
            deps,
            render.build_error_text(reference),
            render.build_error_blocks(reference, contact),
        )
    except Exception:  # nothing left to tell the user with; the reference is in the log
        logger.exception("could not send the apology (reference %s)", reference)
    return reference


def new_reference() -> str:
    """A short id the user can quote and the logs can be searched for."""
    return f"TR-{uuid.uuid4().hex[:8].upper()}"


def _send(client: WebClient, ask: Ask, deps: BotDeps, text: str, blocks: list[dict] | None) -> str | None:
    """Send the reply where ``ask`` says; returns the posted message's ts when there is one."""
    if ask.response_url:
        message = {"response_type": "ephemeral", "replace_original": False, "text": text}
        send_to_response_url(ask.response_url, message | ({"blocks": blocks} if blocks else {}), deps)
        return None
    if ask.private:
        _post_ephemeral(client, ask.channel, ask.user, text, ask.thread_ts, blocks)
        return None
    response = client.chat_postMessage(
        channel=ask.channel,
        thread_ts=ask.thread_ts,
        text=text,
        blocks=blocks,
        unfurl_links=False,
        unfurl_media=False,
    )
    return response.get("ts")


def _post_ephemeral(
    client: WebClient, channel: str, user: str, text: str, thread_ts: str | None, blocks: list | None = None
) -> None:
    client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks)


def send_to_response_url(url: str, message: dict[str, Any], deps: BotDeps) -> None:
    """POST a message to a Slack response_url, with the app's retry handlers; raises on failure."""
    webhook = WebhookClient(url, retry_handlers=list(deps.retry_handlers) or None)
    response = webhook.send_dict(message)
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered HTTP {response.status_code}: {response.body[:200]}")


def _remember(ask: Ask, reply_ts: str | None, deps: BotDeps) -> None:
    root = ask.thread_ts or reply_ts
    if not ask.remember or not root:
        return
    follow_up = ask.context and len(ask.question.split()) <= deps.config.answer.followup_max_words
    # A short follow-up keeps the thread's earlier question as its context; a full question replaces it.
    try:
        deps.store.remember_thread(ask.channel, root, ask.context if follow_up else ask.question)
    except sqlite3.Error:  # the user has their answer; only a later follow-up loses its context
        logger.exception("could not remember the thread in %s", ask.channel)


@contextmanager
def _progress(client: WebClient, ask: Ask, deps: BotDeps) -> Iterator[None]:
    """Show a reaction on the question while it is being answered (a progress signal only)."""
    name = deps.config.slack.progress_reaction
    shown = bool(name and ask.message_ts) and _react(client.reactions_add, ask, name)
    try:
        yield
    finally:
        if shown:
            _react(client.reactions_remove, ask, name)


def _react(call: Callable[..., Any], ask: Ask, name: str) -> bool:
    try:
        call(channel=ask.channel, timestamp=ask.message_ts, name=name)
        return True
    except SlackApiError as exc:  # e.g. already_reacted, missing scope: the answer still goes out
        logger.warning("progress reaction failed in %s: %s", ask.channel, exc.response.get("error"))
        return False


def _log_answer(ask: Ask, answer: Answer, started: float) -> None:
    logger.info(
        "answered in %s: status=%s confidence=%s passages=%d question_chars=%d %.0fms",
        ask.channel,
        answer.status,
        answer.confidence,
        len(answer.passages),
        len(ask.question),
        (time.perf_counter() - started) * 1000,
    )


# -- buttons and the feedback modal ----------------------------------------------------------


def handle_feedback_action(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """Helpful / Not helpful: store it; "not helpful" opens a modal asking for an optional reason."""
    ack()
    try:
        value = render.decode_action_value(action.get("value", ""))
        helpful = action.get("action_id") == render.ACTION_HELPFUL
        feedback_id = deps.store.add_feedback(
            user=body.get("user", {}).get("id", ""),
            channel=_channel_of(body),
            question=value.question,
            chunk_ids=value.chunk_ids,
            helpful=helpful,
        )
        if helpful or not body.get("trigger_id"):
            _respond(client, body, render.build_feedback_thanks_text(), deps)
            return
        metadata = json.dumps({"feedback_id": feedback_id})
        client.views_open(
            trigger_id=body["trigger_id"], view=render.build_feedback_modal(metadata, _team(deps))
        )
    except Exception:
        _apologise_for_action(client, body, deps)


def handle_feedback_submission(ack: Ack, body: dict, view: dict, deps: BotDeps) -> None:
    """The "Not helpful" modal was sent: store the reason and thank the user in the modal."""
    reason = _reason_from(view)
    try:
        feedback_id = int(json.loads(view.get("private_metadata") or "{}")["feedback_id"])
        if reason:
            deps.store.set_feedback_reason(feedback_id, reason, user=body.get("user", {}).get("id", ""))
    except Exception:
        reference = new_reference()
        logger.exception("could not store a feedback reason (reference %s)", reference)
        ack(
            response_action="errors",
            errors={render.REASON_BLOCK: f"Sorry, that failed (reference {reference})."},
        )
        return
    ack(response_action="update", view=render.build_feedback_thanks_view())


def handle_share_action(ack: Ack, body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    """ "Share in channel" on a private answer: answer the same question again, publicly."""
    ack()
    user = body.get("user", {}).get("id", "")
    channel = _channel_of(body)
    try:
        value = render.decode_action_value(action.get("value", ""))
        answer = deps.answer(value.question, value.context)
        blocks = render.build_answer_blocks(
            answer, context=value.context, thread_ts=value.thread_ts, shared_by=user
        )
        _share(client, body, channel, value.thread_ts, render.build_answer_text(answer), blocks, deps)
        if body.get("response_url"):
            send_to_response_url(body["response_url"], {"delete_original": True}, deps)
    except Exception:
        _apologise_for_action(client, body, deps)


def _share(
    client: WebClient, body: dict, channel: str, thread_ts: str | None, text: str, blocks: list, deps: BotDeps
) -> None:
    try:
        client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
    except SlackApiError as exc:
        if exc.response.get("error") not in NOT_IN_CHANNEL_ERRORS or not body.get("response_url"):
            raise
        # The bot is not a member (e.g. a slash command in a channel it hasn't joined).
        message = {"response_type": "in_channel", "replace_original": False, "text": text, "blocks": blocks}
        send_to_response_url(body["response_url"], message, deps)


def _apologise_for_action(client: WebClient, body: dict, deps: BotDeps) -> None:
    ask = Ask(
        question="",
        channel=_channel_of(body),
        user=body.get("user", {}).get("id", ""),
        private=True,
        response_url=body.get("response_url"),
    )
    send_apology(client, ask, deps)


def _respond(client: WebClient, body: dict, text: str, deps: BotDeps) -> None:
    """An ephemeral note to the user who clicked a button."""
    if body.get("response_url"):
        message = {"response_type": "ephemeral", "replace_original": False, "text": text}
        send_to_response_url(body["response_url"], message, deps)
    else:
        _post_ephemeral(client, _channel_of(body), body.get("user", {}).get("id", ""), text, None)


def _reason_from(view: dict) -> str:
    values = view.get("state", {}).get("values", {})
    value = values.get(render.REASON_BLOCK, {}).get(render.REASON_ACTION, {}).get("value")
    return (value or "").strip()


def _channel_of(body: dict) -> str:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""


def _team(deps: BotDeps) -> str:
    return deps.config.institution.team_name
