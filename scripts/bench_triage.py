"""Triage latency per question with the shipped rules and the real model (warm).

Three figures over the labelled questions (eval/triage.yaml and eval/triage-holdout.yaml):

- baseline: embedding the question alone (``embed_query``), which the answer path pays anyway;
- triage with its own query embedding (``triage(question)``);
- triage given the answer's query vector (``triage(question, vector=...)``), as the Slack path
  can do, so the extra cost on top of the answer is the rules alone.

Usage: .venv/bin/python scripts/bench_triage.py [--config app.yml] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.answer import load_embedder  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.triggers import load_labelled, open_triager  # noqa: E402


def percentiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49]:6.2f} ms   p95 {cuts[94]:6.2f} ms   max {max(values):6.2f} ms"


def timed(fn, items) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "app.yml"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config)
    embedder = load_embedder(config)
    triager = open_triager(config, embedder=embedder, warn=lambda message: print(f"warning: {message}"))
    texts = [
        item.text
        for name in ("triage.yaml", "triage-holdout.yaml")
        for item in load_labelled(REPO / "eval" / name)
    ]
    for text in texts[:5]:  # warm-up: model, matcher, regex caches
        triager.triage(text)
    vectors = {text: embedder.embed_query(text) for text in texts}
    baseline, own, given = [], [], []
    for _ in range(args.rounds):
        baseline += timed(embedder.embed_query, texts)
        own += timed(triager.triage, texts)
        given += timed(lambda text: triager.triage(text, vector=vectors[text]), texts)
    print(
        f"{len(texts)} questions x {args.rounds} rounds, {len(triager.rules)} rules"
        + (f" (skipped: {', '.join(triager.skipped)})" if triager.skipped else "")
    )
    print(f"  baseline, embed_query alone:        {percentiles(baseline)}")
    print(f"  triage with its own embedding:      {percentiles(own)}")
    print(f"  triage given the answer's vector:   {percentiles(given)}")


if __name__ == "__main__":
    main()
