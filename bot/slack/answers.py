"""Slack listeners: parse the payload, call the answerer once, render, send, translate errors.

The handlers are plain functions; ``bot.slack.app.create_app`` wires them to Slack ids and puts a
``BotDeps`` into bolt's context as ``deps``, so bolt injects it like ``client`` or ``event``.
Tests call them directly with mocks.

Error boundary: a ``QuestionError`` becomes its own (safe) message; any other exception becomes a
short apology with a reference id, logged with that id and the traceback. Nothing fails silently.
Question text is never logged.

Acks first, work later: listeners run in bolt's threads and only parse, acknowledge and queue;
answers are computed on the one answering thread (``deps.work``, ``bot.slack.work``), so every
ack is within Slack's 3 seconds whatever the queue holds. Every message goes through the outbox
(``deliver``: ``deps.outbox``, delivered with backoff by ``bot.slack.delivery``); without one (unit
tests) it is sent at once. Events are crash-safe: ``skip_duplicate_events`` records each as
received before it is acked, and it is marked done once its reply is in the outbox (its
``EventTicket``); received events left unfinished (a crash, SIGTERM, a full queue) are finished
by ``resume_events``, and a reply's dedupe key (``reply:<event id>``) keeps a redone event from
replying twice.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.addressing import decide_channel_message, decide_thread_reply, is_acknowledgement
from bot.answer import QuestionError
from bot.config import Config
from bot.records import Answer, AnswerStatus
from bot.slack import answers_render as render
from bot.slack import cases
from bot.slack.deps import BotDeps
from bot.slack.http import is_slack_response_url
from bot.state import BUSY, DONE, NEW, REDO, ReceivedEvent, StateStore, StoredAnswer, Thread

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
    app.event("app_mention")(tracked(handle_app_mention))
    app.event("message")(tracked(handle_message))
    app.event("app_home_opened")(tracked(handle_home_opened))
    app.command(config.slack.command)(tracked_command(handle_command))
    app.action(render.ACTION_HELPFUL)(handle_feedback_action)
    app.action(render.ACTION_NOT_HELPFUL)(handle_feedback_action)
    app.action(render.ACTION_SHARE)(handle_share_action)
    app.view(render.VIEW_FEEDBACK)(handle_feedback_submission)


# -- middleware ------------------------------------------------------------------------------


def skip_duplicate_events(
    body: dict,
    deps: BotDeps,
    next: Callable[[], None],  # noqa: A002 (bolt's name)
    context: BoltContext | None = None,
) -> BoltResponse | None:
    """Global middleware: record each event as received; ack, but skip, Slack's retries of events
    that are done or that a live process is working on now. A retry of an event that was received
    but not finished (its process died) is processed."""
    event_id = body.get("event_id") if body.get("type") == "event_callback" else None
    if not event_id:
        next()
        return None
    event_id = str(event_id)
    bot_user_id = context.bot_user_id if context is not None else None
    redoable = (body.get("event") or {}).get("type") in REDO_EVENT_TYPES
    stored = {"body": body, "bot_user_id": bot_user_id} if redoable else {}
    try:
        verdict = deps.store.receive_event(event_id, stored)
        if verdict in (NEW, REDO) and not redoable:  # e.g. app_home_opened: deduplicated, not redone
            deps.store.finish_event(event_id)
            verdict = None
    except sqlite3.Error:  # e.g. a full disk: answer it anyway, without the crash safety
        logger.exception("could not record event %s; processing it unrecorded", event_id)
        verdict = None
    if verdict in (DONE, BUSY):
        logger.info(
            "skipped a repeat of event %s (%s)", event_id, "done" if verdict == DONE else "in progress"
        )
        return BoltResponse(status=200, body="")
    if verdict == REDO:
        logger.info("event %s was received before but not finished: processing it now", event_id)
    if verdict is not None and context is not None:
        context[TICKET] = EventTicket(event_id, deps.store)
    elif context is not None:
        context[TICKET] = None
    next()
    return None


# -- receipts: an event is done once its reply is queued ----------------------------------------

TICKET = "trbot_event_ticket"
REDO_EVENT_TYPES = frozenset({"app_mention", "message"})
_current_ticket: contextvars.ContextVar[EventTicket | None] = contextvars.ContextVar(TICKET, default=None)


@dataclass
class EventTicket:
    """An event (or slash command) recorded as received: finished once its reply is in the outbox."""

    event_id: str
    store: StateStore
    kind: str = "event"
    body: dict[str, Any] | None = field(default=None, repr=False)  # to record (slash commands)
    recorded: bool = True
    handed_over: bool = False  # its work was queued: the queued job finishes it

    @property
    def reply_key(self) -> str:
        """The outbox dedupe key of the event's reply: one reply per event, whatever is redone."""
        return f"reply:{self.event_id}"

    def record(self) -> None:
        if self.recorded or self.body is None:
            return
        try:
            self.recorded = self.store.receive_event(self.event_id, self.body, kind=self.kind) != DONE
        except sqlite3.Error:
            logger.exception("could not record %s; answering it unrecorded", self.event_id)

    def finish(self) -> None:
        if not self.recorded:
            return
        try:
            self.store.finish_event(self.event_id)
        except sqlite3.Error:  # it will be redone; its reply's dedupe key keeps that to one reply
            logger.exception("could not mark event %s done", self.event_id)

    def failed(self) -> None:
        """The work failed unexpectedly: leave the event to be redone (a few times at most)."""
        if not self.recorded:
            return
        try:
            if self.store.fail_event_attempt(self.event_id):
                self.store.release_event(self.event_id)
            else:
                logger.error("event %s failed %s times: given up", self.event_id, "several")
        except sqlite3.Error:
            logger.exception("could not record the failure of event %s", self.event_id)

    def release(self) -> None:
        """Not queued (the queue is full): leave it for ``resume_events`` to pick up."""
        if not self.recorded:
            return
        try:
            self.store.release_event(self.event_id)
        except sqlite3.Error:
            logger.exception("could not release event %s", self.event_id)


