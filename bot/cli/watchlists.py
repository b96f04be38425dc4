"""``trbot watchlists import | list | remove | search | eval``: the screening lists and the matcher.

Each command parses, calls one core function (``bot.watchlists``), prints; ``bot.cli`` turns
``WatchlistError`` into one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.config import Config
from bot.watchlists import (
    FORMATS,
    Candidate,
    ImportSummary,
    ListInfo,
    MatchingReport,
    WatchlistStore,
    ensure_starter,
    evaluate_matching,
    list_warnings,
    load_matcher,
)

MAX_SKIPPED_SHOWN = 20
NEAR_MISS_FLOOR = 0.5


@click.group()
def watchlists() -> None:
    """Screening lists: import the published lists, see, remove and search them.

    The lists live in paths.watchlist_db. The starter list shipped in paths.watchlists_dir is
    imported as "starter" on first use (screening.starter_list).
    """


@watchlists.command(name="import")
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(FORMATS),
    help="uk-sanctions (FCDO UK Sanctions List CSV), us-csl (US Consolidated Screening List CSV) "
    "or csv (an institution list; columns in knowledge/watchlists/README.md).",
)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="The list's name (default: the format); importing a name again replaces it.")
@click.option("--json", "as_json", is_flag=True, help="Print the import summary as JSON.")
@click.pass_obj
def import_list(config: Config, fmt: str, file: Path, name: str | None, as_json: bool) -> None:
    """Import a list file, replacing any earlier import under the same name.

    The file is checked whole first; a header without a column the format needs is refused,
    naming the column. Bad rows are reported with their line numbers and the rest is
    imported. If the import fails or is interrupted, the previous list stays as it was.

    Example:

        trbot watchlists import --format us-csl consolidated.csv

        trbot watchlists import --format csv our-list.csv --name institution
    """
    store = WatchlistStore(config.paths.watchlist_db)
    try:
        summary = store.import_file(file, fmt, name)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_summary(summary)


def _print_summary(summary: ImportSummary) -> None:
    click.echo(
        f"imported '{summary.list_name}' ({summary.format}) from {summary.source_file}: "
        f"{summary.entries:,} entries, {summary.aliases:,} other names; {len(summary.skipped):,} rows skipped"
    )
    click.echo(f"file date: {summary.file_date or 'not stated in the file'}")
    for skipped in summary.skipped[:MAX_SKIPPED_SHOWN]:
        click.echo(f"  skipped line {skipped.row}: {skipped.reason}", err=True)
    if len(summary.skipped) > MAX_SKIPPED_SHOWN:
        click.echo(f"  ... and {len(summary.skipped) - MAX_SKIPPED_SHOWN:,} more skipped rows", err=True)
    for note in summary.notes:
        click.echo(f"note: {note}")
    if summary.replaced:
        old = summary.replaced
        click.echo(f"replaced the earlier import ({old.entries:,} entries, from {_when(old.imported_at)})")


@watchlists.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the lists as JSON.")
@click.pass_obj
def list_lists(config: Config, as_json: bool) -> None:
    """Show each list: name, format, entries, import time, the file's own date, and whether it is stale.

    A list is stale when its import, or the file's own date, is older than
    screening.max_list_age_days.
    """
    store = WatchlistStore(config.paths.watchlist_db)
    try:
        if config.screening.starter_list:
            ensure_starter(store, config.paths.watchlists_dir)
        lists = store.lists()
    finally:
        store.close()
    limit = config.screening.max_list_age_days
    if as_json:
        rows = [{**i.to_dict(), "stale": i.is_stale(limit), "age_days": i.age_days()} for i in lists]
        click.echo(json.dumps(rows, indent=2))
        return
    if not lists:
        click.echo("no lists imported yet: trbot watchlists import --format uk-sanctions|us-csl|csv FILE")
        return
    click.echo(_table(lists, limit))
    for warning in list_warnings(lists, limit):
        click.echo(f"warning: {warning}", err=True)


def _table(lists: list[ListInfo], limit: int) -> str:
    header = ("name", "format", "entries", "names", "imported (UTC)", "file date", "")
    rows = [
        (
            info.name,
            info.format,
            f"{info.entries:,}",
            f"{info.entries + info.aliases:,}",
            _when(info.imported_at),
            info.file_date or "-",
            "STALE" if info.is_stale(limit) else "",
        )
        for info in lists
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)) for row in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


@watchlists.command()
@click.argument("name")
@click.pass_obj
def remove(config: Config, name: str) -> None:
    """Remove one list and its entries.

    Removing "starter" stops it being imported again on first use; import it by hand to bring it back.
    """
    store = WatchlistStore(config.paths.watchlist_db)
    try:
        info = store.remove(name)
    finally:
        store.close()
    click.echo(f"removed '{info.name}' ({info.entries:,} entries, imported {_when(info.imported_at)})")


@watchlists.command()
@click.argument("text")
@click.option("--country", help="The organisation's country (name or ISO code); another lowers the score.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100), help="Candidates shown.")
@click.option(
    "--all",
    "near",
    is_flag=True,
    help=f"Also show near misses (scores from {NEAR_MISS_FLOOR}) to see why a name did not match.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@click.pass_obj
def search(config: Config, text: str, country: str | None, limit: int, near: bool, as_json: bool) -> None:
    """Screen one name against every list: candidates with scores and how each matched.

    Example:

        trbot watchlists search "Harbin Inst. of Tech." --country CN

        trbot watchlists search "Northwestern University" --all
    """
    matcher = load_matcher(config)
    candidates = matcher.search(text, country, limit, floor=NEAR_MISS_FLOOR if near else None)
    warnings = list_warnings(matcher.lists, config.screening.max_list_age_days)
    if as_json:
        payload = {"query": text, "country": country, "candidates": [c.to_dict() for c in candidates]}
        click.echo(json.dumps({**payload, "warnings": warnings}, indent=2, ensure_ascii=False))
        return
    lists = ", ".join(info.name for info in matcher.lists) or "none"
    click.echo(f"{len(matcher):,} entries in {len(matcher.lists)} lists ({lists})")
    if not candidates:
        hint = "" if near else " (--all shows near misses)"
        click.echo(f"no match or possible match{hint}")
    for number, candidate in enumerate(candidates, 1):
        click.echo(_candidate_text(number, candidate))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


def _candidate_text(number: int, candidate: Candidate) -> str:
    label = {"match": "MATCH", "possible": "possible match: check", "below": "no match"}[candidate.strength]
    facts = [candidate.list_name, candidate.details.get("list_code", "")]
    facts += [candidate.risk_level, candidate.entity_type or "type not stated"]
    facts.append(", ".join(candidate.countries))
    lines = [
        f"{number}. {label}  {candidate.score:.2f}  {candidate.entry}",
        f"   {' | '.join(f for f in facts if f)}{'  (list is STALE)' if candidate.stale else ''}",
        f"   matched {candidate.matched_kind} {candidate.matched_name!r}",
        f"   why: {candidate.explanation}",
    ]
    if candidate.source_url:
        lines.append(f"   source: {candidate.source_url}")
    return "\n".join(lines)


@watchlists.command(name="eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sweep", is_flag=True, help="Also show precision and recall at other match thresholds.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def evaluate(config: Config, file: Path, sweep: bool, as_json: bool) -> None:
    """Precision and recall of "match" on a labelled name-matching set, the "possible" count, every error.

    The set's lists are imported into a scratch database (your lists are not touched).

    Example:

        trbot watchlists eval eval/matching.yaml --sweep
    """
    report = evaluate_matching(file, config.screening)
    if as_json:
        payload = report.to_dict()
        if sweep:
            payload["sweep"] = report.sweep(_thresholds())
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    _print_report(report, sweep)


def _thresholds() -> list[float]:
    return [round(0.70 + 0.02 * step, 2) for step in range(15)]


def _print_report(report: MatchingReport, sweep: bool) -> None:
    click.echo(
        f"{len(report.outcomes)} screenings: {report.positives} of listed organisations, "
        f"{report.negatives} of organisations on no list"
    )
    click.echo(f"match (score >= {report.match_threshold:.2f}): precision {report.match_precision:.3f}, "
               f"recall {report.match_recall:.3f}")  # fmt: skip
    click.echo(f"listed organisations caught as match or possible: {report.caught:.3f}")
    click.echo(
        f"possible matches (score >= {report.possible_threshold:.2f}): {report.possible_count} "
        f"({report.count('possible')} listed, {report.count('negative possible')} on no list)"
    )
    errors = [o for o in report.outcomes if o.is_error]
    click.echo(f"errors: {len(errors)}")
    for outcome in errors:
        best = outcome.best
        said = f"{best.strength} {best.score:.2f} {best.entry!r}" if best else "nothing"
        click.echo(f"  {outcome.case.id} {outcome.verdict}: {outcome.case.query!r} -> {said}")
    for outcome in report.outcomes:
        if outcome.verdict in ("possible", "negative possible") and outcome.best:
            best = outcome.best
            click.echo(
                f"  {outcome.case.id} {outcome.verdict}: {outcome.case.query!r} -> "
                f"{best.score:.2f} {best.entry!r}"
            )
    if sweep:
        click.echo("threshold  precision  recall  false matches")
        for row in report.sweep(_thresholds()):
            cells = (row["threshold"], row["precision"], row["recall"], row["false_matches"])
            click.echo("{:9.2f}  {:9.3f}  {:6.3f}  {:13d}".format(*cells))


def _when(iso: str) -> str:
    return iso.replace("T", " ")[:16]


COMMANDS = (watchlists,)
