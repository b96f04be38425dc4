"""`trbot serve` and friends: tokens from the environment, the transports, the manifest, exports.

Socket Mode (the default) needs ``SLACK_BOT_TOKEN`` and ``SLACK_APP_TOKEN``; HTTP needs
``SLACK_BOT_TOKEN`` and ``SLACK_SIGNING_SECRET`` and serves Events API and interactivity
requests at ``/slack/events``. Tokens are checked before the (slow) index and model load.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_bolt.error import BoltError

from bot.cases import check_settings
from bot.config import Config, SlackSettings
from bot.reload import LiveAnswerer
from bot.slack import cases, prescreen
from bot.slack.app import (
    BOT_EVENTS,
    BOT_SCOPES,
    api_base_url,
    app_deps,
    build_web_client,
    create_app,
    start_app_workers,
    stop_app_workers,
)
from bot.slack.http import EVENTS_PATH, bind_listener, install_log_redaction, make_http_server
from bot.state import StateStore

logger = logging.getLogger(__name__)

APPS_PAGE = "https://api.slack.com/apps"
FEEDBACK_FIELDS = ("id", "created_at", "user", "channel", "question", "chunk_ids", "helpful", "reason")
# Where each token lives in the app's settings pages, and what it looks like.
_TOKENS = {
    "SLACK_BOT_TOKEN": (
        re.compile(r"xoxb-[A-Za-z0-9-]+"),
        "a bot token starting with xoxb-",
        "OAuth & Permissions → Bot User OAuth Token (install the app to the workspace first)",
    ),
    "SLACK_APP_TOKEN": (
        re.compile(r"xapp-[A-Za-z0-9-]+"),
        "an app-level token starting with xapp-",
        "Basic Information → App-Level Tokens (generate one with the connections:write scope)",
    ),
    "SLACK_SIGNING_SECRET": (
        re.compile(r"[0-9a-fA-F]{16,}"),
        "the signing secret (32 hexadecimal characters)",
        "Basic Information → App Credentials → Signing Secret",
    ),
}


class SlackConfigError(Exception):
    """A Slack token or secret is missing, malformed or rejected; says which and where to get it."""


@dataclass(frozen=True)
class SlackTokens:
    bot_token: str
    app_token: str | None = None
    signing_secret: str | None = None


def read_tokens(transport: str, env: Mapping[str, str] | None = None) -> SlackTokens:
    """The tokens ``transport`` ("socket" or "http") needs, from the environment.

    Raises:
        SlackConfigError: naming the variable, its expected form and where to find it.
    """
    env = os.environ if env is None else env
    if transport not in ("socket", "http"):
        raise SlackConfigError(f"unknown Slack transport {transport!r} (expected socket or http)")
    bot_token = _token(env, "SLACK_BOT_TOKEN", transport)
    if transport == "socket":
        return SlackTokens(bot_token, app_token=_token(env, "SLACK_APP_TOKEN", transport))
    return SlackTokens(bot_token, signing_secret=_token(env, "SLACK_SIGNING_SECRET", transport))


def _token(env: Mapping[str, str], name: str, transport: str) -> str:
    pattern, form, where = _TOKENS[name]
    value = env.get(name, "")
    mode = "Socket Mode" if transport == "socket" else "HTTP mode"
    hint = f"it should be {form}; find it at {APPS_PAGE} → your app → {where}"
    if not value:
        raise SlackConfigError(f"{name} is not set ({mode} needs it): {hint}")
    if not pattern.fullmatch(value):
        raise SlackConfigError(f"{name} is malformed (got {_redact(value)}): {hint}")
    return value


def _redact(value: str) -> str:
    shown = value.strip()[:5]
    return f"'{shown}…' ({len(value)} characters)" if shown else "only spaces"


def serve(
    config: Config,
    *,
    transport: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Check the tokens, load the index and model once, then serve Slack until interrupted.

    Raises:
        SlackConfigError: a token is missing, malformed or rejected by Slack.
        IndexerError: the index or the model cannot be loaded.
    """
    install_log_redaction()
    transport = transport or config.slack.transport
    tokens = read_tokens(transport, env)
    check_settings(config.cases)  # cases enabled with no channel or no team: stop before the slow load
    logger.info("settings: %s", config.source or "none (defaults)")
    listener = None
    if transport == "http":  # a port in use or a bad host is found before the slow load
        port = port if port is not None else config.slack.http_port
        listener = bind_listener(config.slack.http_host, port, config.slack.http_backlog)
    try:
        check_bot_token(config, tokens.bot_token)
        if transport == "socket":
            check_app_token(config, tokens.app_token or "")
        check_case_channel(config, tokens.bot_token)
        store = StateStore(config.paths.state_db, config.retention)
        _keep_pruning(store)
        logger.info("loading the index and the model…")
        from bot.answer import open_answerer  # imports the model libraries: slow, so only here

        answerer = LiveAnswerer(open_answerer(config), config)
        answerer.watch()
        triager = cases.open_case_triager(config, answerer)  # the escalation rules, if cases are on
        screener = prescreen.open_prescreen(config, answerer)  # partner pre-screening, on the same model
        app = _build_app(config, answerer, store, tokens, triager=triager, screener=screener)
    except BaseException:
        if listener is not None:
            listener.close()
        raise
    stop = threading.Event()
    start_serving(app, config)
    cases.start_case_reminders(app_deps(app))
    restore = stop_on_signals(stop, interrupt_main=listener is not None)
    try:
        if listener is not None:
            run_http(app, listener, config.slack, tokens.signing_secret or "")
        else:
            run_socket_mode(app, tokens.app_token or "", stop=stop)
    except ServeStopped:
        pass
    finally:
        restore()
        finish_serving(app, config)


