"""The ``trbot`` command line: parse, call one core function, print, translate errors.

One module per feature holds its commands (``answers``: index, ask, search, eval, stats;
``slack``: serve, manifest, feedback); this module is the group that gathers them.

The settings are loaded when a command runs, not for ``--help``: a typo in app.yml never hides the
help. Which settings file is in use is shown at the end of ``trbot --help``, by ``trbot stats`` and
at ``trbot serve`` start-up; with no ``--config``, no ``TRBOT_CONFIG`` and no ``./app.yml``, trbot
says so on stderr and runs on the defaults. Files trbot creates are readable by their owner only
(umask 077 while a command runs).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from bot.answer import QuestionError
from bot.cases import CaseError
from bot.config import ConfigError, load_config, settings_file
from bot.outbox import OutboxError
from bot.screening import ScreeningError
from bot.triggers import TriggerError
from bot.watchlists import WatchlistError
from indexer.errors import IndexerError

USER_ERRORS = (
    ConfigError,
    IndexerError,
    QuestionError,
    TriggerError,
    CaseError,
    ScreeningError,
    WatchlistError,
    OutboxError,
)


class _Group(click.Group):
    """Turns the core's named errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        # What follows the group's own options: the callback looks for --help in it.
        ctx.meta[_ARGS] = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(describe_settings(ctx.params.get("config_path")))


_ARGS = "trbot.args"
_WHY = {"--config": "from --config", "TRBOT_CONFIG": "from TRBOT_CONFIG", "default": "./app.yml"}


def describe_settings(config_path: Path | None = None) -> str:
    """Which settings file trbot would read, for ``--help`` (the file is not parsed)."""
    path, why = settings_file(config_path)
    state = "" if path.exists() else " (missing: the defaults are used)" if why == "default" else " (missing)"
    return f"Settings: {path} ({_WHY[why]}){state}. Choose another with --config FILE or TRBOT_CONFIG."


def _wants_help(args: list[str]) -> bool:
    before = args[: args.index("--")] if "--" in args else args
    return "--help" in before


@click.group(cls=_Group)
@click.version_option(package_name="trbot", message="trbot %(version)s")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRBOT_CONFIG",
    is_eager=True,  # read before --help, which names the file
    help="Settings file (default: ./app.yml).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """trbot: answers Trusted Research questions from your institution's guidance, with citations."""
    if _wants_help(ctx.meta.get(_ARGS, [])):
        ctx.obj = None  # `trbot COMMAND --help` works whatever the settings file holds
        return
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if config.source is None:
        click.echo(
            f"trbot: no app.yml in {Path.cwd()}; using the default settings "
            "(give --config FILE or set TRBOT_CONFIG)",
            err=True,
        )
    previous = os.umask(0o077)  # the index, the state database, exports: the owner's only
    ctx.call_on_close(lambda: os.umask(previous))
    ctx.obj = config


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
from bot.cli import answers, cases, outbox, screening, triage, watchlists  # noqa: E402

attach_commands([answers, triage, cases, screening, watchlists, outbox])
