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
import socketserver
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.error import BoltError

from bot.config import Config
from bot.slack.app import BOT_EVENTS, BOT_SCOPES, build_web_client, create_app
from bot.state import StateStore

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
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
    transport = transport or config.slack.transport
    tokens = read_tokens(transport, env)
    store = StateStore(config.paths.state_db)
    _keep_pruning(store)
    logger.info("loading the index and the model…")
    from bot.answer import open_answerer  # imports the model libraries: slow, so only here

    answerer = open_answerer(config)
    app = _build_app(config, answerer, store, tokens)
    if transport == "http":
        run_http(app, port if port is not None else config.slack.http_port)
    else:
        run_socket_mode(app, tokens.app_token or "")


def _keep_pruning(store: StateStore, every_seconds: float = 24 * 3600) -> None:
    """Forget old events and threads now and once a day (they are only needed for a while)."""

    def prune_forever() -> None:
        while True:
            try:
                store.prune()
            except sqlite3.Error:  # no user is waiting on this; the next run tries again
                logger.exception("could not prune the state database")
            time.sleep(every_seconds)

    threading.Thread(target=prune_forever, name="trbot-prune", daemon=True).start()


def _build_app(config: Config, answerer: Any, store: StateStore, tokens: SlackTokens) -> App:
    client = build_web_client(config, tokens.bot_token)
    try:  # token verification calls auth.test now, so a bad token stops us here
        return create_app(config, answerer, store, client=client, signing_secret=tokens.signing_secret or "")
    except BoltError as exc:
        raise SlackConfigError(
            f"SLACK_BOT_TOKEN was rejected by Slack at {config.slack.api_url} ({exc}); "
            f"check it at {APPS_PAGE} → your app → OAuth & Permissions"
        ) from exc
    except OSError as exc:
        raise SlackConfigError(f"cannot reach the Slack API at {config.slack.api_url}: {exc}") from exc


def run_socket_mode(app: App, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    logger.info("connecting to Slack in Socket Mode")
    SocketModeHandler(app, app_token).start()


def run_http(app: App, port: int, host: str = "0.0.0.0") -> None:
    server = make_http_server(app, host, port)
    logger.info("serving Slack requests at http://%s:%d%s", host, server.server_port, EVENTS_PATH)
    try:
        server.serve_forever()
    finally:
        server.server_close()


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        logger.debug("%s %s", self.address_string(), format % args)


def make_http_server(app: App, host: str, port: int) -> WSGIServer:
    """A threaded WSGI server for the app: Slack requests at ``/slack/events``, ``GET /health``."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def application(environ: dict, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/health" and environ.get("REQUEST_METHOD") == "GET":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        return slack(environ, start_response)

    return make_server(
        host, port, application, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )


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
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
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
