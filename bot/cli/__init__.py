"""The ``trbot`` command line: parse, call one core function, print, translate errors.

One module per feature holds its commands (``answers``: index, ask, search, eval, stats;
``slack``: serve, manifest, feedback); this module is the group that gathers them.
"""

from __future__ import annotations

from pathlib import Path

import click

from bot.answer import QuestionError
from bot.config import ConfigError, load_config
from indexer.errors import IndexerError

USER_ERRORS = (ConfigError, IndexerError, QuestionError)


class _Group(click.Group):
    """Turns the core's named errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRBOT_CONFIG",
    help="Settings file (default: ./app.yml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """trbot: answers Trusted Research questions from your institution's guidance, with citations."""
    try:
        ctx.obj = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def attach_commands(modules) -> None:
    """Add each module's ``COMMANDS`` to the group."""
    for module in modules:
        for command in module.COMMANDS:
            cli.add_command(command)


def attach_slack_commands() -> None:
    """Add ``serve``, ``manifest`` and ``feedback``: they import Slack, so only when run."""
    from bot.cli import slack

    attach_commands([slack])


def main() -> None:
    attach_slack_commands()
    cli()


# The commands that need no Slack libraries are part of the group on import (tests use them so).
from bot.cli import answers  # noqa: E402

attach_commands([answers])