def tracked(handler: Callable[..., None]) -> Callable[..., None]:
    """Wrap an event listener: its event is done when it returns, unless it queued work (which then
    finishes it). bolt injects the wrapper's named arguments; the handler gets those it takes."""
    wanted = set(inspect.signature(handler).parameters)

    def listener(event: dict, context: BoltContext, client: WebClient, deps: BotDeps) -> None:
        arguments = {"event": event, "context": context, "client": client, "deps": deps}
        _run_tracked(handler, context.get(TICKET), {k: v for k, v in arguments.items() if k in wanted})

    listener.__name__ = handler.__name__
    listener.__doc__ = handler.__doc__
    return listener


def tracked_command(handler: Callable[..., None]) -> Callable[..., None]:
    """Wrap the slash command's listener: the command is recorded (``command:<trigger_id>``) when
    its work is queued, after the ack, so that a restart finishes it too."""

    def listener(ack: Ack, command: dict, context: BoltContext, client: WebClient, deps: BotDeps) -> None:
        ticket = context.get(TICKET)
        if ticket is None and command.get("trigger_id"):
            stored = {"body": command, "bot_user_id": context.bot_user_id}
            ticket = EventTicket(
                f"command:{command['trigger_id']}", deps.store, "command", stored, recorded=False
            )
        _run_tracked(handler, ticket, {"ack": ack, "command": command, "client": client, "deps": deps})

    listener.__name__ = handler.__name__
    listener.__doc__ = handler.__doc__
    return listener


def _run_tracked(handler: Callable[..., None], ticket: EventTicket | None, arguments: dict) -> None:
    token = _current_ticket.set(ticket)
    try:
        handler(**arguments)
    except Exception:
        if ticket is not None and not ticket.handed_over:
            ticket.failed()
        raise
    finally:
        _current_ticket.reset(token)
    if ticket is not None and not ticket.handed_over:
        ticket.finish()


