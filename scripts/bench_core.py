#!/usr/bin/env python
"""Benchmark of trbot's retrieval core: indexing, re-indexing, query latency, memory and a cold ``ask``.

Run from anywhere with the project's venv:

    .venv/bin/python scripts/bench_core.py                      # everything (3-4 minutes on 2 cores)
    .venv/bin/python scripts/bench_core.py --skip-100k --queries 50
    .venv/bin/python scripts/bench_core.py --json var/bench.json
    .venv/bin/python scripts/bench_core.py --sizes 10000 --retrieval eval/scifact.yml  # SciFact's fusion

What it measures (each against a baseline measured in the same run, since timings on a small,
shared machine are noisy):

1. Index throughput: a full ``build_index`` of knowledge/guidance into a fresh database, against
   the raw ``embed_documents`` of exactly the same chunk texts; chunks/s for both and their ratio.
   The two are run alternately (``--repeats`` times each) and the best of each is kept.
2. Re-index with nothing changed: ``build_index`` again over the same database, in process and
   through ``trbot index --db ...`` in a subprocess (the CLI time includes Python start-up, imports
   and loading the model).
3. Warm query latency of ``SearchIndex.search(q, top_k=5)`` (hybrid; query encoding included) on
   the shipped corpus and on synthetic corpora (``--sizes``), with a per-step breakdown, and the
   BM25 part alone against ``rank_bm25.BM25Okapi.get_scores`` on the same corpus and queries.
   Synthetic chunks are built from sentences of the shipped corpus (seeded), so BM25 term
   statistics are realistic; their embeddings are random unit vectors (the model is only used to
   encode queries), one per sentence too. Each synthetic size runs in its own subprocess of this
   script. ``--retrieval FILE`` times the fusion of that settings file instead of the shipped one.
4. Peak memory (VmHWM; see ``peak_rss_mb``) of those subprocesses, with the RSS after loading the
   model, so the index's own share is visible. At 50,000 chunks and more the synthetic index is
   also written to an index file and read back with ``SearchIndex.load`` in a fresh process (the
   path ``trbot ask`` and the Slack app take), for its load time and peak memory.
5. Cold ``trbot ask`` from process start, twice, against ``python -c "import torch,
   sentence_transformers"`` and a bare model load.

The summary table gives each figure, its target and PASS/FAIL ("info" where there is no target).
The script always exits 0 unless it crashes; it is a measurement, not a test.

Thread settings are inherited by every subprocess, so the effect of intra-op threads (torch's
OpenMP pool and OpenBLAS) can be compared by running the whole script again under, e.g.,
``OMP_NUM_THREADS=1``; the settings in force are printed with the results.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import os
import pstats
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bot.answer import placeholders_from
from bot.config import Config, load_config
from indexer.build import build_index
from indexer.chunking import Chunk, ChunkingOptions, chunk_document
from indexer.documents import discover_files, read_document
from indexer.embeddings import SentenceTransformerEmbedder
from indexer.search import Hit, RetrievalOptions, SearchIndex, Signals, dense_scores, diversify
from indexer.store import DocumentRow, IndexStore, StoredChunk
from indexer.text import split_sentences, tokenize

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
QUESTION_FILE = "eval/questions.yaml"
ASK_QUESTION = "Do I need an export licence to email technical data to a collaborator abroad?"
TOP_K = 5
# Synthetic sizes at or above this use fewer queries for the (slow) rank-bm25 baseline.
LARGE = 50_000
# Queries for the per-step breakdown and for the query-encoding thread comparison.
BREAKDOWN_QUERIES = 50
ENCODE_QUERIES = 30

TARGETS = {
    "throughput_ratio": 0.9,  # index chunks/s over raw encode chunks/s, at least
    "reindex_s": 3.0,  # in-process re-index with nothing changed, below
    "p95_ms": {10_000: 50.0, 100_000: 150.0},  # warm hybrid query p95, at most
    "peak_rss_mb": {100_000: 1536.0},  # peak RSS of the synthetic-corpus process, at most
}


# --- small helpers -------------------------------------------------------------------------------

_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Current resident set size, in MB (Linux)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB: VmHWM.

    Not ``ru_maxrss``: on Linux a child process started by fork/vfork + exec inherits its
    parent's high-water mark in ``ru_maxrss`` (the main process of this script is ~800 MB by
    then), so it would over-report a small child. VmHWM belongs to the exec'ed address space.
    """
    return _status_mb("VmHWM")


def ru_maxrss_mb() -> float:
    """``ru_maxrss`` (KiB on Linux) in MB, recorded for reference; see ``peak_rss_mb``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def clean_env() -> dict[str, str]:
    """The environment for trbot subprocesses: no TRBOT_* overrides (TRBOT_CONFIG included)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRBOT_")}


def run_wall(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True)
    return time.perf_counter() - start, done


def load_setup() -> tuple[Config, SentenceTransformerEmbedder]:
    """The repository's app.yml without environment overrides, and the model, warmed up."""
    config = load_config(REPO / "app.yml" if (REPO / "app.yml").exists() else None, env={})
    embedder = SentenceTransformerEmbedder(config.embedding.model, config.embedding.batch_size)
    embedder.embed_documents(["warm-up: export controls and research collaborations"])
    embedder.embed_query("warm-up query")
    return config, embedder


def real_chunks(config: Config) -> list[Chunk]:
    placeholders = placeholders_from(config.institution)
    documents = [read_document(f, d, placeholders) for f, d in discover_files([config.paths.guidance_dir])]
    return [chunk for doc in documents for chunk in chunk_document(doc, config.chunking)]


