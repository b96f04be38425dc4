#!/usr/bin/env python
"""Warm answer latency: ``Answerer.answer`` on the eval questions, the model and index loaded once.

    .venv/bin/python scripts/bench_answer.py                 # eval/facts.yaml + eval/questions.yaml
    .venv/bin/python scripts/bench_answer.py --db /tmp/index.db --rounds 2

Other questions (``--warmup``: the held-out sets) are asked first, untimed, so the model and the
answerer's sentence cache are warm as in a running bot but not primed with the timed questions;
then each question is asked ``--rounds`` times, timed. The figures are the p50/p95/max of those
times, with the time to encode the question alone as a baseline measured in the same run
(``embed_documents``, which keeps no cache; ``embed_query`` keeps the last 64).
Target: p95 <= 300 ms. A measurement, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.answer import open_answerer  # noqa: E402
from bot.config import load_config  # noqa: E402
from indexer.evaluate import load_questions  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="index database (default: paths.index_db)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--questions", type=Path, nargs="+", default=[ROOT / "eval/facts.yaml", ROOT / "eval/questions.yaml"]
    )
    warm = [ROOT / "eval/facts-holdout.yaml", ROOT / "eval/holdout.yaml"]
    parser.add_argument("--warmup", type=Path, nargs="+", default=warm, help="questions asked untimed first")
    args = parser.parse_args(argv)
    config = load_config(ROOT / "app.yml")
    if args.db:
        config = dataclasses.replace(config, paths=dataclasses.replace(config.paths, index_db=args.db))
    answerer = open_answerer(config)
    questions = [q for path in args.questions for q in load_questions(path)]
    for q in [q for path in args.warmup for q in load_questions(path)]:  # model, allocator, caches
        answerer.answer(q.question, context=q.context)
    answer_ms, encode_ms = [], []
    for _ in range(args.rounds):
        for q in questions:
            started = time.perf_counter()
            answerer.answer(q.question, context=q.context)
            answer_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            answerer.index.embedder.embed_documents([q.question])  # uncached, unlike embed_query
            encode_ms.append((time.perf_counter() - started) * 1000)
    print(f"{len(answer_ms)} answers over {len(answerer.index.chunks)} chunks")
    for name, values in (("answer", answer_ms), ("encode query only", encode_ms)):
        print(
            f"{name:18} p50 {statistics.median(values):7.1f} ms   p95 {percentile(values, 0.95):7.1f} ms"
            f"   max {max(values):7.1f} ms"
        )
    p95 = percentile(answer_ms, 0.95)
    print(f"answer p95 target <= 300 ms: {'PASS' if p95 <= 300 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
