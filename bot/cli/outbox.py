"""``trbot outbox list``: what the bot still has to deliver to Slack, and what failed.

Parses, reads ``bot.outbox`` (the state database), prints. Never prints a message's text: only
ids, kinds, methods, attempts, times, the last error and the case reference. ``bot.cli`` turns
``OutboxError`` into one line.
"""

from __future__ import annotations

import json

import click

from bot.config import Config
from bot.outbox import STATUSES, Message, Outbox

COLUMNS = ("id", "status", "kind", "method", "attempts", "next try", "case", "last error")


@click.group()
def outbox() -> None:
    """The outbox: every message the bot sends goes through it, with retries while Slack is down."""


@outbox.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only messages with this status.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects (no message text).")
@click.pass_obj
def list_messages(config: Config, status: str | None, limit: int, as_json: bool) -> None:
    """List outbox messages, newest first: id, status, kind, method, attempts, next try, case, last error.

    A message that keeps failing for outbox.give_up_after_hours (a slash-command reply: for
    outbox.response_url_give_up_after_minutes), or that Slack refuses outright (channel_not_found,
    invalid_blocks...), is "failed"; `trbot serve` delivers the pending ones with backoff, also after
    a restart. Message text is never shown.

    Example:

        trbot outbox list --status failed

        trbot outbox list --status pending --json | jq '.[] | {id, kind, attempts, last_error}'
    """
    path = config.paths.state_db
    if not path.exists():
        raise click.ClickException(f"no outbox yet: {path} does not exist (`trbot serve` creates it)")
    box = Outbox(path, config.outbox)
    try:
        messages = box.list(status, limit=limit)
        counts = box.counts()
    finally:
        box.close()
    if as_json:
        click.echo(json.dumps([message.summary() for message in messages], indent=2, ensure_ascii=False))
        return
    click.echo(render_table(messages))
    click.echo(", ".join(f"{counts[name]} {name}" for name in STATUSES))


def render_table(messages: list[Message]) -> str:
    """Fixed-width rows for a terminal (an empty list says so)."""
    if not messages:
        return "no messages"
    rows = [COLUMNS] + [
        (
            str(message.id),
            message.status,
            message.kind,
            message.method,
            str(message.attempts),
            _short_time(message.next_attempt_at),
            message.case_ref or "",
            (message.last_error or "")[:80],
        )
        for message in messages
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ).rstrip()


def _short_time(value: str | None) -> str:
    return value.replace("T", " ")[:19] + "Z" if value else ""


COMMANDS = (outbox,)