def resume_events(client: WebClient, deps: BotDeps) -> int:
    """Finish received events that no live process is working on (after a crash, a SIGTERM or a
    full queue): renew this process's leases, take the stale events over and queue them again.
    Returns how many were taken over. Run at start-up and periodically by the work queue."""
    deps.store.renew_events()
    room = deps.work.maxsize - deps.work.queued if deps.work is not None else 100
    if room <= 0:
        return 0
    received = deps.store.claim_stale_events(limit=room)
    if received:
        logger.info("finishing %d event(s) received earlier but not answered", len(received))
    for item in received:
        redo_event(item, client, deps)
    return len(received)


def redo_event(item: ReceivedEvent, client: WebClient, deps: BotDeps) -> None:
    """Process a received event (or slash command) again, from its stored body, as bolt would."""
    stored = item.body or {}
    body = stored.get("body") or {}
    ticket = EventTicket(item.event_id, deps.store, item.kind)
    context = BoltContext({"bot_user_id": stored.get("bot_user_id"), TICKET: ticket})
    try:
        if item.kind == "command":
            tracked_command(handle_command)(_no_ack, body, context, client, deps)
            return
        event = body.get("event") or {}
        handler = _REDO_HANDLERS.get(str(event.get("type")))
        if handler is None:
            ticket.finish()  # nothing of ours to redo (another feature's event, or not ours at all)
            return
        tracked(handler)(event, context, client, deps)
    except Exception:
        logger.exception("could not redo event %s", item.event_id)


def _no_ack(*args: Any, **kwargs: Any) -> None:
    """A redone slash command was acknowledged the first time."""


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
            client,
            channel,
            user,
            render.build_channel_off_text(deps.config.slack.command),
            thread_ts,
            deps=deps,
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
        if is_acknowledgement(event.get("text", "")):
            logger.info("direct message in %s: only an acknowledgement, no answer", event.get("channel"))
            return
        from bot.slack import prescreen  # (prescreen imports this module)

        if prescreen.route_dm(event, context, client, deps):
            return  # it asks to screen a partner (or is unclear: the user is asked)
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
    deliver(deps, client, "views.publish", {"user_id": event["user"], "view": view}, kind="home")


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
    """A reply in a thread the bot answered, or a message in an "all" channel, that is a question
    to the bot (``bot.addressing``); None to stay quiet (and add no reaction)."""
    channel, user, text = event.get("channel", ""), event.get("user", ""), event.get("text", "")
    settings = deps.channel_settings(channel)
    thread_ts = event.get("thread_ts")
    is_reply = bool(thread_ts) and thread_ts != event.get("ts")
    if settings.mode == "off" or (not is_reply and settings.mode != "all"):
        return None
    earlier = None
    if is_reply:
        thread = _thread(deps, channel, thread_ts)
        if thread is None:
            return None
        askers = thread.askers or tuple(filter(None, [event.get("parent_user_id")]))
        decision = decide_thread_reply(text, author=user, askers=askers, bot_user_id=context.bot_user_id)
        earlier = thread.question
    else:
        decision = decide_channel_message(text, bot_user_id=context.bot_user_id)
    if not decision.answer:
        kind = "thread reply" if is_reply else "message"
        logger.info("%s in %s: no answer (%s)", kind, channel, decision.reason)
        return None
    return Ask(
        question=question_from_text(text, context.bot_user_id),
        channel=channel,
        user=user,
        context=earlier,
        thread_ts=thread_ts or event.get("ts"),
        message_ts=event.get("ts"),
        private=settings.visibility == "private",
        unsolicited=not is_reply,
    )


def _thread(deps: BotDeps, channel: str, thread_ts: str | None) -> Thread | None:
    if not thread_ts:
        return None
    try:
        return deps.store.thread(channel, thread_ts)
    except sqlite3.Error:  # stay quiet: without the thread we cannot tell who asked
        logger.exception("could not read the thread in %s", channel)
        return None


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
        response_url=checked_response_url(command.get("response_url"), deps),
        remember=False,
    )
    answer_and_reply(ask, client, deps)


# -- the answer path -------------------------------------------------------------------------


