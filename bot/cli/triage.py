"""``trbot triage``: would a question escalate to the research-security team, and why.

Parses, calls ``bot.triggers`` (one ``Triager``, everything loaded once), prints. No case is
opened. ``bot.cli`` turns ``TriggerError`` into one line.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import click

from bot.config import Config
from bot.triggers import Triage, Triager, TriageScores, load_labelled, open_triager, score_triage


@click.command()
@click.argument("question", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="Print {escalate, severity, rules: [{id, reason}]} as JSON."
)
@click.option(
    "--queries",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Batch: a file of JSON lines {"id": ..., "text": ...}.',
)
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score the rules on a labelled YAML set: precision, recall, benign escalations, misses.",
)
@click.option(
    "--rules", type=click.Path(dir_okay=False, path_type=Path), help="Rules file (default: paths.triggers)."
)
@click.pass_obj
def triage(
    config: Config,
    question: str | None,
    as_json: bool,
    queries: Path | None,
    eval_file: Path | None,
    rules: Path | None,
) -> None:
    """Say whether a question would escalate to the research-security team, and why.

    Nothing is sent and no case is opened. With --queries, every line of FILE.jsonl
    ({"id", "text"}) gives one JSON line {"id", "escalate", "severity", "rules"}, the rules,
    model and watchlists loaded once. With --eval, a labelled YAML list of {id, text,
    escalate, severity?} is scored: precision, recall, the share of benign questions
    escalated, severity agreement, every miss, and triage time per question.

    Example:

        trbot triage "Can I send our lidar code to my colleague at NUDT?"

        trbot triage --queries questions.jsonl > triage.jsonl

        trbot triage --eval eval/triage.yaml
    """
    modes = [
        name
        for name, given in (("QUESTION", question is not None), ("--queries", queries), ("--eval", eval_file))
        if given
    ]
    if len(modes) != 1:
        raise click.UsageError("give one of QUESTION, --queries FILE or --eval FILE")
    if rules is not None:
        config = dataclasses.replace(config, paths=dataclasses.replace(config.paths, triggers=rules))
    if question is not None:
        if not question.strip():
            raise click.ClickException("the question is empty")
        result = _open(config).triage(question)
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False) if as_json else format_triage(result))
    elif queries is not None:
        parsed = read_queries(_read_lines(queries))
        triager = _open(config)
        for query_id, text in parsed:
            click.echo(json.dumps({"id": query_id, **triager.triage(text).to_dict()}, ensure_ascii=False))
    else:
        _evaluate(config, eval_file, as_json)


def _open(config: Config) -> Triager:
    return open_triager(config, warn=lambda message: click.echo(f"warning: {message}", err=True))


def format_triage(result: Triage) -> str:
    """A readable rendering of a Triage for the terminal."""
    if not result.escalate:
        return "would not escalate: no rule matched"
    lines = [f"would escalate (severity {result.severity}):"]
    for match in result.matches:
        lines.append(f"  {match.id} [{match.severity}]: {match.description}")
        lines.append(f"    why: {match.reason}")
        lines.append(f"    guidance: {match.guidance}")
    return "\n".join(lines)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise click.ClickException(f"queries file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read the queries file ({exc})") from exc


def read_queries(lines: list[str]) -> list[tuple[Any, str]]:
    """Parse JSON lines {"id", "text"}; a bad line or a repeated id is a one-line error."""
    parsed, seen = [], set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"queries line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
            raise click.ClickException(f'queries line {number}: needs a non-empty "text" field')
        query_id = item.get("id", number)
        if not isinstance(query_id, str | int) or isinstance(query_id, bool):
            raise click.ClickException(f'queries line {number}: "id" must be text or a whole number')
        if query_id in seen:
            raise click.ClickException(f"queries line {number}: id {query_id!r} was already used")
        seen.add(query_id)
        parsed.append((query_id, item["text"]))
    return parsed


def _evaluate(config: Config, file: Path, as_json: bool) -> None:
    items = load_labelled(file)
    triager = _open(config)
    triager.triage("warm-up question about export controls")  # first call pays one-off model costs
    results, timings = {}, []
    for item in items:
        started = time.perf_counter()
        results[item.id] = triager.triage(item.text).to_dict()
        timings.append((time.perf_counter() - started) * 1000)
    scores = score_triage(items, results)
    latency = {"p50_ms": round(_percentile(timings, 50), 2), "p95_ms": round(_percentile(timings, 95), 2)}
    if as_json:
        click.echo(
            json.dumps({**scores.to_dict(), "latency": latency, "skipped_rules": list(triager.skipped)})
        )
        return
    click.echo(format_scores(file, scores, latency, triager.skipped))


def format_scores(
    file: Path, scores: TriageScores, latency: dict[str, float], skipped: tuple[str, ...]
) -> str:
    """The evaluation figures and every miss, for the terminal."""
    s = scores
    lines = [
        f"{file}: {s.high_risk + s.benign} questions ({s.high_risk} high-risk, {s.benign} benign)",
        f"  recall (high-risk escalated):  {s.recall:.3f}  ({s.escalated_high_risk}/{s.high_risk})",
        f"  benign escalated:              {s.benign_escalation_rate:.3f}  ({s.escalated_benign}/{s.benign})",
        f"  precision:                     {s.precision:.3f}",
        f"  severity as labelled:          {s.severity_agreed}/{s.severity_labelled}",
        f"  triage time per question:      p50 {latency['p50_ms']:.1f} ms, p95 {latency['p95_ms']:.1f} ms",
    ]
    if skipped:
        lines.append(f"  skipped rules: {', '.join(skipped)}")
    for miss in s.misses:
        got = ", ".join(miss["rules"]) or "no rule"
        expected = miss["expected"] or "no escalation"
        lines.append(
            f"  {miss['kind']}: {miss['id']} (expected {expected}, got {miss['got'] or 'none'}: {got}): "
            f"{miss['text']}"
        )
    return "\n".join(lines)


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


COMMANDS = (triage,)