def question_files(named: list[Path] | None) -> list[Path]:
    """The files named, else eval/questions.yaml."""
    return named or [REPO / QUESTION_FILE]


def load_questions(files: list[Path]) -> list[str]:
    import yaml

    questions: list[str] = []
    for path in files:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        questions.extend(str(item["question"]) for item in items if item.get("question"))
    if not questions:
        raise SystemExit("no questions found in " + ", ".join(map(str, files)))
    return questions


def cycle(questions: list[str], start: int, count: int) -> list[str]:
    return [questions[(start + i) % len(questions)] for i in range(count)]


# --- 1. index throughput vs raw encode -----------------------------------------------------------


def bench_throughput(config: Config, embedder, workdir: Path, repeats: int) -> tuple[dict, Path]:
    guidance = config.paths.guidance_dir
    placeholders = placeholders_from(config.institution)
    texts = [chunk.embedding_text for chunk in real_chunks(config)]
    raw, built, db = [], [], workdir / "index.db"
    for round_number in range(1, repeats + 1):
        seconds, _ = timed(lambda: embedder.embed_documents(texts))
        raw.append(seconds)
        log(f"raw encode {round_number}/{repeats}: {len(texts)} chunks in {seconds:.2f}s")
        db = workdir / f"index-{round_number}.db"
        seconds, report = timed(
            lambda db=db: build_index([guidance], db, embedder, config.chunking, placeholders)
        )
        built.append(seconds)
        if report.chunks_embedded != len(texts):
            log(f"WARNING: build_index embedded {report.chunks_embedded} chunks, raw encode had {len(texts)}")
        log(f"build_index {round_number}/{repeats}: {report.chunks_embedded} chunks in {seconds:.2f}s")
    raw_best, index_best = min(raw), min(built)
    result = {
        "chunks": len(texts),
        "raw_s": raw,
        "index_s": built,
        "raw_chunks_per_s": len(texts) / raw_best,
        "index_chunks_per_s": len(texts) / index_best,
        "ratio": raw_best / index_best,
        "overhead_s": index_best - raw_best,
    }
    return result, db


# --- 2. re-index with nothing changed ------------------------------------------------------------


def bench_reindex(config: Config, embedder, db: Path, runs: int = 3) -> dict:
    """``runs`` re-index runs; the figure is the first that was a true no-op (a guidance file
    edited while the benchmark runs makes a run re-embed, and that run is reported apart)."""
    placeholders = placeholders_from(config.institution)
    times, embedded = [], []
    for _ in range(runs):
        seconds, report = timed(
            lambda: build_index([config.paths.guidance_dir], db, embedder, config.chunking, placeholders)
        )
        times.append(seconds)
        embedded.append(report.chunks_embedded + (1_000_000 if report.full_rebuild_reason else 0))
        if embedded[-1]:
            changed = report.added + report.updated + report.removed
            log(
                f"note: a re-index run embedded {report.chunks_embedded} chunks "
                f"({', '.join(changed)} changed)"
            )
    log(f"re-index in process: {', '.join(f'{t:.3f}s' for t in times)}")
    no_ops = [t for t, n in zip(times, embedded, strict=True) if n == 0]
    return {
        "in_process_s": times,
        "chunks_embedded": embedded,
        "first_s": no_ops[0] if no_ops else times[0],
        "no_op": bool(no_ops),
        "best_s": min(times),
    }


def bench_reindex_cli(db: Path) -> dict:
    wall, done = run_wall([str(VENV_BIN / "trbot"), "index", "--db", str(db)])
    out = done.stdout + done.stderr
    reported = re.search(r" in ([0-9.]+)s:", out)
    embedded = re.search(r"(\d+) chunks embedded", out)
    log(f"trbot index (CLI, nothing changed): {wall:.2f}s wall; exit {done.returncode}")
    if done.returncode != 0:
        log("CLI output:\n" + out)
    return {
        "wall_s": wall,
        "exit": done.returncode,
        "reported_s": float(reported.group(1)) if reported else None,
        "chunks_embedded": int(embedded.group(1)) if embedded else None,
        "output": out.strip()[-400:],
    }


# --- 3. query latency ----------------------------------------------------------------------------


def time_searches(index: SearchIndex, questions: list[str], count: int, warmup: int) -> list[float]:
    for question in questions[:warmup]:
        index.search(question, top_k=TOP_K)
    times = []
    for question in cycle(questions, warmup, count):
        start = time.perf_counter()
        index.search(question, top_k=TOP_K)
        times.append(time.perf_counter() - start)
    return times


def search_breakdown(index: SearchIndex, questions: list[str], count: int, warmup: int) -> dict[str, float]:
    """p50 of each step of ``SearchIndex.search`` (hybrid), timed apart; mirrors search() as written.

    Uses at most BREAKDOWN_QUERIES queries: it is a second pass, for where the time goes.
    """
    count = min(count, BREAKDOWN_QUERIES)
    names = ("tokenize", "bm25", "encode", "dense", "sentences+documents", "fuse+rank")
    steps: dict[str, list[float]] = {k: [] for k in names}
    per_doc = index.options.per_doc
    for question in cycle(questions, warmup, count):
        t0 = time.perf_counter()
        tokens = tokenize(question)
        t1 = time.perf_counter()
        bm25 = index.bm25.scores(tokens)
        t2 = time.perf_counter()
        vector = index.embedder.embed_query(question)
        t3 = time.perf_counter()
        dense = dense_scores(index.matrix, vector)
        t4 = time.perf_counter()
        signals = Signals(dense, bm25, *index.extra_signals(tokens, vector, dense, bm25))
        t5 = time.perf_counter()
        scores = index._scores("hybrid", signals, depth=max(index.options.candidates, 20 * TOP_K))
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        kept = diversify(ranked, lambda i: index.chunks[i].doc_id, per_doc, TOP_K)
        [Hit(index.chunks[i], scores[i], float(bm25[i]), float(dense[i])) for i in kept]
        t6 = time.perf_counter()
        times = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)
        for name, seconds in zip(steps, times, strict=True):
            steps[name].append(seconds)
    return {name: float(np.median(values) * 1000) for name, values in steps.items()}