class ServeStopped(Exception):
    """Raised in the main thread by SIGTERM or SIGINT to end a transport that blocks it (HTTP)."""


def stop_on_signals(stop: threading.Event, *, interrupt_main: bool = False) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set ``stop`` (and, with ``interrupt_main``, raise ``ServeStopped``
    in the main thread); returns a function that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: Any) -> None:
        first = not stop.is_set()
        stop.set()
        if first:
            logger.info(
                "%s: taking no more events; finishing in-flight work, then exiting",
                signal.Signals(signum).name,
            )
        if interrupt_main:
            raise ServeStopped()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def start_serving(app: App, config: Config) -> int:
    """Before taking events: deliver what the outbox holds (up to ``outbox.start_drain_seconds``;
    after a restart every pending message is tried at once), then start the outbox worker and the
    answering thread, which first finishes the events received but not answered before.

    Returns:
        How many messages are still queued (the worker goes on with them in the background).
    """
    deps = app_deps(app)
    outbox, worker = deps.outbox, deps.outbox_worker
    left = 0
    if outbox is not None and worker is not None:
        _keep_pruning(outbox)
        outbox.make_due()
        queued = outbox.outstanding()
        if queued:
            logger.info("delivering %d queued message(s) before taking events", queued)
            left = worker.drain(config.outbox.start_drain_seconds)
            if left:
                logger.warning("%d message(s) not delivered yet: the outbox worker keeps trying", left)
    unfinished = deps.store.unfinished_events()
    if unfinished:
        logger.info(
            "%d event(s) received before the restart are not answered yet: finishing them", unfinished
        )
    start_app_workers(app)
    return left


def finish_serving(app: App, config: Config) -> int:
    """After the transport stopped: finish the answer in progress (the rest stay received, for the
    next start), deliver the outbox for up to ``outbox.stop_drain_seconds``, stop the workers.

    Returns:
        How many messages are still queued (delivered at the next start).
    """
    left = stop_app_workers(app, drain_seconds=config.outbox.stop_drain_seconds)
    if left:
        logger.warning("%d message(s) still queued: they are delivered at the next start", left)
    logger.info("stopped")
    return left


def _keep_pruning(store: Any, every_seconds: float = 24 * 3600) -> None:
    """Forget old events and threads (or outbox messages) now and once a day."""

    def prune_forever() -> None:
        while True:
            try:
                store.prune()
            except sqlite3.Error:  # no user is waiting on this; the next run tries again
                logger.exception("could not prune the state database")
            time.sleep(every_seconds)

    threading.Thread(target=prune_forever, name="trbot-prune", daemon=True).start()


