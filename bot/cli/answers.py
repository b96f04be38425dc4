"""``trbot index | ask | search | eval | stats``: the answering commands.

Each parses, calls one core function, prints; ``bot.cli`` turns the core's named errors into one line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import time
from pathlib import Path

import click

from bot.answer import answer_quality, load_embedder, open_answerer, placeholders_from
from bot.config import Config
from bot.records import Answer, AnswerStatus
from indexer.build import IndexReport, build_index
from indexer.evaluate import ModeScores, evaluate, load_questions
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

    New and changed files under PATHS are (re-)embedded and unchanged ones kept as they are.
    A document leaves the index only when its file is gone from a folder this run indexed:
    naming a file adds or updates it and removes nothing else. A file or folder that cannot
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
@click.argument("question")
@_db_option
@click.option(
    "--top", type=click.IntRange(1, 10), help="How many passages at most (default: answer.top_passages)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the Answer record as JSON.")
@click.pass_obj
def ask(config: Config, question: str, db: Path | None, top: int | None, as_json: bool) -> None:
    """Answer a question from the indexed guidance, with numbered citations.

    Example:

        trbot ask "Can I email my code to a collaborator in China?"
    """
    config = _with_overrides(config, db=db, top=top)
    answerer = open_answerer(config)
    answer = answerer.answer(question)
    click.echo(json.dumps(answer.to_dict(), indent=2) if as_json else format_answer(answer))


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
        lines.append(f"  [{c.number}] {c.title} ({c.path}{reviewed}) {c.url or ''}".rstrip())
    return "\n".join(lines)


def _mark(text: str, highlights: tuple[str, ...]) -> str:
    """Bold the most relevant sentences (click drops the styling when output is not a terminal)."""
    for sentence in highlights:
        text = text.replace(sentence, click.style(sentence, bold=True), 1)
    return text


@click.command()
@click.option("--queries", required=True, type=click.File("r"), help='JSON lines: {"id": ..., "text": ...}.')
@_db_option
@click.option(
    "--top", "top_k", default=5, show_default=True, type=click.IntRange(1, 100), help="Hits per query."
)
@click.option(
    "--per-doc", default=1, show_default=True, type=click.IntRange(1, 100), help="Hits per document."
)
@click.option("--mode", type=click.Choice(["hybrid", "bm25", "dense"]), default="hybrid", show_default=True)
@click.pass_obj
def search(config: Config, queries, db: Path | None, top_k: int, per_doc: int, mode: str) -> None:
    """Batch retrieval: one JSON line of ranked hits per query line, the model loaded once.

    Output lines: {"id": ..., "hits": [{"path", "chunk", "score", "text"}, ...]}, best first;
    "path" is the source file relative to the indexed folder.

    Example:

        trbot search --queries questions.jsonl --top 5 > hits.jsonl
    """
    parsed = [_query_line(line, number) for number, line in enumerate(queries, start=1) if line.strip()]
    index = SearchIndex.load(db or config.paths.index_db, load_embedder(config), config.retrieval)
    for query_id, text in parsed:
        hits = index.search(text, top_k=top_k, mode=mode, per_doc=per_doc)
        rows = [
            {"path": h.doc_id, "chunk": h.chunk.chunk_id, "score": round(h.score, 6), "text": h.chunk.text}
            for h in hits
        ]
        click.echo(json.dumps({"id": query_id, "hits": rows}, ensure_ascii=False))


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
@click.pass_obj
def eval_command(config: Config, file: Path, db: Path | None, as_json: bool) -> None:
    """Score retrieval on an evaluation file: BM25-only, dense-only and hybrid side by side.

    FILE is a YAML list of {id, question, expect: [doc paths], phrases: [...]}; questions
    with an empty "expect" are off-topic and check that the bot declines them.

    Example:

        trbot eval eval/questions.yaml
    """
    questions = load_questions(file)
    answerer = open_answerer(_with_overrides(config, db=db))
    results = evaluate(answerer.index, questions)
    gate = answer_quality(answerer, questions)
    if as_json:
        click.echo(json.dumps({"modes": [vars(r) for r in results], "gate": gate}, indent=2))
        return
    click.echo(format_eval(results, gate, len(questions)))


def format_eval(results: list[ModeScores], gate: dict[str, float], count: int) -> str:
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
        f"answers over {count} questions: {gate['answered']:.3f} of answerable answered, "
        f"{gate['declined']:.3f} of off-topic declined; an expected document cited first "
        f"{gate['first_cited']:.3f}, cited at all {gate['any_cited']:.3f}"
    )
    return "\n".join(rows)


@click.command()
@_db_option
@click.pass_obj
def stats(config: Config, db: Path | None) -> None:
    """Show what the index holds: documents, chunks, model, last index time.

    Example:

        trbot stats
    """
    path = db or config.paths.index_db
    store = IndexStore.open(path)
    try:
        meta = store.meta()
        documents, chunks = store.counts()
    finally:
        store.close()
    click.echo(f"index:      {path}")
    click.echo(f"documents:  {documents}")
    click.echo(f"chunks:     {chunks}")
    click.echo(f"model:      {meta.model} ({meta.dimension} dimensions)")
    click.echo(f"indexed at: {meta.indexed_at}")


COMMANDS = (index, ask, search, eval_command, stats)