def answer_and_reply(ask: Ask, client: WebClient, deps: BotDeps) -> None:
    """Queue ``ask`` on the answering thread (or answer it now, without a work queue).

    The event being handled (its ``EventTicket``) goes with the work, which marks it done once the
    reply is in the outbox. If the queue is full, the event stays received and is answered later.
    """

    def unrecorded(ticket: EventTicket | None) -> None:
        logger.error("the answering queue is full and %s could not be recorded", ask.channel)
        send_apology(client, ask, deps, dedupe_key=ticket.reply_key if ticket else None)

    hand_over(
        deps,
        lambda ticket: _answer_job(ask, client, deps, ticket),
        label=f"answer in {ask.channel}",
        later="answered",
        unrecorded=unrecorded,
    )


def hand_over(
    deps: BotDeps,
    job: Callable[[EventTicket | None], None],
    *,
    label: str,
    later: str,
    unrecorded: Callable[[EventTicket | None], None],
) -> None:
    """Run ``job(ticket)`` on the answering thread for the event being handled (now, without a
    work queue). A queued job marks its ticket done once its reply is in the outbox.

    If the queue is full, a recorded event is released to be redone later (it "will be
    ``later`` later"); one that could not be recorded goes to ``unrecorded(ticket)``.
    """
    ticket = _current_ticket.get()
    if deps.work is None:
        job(ticket)
        return
    if ticket is not None:
        ticket.record()
        ticket.handed_over = True
    if deps.work.submit(lambda: job(ticket), label=label):
        return
    if ticket is not None and ticket.recorded:
        ticket.release()
        logger.warning("the answering queue is full: %s will be %s later", ticket.event_id, later)
        return
    unrecorded(ticket)


def _answer_job(ask: Ask, client: WebClient, deps: BotDeps, ticket: EventTicket | None) -> None:
    reply_key = ticket.reply_key if ticket is not None else f"reply:{uuid.uuid4().hex}"
    try:
        answer_now(ask, client, deps, reply_key=reply_key)
    except Exception:  # not even an apology could be queued: leave the event to be redone
        logger.exception("could not reply in %s", ask.channel)
        if ticket is not None:
            ticket.failed()
        return
    if ticket is not None and ticket.handed_over:
        ticket.finish()


def answer_now(ask: Ask, client: WebClient, deps: BotDeps, *, reply_key: str | None = None) -> None:
    """Answer ``ask`` and queue the reply; on failure queue the error's message or an apology.

    Args:
        reply_key: The reply's outbox dedupe key (``reply:<event id>``): a redone event cannot
            reply twice, and the answer and the apology share it.
    """
    started = time.perf_counter()
    with _progress(client, ask, deps, reply_key):
        try:
            reply = _reply_for(ask, deps)
            if reply is None:
                return
            text, blocks, answer = reply
            if answer is not None:  # a case is written before anything is sent; errors are its own
                cases.escalate_ask(ask, client, deps, after=reply_key)
            sent = _send(client, ask, deps, text, blocks, kind="answer", dedupe_key=reply_key)
        except Exception:  # the error boundary: apologise with a reference id, never fail silently
            send_apology(client, ask, deps, dedupe_key=reply_key)
            return
        if answer is not None:
            _remember(ask, sent.root, deps)
            _log_answer(ask, answer, started)


def _reply_for(ask: Ask, deps: BotDeps) -> tuple[str, list[dict] | None, Answer | None] | None:
    """The reply's text and blocks (and the answer), or None to stay quiet."""
    try:
        answer = deps.answer(ask.question, ask.context)
    except QuestionError as exc:  # the user's mistake; its message is safe to show
        if ask.unsolicited:  # nobody asked the bot: no notice either
            return None
        return render.build_notice_text(str(exc)), None, None
    if ask.unsolicited and answer.status is not AnswerStatus.ANSWERED:
        logger.info("message in %s: not answered by the guidance (%s)", ask.channel, answer.status)
        return None
    return (*_answer_message(ask, answer, deps), answer)