def compare_bm25(
    index: SearchIndex, corpus_tokens: list[list[str]], questions: list[str], count: int
) -> dict:
    """Our BM25 against rank-bm25 on the same corpus and queries (both timed with tokenize(q))."""
    from rank_bm25 import BM25Okapi

    build_s, baseline = timed(lambda: BM25Okapi(corpus_tokens))
    ours, theirs, worst = [], [], 0.0
    for question in cycle(questions, 0, count):
        seconds, mine = timed(lambda q=question: index.bm25.scores(tokenize(q)))
        ours.append(seconds)
        seconds, reference = timed(lambda q=question: baseline.get_scores(tokenize(q)))
        theirs.append(seconds)
        scale = max(1.0, float(np.abs(reference).max()))
        worst = max(worst, float(np.abs(mine - reference).max()) / scale)
    ours_p, theirs_p = percentiles(ours), percentiles(theirs)
    return {
        "queries": count,
        "rank_bm25_build_s": build_s,
        "ours": ours_p,
        "rank_bm25": theirs_p,
        "ratio_p50": ours_p["p50_ms"] / theirs_p["p50_ms"],
        "max_rel_score_diff": worst,
    }


def latency_report(
    index: SearchIndex, corpus_tokens: list[list[str]], questions: list[str], args, baseline_queries: int
) -> dict:
    times = time_searches(index, questions, args.queries, args.warmup)
    result = {"search": percentiles(times)}
    result["breakdown_p50_ms"] = search_breakdown(index, questions, args.queries, args.warmup)
    log(
        f"  search p50 {result['search']['p50_ms']:.1f} ms, p95 {result['search']['p95_ms']:.1f} ms; "
        + ", ".join(f"{k} {v:.2f}" for k, v in result["breakdown_p50_ms"].items())
    )
    result["bm25"] = compare_bm25(index, corpus_tokens, questions, baseline_queries)
    bm = result["bm25"]
    log(
        f"  BM25 p50: ours {bm['ours']['p50_ms']:.2f} ms, rank-bm25 {bm['rank_bm25']['p50_ms']:.2f} ms "
        f"({bm['queries']} queries; rank-bm25 build {bm['rank_bm25_build_s']:.1f}s)"
    )
    return result


def bench_encode_threads(embedder, questions: list[str]) -> dict:
    """``embed_query`` alone with torch's default thread count and with one thread (a baseline for
    the "encode" step: on a small shared machine, intra-op threads can cost more than they give)."""
    import torch

    default = torch.get_num_threads()
    result = {"default_threads": default}
    for label, threads in (("default", default), ("one", 1), ("default_again", default)):
        torch.set_num_threads(threads)
        embedder.embed_query(questions[0])
        times = []
        for question in cycle(questions, 1, ENCODE_QUERIES):
            seconds, _ = timed(lambda q=question: embedder.embed_query(q))
            times.append(seconds)
        result[label] = percentiles(times)
    torch.set_num_threads(default)
    log(
        "embed_query alone p50/p95: "
        + "; ".join(
            f"{label} ({default if label != 'one' else 1} threads) "
            f"{result[label]['p50_ms']:.1f}/{result[label]['p95_ms']:.1f} ms"
            for label in ("default", "one", "default_again")
        )
    )
    return result


def thread_settings() -> dict:
    import torch

    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {"torch_threads": torch.get_num_threads()} | {name: os.environ.get(name) for name in names}


def search_options(args) -> RetrievalOptions:
    """The fusion the searches use: ``--retrieval FILE``'s retrieval section, else the defaults
    (which app.yml ships)."""
    if args.retrieval is None:
        return RetrievalOptions()
    return load_config(args.retrieval, env={}).retrieval


def bench_real_queries(config: Config, embedder, db: Path, questions: list[str], args) -> dict:
    options = search_options(args)
    if options.sentence_weight:  # the throughput runs built the index as shipped: no sentences
        placeholders = placeholders_from(config.institution)
        build_index([config.paths.guidance_dir], db, embedder, config.chunking, placeholders, sentences=True)
    index = SearchIndex.load(db, embedder, options)
    store = IndexStore.open(db)
    try:
        corpus_tokens = [text.split() for text in store.load_chunks(embedder.dimension).tokens]
    finally:
        store.close()
    log(f"shipped corpus: {len(index.chunks)} chunks")
    result = latency_report(index, corpus_tokens, questions, args, args.queries)
    result["chunks"] = len(index.chunks)
    return result


# --- 3b/4. synthetic corpora (run in a child process each) ---------------------------------------


@dataclasses.dataclass
class _Heading:
    title: str
    heading_path: tuple[str, ...]
    tokens: list[str]


