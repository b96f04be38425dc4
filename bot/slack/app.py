"""The Bolt app factory: the only place that wires Slack ids to trbot's answers.

No tokens are read at import. ``trbot serve`` builds the app from the loaded config and the
environment's tokens; tests build it with a fake token and a ``WebClient`` on a local fake API.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.http_retry import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    RetryHandler,
    RetryIntervalCalculator,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler as _SdkServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.config import Config
from bot.outbox import Outbox
from bot.slack import answers, cases, prescreen
from bot.slack.delivery import OutboxWorker, build_delivery_client
from bot.slack.deps import BotDeps, SupportsAnswer
from bot.slack.work import WorkQueue
from bot.state import StateStore

logger = logging.getLogger(__name__)

# What the app subscribes to and the scopes it uses; `trbot manifest` is built from these,
# and tests check them against the listeners below and the Web API methods the app calls.
BOT_EVENTS = ("app_home_opened", "app_mention", "message.channels", "message.groups", "message.im")
BOT_SCOPES = (
    "app_mentions:read",  # app_mention
    "channels:history",  # message.channels (thread follow-ups, "all" channels)
    "groups:history",  # message.groups (the same in private channels)
    "im:history",  # message.im (direct messages)
    "chat:write",  # chat.postMessage, chat.postEphemeral
    "commands",  # the slash command
    "reactions:write",  # reactions.add / reactions.remove (progress)
)

# Listener threads only parse, ack and queue (answers run on one thread: bot.slack.work), so a
# few are enough to keep every ack within Slack's 3 seconds however many questions are queued.
LISTENER_THREADS = 8


class ServerErrorRetryHandler(_SdkServerErrorRetryHandler):
    """Retries any 5xx answer (slack_sdk's own handler retries only 500 and 503)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and 500 <= response.status_code < 600


def build_retry_handlers(
    max_retries: int, interval: RetryIntervalCalculator | None = None
) -> list[RetryHandler]:
    """Retries for rate limits (honouring Retry-After), connection errors and 5xx answers."""
    interval = interval or BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return [
        RateLimitErrorRetryHandler(max_retry_count=max_retries),
        ConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
        ServerErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
    ]


def build_web_client(config: Config, token: str | None) -> WebClient:
    """A ``WebClient`` on ``config.slack.api_url`` with the app's retry handlers."""
    return WebClient(
        token=token,
        base_url=api_base_url(config),
        retry_handlers=build_retry_handlers(config.slack.max_retries),
    )


def api_base_url(config: Config) -> str:
    return config.slack.api_url.rstrip("/") + "/"


def create_app(
    config: Config,
    answerer: SupportsAnswer,
    store: StateStore,
    *,
    client: WebClient | None = None,
    triager: Any = None,
    screener: Any = None,
    outbox: Outbox | None = None,
    delivery_client: WebClient | None = None,
    start_workers: bool = True,
    **app_kwargs: Any,
) -> App:
    """Build the Bolt app and wire every listener.

    Args:
        config: The loaded settings.
        answerer: Anything with ``answer(question, context=None) -> Answer``.
        store: The bot's state database (event dedupe, threads, feedback).
        client: The Web API client; built from ``config.slack.api_url`` and ``token`` if absent.
            A given client gets the app's retry handlers (and ``token``, if it has none).
        triager: The escalation rules (``bot.triggers.Triager``); with ``cases.enabled``, a
            question they match opens a case (``bot.slack.cases``).
        screener: Partner pre-screening (``bot.screening.Screener``): DMs asking to check a
            partner, ``/prescreen`` and its shortcut. None: not available.
        outbox: Where every message is queued; an ``Outbox`` on ``config.paths.state_db`` if absent.
        delivery_client: The outbox worker's client (no built-in retries); built if absent.
        start_workers: Start the outbox worker and the answering thread now (``trbot serve``
            starts them itself, after draining the outbox); see ``start_workers`` / ``stop_workers``.
        **app_kwargs: Passed to ``slack_bolt.App`` (``token``, ``signing_secret``,
            ``token_verification_enabled``, ``listener_executor``...).
    """
    token = app_kwargs.pop("token", None)
    if client is None:
        client = build_web_client(config, token)
    else:
        client.retry_handlers = build_retry_handlers(config.slack.max_retries)
        client.token = client.token or token
    outbox = outbox or Outbox(config.paths.state_db, config.outbox)
    worker = OutboxWorker(outbox, delivery_client or build_delivery_client(config, client.token))
    deps = BotDeps(
        config,
        answerer,
        store,
        tuple(client.retry_handlers),
        outbox=outbox,
        outbox_worker=worker,
        work=WorkQueue(),
        screener=screener,
    )
    deps = cases.attach_services(deps, client, triager=triager)
    app_kwargs.setdefault(
        "listener_executor",
        ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="trbot-listener"),
    )
    app = App(client=client, name="trbot", **app_kwargs)
    register(app, deps)
    worker.on_delivered.append(answers.on_delivered(deps))
    app._trbot_deps = deps  # type: ignore[attr-defined]  (read with app_deps)
    if start_workers:
        start_app_workers(app)
    return app


def app_deps(app: App) -> BotDeps:
    """The ``BotDeps`` that ``create_app`` wired into ``app``."""
    return app._trbot_deps  # type: ignore[attr-defined]


def start_app_workers(app: App) -> None:
    """Start the outbox worker and the answering thread (which first finishes unfinished events)."""
    deps = app_deps(app)
    if deps.outbox_worker is not None:
        deps.outbox_worker.start()
    if deps.work is not None:
        deps.work.start(sweep=lambda: answers.resume_events(app.client, deps))


def stop_app_workers(app: App, *, drain_seconds: float = 0.0, work_seconds: float = 30.0) -> int:
    """Stop the answering thread after its current job (events not done stay received, for the
    next start), then deliver the outbox for up to ``drain_seconds`` and stop its worker.

    Returns:
        How many messages are still in the outbox (delivered at the next start).
    """
    deps = app_deps(app)
    if deps.work is not None:
        left = deps.work.stop(work_seconds)
        if left:
            logger.info("%d queued question(s) handed over to the next start", left)
    try:
        deps.store.release_events()
    except Exception:  # their leases lapse anyway
        logger.exception("could not release this process's events")
    worker = deps.outbox_worker
    if worker is None:
        return 0
    worker.stop()
    return (
        worker.drain(drain_seconds)
        if drain_seconds > 0
        else (deps.outbox.outstanding() if deps.outbox else 0)
    )


def register(app: App, deps: BotDeps) -> None:
    """Wire middleware and listeners to the app."""

    def provide_deps(context: BoltContext, next: Any) -> None:  # noqa: A002 (bolt's name)
        context["deps"] = deps
        next()

    app.use(provide_deps)
    app.use(answers.skip_duplicate_events)
    cases.register(app, deps.config)  # before answers: team members' App Home is the cases one
    answers.register(app, deps.config)
    prescreen.register(app, deps.config)
    app.error(_log_unhandled)


def _log_unhandled(error: Exception, body: dict) -> None:
    # Listeners catch their own errors and tell the user; this is for bolt-level failures.
    reference = answers.new_reference()
    logger.error(
        "unhandled error for a %s request (reference %s)", body.get("type"), reference, exc_info=error
    )