def _answer_message(ask: Ask, answer: Answer, deps: BotDeps) -> tuple[str, list[dict]]:
    blocks = render.build_answer_blocks(
        answer,
        answer_id=_save_answer(ask, answer, deps),
        shareable=ask.private and deps.channel_settings(ask.channel).mode != "off",
        echo_question=ask.response_url is not None,
    )
    return render.build_answer_text(answer), blocks


def _save_answer(ask: Ask, answer: Answer, deps: BotDeps) -> str | None:
    """Keep the answer for its buttons (they carry only its id); None: send it without buttons."""
    try:
        return deps.store.save_answer(
            answer, user=ask.user, channel=ask.channel, thread_ts=ask.thread_ts, context=ask.context
        )
    except sqlite3.Error:  # e.g. a full disk: the answer matters more than its buttons
        reference = new_reference()
        logger.exception(
            "could not keep the answer in %s for its buttons (reference %s); sending it without",
            ask.channel,
            reference,
        )
        return None


def send_apology(client: WebClient, ask: Ask, deps: BotDeps, *, dedupe_key: str | None = None) -> str:
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
            kind="apology",
            dedupe_key=dedupe_key,
        )
    except Exception:  # nothing left to tell the user with; the reference is in the log
        logger.exception("could not send the apology (reference %s)", reference)
    return reference


def new_reference() -> str:
    """A short id the user can quote and the logs can be searched for."""
    return f"TR-{uuid.uuid4().hex[:8].upper()}"


def _send(
    client: WebClient,
    ask: Ask,
    deps: BotDeps,
    text: str,
    blocks: list[dict] | None,
    *,
    kind: str = "answer",
    dedupe_key: str | None = None,
) -> Sent:
    """Queue (or send) the reply where ``ask`` says."""
    if ask.response_url:
        message = {"response_type": "ephemeral", "replace_original": False, "text": text}
        message |= {"blocks": blocks} if blocks else {}
        return send_to_response_url(ask.response_url, message, deps, kind=kind, dedupe_key=dedupe_key)
    if ask.private:
        return _post_ephemeral(
            client,
            ask.channel,
            ask.user,
            text,
            ask.thread_ts,
            blocks,
            deps=deps,
            kind=kind,
            dedupe_key=dedupe_key,
        )
    payload = {
        "channel": ask.channel,
        "thread_ts": ask.thread_ts,
        "text": text,
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }
    return deliver(deps, client, "chat.postMessage", payload, kind=kind, dedupe_key=dedupe_key)


def _post_ephemeral(
    client: WebClient,
    channel: str,
    user: str,
    text: str,
    thread_ts: str | None,
    blocks: list | None = None,
    *,
    deps: BotDeps | None = None,
    kind: str = "notice",
    dedupe_key: str | None = None,
) -> Sent:
    payload = {"channel": channel, "user": user, "text": text, "thread_ts": thread_ts, "blocks": blocks}
    if deps is None:
        return _send_now(client, "chat.postEphemeral", _without_none(payload), None)
    return deliver(deps, client, "chat.postEphemeral", payload, kind=kind, dedupe_key=dedupe_key)


def send_to_response_url(
    url: str,
    message: dict[str, Any],
    deps: BotDeps,
    *,
    kind: str = "notice",
    dedupe_key: str | None = None,
    after: str | None = None,
) -> Sent:
    """Queue (or POST) a message to a Slack response_url; without an outbox, raises on failure."""
    return deliver(
        deps,
        None,
        "response_url",
        {"url": url, "message": message},
        kind=kind,
        dedupe_key=dedupe_key,
        after=after,
    )


# -- delivery: the outbox, or at once ---------------------------------------------------------

PENDING_ROOT = "pending:"


@dataclass(frozen=True)
class Sent:
    """A message handed over: queued in the outbox (``message_id``) or sent at once (``ts``)."""

    message_id: int | None = None
    ts: str | None = None

    @property
    def root(self) -> str | None:
        """The message's ts, or, while it is queued, a placeholder that delivery replaces (threads)."""
        return self.ts or (f"{PENDING_ROOT}{self.message_id}" if self.message_id else None)


