"""``trbot prescreen``: a first screen of a prospective partner, one at a time or a batch.

Parses, calls ``Screener.screen``, prints; ``bot.cli`` turns the core's named errors into one line.
The command line never opens a case: red and amber results say to contact the team.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import click

from bot.config import Config
from bot.screening import (
    HEADLINES,
    PartnerQuery,
    PartnerQueryError,
    Screening,
    ScreeningRules,
    check_query,
    load_config_rules,
    open_screener,
)

BATCH_FIELDS = ("id", "organisation", "country", "area", "kind", "funding", "notes")


@click.command()
@click.argument("organisation", required=False)
@click.option("--country", help="The partner's country (name or ISO code, e.g. China or CN).")
@click.option("--area", help='The research area, e.g. "battery chemistry".')
@click.option(
    "--kind",
    help="The kind of collaboration: joint-research, visiting-researcher, funding, equipment, "
    "data-sharing or licence.",
)
@click.option("--funding", help="Who funds the work, if not the partner.")
@click.option("--notes", help="Anything else about the collaboration (searched for sensitive areas).")
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Screen every line of a JSON-lines file: {"id", "organisation", "country"?, "area"?, "kind"?}.',
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (always so with --batch).")
@click.option(
    "--keywords-only",
    is_flag=True,
    help="Match research areas by the rules' keywords only: no model is loaded (faster to start).",
)
@click.pass_obj
def prescreen(
    config: Config,
    organisation: str | None,
    country: str | None,
    area: str | None,
    kind: str | None,
    funding: str | None,
    notes: str | None,
    batch: Path | None,
    as_json: bool,
    keywords_only: bool,
) -> None:
    """A first screen of a prospective partner: red, amber or green, with cited reasons.

    Compares ORGANISATION with the imported watchlists (the starter list is imported on first
    use) and applies the country, research-area and collaboration rules in
    paths.screening_rules. A first screen, not a clearance. The command line never opens a
    case: for a red or amber result, contact the research-security team (in Slack, a DM or
    /prescreen opens or offers one, as app.yml's cases settings say).

    --json prints {"rating", "matches", "reasons", "next_steps", "disclaimer", "case"}.
    --batch FILE screens each line (everything loaded once) and prints one such object per
    line with its "id"; a malformed line stops the run before anything is screened, naming
    the line.

    Examples:

    \b
        trbot prescreen "Harbin Institute of Technology" --area "battery chemistry"
        trbot prescreen --batch partners.jsonl > results.jsonl
    """
    if batch is not None:
        if organisation or country or area or kind or funding or notes:
            raise click.UsageError(
                "--batch takes its partners from the file: give no ORGANISATION or options"
            )
        _run_batch(config, batch, keywords_only)
        return
    if not organisation:
        raise click.UsageError('give the ORGANISATION to screen, e.g. trbot prescreen "Beihang University"')
    query = PartnerQuery(organisation, country=country, area=area, kind=kind, funding=funding, notes=notes)
    rules = load_config_rules(config)
    check_query(query, rules)  # a bad --kind is reported before the slow loads
    screener = open_screener(config, rules=rules, use_model=not keywords_only)
    _note(screener, keywords_only)
    screening = screener.screen(query)
    if as_json:
        click.echo(json.dumps(screening.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_screening(screening, config.institution.team_name))


def _run_batch(config: Config, file: Path, keywords_only: bool) -> None:
    rules = load_config_rules(config)
    items = _read_batch(file, rules)
    screener = open_screener(config, rules=rules, use_model=not keywords_only)
    _note(screener, keywords_only)
    for item_id, query in items:
        screening = screener.screen(query)
        click.echo(json.dumps({"id": item_id, **screening.to_dict()}, ensure_ascii=False))


def _note(screener, keywords_only: bool) -> None:
    if screener.model_note and not keywords_only:
        click.echo(f"note: {screener.model_note}", err=True)
    for warning in screener.warnings_now():
        click.echo(warning, err=True)


def _read_batch(file: Path, rules: ScreeningRules) -> list[tuple[Any, PartnerQuery]]:
    """Every line of the batch file as (id, query), checked; a bad line is a usage error naming it."""
    try:
        lines = file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file}: cannot be read ({exc})") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        items.append(_batch_line(line, number, file, rules))
    if not items:
        raise click.ClickException(f"{file}: no partners to screen (one JSON object per line)")
    return items


def _batch_line(line: str, number: int, file: Path, rules: ScreeningRules) -> tuple[Any, PartnerQuery]:
    where = f"{file.name} line {number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(item, dict):
        raise click.ClickException(f'{where}: expected an object like {{"id": 1, "organisation": "..."}}')
    unknown = sorted(set(item) - set(BATCH_FIELDS))
    if unknown:
        raise click.ClickException(
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(BATCH_FIELDS)})"
        )
    for name in BATCH_FIELDS[1:]:
        if item.get(name) is not None and not isinstance(item[name], str):
            raise click.ClickException(f"{where}: {name!r} must be text")
    if not (item.get("organisation") or "").strip():
        raise click.ClickException(f'{where}: needs a non-empty "organisation"')
    query = PartnerQuery(**{name: item.get(name) for name in BATCH_FIELDS[1:]})
    try:
        query = check_query(query, rules)
    except PartnerQueryError as exc:
        raise click.ClickException(f"{where}: {exc}") from exc
    return item.get("id", number), query


def format_screening(screening: Screening, team: str) -> str:
    """A readable terminal rendering of a screening."""
    headline = HEADLINES[screening.rating].replace("{team}", team)
    lines = [click.style(headline.upper() if screening.rating == "red" else headline, bold=True)]
    lines.append(f"Organisation: {screening.query.organisation}")
    lines += [f"WARNING: {warning}" for warning in screening.warnings]
    lines.append("")
    if screening.matches:
        lines.append("Matches (best first):")
        for number, match in enumerate(screening.matches, start=1):
            named = "" if match.matched_name == match.entry else f", matched on '{match.matched_name}'"
            lines.append(
                f"  {number}. {match.entry} [{match.list}] {match.strength} {match.score:.2f}{named}"
            )
            if match.source_url:
                lines.append(f"     source: {match.source_url}")
    else:
        lines.append("Matches: none in the lists loaded.")
    lines.append("")
    lines.append("Reasons:" if screening.reasons else "Reasons: no rule fired.")
    for reason in screening.reasons:
        lines.extend(_wrapped(f"- [{reason.kind}] {reason.text}", "  "))
        lines.append(f"    cite: {_citation(reason.citation.to_dict())}")
    lines.append("")
    lines.append("Next steps:")
    for number, step in enumerate(screening.next_steps, start=1):
        lines.extend(_wrapped(f"{number}. {step.text}", "   "))
    lines.append("")
    lines.append("Case: none (the command line never opens one)")
    lines.extend(textwrap.wrap(screening.disclaimer, 100))
    return "\n".join(lines)


def _citation(citation: dict[str, Any]) -> str:
    if citation["type"] == "watchlist":
        return f"list '{citation['list']}': {citation['entry']} {citation.get('source_url') or ''}".rstrip()
    section = f" > {citation['section']}" if citation.get("section") else ""
    return f"{citation['title']}{section} ({citation['document']}) {citation.get('url') or ''}".rstrip()


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, 100, initial_indent="  ", subsequent_indent=indent + "  ")


COMMANDS = (prescreen,)