def _synthetic_specs(size: int, source: list[Chunk], seed: int):
    """Yield (document number, source doc id, title, ordinal, heading path, sentences, tokens)."""
    rng = random.Random(seed)
    sentences = [s for chunk in source for s in split_sentences(chunk.text)]
    sentence_tokens = [tokenize(s) for s in sentences]
    sentence_words = [len(s.split()) for s in sentences]
    lengths = [len(chunk.text.split()) for chunk in source]
    headings: dict[str, list[_Heading]] = {}
    for chunk in source:
        heading_tokens = tokenize(dataclasses.replace(chunk, text="").embedding_text)
        headings.setdefault(chunk.doc_id, []).append(
            _Heading(chunk.title, chunk.heading_path, heading_tokens)
        )
    sources = sorted(headings)
    made, number = 0, 0
    while made < size:
        like = rng.choice(sources)
        for ordinal in range(min(rng.randint(5, 15), size - made)):
            heading = rng.choice(headings[like])
            target, words, picked = rng.choice(lengths), 0, []
            tokens = list(heading.tokens)
            while True:
                j = rng.randrange(len(sentences))
                # Stop when the next sentence would overshoot the sampled length by more than half of it.
                if picked and words + sentence_words[j] / 2 > target:
                    break
                picked.append(sentences[j])
                tokens.extend(sentence_tokens[j])
                words += sentence_words[j]
            yield number, like, heading.title, ordinal, heading.heading_path, picked, tokens
            made += 1
        number += 1


