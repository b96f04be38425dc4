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


# --- Fact-level evaluation ------------------------------------------------------------------------

from indexer.evaluate import (  # noqa: E402
    AnswerOutcome,
    fact_found,
    fact_retrieval,
    facts_found,
    normalise,
    parse_facts,
    score_answers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Up to  FIVE years'\nimprisonment.", "up to 5 years imprisonment"),
        ("More than 50 per cent of the shares", "more than 50% of the shares"),
        ("a £3m package for 1,000 staff", "a 3 million package for 1000 staff"),
        ("on 1st Jul 2025 (s.23)", "on 1 july 2025 s 23"),
        ("end-use controls; 60.4 % of outputs", "end use controls 60.4% of outputs"),
        ("trade.gov — the Master’s route", "trade gov the masters route"),
    ],
)
def test_normalise_folds_case_punctuation_and_number_formats(text, expected):
    assert normalise(text) == expected


def test_a_fact_matches_whole_words_with_any_alternative_and_a_star_for_a_stem():
    text = normalise("Register within 28 days; failing to register can mean two years in prison.")
    assert fact_found(text, ["28 days"])
    assert fact_found(text, ["5 years", "2 years"])  # the second alternative, "two years" as digits
    assert not fact_found(text, ["8 days"])  # "28 days" does not contain the word "8"
    assert not fact_found(text, ["regist"])  # no stem match without a star
    assert fact_found(text, ["regist*"])
    assert not fact_found(text, ["prisons"])


def test_facts_found_reports_each_fact():
    text = "FIRS: register within 10 days (enhanced tier: Iran and Russia)."
    assert facts_found(text, [("10 days",), ("Iran",), ("China",), ("ten days", "Russia")]) == [
        True,
        True,
        False,
        True,
    ]


def test_parse_facts_reads_phrases_and_lists_of_alternatives():
    assert parse_facts(["LITE", ["5 years", "five years"], 2024]) == (
        ("LITE",),
        ("5 years", "five years"),
        ("2024",),
    )
    assert parse_facts(None) == ()


@pytest.mark.parametrize("value", ["LITE", [["ok"], []], [["ok", ""]], [{"a": 1}]])
def test_parse_facts_rejects_what_is_not_a_list_of_phrases(value):
    with pytest.raises(IndexerError, match="fact"):
        parse_facts(value, "q.yaml: item 3 (f03)")


def test_load_questions_reads_facts_status_context_and_kind(tmp_path):
    path = tmp_path / "facts.yaml"
    path.write_text(
        "- id: f1\n  question: What is the FIRS penalty?\n  expect: [firs.md]\n"
        "  facts: [['2 years', 'two years'], '5 years']\n"
        "- id: h1\n  kind: followup\n  context: Do UK sanctions apply?\n  question: what about GDPR?\n"
        "  expect: []\n  status: declined\n",
        encoding="utf-8",
    )
    first, second = load_questions(path)
    assert first.facts == (("2 years", "two years"), ("5 years",)) and first.expected_status == "answered"
    assert (second.kind, second.context, second.expected_status) == (
        "followup",
        "Do UK sanctions apply?",
        "declined",
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("- question: q\n  expect: []\n  status: maybe\n", "status 'maybe' is not one of"),
        ("- question: q\n  expect: []\n  context: ['x']\n", "context must be"),
        ("- question: q\n  expect: []\n  facts: 5 years\n", "facts must be a list"),
    ],
)
def test_load_questions_rejects_bad_fact_fields(tmp_path, content, problem):
    path = tmp_path / "facts.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IndexerError, match=problem):
        load_questions(path)


def test_a_declined_status_accepts_either_kind_of_decline():
    question = EvalQuestion("h", "What is the penalty for plagiarism?", (), status="declined")
    assert question.handled("not_covered") and question.handled("off_topic")
    assert not question.handled("answered") and not question.handled("not_english")
    strict = EvalQuestion("l", "Ai-je besoin d'une licence ?", (), status="not_english")
    assert strict.handled("not_english") and not strict.handled("not_covered")


def test_score_answers_by_hand():
    questions = [
        EvalQuestion("f1", "FIRS penalty?", ("firs.md",), facts=(("2 years",), ("5 years",))),
        EvalQuestion("f2", "ATAS validity?", ("atas.md",), facts=(("6 months",),)),
        EvalQuestion("h1", "plagiarism?", (), status="declined", kind="lookalike"),
        EvalQuestion("h2", "GDPR?", (), status="declined", kind="lookalike"),
        EvalQuestion("l1", "¿licencia?", (), status="not_english", kind="language"),
    ]
    outcomes = [
        AnswerOutcome("answered", "high", ("Up to two years", "or five years."), ("firs.md", "other.md")),
        AnswerOutcome("answered", "low", ("x" * 300,), ("other.md",)),
        AnswerOutcome("not_covered"),
        AnswerOutcome("answered", "medium", ("y" * 100,), ("cyber.md",)),
        AnswerOutcome("not_english"),
    ]
    scores = score_answers(questions, outcomes)
    assert scores.answered == 1.0 and scores.declined == 0.5  # h2 was answered
    assert scores.first_cited == 0.5 and scores.any_cited == 0.5
    assert (scores.facts, scores.fact_questions) == (3, 2)
    assert scores.fact_recall == pytest.approx(2 / 3) and scores.complete == 0.5
    assert scores.fact_misses == ["f2#1"]
    # the answers given: 2, 1 and 1 passages of 29, 300 and 100 characters
    assert (scores.passages_max, scores.passages_mean) == (2, pytest.approx(4 / 3))
    assert (scores.quoted_chars_median, scores.quoted_chars_max) == (100, 300)
    assert scores.handling == {"plain": [2, 2], "lookalike": [1, 2], "language": [1, 1]}
    assert scores.misses == ["h2 (answered, medium)"]


def test_fact_retrieval_counts_facts_in_hits_and_in_the_corpus(index):
    questions = [
        EvalQuestion(
            "e1", "Is emailing technical data abroad an export?", ("export.md",), facts=(("by email",),)
        ),
        EvalQuestion(
            "t1", "Which laptop for conferences abroad?", ("travel.md",), facts=(("loan laptop",), ("visa",))
        ),
        EvalQuestion("w1", "what's the weather tomorrow", ()),
    ]
    scores = fact_retrieval(index, questions)
    assert (scores.questions, scores.facts) == (2, 3)
    assert scores.in_corpus == pytest.approx(2 / 3) and scores.missing_from_corpus == ["t1#2"]
    assert scores.top5 == pytest.approx(2 / 3) and scores.top10 == pytest.approx(2 / 3)