def deliver(
    deps: BotDeps,
    client: WebClient | None,
    method: str,
    payload: dict[str, Any],
    *,
    kind: str,
    dedupe_key: str | None = None,
    after: str | None = None,
    fallback: tuple[str, dict[str, Any], frozenset[str]] | None = None,
) -> Sent:
    """Put a message in the outbox and wake its worker (``bot.outbox.Outbox.enqueue``).

    Without an outbox (unit tests), or if the outbox cannot be written (a full disk), the message
    is sent at once with ``client`` instead, and a failure raises.
    """
    payload = _without_none(payload)
    if deps.outbox is not None:
        try:
            message_id = deps.outbox.enqueue(
                method, payload, kind=kind, dedupe_key=dedupe_key, after=after, fallback=fallback
            )
        except sqlite3.Error:
            reference = new_reference()
            logger.exception(
                "could not queue a %s message (reference %s): sending it at once", kind, reference
            )
        else:
            if deps.outbox_worker is not None:
                deps.outbox_worker.wake()
            return Sent(message_id=message_id)
    return _send_now(client, method, payload, deps, fallback)


def _send_now(
    client: WebClient | None,
    method: str,
    payload: dict[str, Any],
    deps: BotDeps | None,
    fallback: tuple[str, dict[str, Any], frozenset[str]] | None = None,
) -> Sent:
    if method == "response_url":
        handlers = list(deps.retry_handlers) if deps is not None else []
        webhook = WebhookClient(payload["url"], retry_handlers=handlers or None)
        response = webhook.send_dict(payload["message"])
        if response.status_code != 200:
            raise RuntimeError(f"response_url answered HTTP {response.status_code}")
        return Sent()
    if client is None:
        raise RuntimeError(f"no Slack client to send {method} with")
    try:
        response = getattr(client, method.replace(".", "_"))(**payload)
    except SlackApiError as exc:
        if fallback is None or exc.response.get("error") not in fallback[2]:
            raise
        return _send_now(client, fallback[0], fallback[1], deps)
    return Sent(ts=response.get("ts") if hasattr(response, "get") else None)


def _without_none(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if value is not None}


def on_delivered(deps: BotDeps) -> Callable[[Any, dict[str, Any]], None]:
    """A hook for the delivery worker: once a top-level answer is posted, its thread (remembered
    under a placeholder while queued) takes the answer's real ts, so replies in it are follow-ups."""

    def thread_of_answer(delivery: Any, result: dict[str, Any]) -> None:
        if delivery.kind != "answer" or delivery.method != "chat.postMessage" or not result.get("ts"):
            return
        if delivery.payload.get("thread_ts"):
            return
        deps.store.rename_thread(
            str(delivery.payload.get("channel", "")), f"{PENDING_ROOT}{delivery.id}", str(result["ts"])
        )

    return thread_of_answer


def _remember(ask: Ask, reply_ts: str | None, deps: BotDeps) -> None:
    root = ask.thread_ts or reply_ts
    if not ask.remember or not root:
        return
    follow_up = ask.context and len(ask.question.split()) <= deps.config.answer.followup_max_words
    # A short follow-up keeps the thread's earlier question as its context; a full question replaces it.
    try:
        question = ask.context if follow_up else ask.question
        deps.store.remember_thread(ask.channel, root, question, asker=ask.user)
    except sqlite3.Error:  # the user has their answer; only a later follow-up loses its context
        logger.exception("could not remember the thread in %s", ask.channel)


@contextmanager
def _progress(client: WebClient, ask: Ask, deps: BotDeps, reply_key: str | None = None) -> Iterator[None]:
    """Show a reaction on the question while it is being answered (a progress signal only).

    Adding it is best-effort and never holds the reply up (skipped while Slack is not answering,
    any failure logged and ignored); removing it goes through the outbox, after the reply, so the
    hourglass is also cleared after an outage.
    """
    name = deps.config.slack.progress_reaction
    # No reaction on a message nobody addressed to the bot: it may get no reply at all.
    shown = bool(name and ask.message_ts and not ask.unsolicited) and _add_reaction(client, ask, name, deps)
    try:
        yield
    finally:
        if shown:
            _remove_reaction(client, ask, name, deps, reply_key)


