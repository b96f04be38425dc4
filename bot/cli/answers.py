"""``trbot index | ask | search | eval | stats``: the answering commands.

Each parses, calls one core function, prints; ``bot.cli`` turns the core's named errors into one line.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import click

from bot.answer import (
    QuestionError,
    answer_outcomes,
    load_embedder,
    open_answerer,
    placeholders_from,
    reviews_overdue,
)
from bot.config import Config
from bot.records import Answer, AnswerStatus
from indexer.build import IndexReport, build_index
from indexer.evaluate import (
    AnswerScores,
    FactScores,
    ModeScores,
    evaluate,
    fact_retrieval,
    load_questions,
    score_answers,
)
from indexer.search import SearchIndex
from indexer.store import IndexStore


def _db_option(fn):
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Index database (default: paths.index_db in app.yml).",
    )(fn)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@_db_option
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal).")
@click.pass_obj
def index(config: Config, paths: tuple[Path, ...], db: Path | None, progress: bool | None) -> None:
    """Index guidance files (Markdown, HTML, text, PDF) into the search database.

    New and changed files under PATHS are (re-)embedded and unchanged ones kept as they are
    (each sentence is embedded too when retrieval.sentence_weight is set). A document leaves
    the index only when its file is gone from a folder this run indexed: naming a file adds
    or updates it and removes nothing else. A file or folder that cannot
    be read is reported and skipped, and its documents are kept. The run is all-or-nothing:
    if it fails, the previous index is left whole.

    Example:

        trbot index                      # knowledge/guidance into var/index.db

        trbot index docs/ extra.pdf --db /tmp/test.db
    """
    targets = list(paths) or [config.paths.guidance_dir]
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    report = build_index(
        targets,
        db or config.paths.index_db,
        load_embedder(config),
        config.chunking,
        placeholders=placeholders_from(config.institution),
        progress=_tqdm_progress if show else None,
        sentences=config.retrieval.sentence_weight > 0,
    )
    _print_report(report, db or config.paths.index_db, time.perf_counter() - started)


def _tqdm_progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="chunk", desc="embedding", file=sys.stderr)


def _print_report(report: IndexReport, db: Path, seconds: float) -> None:
    for message in report.skipped:
        click.echo(f"skipped: {message}", err=True)
    if report.full_rebuild_reason:
        click.echo(f"full rebuild ({report.full_rebuild_reason})")
    click.echo(
        f"indexed {report.documents} documents into {db} in {seconds:.1f}s: "
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed, {len(report.skipped)} skipped; "
        f"{report.chunks_embedded} chunks embedded, {report.chunks_reused} reused"
    )


@click.command()
@click.argument("question", required=False)
@_db_option
@click.option(
    "--top", type=click.IntRange(1, 10), help="How many passages at most (default: answer.top_passages)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the Answer record as JSON.")
@click.option(
    "--queries",
    type=click.File("rb"),
    help='Batch: JSON lines {"id", "text", "context"?} in, one Answer JSON line per query out.',
)
@click.pass_obj
def ask(
    config: Config, question: str | None, db: Path | None, top: int | None, as_json: bool, queries
) -> None:
    """Answer a question from the indexed guidance, with numbered citations.

    Batch mode (--queries FILE, "-" for standard input): each line is {"id": ..., "text": ...},
    with an optional "context" (the thread's earlier question, for a follow-up); the model is
    loaded once and each line gets one JSON line back, in order: the Answer record with its
    "id" (and "line", the input line number). A line that cannot be answered (not JSON or not
    UTF-8, no "text", a repeated id, an empty or over-long question) gets {"id", "line",
    "error"} instead, the other lines are still answered, and the command exits with status 1
    after the last line. A line's id defaults to its line number.

    Example:

        trbot ask "Can I email my code to a collaborator in China?"

        trbot ask --queries questions.jsonl --json > answers.jsonl
    """
    if (question is None) == (queries is None):
        raise click.UsageError("give either a QUESTION or --queries FILE")
    config = _with_overrides(config, db=db, top=top)
    answerer = open_answerer(config)
    if queries is not None:
        failed = 0
        for row in ask_batch(answerer, queries):
            failed += "error" in row
            click.echo(json.dumps(row, ensure_ascii=False))
        if failed:
            raise click.ClickException(f'{failed} query line(s) could not be answered (see their "error")')
        return
    answer = answerer.answer(question)
    click.echo(json.dumps(answer.to_dict(), indent=2) if as_json else format_answer(answer))


def ask_batch(answerer, lines) -> Iterator[dict]:
    """One output row per non-blank input line: the Answer record with "id" and "line", or an error."""
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            yield {
                "id": number,
                "line": number,
                "error": f"line {number}: not UTF-8 text (byte {exc.start + 1})",
            }
            continue
        if not line.strip():
            continue
        try:
            query_id, text, context = _ask_line(line, number)
        except ValueError as exc:
            yield {"id": number, "line": number, "error": str(exc)}
            continue
        key = json.dumps(query_id)
        if key in seen:
            error = f"line {number}: id {key} repeats line {seen[key]}"
            yield {"id": query_id, "line": number, "error": error}
            continue
        seen[key] = number
        try:
            answer = answerer.answer(text, context=context)
        except QuestionError as exc:
            yield {"id": query_id, "line": number, "error": f"line {number}: {exc}"}
            continue
        yield {"id": query_id, "line": number} | answer.to_dict()


def _ask_line(line: str, number: int) -> tuple[object, str, str | None]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not JSON ({exc.msg})") from exc
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        raise ValueError(f'line {number}: needs a "text" field holding the question')
    context = item.get("context")
    if context is not None and not isinstance(context, str):
        raise ValueError(f'line {number}: "context" must be text (the thread\'s earlier question)')
    query_id = item.get("id", number)
    if not isinstance(query_id, str | int | float) or isinstance(query_id, bool):
        raise ValueError(f'line {number}: "id" must be a string or a number')
    return query_id, item["text"], context


def _with_overrides(config: Config, db: Path | None = None, top: int | None = None) -> Config:
    if db is not None:
        config = dataclasses.replace(config, paths=dataclasses.replace(config.paths, index_db=db))
    if top is not None:
        config = dataclasses.replace(config, answer=dataclasses.replace(config.answer, top_passages=top))
    return config


def format_answer(answer: Answer) -> str:
    """A readable terminal rendering of an Answer."""
    if answer.status is not AnswerStatus.ANSWERED:
        return answer.message
    lines = [f"{answer.message} (confidence: {answer.confidence})", ""]
    for passage in answer.passages:
        citation = answer.citation(passage.citation)
        lines.append(
            f"[{passage.citation}] {citation.title}" + (f" > {citation.section}" if citation.section else "")
        )
        lines.extend(textwrap.indent(_mark(passage.text, passage.highlights), "    ").splitlines())
        lines.append("")
    lines.append("Sources:")
    for c in answer.citations:
        reviewed = f", last reviewed {c.last_reviewed}" if c.last_reviewed else ""
        reviewed += ", overdue for review: check it is still current" if c.stale else ""
        lines.append(f"  [{c.number}] {c.title} ({c.path}{reviewed}) {c.url or ''}".rstrip())
    return "\n".join(lines)


def _mark(text: str, highlights: tuple[str, ...]) -> str:
    """Bold the most relevant sentences (click drops the styling when output is not a terminal)."""
    for sentence in highlights:
        text = text.replace(sentence, click.style(sentence, bold=True), 1)
    return text


@click.command()
@click.option("--queries", required=True, type=click.File("rb"), help='JSON lines: {"id": ..., "text": ...}.')
@_db_option
@click.option(
    "--top", "top_k", default=5, show_default=True, type=click.IntRange(1, 100), help="Hits per query."
)
@click.option(
    "--per-doc", type=click.IntRange(1, 100), help="Hits per document (default: retrieval.per_doc)."
)
@click.option("--mode", type=click.Choice(["hybrid", "bm25", "dense"]), default="hybrid", show_default=True)
@click.pass_obj
def search(config: Config, queries, db: Path | None, top_k: int, per_doc: int | None, mode: str) -> None:
    """Batch retrieval: one JSON line of ranked hits per query line, the model loaded once.

    Output lines: {"id": ..., "hits": [{"path", "chunk", "score", "text"}, ...]}, best first;
    "path" is the source file relative to the indexed folder.

    Example:

        trbot search --queries questions.jsonl --top 5 > hits.jsonl
    """
    parsed = _query_lines(queries)
    per_doc = per_doc if per_doc is not None else config.retrieval.per_doc
    index = SearchIndex.load(db or config.paths.index_db, load_embedder(config), config.retrieval)
    for query_id, text in parsed:
        hits = index.search(text, top_k=top_k, mode=mode, per_doc=per_doc)
        rows = [
            {"path": h.doc_id, "chunk": h.chunk.chunk_id, "score": round(h.score, 6), "text": h.chunk.text}
            for h in hits
        ]
        click.echo(json.dumps({"id": query_id, "hits": rows}, ensure_ascii=False))


def _query_lines(lines) -> list[tuple[object, str]]:
    """Each line's (id, text); a line that is not UTF-8 text, not a query, or repeats an id stops the run."""
    parsed: list[tuple[object, str]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            message = f"queries line {number}: not UTF-8 text (byte {exc.start + 1})"
            raise click.ClickException(message) from exc
        if not line.strip():
            continue
        query_id, text = _query_line(line, number)
        key = json.dumps(query_id)
        if key in seen:
            raise click.ClickException(f"queries line {number}: id {key} repeats line {seen[key]}")
        seen[key] = number
        parsed.append((query_id, text))
    return parsed


def _query_line(line: str, number: int) -> tuple[object, str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"queries line {number}: not JSON ({exc.msg})") from exc
    if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
        raise click.ClickException(f'queries line {number}: needs a non-empty "text" field')
    return item.get("id", number), item["text"]


@click.command(name="eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--misses", is_flag=True, help="List the facts not shown and the questions mishandled.")
@click.pass_obj
def eval_command(config: Config, file: Path, db: Path | None, as_json: bool, misses: bool) -> None:
    """Score retrieval and answers on an evaluation file.

    Retrieval: Recall@1/3/5, MRR and nDCG@5 for BM25-only, dense-only and hybrid side by side.
    Answers: answerable questions answered, the others declined, the expected document cited.
    Facts (questions that list "facts:"): the share of the expected facts in the quoted text of
    the answer, in the top 5 hits (one per document) and the top 10 (three per document), and
    anywhere in the corpus; passages per answer and quoted characters; and, per "kind:"
    (lookalike, followup, language), how many were handled as expected.

    FILE is a YAML list of {id, question, expect: [doc paths], phrases, facts, status, context,
    kind} (the format is described at the top of eval/facts-holdout.yaml); a question with an
    empty "expect" must be declined.

    Example:

        trbot eval eval/questions.yaml

        trbot eval eval/facts.yaml --misses
    """
    questions = load_questions(file)
    answerer = open_answerer(_with_overrides(config, db=db))
    results = evaluate(answerer.index, questions)
    answers = score_answers(questions, answer_outcomes(answerer, questions))
    facts = fact_retrieval(answerer.index, questions)
    if as_json:
        data = {"modes": [vars(r) for r in results], "answers": vars(answers), "facts": vars(facts)}
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(format_eval(results, answers, facts, len(questions), misses))


def format_eval(
    results: list[ModeScores], answers: AnswerScores, facts: FactScores, count: int, misses: bool = False
) -> str:
    ks = sorted(results[0].recall)
    header = (
        f"{'mode':<8}" + "".join(f"{'R@' + str(k):>8}" for k in ks) + f"{'MRR':>8}{'nDCG@5':>8}{'phrase':>8}"
    )
    rows = [header]
    for r in results:
        rows.append(
            f"{r.mode:<8}"
            + "".join(f"{r.recall[k]:>8.3f}" for k in ks)
            + f"{r.mrr:>8.3f}{r.ndcg:>8.3f}{r.phrase_recall:>8.3f}"
        )
        if r.misses:
            rows.append(f"         missed at 5: {', '.join(r.misses)}")
    rows.append(
        f"answers over {count} questions: {answers.answered:.3f} of answerable answered, "
        f"{answers.declined:.3f} of the others declined; an expected document cited first "
        f"{answers.first_cited:.3f}, cited at all {answers.any_cited:.3f}"
    )
    if answers.fact_questions:
        rows.append(
            f"facts ({answers.facts} in {answers.fact_questions} questions): in the answer shown "
            f"{answers.fact_recall:.3f} (every fact shown for {answers.complete:.3f} of the questions); "
            f"hybrid top 5 (1 per document) {facts.top5:.3f}, top 10 (3 per document) {facts.top10:.3f}; "
            f"in the corpus at all {facts.in_corpus:.3f}"
        )
    rows.append(
        f"answer shape: passages per answer max {answers.passages_max} (mean {answers.passages_mean:.1f}); "
        f"quoted characters median {answers.quoted_chars_median:.0f} (max {answers.quoted_chars_max})"
    )
    kinds = {kind: tally for kind, tally in answers.handling.items() if kind != "plain"}
    if kinds:
        rows.append(
            "handled as expected: " + ", ".join(f"{k} {ok}/{n}" for k, (ok, n) in sorted(kinds.items()))
        )
    if misses:
        rows.append(f"mishandled: {', '.join(answers.misses) or 'none'}")
        rows.append(f"facts not shown: {', '.join(answers.fact_misses) or 'none'}")
        rows.append(f"facts in no chunk: {', '.join(facts.missing_from_corpus) or 'none'}")
    return "\n".join(rows)


@click.command()
@_db_option
@click.pass_obj
def stats(config: Config, db: Path | None) -> None:
    """Show what the index holds: documents, chunks, model, last index time, and the documents
    overdue for review (last_reviewed older than answer.max_review_age_days) or with no date.

    Example:

        trbot stats
    """
    path = db or config.paths.index_db
    store = IndexStore.open(path)
    try:
        meta = store.meta()
        documents, chunks = store.counts()
        rows = store.documents()
    finally:
        store.close()
    click.echo(f"settings:   {config.source or 'none (no app.yml: the defaults)'}")
    click.echo(f"index:      {path}")
    click.echo(f"documents:  {documents}")
    click.echo(f"chunks:     {chunks}")
    click.echo(f"model:      {meta.model} ({meta.dimension} dimensions)")
    click.echo(f"indexed at: {meta.indexed_at}")
    limit = config.answer.max_review_age_days
    overdue, undated = reviews_overdue(rows.values(), limit, datetime.date.today())
    click.echo(f"overdue for review (last reviewed over {limit} days ago): {len(overdue)}")
    for doc_id, reviewed, age in overdue:
        click.echo(f"  {doc_id}: last reviewed {reviewed} ({age} days ago)")
    if undated:
        click.echo(f"no readable last_reviewed date: {len(undated)}")
        for doc_id in undated:
            click.echo(f"  {doc_id}")


COMMANDS = (index, ask, search, eval_command, stats)
