"""Retrieval evaluation metrics and runs (indexer/evaluate.py)."""

from __future__ import annotations

import math

import pytest

from indexer.build import text_hash
from indexer.chunking import Chunk
from indexer.errors import IndexerError
from indexer.evaluate import (
    EvalQuestion,
    ModeScores,
    evaluate,
    load_questions,
    ndcg_at,
    recall_at,
    reciprocal_rank,
)
from indexer.search import MODES, RetrievalOptions, SearchIndex
from indexer.store import StoredChunk
from indexer.text import tokenize

RANKED = ["a", "b", "c"]

# --- Metrics --------------------------------------------------------------------------------------


def test_recall_at_k_is_one_when_any_relevant_document_is_in_the_top_k():
    assert recall_at(RANKED, {"c"}, 2) == 0.0
    assert recall_at(RANKED, {"c"}, 3) == 1.0
    assert recall_at(RANKED, {"b", "z"}, 2) == 1.0
    assert recall_at(RANKED, {"z"}, 5) == 0.0
    assert recall_at([], {"a"}, 3) == 0.0


def test_reciprocal_rank_is_one_over_the_rank_of_the_first_relevant_document():
    assert reciprocal_rank(RANKED, {"a"}) == 1.0
    assert reciprocal_rank(RANKED, {"c", "b"}) == 0.5
    assert reciprocal_rank(RANKED, {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(RANKED, {"z"}) == 0.0


def test_ndcg_of_one_relevant_document_at_rank_two():
    # DCG = 1/log2(3); the ideal puts it first: 1/log2(2) = 1.
    assert ndcg_at(RANKED, {"b"}, 3) == pytest.approx(1 / math.log2(3))


def test_ndcg_of_two_relevant_documents_at_ranks_one_and_three():
    dcg = 1 / math.log2(2) + 1 / math.log2(4)  # 1.5
    ideal = 1 / math.log2(2) + 1 / math.log2(3)  # 1.6309

    assert ndcg_at(RANKED, {"a", "c"}, 3) == pytest.approx(dcg / ideal)
    assert ndcg_at(RANKED, {"a", "c"}, 3) == pytest.approx(0.91972, abs=1e-5)


def test_ndcg_is_one_for_a_perfect_ranking_and_zero_without_relevant_documents_in_the_top_k():
    assert ndcg_at(RANKED, {"a", "b"}, 3) == pytest.approx(1.0)
    assert ndcg_at(RANKED, {"c"}, 2) == 0.0
    assert ndcg_at(RANKED, set(), 3) == 0.0


def test_ndcg_ideal_counts_at_most_k_relevant_documents():
    assert ndcg_at(RANKED, {"a", "x", "y", "z"}, 1) == pytest.approx(1.0)


# --- load_questions -------------------------------------------------------------------------------


def test_load_questions_reads_a_yaml_list(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text(
        "- id: q1\n  question: Do I need an ATAS certificate?\n  expect: [atas.md]\n"
        "  phrases: [CAH3 Code]\n"
        "- question: what's the weather tomorrow\n  expect: []\n"
        "- question: Is email an export?\n  expect: [export-controls.md, travel.md]\n",
        encoding="utf-8",
    )

    assert load_questions(path) == [
        EvalQuestion("q1", "Do I need an ATAS certificate?", ("atas.md",), ("cah3 code",)),
        EvalQuestion("2", "what's the weather tomorrow", ()),
        EvalQuestion("3", "Is email an export?", ("export-controls.md", "travel.md")),
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("question: not in a list\n", "expected a YAML list"),
        ("", "expected a YAML list"),
        ("- question: ok\n  expect: [a.md]\n- expect: [b.md]\n", "item 2 needs at least 'question'"),
        ("- question: ''\n", "item 1 needs"),
        ("- just a string\n", "item 1 needs"),
        ("- question: [unclosed\n", "cannot read the evaluation file"),
    ],
)
def test_load_questions_rejects_malformed_files_saying_where(tmp_path, content, problem):
    path = tmp_path / "questions.yaml"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(IndexerError, match=problem) as raised:
        load_questions(path)

    assert str(path) in str(raised.value)


def test_load_questions_of_a_missing_file_raises_indexer_error(tmp_path):
    with pytest.raises(IndexerError, match="cannot read the evaluation file"):
        load_questions(tmp_path / "missing.yaml")


def test_load_questions_reads_a_single_string_as_a_one_item_list(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text(
        "- question: Do I need ATAS?\n  expect: atas.md\n  phrases: certificate\n", encoding="utf-8"
    )

    [question] = load_questions(path)

    assert (question.expect, question.phrases) == (("atas.md",), ("certificate",))


# --- evaluate -------------------------------------------------------------------------------------

PASSAGES = [
    ("export.md", "Export controls", "Sending technical data by email to a colleague abroad is an export."),
    ("atas.md", "ATAS", "International postgraduate students may need an ATAS certificate."),
    ("sanctions.md", "Sanctions", "Check partners and funders against the UK sanctions list."),
    ("travel.md", "Travel", "Take a clean loan laptop to conferences abroad."),
]

QUESTIONS = [
    EvalQuestion("e1", "Is emailing technical data abroad an export?", ("export.md",), ("by email",)),
    EvalQuestion("a1", "Do students need an ATAS certificate?", ("atas.md",)),
    EvalQuestion(
        "s1", "Should I check partners against the sanctions list?", ("sanctions.md",), ("nowhere",)
    ),
    EvalQuestion("w1", "what's the weather tomorrow", ()),
]


@pytest.fixture
def index(fake_embedder) -> SearchIndex:
    chunks = [Chunk(f"{doc_id}#0", doc_id, 0, title, (title,), text) for doc_id, title, text in PASSAGES]
    vectors = fake_embedder.embed_documents([chunk.embedding_text for chunk in chunks])
    stored = [
        StoredChunk(chunk, tokenize(chunk.embedding_text), text_hash(chunk), vector)
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]
    return SearchIndex.from_stored(stored, {}, fake_embedder, RetrievalOptions())


def test_evaluate_scores_every_mode_with_values_between_zero_and_one(index):
    results = evaluate(index, QUESTIONS)

    assert [result.mode for result in results] == list(MODES)
    for result in results:
        assert isinstance(result, ModeScores)
        assert set(result.recall) == {1, 3, 5}
        values = [*result.recall.values(), result.mrr, result.ndcg, result.phrase_recall]
        assert all(0.0 <= value <= 1.0 for value in values), result


def test_evaluate_finds_plainly_worded_answers_first_and_checks_phrases(index):
    [bm25] = evaluate(index, QUESTIONS, ks=(1, 2), modes=("bm25",))

    assert bm25.recall == {1: 1.0, 2: 1.0}
    assert bm25.mrr == 1.0 and bm25.ndcg == pytest.approx(1.0)
    assert bm25.phrase_recall == pytest.approx(2 / 3)  # s1's phrase is not in its passage
    assert bm25.misses == []


def test_evaluate_lists_questions_whose_documents_were_not_found(index):
    questions = [EvalQuestion("x1", "Is emailing data abroad an export?", ("nowhere.md",))]

    [bm25] = evaluate(index, questions, ks=(1,), modes=("bm25",))

    assert bm25.misses == ["x1"] and bm25.recall == {1: 0.0} and bm25.mrr == 0.0


def test_evaluate_needs_a_question_that_expects_documents(index):
    with pytest.raises(IndexerError, match="no question with expected documents"):
        evaluate(index, [EvalQuestion("w1", "what's the weather tomorrow", ())])