def _add_reaction(client: WebClient, ask: Ask, name: str, deps: BotDeps) -> bool:
    """True if the reaction is (or may be) on the message, so its removal should be queued."""
    worker = deps.outbox_worker
    if worker is not None and not worker.slack_reachable:
        logger.info("Slack is not answering: no progress reaction in %s", ask.channel)
        return False
    fast = worker.client if worker is not None else client  # no built-in retries: never waits long
    try:
        fast.reactions_add(channel=ask.channel, timestamp=ask.message_ts, name=name)
        return True
    except SlackApiError as exc:  # e.g. missing scope: the answer still goes out
        error = exc.response.get("error")
        if error == "already_reacted":
            return True
        logger.warning("progress reaction failed in %s: %s", ask.channel, error)
        return False
    except Exception as exc:  # a lost connection, a timeout: it may have been added; go on regardless
        logger.warning("progress reaction failed in %s: %s", ask.channel, type(exc).__name__)
        return True


def _remove_reaction(client: WebClient, ask: Ask, name: str, deps: BotDeps, reply_key: str | None) -> None:
    payload = {"channel": ask.channel, "timestamp": ask.message_ts, "name": name}
    key = f"progress:{reply_key}" if reply_key else None
    try:
        deliver(deps, client, "reactions.remove", payload, kind="progress", dedupe_key=key, after=reply_key)
    except Exception as exc:  # sent at once (no outbox) and failed: cosmetic only
        logger.warning("could not remove the progress reaction in %s: %s", ask.channel, type(exc).__name__)


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
    body = checked_body(body, deps)
    try:
        stored = _stored_answer(action, deps)
        if stored is None:
            _respond(client, body, render.build_answer_expired_text(deps.config.retention.thread_days), deps)
            return
        helpful = action.get("action_id") == render.ACTION_HELPFUL
        feedback_id = deps.store.add_feedback(  # what was answered, never what the payload says
            user=body.get("user", {}).get("id", ""),
            channel=stored.channel,
            question=stored.question,
            chunk_ids=stored.chunk_ids,
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
    """ "Share in channel" on a private answer: post the stored answer publicly, where it was asked (queued).

    Only the asker can share, only where the answer was given, and not into a channel set to off.
    What is shared is the stored answer (re-answered from the stored question only if the record
    can no longer be read), never what the button's value says.
    """
    ack()
    body = checked_body(body, deps)
    run_later(deps, lambda: _share_answer(body, action, client, deps), "share", client, body)


def run_later(deps: BotDeps, run: Callable[[], None], label: str, client: WebClient, body: dict) -> None:
    """Queue a button's work on the answering thread (or run it now, without a work queue)."""
    if deps.work is None:
        run()
    elif not deps.work.submit(run, label=label):
        try:
            raise RuntimeError(f"the answering queue is full ({label})")
        except RuntimeError:
            _apologise_for_action(client, body, deps)


def _share_answer(body: dict, action: dict, client: WebClient, deps: BotDeps) -> None:
    user = body.get("user", {}).get("id", "")
    channel = _channel_of(body)
    try:
        stored = _stored_answer(action, deps)
        refusal = _share_refusal(stored, user, channel, deps)
        if refusal is not None:
            logger.info("share refused in %s: %s", channel, refusal[0])
            _respond(client, body, refusal[1], deps)
            return
        answer = stored.answer or deps.answer(stored.question, stored.context)
        blocks = render.build_answer_blocks(answer, shared_by=user)
        share_key = f"share:{body.get('trigger_id') or uuid.uuid4().hex}"
        _share(
            client, body, channel, stored.thread_ts, render.build_answer_text(answer), blocks, deps, share_key
        )
        if body.get("response_url"):
            send_to_response_url(
                body["response_url"], {"delete_original": True}, deps, kind="share", after=share_key
            )
    except Exception:
        _apologise_for_action(client, body, deps)


def _share(
    client: WebClient,
    body: dict,
    channel: str,
    thread_ts: str | None,
    text: str,
    blocks: list,
    deps: BotDeps,
    share_key: str | None = None,
) -> None:
    payload = {
        "channel": channel,
        "thread_ts": thread_ts,
        "text": text,
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }
    fallback = None
    if body.get("response_url"):
        # The bot is not a member (e.g. a slash command in a channel it hasn't joined): Slack
        # answers not_in_channel, and the outbox posts it through the response_url instead.
        message = {"response_type": "in_channel", "replace_original": False, "text": text, "blocks": blocks}
        fallback = ("response_url", {"url": body["response_url"], "message": message}, NOT_IN_CHANNEL_ERRORS)
    deliver(deps, client, "chat.postMessage", payload, kind="share", dedupe_key=share_key, fallback=fallback)


def _share_refusal(
    stored: StoredAnswer | None, user: str, channel: str, deps: BotDeps
) -> tuple[str, str] | None:
    """Why this share is refused (a reason for the log, a message for the user), or None."""
    if stored is None:
        days = deps.config.retention.thread_days
        return "unknown or expired answer", render.build_answer_expired_text(days)
    if stored.user != user:
        return "not the asker", render.build_share_refused_text("not_asker")
    if stored.channel != channel:
        return "another channel", render.build_share_refused_text("other_channel")
    if deps.channel_settings(channel).mode == "off":
        return "channel is off", render.build_share_refused_text("channel_off")
    return None


def _stored_answer(action: dict, deps: BotDeps) -> StoredAnswer | None:
    try:
        answer_id = render.decode_action_value(str(action.get("value") or "")).answer_id
    except ValueError:  # not ours, or a button from before answers were kept by id
        return None
    return deps.store.stored_answer(answer_id)


def resolve_action_value(raw: str, deps: BotDeps) -> render.ActionValue | None:
    """What an answer's button acts on, from the state database (None: unknown or expired).

    Button values hold only the answer's id; every other listener that needs the question, the
    chunks shown, the thread or the asker reads them here, never from the payload.
    """
    stored = _stored_answer({"value": raw}, deps)
    if stored is None:
        return None
    return render.ActionValue(
        answer_id=stored.id,
        question=stored.question,
        chunk_ids=stored.chunk_ids,
        context=stored.context,
        thread_ts=stored.thread_ts,
        user=stored.user,
        channel=stored.channel,
    )


def checked_body(body: dict, deps: BotDeps) -> dict:
    """The interaction payload without a ``response_url`` that is not on a Slack host (logged, not shown)."""
    if checked_response_url(body.get("response_url"), deps) is None and body.get("response_url"):
        return {key: value for key, value in body.items() if key != "response_url"}
    return body


def checked_response_url(url: str | None, deps: BotDeps) -> str | None:
    """``url`` if it is a Slack response URL (``bot.slack.http.is_slack_response_url``), else None."""
    if url and not is_slack_response_url(url, deps.config.slack.api_url):
        logger.warning("ignored a response_url that is not on a Slack host (%d characters)", len(str(url)))
        return None
    return url or None


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
        _post_ephemeral(client, _channel_of(body), body.get("user", {}).get("id", ""), text, None, deps=deps)


def _reason_from(view: dict) -> str:
    values = view.get("state", {}).get("values", {})
    value = values.get(render.REASON_BLOCK, {}).get(render.REASON_ACTION, {}).get("value")
    return (value or "").strip()


def _channel_of(body: dict) -> str:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""


def _team(deps: BotDeps) -> str:
    return deps.config.institution.team_name


# The event listeners that ``redo_event`` runs again for a stored event (other events are only
# deduplicated: an App Home view is published again when it is next opened).
_REDO_HANDLERS: dict[str, Callable[..., None]] = {
    "app_mention": handle_app_mention,
    "message": handle_message,
}
