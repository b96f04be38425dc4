#!/usr/bin/env python
"""nDCG@10 and Recall@10 of trbot's retrieval (BM25, dense, hybrid) on a BEIR-format folder.

    .venv/bin/python scripts/eval_beir.py ../shared/data/scifact-train --config eval/scifact.yml
    .venv/bin/python scripts/eval_beir.py DIR --fusion weighted --bm25-weight 1 --json

The folder holds ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries-<split>.jsonl`` and
``qrels-<split>.tsv`` (or BEIR's own ``queries.jsonl`` and ``qrels/<split>.tsv``). Each document
is indexed as guidance is (title + text, chunked with the ``chunking`` settings, one hit per
document). The first run embeds the corpus (SciFact at 80-word chunks: 24,250 chunks, about 7
minutes on 2 cores), and its sentences when ``retrieval.sentence_weight`` is set (64,000, about 6
more), and caches the vectors in ``--cache`` (default var/beir-cache), so later runs take seconds.

Queries are split by a hash of their id into a tuning part and a fixed held-out part
(``--held-out``, default 30%); tune on the first, and report both. Retrieval and chunking
settings come from the settings file (``--config``: app.yml by default; eval/scifact.yml holds
SciFact's), overridden by the options below.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import ConfigError, load_config  # noqa: E402
from indexer.beir import beir_index, cached_embeddings, load_beir, score_beir, split_queries  # noqa: E402
from indexer.embeddings import SentenceTransformerEmbedder  # noqa: E402
from indexer.errors import IndexerError  # noqa: E402
from indexer.search import MODES  # noqa: E402

OVERRIDES = {
    "fusion": str,
    "rrf_k": int,
    "bm25_weight": float,
    "dense_weight": float,
    "sentence_weight": float,
    "document_bm25_weight": float,
    "candidates": int,
    "bm25_k1": float,
    "bm25_b": float,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a BEIR-format folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--config", type=Path, default=None, help="settings file (default: ./app.yml)")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "beir-cache")
    parser.add_argument("--held-out", type=float, default=0.3, help="share of queries kept aside")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--max-words", type=int, default=None, help="chunking.max_words for this run")
    parser.add_argument("--overlap-words", type=int, default=None, help="chunking.overlap_words for this run")
    for name, kind in OVERRIDES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except (ConfigError, IndexerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def run(args: argparse.Namespace) -> dict:
    config = load_config(args.config)
    changes = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    options = dataclasses.replace(config.retrieval, **changes)
    sizes = {"max_words": args.max_words, "overlap_words": args.overlap_words}
    chunking = dataclasses.replace(config.chunking, **{k: v for k, v in sizes.items() if v is not None})
    data = load_beir(args.folder, args.split)
    embedder = SentenceTransformerEmbedder(config.embedding.model, config.embedding.batch_size)
    started = time.perf_counter()
    index = beir_index(data, embedder, options, chunking, args.cache)
    ids = list(data.queries)
    vectors = dict(
        zip(
            ids,
            cached_embeddings([data.queries[q] for q in ids], embedder, args.cache, "queries"),
            strict=True,
        )
    )
    prepared = time.perf_counter() - started
    tune, held = split_queries(ids, args.held_out)
    rows = []
    for mode in args.modes.split(","):
        started = time.perf_counter()
        parts = {
            name: score_beir(index, data, part, vectors, mode)
            for name, part in (("tune", tune), ("held_out", held), ("all", ids))
        }
        rows.append(
            {"mode": mode, "seconds": round(time.perf_counter() - started, 1)}
            | {f"{name}_ndcg10": round(s.ndcg, 4) for name, s in parts.items()}
            | {f"{name}_recall10": round(s.recall, 4) for name, s in parts.items()}
        )
    return {
        "folder": str(args.folder),
        "split": args.split,
        "documents": len(data.corpus),
        "chunks": len(index.chunks),
        "queries": {"tune": len(tune), "held_out": len(held), "all": len(ids)},
        "retrieval": dataclasses.asdict(options),
        "chunking": dataclasses.asdict(chunking),
        "prepare_seconds": round(prepared, 1),
        "modes": rows,
    }


def format_report(report: dict) -> str:
    q = report["queries"]
    lines = [
        f"{report['folder']} ({report['split']}): {report['documents']} documents, "
        f"{report['chunks']} chunks; queries: {q['tune']} tuning, {q['held_out']} held out, "
        f"{q['all']} in all",
        "retrieval: " + ", ".join(f"{k}={v}" for k, v in report["retrieval"].items()),
        "chunking: " + ", ".join(f"{k}={v}" for k, v in report["chunking"].items()),
        f"{'mode':<8}{'nDCG@10 tune':>14}{'held-out':>10}{'all':>8}"
        f"{'R@10 tune':>12}{'held-out':>10}{'all':>8}",
    ]
    for row in report["modes"]:
        lines.append(
            f"{row['mode']:<8}{row['tune_ndcg10']:>14.3f}{row['held_out_ndcg10']:>10.3f}{row['all_ndcg10']:>8.3f}"
            f"{row['tune_recall10']:>12.3f}{row['held_out_recall10']:>10.3f}{row['all_recall10']:>8.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