def synthetic_corpus(
    size: int, source: list[Chunk], dimension: int, seed: int
) -> tuple[list[StoredChunk], dict[str, DocumentRow]]:
    """``size`` chunks sampled from the shipped corpus's sentences, 5 to 15 (~10) per document.

    The chunks come as ``IndexStore.load_chunks`` gives them: tokens split from a stored string
    (so each chunk has its own token strings), one float32 array per embedding, and one
    embedding per sentence.
    """
    vectors_rng = np.random.default_rng(seed)
    stored: list[StoredChunk] = []
    documents: dict[str, DocumentRow] = {}
    vectors: list[np.ndarray] = []
    for number, like, title, ordinal, heading_path, picked, tokens in _synthetic_specs(size, source, seed):
        doc_id = f"synthetic/{number:06d}-{like}"
        if doc_id not in documents:
            documents[doc_id] = DocumentRow(
                doc_id,
                f"/synthetic/{doc_id}",
                title,
                "",
                ("https://example.org/",),
                (),
                None,
                None,
                f"{number:064x}",
            )
        if not vectors:
            block = vectors_rng.standard_normal((10_000, dimension), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            vectors = [row.copy() for row in block]  # one array per chunk, like from_blob
            vectors.reverse()
        chunk = Chunk(f"{number:08x}{ordinal:08x}", doc_id, ordinal, title, heading_path, " ".join(picked))
        sentences = vectors_rng.standard_normal((len(chunk.sentences), dimension), dtype=np.float32)
        sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
        tokens = " ".join(tokens).split()
        stored.append(StoredChunk(chunk, tokens, f"{len(stored):064x}", vectors.pop(), sentences))
    return stored, documents


def synthetic_tokens(size: int, source: list[Chunk], seed: int) -> list[list[str]]:
    """The same corpus's tokens alone (regenerated for the rank-bm25 baseline, after the
    memory figures are taken, so the baseline's data does not count in trbot's peak)."""
    return [spec[-1] for spec in _synthetic_specs(size, source, seed)]


def check_tokens(stored: list[StoredChunk], sample: int = 300) -> None:
    """The synthetic tokens equal what indexing would give: tokenize(chunk.embedding_text)."""
    for item in stored[:sample]:
        if tokenize(item.chunk.embedding_text) != item.tokens:
            raise SystemExit(f"synthetic tokens differ from tokenize() for chunk {item.chunk.chunk_id}")


def child_main(args) -> None:
    size = args.child_size
    result: dict = {"size": size}
    config, embedder = load_setup()
    questions = load_questions(question_files(args.questions))
    result["rss_model_mb"] = rss_mb()
    peaks = result["peak_checkpoints_mb"] = {"model loaded": peak_rss_mb()}
    log(f"[{size}] model loaded; RSS {result['rss_model_mb']:.0f} MB")

    source = real_chunks(config)
    seconds, (stored, documents) = timed(
        lambda: synthetic_corpus(size, source, embedder.dimension, args.seed)
    )
    result["generate_s"] = seconds
    check_tokens(stored)
    result["documents"] = len(documents)
    result["avg_tokens"] = float(np.mean([len(item.tokens) for item in stored]))
    result["avg_words"] = float(np.mean([len(item.chunk.text.split()) for item in stored[:5000]]))
    result["rss_data_mb"] = rss_mb()
    peaks["chunks generated"] = peak_rss_mb()
    log(f"[{size}] generated {len(stored)} chunks in {len(documents)} documents in {seconds:.1f}s")

    start = time.perf_counter()
    index = SearchIndex.from_stored(stored, documents, embedder, search_options(args))
    result["index_build_s"] = seconds = time.perf_counter() - start
    del stored
    gc.collect()
    result["rss_index_mb"] = rss_mb()
    peaks["SearchIndex built"] = peak_rss_mb()
    log(f"[{size}] SearchIndex built in {seconds:.1f}s; RSS {result['rss_index_mb']:.0f} MB")

    baseline_queries = args.queries if size < LARGE else args.baseline_queries_large
    times = time_searches(index, questions, args.queries, args.warmup)
    result["search"] = percentiles(times)
    peaks["searches timed"] = peak_rss_mb()
    result["breakdown_p50_ms"] = search_breakdown(index, questions, args.queries, args.warmup)
    # Taken before anything for the rank-bm25 baseline exists: trbot's own peak.
    result["peak_rss_mb"] = peaks["breakdown timed"] = peak_rss_mb()
    log(
        f"[{size}] search p50 {result['search']['p50_ms']:.1f} ms, p95 {result['search']['p95_ms']:.1f} ms; "
        + ", ".join(f"{k} {v:.2f}" for k, v in result["breakdown_p50_ms"].items())
    )
    if args.profile:
        result["profile"] = profile_searches(index, questions, min(args.queries, 50))
        print(result["profile"], file=sys.stderr)

    corpus_tokens = synthetic_tokens(size, source, args.seed)
    result["bm25"] = compare_bm25(index, corpus_tokens, questions, baseline_queries)
    bm = result["bm25"]
    log(
        f"[{size}] BM25 p50: ours {bm['ours']['p50_ms']:.2f} ms, "
        f"rank-bm25 {bm['rank_bm25']['p50_ms']:.2f} ms "
        f"({bm['queries']} queries; rank-bm25 build {bm['rank_bm25_build_s']:.1f}s)"
    )
    result["peak_rss_with_rank_bm25_mb"] = peak_rss_mb()
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    if args.child_db:
        del corpus_tokens
        result["sqlite_write_s"] = write_synthetic_db(
            Path(args.child_db), source, embedder, config, args.seed, size
        )
        log(f"[{size}] wrote the synthetic index to SQLite in {result['sqlite_write_s']:.1f}s")
    Path(args.child_out).write_text(json.dumps(result), encoding="utf-8")


def write_synthetic_db(
    db: Path, source: list[Chunk], embedder, config: Config, seed: int, size: int
) -> float:
    """The same synthetic corpus written as a real index file, through ``IndexStore.write``."""
    from indexer.build import chunking_signature
    from indexer.documents import Document
    from indexer.store import IndexMeta

    stored, documents = synthetic_corpus(size, source, embedder.dimension, seed)
    by_doc: dict[str, list[StoredChunk]] = {}
    for item in stored:
        by_doc.setdefault(item.chunk.doc_id, []).append(item)
    work = [
        (Document(d, Path(r.path), "md", r.title, (), r.content_hash, sources=r.sources), by_doc[d])
        for d, r in documents.items()
    ]
    meta = IndexMeta(embedder.name, embedder.dimension, 0, chunking_signature(config.chunking), None, True)
    start = time.perf_counter()
    store = IndexStore.create(db)
    try:
        store.write(meta, work, [], clear=True)
    finally:
        store.close()
    return time.perf_counter() - start


def child_load_main(args) -> None:
    """In a fresh process: load the model, then ``SearchIndex.load`` the synthetic index file."""
    result: dict = {}
    config, embedder = load_setup()
    questions = load_questions(question_files(args.questions))
    result["rss_model_mb"], result["peak_model_mb"] = rss_mb(), peak_rss_mb()
    seconds, index = timed(lambda: SearchIndex.load(Path(args.child_load), embedder, search_options(args)))
    result["load_s"] = seconds
    result["chunks"] = len(index.chunks)
    gc.collect()
    result["rss_loaded_mb"] = rss_mb()
    times = time_searches(index, questions, min(args.queries, 30), args.warmup)
    result["search"] = percentiles(times)
    result["peak_rss_mb"] = peak_rss_mb()
    log(
        f"[load {len(index.chunks)}] SearchIndex.load {seconds:.1f}s; RSS {result['rss_loaded_mb']:.0f} MB, "
        f"peak {result['peak_rss_mb']:.0f} MB; search p50 {result['search']['p50_ms']:.1f} ms"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        SearchIndex.load(Path(args.child_load), embedder, search_options(args))
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        result["profile"] = "cProfile of SearchIndex.load (by own time):\n" + out.getvalue()
        print(result["profile"], file=sys.stderr)
    Path(args.child_out).write_text(json.dumps(result), encoding="utf-8")


def profile_searches(index: SearchIndex, questions: list[str], count: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for question in cycle(questions, 0, count):
        index.search(question, top_k=TOP_K)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return f"cProfile of {count} searches at {len(index.chunks)} chunks (by own time):\n" + out.getvalue()


def _child(extra: list[str], out: Path, args) -> tuple[float, dict | None]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *extra, "--child-out", str(out)]
    cmd += ["--queries", str(args.queries), "--warmup", str(args.warmup), "--seed", str(args.seed)]
    cmd += ["--baseline-queries-large", str(args.baseline_queries_large)]
    cmd += ["--profile"] if args.profile else []
    cmd += ["--questions", *map(str, args.questions)] if args.questions else []
    cmd += ["--retrieval", str(args.retrieval)] if args.retrieval else []
    wall, done = timed(lambda: subprocess.run(cmd, cwd=REPO))
    if done.returncode != 0 or not out.exists():
        log(f"child process {' '.join(extra)} failed (exit {done.returncode})")
        return wall, None
    return wall, json.loads(out.read_text(encoding="utf-8"))


def run_child(size: int, args, workdir: Path) -> dict:
    """One synthetic size in a child process; at LARGE sizes and up, then SearchIndex.load of it
    from a real index file in another fresh process (the path `trbot ask` and serve take)."""
    db = workdir / f"synthetic-{size}.db"
    with_db = size >= LARGE and not args.skip_sqlite_load
    extra = ["--child-size", str(size)] + (["--child-db", str(db)] if with_db else [])
    wall, result = _child(extra, workdir / f"synthetic-{size}.json", args)
    if result is None:
        return {"size": size, "error": "child process failed"}
    result["child_wall_s"] = wall
    if with_db and db.exists():
        log(f"SearchIndex.load of the {size}-chunk index file (subprocess)")
        _, loaded = _child(["--child-load", str(db)], workdir / f"load-{size}.json", args)
        result["sqlite_load"] = loaded or {"error": "child process failed"}
        result["sqlite_load"]["db_mb"] = db.stat().st_size / 1e6
        for path in workdir.glob(f"synthetic-{size}.db*"):
            path.unlink()
    return result


# --- 5. cold ask ---------------------------------------------------------------------------------


def bench_cold_ask(config: Config, db: Path) -> dict:
    """`trbot ask` twice, each followed by the baselines (so both see the same file cache); the
    baselines' best is compared with the second ask."""
    python = str(VENV_BIN / "python")
    load_code = (
        "from indexer.embeddings import SentenceTransformerEmbedder as E; "
        f"E({config.embedding.model!r}).embed_query('x')"
    )
    asks, imports, models, bares = [], [], [], []
    for attempt in (1, 2):
        wall, done = run_wall([str(VENV_BIN / "trbot"), "ask", ASK_QUESTION, "--db", str(db)])
        asks.append(wall)
        log(f"trbot ask #{attempt}: {wall:.2f}s wall; exit {done.returncode}")
        if done.returncode != 0:
            log("ask output:\n" + done.stdout + done.stderr)
        imports.append(run_wall([python, "-c", "import torch, sentence_transformers"])[0])
        models.append(run_wall([python, "-c", load_code])[0])
        bares.append(run_wall([python, "-c", "pass"])[0])
        log(
            f"baselines: python {bares[-1]:.2f}s, import torch+st {imports[-1]:.2f}s, "
            f"+ model load & 1 query {models[-1]:.2f}s"
        )
    return {
        "ask_s": asks,
        "python_start_s": min(bares),
        "import_torch_st_s": min(imports),
        "model_load_s": min(models),
        "import_runs_s": imports,
        "model_runs_s": models,
        "import_share": min(imports) / asks[1],
        "model_share": min(models) / asks[1],
    }


# --- summary -------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "FAIL")


Row = tuple[str, str, str, str]


def summary_rows(results: dict) -> list[Row]:
    rows: list[Row] = []
    tp = results.get("throughput")
    if tp:
        target = TARGETS["throughput_ratio"]
        rows += [
            ("index: raw encode", f"{tp['raw_chunks_per_s']:.1f} chunks/s", "baseline", "info"),
            ("index: build_index (full)", f"{tp['index_chunks_per_s']:.1f} chunks/s", "", "info"),
            ("index/raw throughput", f"{tp['ratio']:.3f}", f">= {target}", verdict(tp["ratio"] >= target)),
        ]
    ri = results.get("reindex")
    if ri:
        target = TARGETS["reindex_s"]
        value = f"{ri['first_s']:.3f} s" + ("" if ri.get("no_op", True) else " (not a no-op!)")
        rows.append(
            ("re-index, unchanged (in process)", value, f"< {target} s", verdict(ri["first_s"] < target))
        )
    cli = results.get("reindex_cli")
    if cli:
        note = f" (CLI prints {cli['reported_s']}s)" if cli.get("reported_s") is not None else ""
        rows.append(("re-index, unchanged (trbot index, wall)", f"{cli['wall_s']:.2f} s{note}", "", "info"))
    for label, data in results.get("latency", {}).items():
        rows += _latency_rows(label, data)
    enc = results.get("encode_threads")
    if enc:
        for key, threads in (("default", enc["default_threads"]), ("one", 1)):
            value = f"{enc[key]['p50_ms']:.1f} / {enc[key]['p95_ms']:.1f} ms"
            rows.append((f"embed_query alone p50 / p95, {threads} thread(s)", value, "baseline", "info"))
    ask = results.get("cold_ask")
    if ask:
        first, second = ask["ask_s"]
        rows.append(("cold trbot ask (1st / 2nd)", f"{first:.2f} / {second:.2f} s", "", "info"))
        value = (
            f"{ask['import_torch_st_s']:.2f} s ({ask['import_share']:.0%}) / "
            f"{ask['model_load_s']:.2f} s ({ask['model_share']:.0%})"
        )
        rows.append(("  baseline: import torch+st / + model load", value, "baseline", "info"))
    return rows


def _latency_rows(label: str, data: dict) -> list[Row]:
    if "error" in data:
        return [(f"{label}: synthetic run", data["error"], "", "FAIL")]
    size = data.get("size")
    p95_target, rss_target = TARGETS["p95_ms"].get(size), TARGETS["peak_rss_mb"].get(size)
    search, bm = data["search"], data["bm25"]
    rows: list[Row] = [
        (f"{label}: search p50", f"{search['p50_ms']:.1f} ms", "", "info"),
        (
            f"{label}: search p95",
            f"{search['p95_ms']:.1f} ms",
            f"<= {p95_target:.0f} ms" if p95_target else "",
            verdict(search["p95_ms"] <= p95_target if p95_target else None),
        ),
        (
            f"{label}: BM25 p50 ours / rank-bm25",
            f"{bm['ours']['p50_ms']:.2f} / {bm['rank_bm25']['p50_ms']:.2f} ms = {bm['ratio_p50']:.3f}",
            "< 1",
            verdict(bm["ratio_p50"] < 1),
        ),
    ]
    if "index_build_s" in data:
        value = f"{data['generate_s']:.1f} s + {data['index_build_s']:.1f} s"
        rows.append((f"{label}: generate + SearchIndex build", value, "", "info"))
    if "peak_rss_mb" in data:
        # Built in memory from generated source records, which are alive at the same time:
        # not how trbot loads an index, so the target is judged on the SearchIndex.load row.
        rows.append(
            (
                f"{label}: peak RSS, built in memory",
                f"{data['peak_rss_mb']:.0f} MB (model {data['rss_model_mb']:.0f} MB)",
                "",
                "info",
            )
        )
    loaded = data.get("sqlite_load")
    if loaded and "error" in loaded:
        rows.append((f"{label}: SearchIndex.load", loaded["error"], "", "FAIL"))
    elif loaded:
        rows += [
            (f"{label}: SearchIndex.load from SQLite", f"{loaded['load_s']:.1f} s", "", "info"),
            (
                f"{label}: peak RSS via SearchIndex.load",
                f"{loaded['peak_rss_mb']:.0f} MB (model {loaded['rss_model_mb']:.0f} MB)",
                f"<= {rss_target:.0f} MB" if rss_target else "",
                verdict(loaded["peak_rss_mb"] <= rss_target if rss_target else None),
            ),
        ]
    return rows


def _fusion(options: dict) -> str:
    names = ("sentence_weight", "document_bm25_weight")
    extra = [f"{name} {options[name]}" for name in names if options[name]]
    return ", ".join([f"{options['fusion']} fusion", *extra])


def print_details(results: dict) -> None:
    threads = results.get("threads")
    if threads:
        print("Threads: " + ", ".join(f"{k}={v}" for k, v in threads.items()))
    tp = results.get("throughput")
    if tp:
        print(f"\nIndex throughput ({tp['chunks']} chunks; best of {len(tp['raw_s'])} alternating runs each)")
        print(f"  raw encode:  {', '.join(f'{t:.2f}s' for t in tp['raw_s'])}")
        print(f"  build_index: {', '.join(f'{t:.2f}s' for t in tp['index_s'])}")
        print(f"  overhead of build_index over raw encode (best vs best): {tp['overhead_s']:.2f}s")
    ri, cli = results.get("reindex"), results.get("reindex_cli")
    if ri:
        runs = ", ".join(
            f"{t:.3f}s" + (f" ({n} chunks embedded)" if n else "")
            for t, n in zip(ri["in_process_s"], ri["chunks_embedded"], strict=True)
        )
        print(f"\nRe-index, nothing changed, in process: {runs}")
    if cli:
        print(
            "  trbot index (subprocess, incl. Python start, imports and model load): "
            f"{cli['wall_s']:.2f}s wall,"
            f" {cli['chunks_embedded']} chunks embedded; the CLI itself printed {cli['reported_s']}s"
        )
    latency = results.get("latency", {})
    if latency:
        print(
            f"\nWarm query latency, SearchIndex.search(q, top_k={TOP_K}), hybrid "
            f"({_fusion(results['retrieval'])}), query encoding included "
            "(embed_query keeps its last 64 queries: repeats are cache hits)"
        )
        head = f"  {'corpus':<16}{'chunks':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}  breakdown p50 ms"
        print(head)
        for label, data in latency.items():
            if "error" in data:
                continue
            s = data["search"]
            parts = " ".join(f"{k}={v:.2f}" for k, v in data["breakdown_p50_ms"].items())
            chunks = data.get("size") or data.get("chunks")
            print(
                f"  {label:<16}{chunks:>8}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['max_ms']:>9.1f}  {parts}"
            )
        print("\nBM25 alone, scores(tokenize(q)) vs rank_bm25.BM25Okapi.get_scores(tokenize(q))")
        print(
            f"  {'corpus':<16}{'queries':>8}{'ours p50':>10}{'rank p50':>10}{'ratio':>8}{'max rel diff':>14}"
        )
        for label, data in latency.items():
            if "error" in data:
                continue
            bm = data["bm25"]
            print(
                f"  {label:<16}{bm['queries']:>8}"
                f"{bm['ours']['p50_ms']:>10.3f}{bm['rank_bm25']['p50_ms']:>10.2f}"
                f"{bm['ratio_p50']:>8.3f}{bm['max_rel_score_diff']:>14.1e}"
            )
        for label, data in latency.items():
            if "rss_model_mb" in data:
                print(
                    f"\n{label}: RSS after model load {data['rss_model_mb']:.0f} MB, with synthetic chunks "
                    f"{data['rss_data_mb']:.0f} MB, after SearchIndex built (source list freed) "
                    f"{data['rss_index_mb']:.0f} MB, peak {data['peak_rss_mb']:.0f} MB "
                    f"(index's share {data['peak_rss_mb'] - data['rss_model_mb']:.0f} MB; "
                    f"{data['peak_rss_with_rank_bm25_mb']:.0f} MB once rank-bm25 is built too); "
                    f"{data['documents']} documents, {data['avg_tokens']:.1f} BM25 tokens a chunk; "
                    f"child process {data['child_wall_s']:.1f}s"
                )
                checkpoints = ", ".join(f"{k} {v:.0f}" for k, v in data["peak_checkpoints_mb"].items())
                print(f"  peak RSS (VmHWM, MB) after each phase: {checkpoints}")
                loaded = data.get("sqlite_load")
                if loaded and "error" not in loaded:
                    print(
                        f"  as an index file ({loaded['db_mb']:.0f} MB, "
                        f"written in {data['sqlite_write_s']:.1f}s): "
                        f"SearchIndex.load {loaded['load_s']:.1f}s in a fresh process; RSS after model load "
                        f"{loaded['rss_model_mb']:.0f} MB, after load {loaded['rss_loaded_mb']:.0f} MB, peak "
                        f"{loaded['peak_rss_mb']:.0f} MB; search p50 {loaded['search']['p50_ms']:.1f} ms, "
                        f"p95 {loaded['search']['p95_ms']:.1f} ms ({loaded['search']['n']} queries)"
                    )
    enc = results.get("encode_threads")
    if enc:
        print(
            f"\nembed_query alone ({ENCODE_QUERIES} queries each, p50/p95 ms): "
            + "; ".join(
                f"{label} {enc[label]['p50_ms']:.1f}/{enc[label]['p95_ms']:.1f}"
                for label in ("default", "one", "default_again")
            )
            + f" (default = {enc['default_threads']} torch threads)"
        )
    ask = results.get("cold_ask")
    if ask:
        print(
            f"\nCold `trbot ask`: {ask['ask_s'][0]:.2f}s then {ask['ask_s'][1]:.2f}s; baselines: bare python "
            f"{ask['python_start_s']:.2f}s, "
            f"import torch+sentence_transformers {ask['import_torch_st_s']:.2f}s, "
            f"import + model load + 1 query {ask['model_load_s']:.2f}s"
        )


def print_table(rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in rows + [("figure", "value", "target", "result")]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print("\nSummary")
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(("figure", "value", "target", "result"), widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print(line)


# --- main ----------------------------------------------------------------------------------------


def _size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="bench_core.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="synthetic corpus sizes in chunks, comma-separated, e.g. 10000,100k (default: %(default)s)",
    )
    parser.add_argument("--skip-100k", action="store_true", help="leave out sizes of 100,000 chunks and more")
    parser.add_argument(
        "--queries", type=int, default=100, help="timed queries per corpus (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed warm-up queries (default: %(default)s)"
    )
    parser.add_argument(
        "--baseline-queries-large",
        type=int,
        default=20,
        help=f"rank-bm25 baseline queries at {LARGE:,} chunks and more (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="alternating raw-encode / build_index runs (default: %(default)s)",
    )
    parser.add_argument(
        "--skip-cli", action="store_true", help="skip the subprocess runs of trbot index / ask"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of searches at each synthetic size"
    )
    parser.add_argument(
        "--seed", type=int, default=1234, help="seed for the synthetic corpora (default: %(default)s)"
    )
    parser.add_argument(
        "--questions",
        type=Path,
        nargs="+",
        help="YAML question files (default: eval/questions.yaml)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument(
        "--retrieval",
        type=Path,
        help="a settings file whose retrieval section the searches use, e.g. eval/scifact.yml "
        "(default: the shipped retrieval settings)",
    )
    parser.add_argument(
        "--skip-sqlite-load",
        action="store_true",
        help=f"at {LARGE:,} chunks and more, do not also write the synthetic index to SQLite and time "
        "SearchIndex.load of it in a fresh process",
    )
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-db", help=argparse.SUPPRESS)
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.size_list = [_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated integers, got {args.sizes!r}")
    if args.skip_100k:
        args.size_list = [s for s in args.size_list if s < 100_000]
    if args.queries < 1 or args.repeats < 1 or args.warmup < 0 or any(s < 1 for s in args.size_list):
        parser.error("--queries, --repeats and sizes must be positive, --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    if args.child_size:
        child_main(args)
        return 0
    if args.child_load:
        child_load_main(args)
        return 0
    results: dict = {
        "threads": thread_settings(),
        "load_average_start": os.getloadavg(),
        "cpus": os.cpu_count(),
        "args": vars(args) | {"json": str(args.json), "retrieval": str(args.retrieval)},
        "retrieval": dataclasses.asdict(search_options(args)),
    }
    log("loading the model")
    config, embedder = load_setup()
    if config.chunking != ChunkingOptions():
        log(f"note: app.yml chunking {config.chunking} differs from ChunkingOptions(); using app.yml's")
    files = question_files(args.questions)
    questions = load_questions(files)
    log(f"{len(questions)} questions from {', '.join(str(f.relative_to(REPO)) for f in files)}")
    with tempfile.TemporaryDirectory(prefix="bench_core-") as tmp:
        workdir = Path(tmp)
        results["throughput"], db = bench_throughput(config, embedder, workdir, args.repeats)
        results["reindex"] = bench_reindex(config, embedder, db)
        if not args.skip_cli:
            results["reindex_cli"] = bench_reindex_cli(db)
        results["latency"] = {"shipped": bench_real_queries(config, embedder, db, questions, args)}
        results["encode_threads"] = bench_encode_threads(embedder, questions)
        for size in args.size_list:
            log(f"synthetic corpus of {size} chunks (subprocess)")
            results["latency"][f"synthetic {size // 1000}k" if size % 1000 == 0 else f"synthetic {size}"] = (
                run_child(size, args, workdir)
            )
        if not args.skip_cli:
            results["cold_ask"] = bench_cold_ask(config, db)
    results["load_average_end"] = os.getloadavg()
    results["total_s"] = time.perf_counter() - _STARTED
    print_details(results)
    rows = summary_rows(results)
    results["summary"] = [
        dict(zip(("figure", "value", "target", "result"), row, strict=True)) for row in rows
    ]
    print_table(rows)
    start, end = results["load_average_start"], results["load_average_end"]
    print(
        f"total {results['total_s']:.0f}s on {results['cpus']} CPUs; load average at start {start[0]:.2f}, "
        f"at end {end[0]:.2f} (anything above ~0 means other work shared the machine)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
