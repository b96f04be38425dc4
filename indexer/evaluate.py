"""Retrieval evaluation: recall@k, MRR and nDCG for BM25-only, dense-only and hybrid, side by side."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from indexer.documents import as_strings
from indexer.errors import IndexerError
from indexer.search import MODES, SearchIndex


@dataclass(frozen=True)
class EvalQuestion:
    """A question and the documents that answer it (any one found counts; an empty list = off-topic)."""

    id: str
    question: str
    expect: tuple[str, ...]
    phrases: tuple[str, ...] = ()


@dataclass
class ModeScores:
    mode: str
    recall: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0
    ndcg: float = 0.0
    phrase_recall: float = 0.0
    misses: list[str] = field(default_factory=list)


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read an evaluation file: a YAML list of ``{id, question, expect, phrases}``.

    Raises:
        IndexerError: the file is missing or malformed (the message says where).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise IndexerError(f"{path}: cannot read the evaluation file ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, list):
        raise IndexerError(f"{path}: expected a YAML list of questions")
    return [_question(item, path, number) for number, item in enumerate(data, start=1)]


def _question(item: object, path: Path, number: int) -> EvalQuestion:
    if not isinstance(item, dict) or not item.get("question"):
        raise IndexerError(f"{path}: item {number} needs at least 'question' and 'expect'")
    return EvalQuestion(
        id=str(item.get("id", number)),
        question=str(item["question"]),
        expect=as_strings(item.get("expect")),
        phrases=tuple(p.lower() for p in as_strings(item.get("phrases"))),
    )


def reciprocal_rank(ranked: Sequence[str], relevant: set[str]) -> float:
    return next((1 / rank for rank, doc in enumerate(ranked, start=1) if doc in relevant), 0.0)


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """1.0 when any relevant document is in the top k (each question wants one answer)."""
    return 1.0 if relevant & set(ranked[:k]) else 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG@k over distinct documents."""
    gains = sum(1 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return gains / ideal if ideal else 0.0


def evaluate(
    index: SearchIndex, questions: Sequence[EvalQuestion], ks: Sequence[int] = (1, 3, 5), modes=MODES
) -> list[ModeScores]:
    """Score each retrieval mode on the questions that expect documents (off-topic ones are skipped)."""
    answerable = [q for q in questions if q.expect]
    if not answerable:
        raise IndexerError("the evaluation file has no question with expected documents")
    depth = max(ks)
    return [_score_mode(index, answerable, mode, ks, depth) for mode in modes]


def _score_mode(index: SearchIndex, questions, mode: str, ks: Sequence[int], depth: int) -> ModeScores:
    scores = ModeScores(mode, recall={k: 0.0 for k in ks})
    for question in questions:
        hits = index.search(question.question, top_k=depth, mode=mode, per_doc=1)
        ranked = [hit.doc_id for hit in hits]
        relevant = set(question.expect)
        for k in ks:
            scores.recall[k] += recall_at(ranked, relevant, k)
        scores.mrr += reciprocal_rank(ranked, relevant)
        scores.ndcg += ndcg_at(ranked, relevant, depth)
        scores.phrase_recall += _phrase_found(hits, question)
        if not recall_at(ranked, relevant, depth):
            scores.misses.append(question.id)
    count = len(questions)
    scores.recall = {k: v / count for k, v in scores.recall.items()}
    scores.mrr, scores.ndcg, scores.phrase_recall = (
        scores.mrr / count,
        scores.ndcg / count,
        scores.phrase_recall / count,
    )
    return scores


def _phrase_found(hits, question: EvalQuestion) -> float:
    if not question.phrases:
        return 1.0
    text = " ".join(hit.chunk.text.lower() for hit in hits if hit.doc_id in question.expect)
    return 1.0 if any(phrase in text for phrase in question.phrases) else 0.0