def check_case_channel(config: Config, token: str) -> None:
    """With cases enabled: the team's channel must exist, be private, and have the bot in it.

    An outage only logs a warning (cards wait in the outbox); anything that cannot work stops
    ``trbot serve`` with what to do.

    Raises:
        SlackConfigError: the channel is not found, is public, or the bot is not a member.
    """
    settings = config.cases
    if not settings.enabled:
        logger.warning("cases are off (cases.enabled): high-risk questions are answered but not escalated")
        return
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    channel = settings.channel
    invite = f"invite the bot there (/invite @{config.slack.app_name})"
    client = WebClient(token=token, base_url=api_base_url(config), timeout=15)
    try:
        info = client.conversations_info(channel=channel).get("channel") or {}
    except SlackApiError as exc:
        error = exc.response.get("error") if hasattr(exc.response, "get") else None
        status = getattr(exc.response, "status_code", 200)
        if status == 429 or status >= 500:
            logger.warning(
                "could not check cases.channel %s (HTTP %s); case cards wait in the outbox", channel, status
            )
            return
        if error == "missing_scope":
            raise SlackConfigError(
                f"cannot read cases.channel {channel} (missing_scope): it must be a private channel, "
                "and the app needs the groups:read scope (`trbot manifest`, then reinstall the app)"
            ) from exc
        raise SlackConfigError(
            f"cases.channel {channel} was not found ({error}): check the id, and {invite}; "
            "a private channel is invisible to the bot until it is invited"
        ) from exc
    except OSError as exc:
        logger.warning("could not check cases.channel %s (%s); case cards wait in the outbox", channel, exc)
        return
    if not info.get("is_private"):
        raise SlackConfigError(
            f"cases.channel {channel} is a public channel: case details must stay with the team; "
            "give the id of the research-security team's private channel"
        )
    if info.get("is_member") is False:
        raise SlackConfigError(f"the bot is not a member of cases.channel {channel}: {invite}")
    if info.get("is_archived"):
        raise SlackConfigError(f"cases.channel {channel} is archived: give the team's current channel")
    logger.info(
        "cases: cards go to %s; %d team user(s)%s",
        channel,
        len(settings.team_users),
        f" and user group {settings.team_usergroup}" if settings.team_usergroup else "",
    )


def _build_app(
    config: Config,
    answerer: Any,
    store: StateStore,
    tokens: SlackTokens,
    triager: Any = None,
    screener: Any = None,
) -> App:
    client = build_web_client(config, tokens.bot_token)
    try:  # token verification calls auth.test now, so a bad token stops us here
        return create_app(
            config,
            answerer,
            store,
            client=client,
            signing_secret=tokens.signing_secret or "",
            start_workers=False,  # start_serving starts them, after draining the outbox
            triager=triager,
            screener=screener,
        )
    except BoltError as exc:
        raise SlackConfigError(
            describe_auth_failure(config, exc.__cause__ or exc.__context__ or exc)
        ) from exc
    except OSError as exc:
        raise SlackConfigError(f"cannot reach the Slack API at {config.slack.api_url}: {exc}") from exc


# apps.connections.open answers that mean "this app-level token is not good" (not an outage).
_REJECTED_APP_TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
    }
)


def app_token_rejected(error: str) -> str:
    """The one line for an app-level token that Slack refuses."""
    return (
        f"SLACK_APP_TOKEN was rejected by Slack ({error}): Socket Mode needs an app-level token (xapp-…) "
        f"with the connections:write scope; generate one at {APPS_PAGE} → your app → Basic Information → "
        "App-Level Tokens"
    )


def check_app_token(config: Config, app_token: str) -> None:
    """Call apps.connections.open once, before the slow load, so a rejected app token is one line.

    An outage (5xx, 429, no connection) is only logged: the Socket Mode client keeps retrying.

    Raises:
        SlackConfigError: Slack rejected the token (revoked, a bot token, no connections:write).
    """
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(base_url=api_base_url(config), timeout=15, retry_handlers=[])
    try:
        client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "")
        if error in _REJECTED_APP_TOKEN_ERRORS:
            raise SlackConfigError(app_token_rejected(error)) from None
        logger.warning(
            "apps.connections.open answered HTTP %s %s: Socket Mode will keep trying to connect",
            exc.response.status_code,
            error,
        )
    except OSError as exc:
        logger.warning("cannot reach %s (%s): Socket Mode will keep trying", config.slack.api_url, exc)


def run_socket_mode(
    app: App,
    app_token: str,
    *,
    stop: threading.Event | None = None,
    on_connected: Callable[[Any], None] | None = None,
) -> None:
    """Serve Slack over Socket Mode until ``stop`` is set (SIGTERM); reconnects by itself.

    The client is bolt's websocket-client adapter with keepalive fixes (``bot.slack.socket_mode``).
    Listeners only parse, ack and queue, so every envelope is acked within Slack's 3 seconds.

    Raises:
        SlackConfigError: Slack rejected the app-level token.
    """
    from slack_sdk.errors import SlackApiError

    from bot.slack.socket_mode import KeepaliveHandler

    stop = stop or threading.Event()
    handler = KeepaliveHandler(app, app_token)
    delay = 1.0
    try:
        while not stop.is_set():
            logger.info("connecting to Slack in Socket Mode")
            try:
                handler.connect()
                break
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                if error in _REJECTED_APP_TOKEN_ERRORS:
                    raise SlackConfigError(app_token_rejected(error)) from None
                reason = error or f"HTTP {exc.response.status_code}"
            except OSError as exc:
                reason = type(exc).__name__
            logger.warning("cannot open a Socket Mode connection (%s); retrying in %.0f s", reason, delay)
            stop.wait(delay)
            delay = min(delay * 2, 60.0)
        else:
            return
        logger.info("connected to Slack in Socket Mode")
        if on_connected is not None:
            on_connected(handler)
        while not stop.wait(0.5):  # short waits: the main thread stays responsive to signals
            pass
    finally:
        handler.close()


