"""The Slack commands of ``trbot``: ``serve``, ``manifest`` and ``feedback export``.

Attached to the ``trbot`` group by ``bot.cli``; each receives the loaded ``Config`` as the
click context object.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
import yaml

from bot.config import Config, ConfigError
from bot.slack.http import HttpServerError
from bot.slack.serve import SlackConfigError, build_manifest, export_feedback
from bot.slack.serve import serve as serve_slack
from bot.state import StateStore
from indexer.errors import IndexerError

USER_ERRORS = (SlackConfigError, HttpServerError, ConfigError, IndexerError)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report the named errors as one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


@click.command()
@click.option("--http", "use_http", is_flag=True, help="Serve the Events API over HTTP at /slack/events.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port for --http (default: slack.http_port).")
@click.pass_obj
@_user_errors
def serve(config: Config, use_http: bool, port: int | None) -> None:
    """Run the Slack app (Socket Mode unless --http or slack.transport says http).

    Loads the index and the model once, then answers until interrupted. Tokens come from
    the environment: SLACK_BOT_TOKEN (xoxb-) and, for Socket Mode, SLACK_APP_TOKEN (xapp-),
    or, for HTTP, SLACK_SIGNING_SECRET. SLACK_API_URL overrides slack.api_url.

    HTTP listens on slack.http_host (default 127.0.0.1: put a TLS proxy in front) and
    slack.http_port, through waitress, refusing bodies over slack.http_max_body_bytes. A new
    index written by `trbot index` is taken up within seconds, without a restart.

    Example:

        SLACK_BOT_TOKEN=xoxb-… SLACK_APP_TOKEN=xapp-… trbot serve

        SLACK_BOT_TOKEN=xoxb-… SLACK_SIGNING_SECRET=… trbot serve --http --port 8080
    """
    transport = "http" if use_http else config.slack.transport
    if port is not None and transport != "http":
        raise click.UsageError("--port applies to the HTTP transport only (add --http)")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_slack(config, transport=transport, port=port)


@click.command()
@click.option(
    "--http", "http_url", metavar="URL", help="Public HTTPS base URL for HTTP mode (else Socket Mode)."
)
@click.pass_obj
@_user_errors
def manifest(config: Config, http_url: str | None) -> None:
    """Print a Slack app manifest (YAML) for this app's events, scopes and slash command.

    Paste it at https://api.slack.com/apps → Create New App → From a manifest.

    Example:

        trbot manifest > manifest.yml

        trbot manifest --http https://trbot.example.ac.uk
    """
    if http_url is not None and not http_url.startswith("https://"):
        raise click.BadParameter("Slack only sends requests to https:// URLs", param_hint="--http")
    click.echo(
        yaml.safe_dump(build_manifest(config, http_url), sort_keys=False, allow_unicode=True), nl=False
    )


@click.group()
def feedback() -> None:
    """Feedback that users gave on answers (helpful / not helpful, with reasons)."""


@feedback.command("export")
@click.option("--csv", "fmt", flag_value="csv", default=True, help="CSV with a header row (the default).")
@click.option("--json", "fmt", flag_value="json", help="A JSON list of objects.")
@click.pass_obj
@_user_errors
def export(config: Config, fmt: str) -> None:
    """Print all feedback, oldest first, with the question and the chunks that were shown.

    Example:

        trbot feedback export --csv > feedback.csv

        trbot feedback export --json | jq '.[] | select(.helpful == false)'
    """
    path = config.paths.state_db
    if not path.exists():
        raise click.ClickException(f"no feedback yet: {path} does not exist (`trbot serve` creates it)")
    store = StateStore(path)
    try:
        click.echo(export_feedback(store, fmt), nl=False)
    finally:
        store.close()


@feedback.command("purge")
@click.option(
    "--before",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Delete feedback given before this day (YYYY-MM-DD, UTC).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@_user_errors
def purge(config: Config, before: datetime, yes: bool) -> None:
    """Delete the feedback given before a date (questions, reasons, who gave it), for good.

    `trbot serve` also deletes feedback older than retention.feedback_days every day.

    Example:

        trbot feedback purge --before 2026-01-01
    """
    path = config.paths.state_db
    if not path.exists():
        click.echo(f"no feedback: {path} does not exist")
        return
    moment = before.replace(tzinfo=UTC)
    store = StateStore(path, config.retention)
    try:
        older = sum(1 for item in store.list_feedback() if item.created_at < moment.isoformat())
        if older and not yes:
            click.confirm(f"Delete {older} feedback entries given before {moment:%Y-%m-%d}?", abort=True)
        removed = store.purge_feedback(moment)
    finally:
        store.close()
    click.echo(f"deleted {removed} feedback entries given before {moment:%Y-%m-%d}")


COMMANDS = [serve, manifest, feedback]