def run_http(app: App, listener: socket.socket, settings: SlackSettings, signing_secret: str) -> None:
    """Serve Slack's requests on the bound ``listener`` through waitress (``bot.slack.http``)."""
    server = make_http_server(app, "", 0, settings=settings, signing_secret=signing_secret, sock=listener)
    host, port = server.server_address
    logger.info(
        "serving Slack requests at http://%s:%d%s (%d threads, bodies up to %d bytes)",
        host,
        port,
        EVENTS_PATH,
        settings.http_threads,
        settings.http_max_body_bytes,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


# Slack's answers to auth.test that mean "this token is not good", as opposed to an outage.
_REJECTED_TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)


def check_bot_token(config: Config, token: str) -> None:
    """Call auth.test once, before the slow load: a rejected token and an outage say different things.

    Raises:
        SlackConfigError: the token was rejected, or the Slack API is unreachable or failing.
    """
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=token, base_url=config.slack.api_url.rstrip("/") + "/", timeout=15)
    try:
        client.auth_test()
    except SlackApiError as exc:
        raise SlackConfigError(describe_auth_failure(config, exc)) from exc
    except OSError as exc:
        raise SlackConfigError(f"cannot reach the Slack API at {config.slack.api_url}: {exc}") from exc


def describe_auth_failure(config: Config, exc: Exception) -> str:
    """One line for a failed auth.test: the token rejected, or Slack failing (5xx, 429)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", 200) if response is not None else 200
    error = response.get("error") if response is not None and hasattr(response, "get") else None
    url = config.slack.api_url
    if status == 429 or status >= 500:
        return (
            f"the Slack API at {url} answered HTTP {status} to auth.test (an outage or rate limit, "
            "not a problem with your token); try again in a few minutes"
        )
    if error in _REJECTED_TOKEN_ERRORS or status in (401, 403):
        return (
            f"SLACK_BOT_TOKEN was rejected by Slack at {url} ({error or status}); "
            f"check it at {APPS_PAGE} → your app → OAuth & Permissions"
        )
    return f"the Slack API at {url} refused auth.test ({error or f'HTTP {status}'})"


def build_manifest(config: Config, http_url: str | None = None) -> dict[str, Any]:
    """A Slack app manifest matching what the app uses (events, scopes, command, features).

    Args:
        config: The settings (app name, slash command, institution for the description).
        http_url: The public base URL for HTTP mode; Socket Mode if None.
    """
    request_url = f"{http_url.rstrip('/')}{EVENTS_PATH}" if http_url else None
    command = {
        "command": config.slack.command,
        "description": "Ask a Trusted Research question (only you see the answer)",
        "usage_hint": "[your question]",
        "should_escape": False,
    }
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if request_url:
        command["url"] = request_url
        events["request_url"] = request_url
        interactivity["request_url"] = request_url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": _display_information(config),
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": config.slack.app_name[:80], "always_online": True},
            "slash_commands": [
                command,
                *cases.manifest_commands(config, request_url),
                *prescreen.manifest_commands(config, request_url),
            ],
            "shortcuts": prescreen.manifest_shortcuts(),
        },
        "oauth_config": {"scopes": {"bot": [*BOT_SCOPES, *cases.manifest_scopes(config, BOT_SCOPES)]}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": request_url is None,
            "token_rotation_enabled": False,
        },
    }


def _display_information(config: Config) -> dict[str, str]:
    description = (
        f"Answers research-security questions from {config.institution.name}'s guidance, with sources."
    )
    return {
        "name": config.slack.app_name[:35],
        "description": description[:140],
        "background_color": "#1d3557",
    }


def export_feedback(store: StateStore, fmt: str) -> str:
    """All feedback as ``csv`` or ``json`` text."""
    rows = [item.to_dict() for item in store.list_feedback()]
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r} (expected csv or json)")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FEEDBACK_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # keep spreadsheets from running user text as a formula
    return value
