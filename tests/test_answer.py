"""The answering core: pure helpers, and the real model over the small test corpus."""

from __future__ import annotations

import json

import pytest

from bot.answer import (
    QuestionError,
    confidence_for,
    decline_message,
    placeholders_from,
)
from bot.config import AnswerSettings, InstitutionSettings
from bot.records import AnswerStatus, Confidence

INSTITUTION = InstitutionSettings(
    name="Test University", team_name="TR Office", email="tr@test.ac.uk", slack_channel="#tr-help"
)


def test_confidence_bands_follow_the_settings():
    settings = AnswerSettings(min_similarity=0.3, high_confidence=0.5)
    assert confidence_for(0.55, settings) is Confidence.HIGH
    assert confidence_for(0.45, settings) is Confidence.MEDIUM
    assert confidence_for(0.35, settings) is Confidence.LOW


def test_decline_messages_name_the_configured_contact():
    contact = INSTITUTION.contact()
    for status in (AnswerStatus.NOT_COVERED, AnswerStatus.OFF_TOPIC):
        message = decline_message(status, contact)
        assert "TR Office" in message and "tr@test.ac.uk" in message and "#tr-help" in message
    assert "Test University" in decline_message(AnswerStatus.OFF_TOPIC, contact)


def test_placeholders_come_from_the_institution_settings():
    values = placeholders_from(INSTITUTION)
    assert values["team_name"] == "TR Office" and values["email"] == "tr@test.ac.uk"


@pytest.mark.model
def test_question_is_answered_with_cited_passages(real_answerer):
    answer = real_answerer.answer("Do I need an ATAS certificate before applying for my visa?")
    assert answer.status is AnswerStatus.ANSWERED
    assert answer.passages[0].citation == 1
    first = answer.citation(1)
    assert first.path == "atas.md"
    assert first.title and first.url and first.url.startswith("http") and first.last_reviewed
    for passage in answer.passages:
        assert 1 <= len(passage.highlights) <= 2
        assert all(sentence in passage.text for sentence in passage.highlights)
    assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))


@pytest.mark.model
def test_export_question_finds_the_export_document(real_answerer):
    answer = real_answerer.answer("is emailing technical data to a colleague abroad an export?")
    assert answer.status is AnswerStatus.ANSWERED
    assert answer.citation(1).path == "export-controls.md"


@pytest.mark.model
@pytest.mark.parametrize("question", ["what's the weather in Leeds tomorrow?", "recommend a pizza place"])
def test_off_topic_questions_are_declined_with_the_contact(real_answerer, question):
    answer = real_answerer.answer(question)
    assert answer.status is not AnswerStatus.ANSWERED
    assert answer.passages == () and answer.citations == ()
    assert answer.contact.email in answer.message


@pytest.mark.model
def test_short_follow_up_uses_the_thread_question_as_context(real_answerer):
    answer = real_answerer.answer("and how long does it take?", context="Do I need an ATAS certificate?")
    assert answer.status is AnswerStatus.ANSWERED
    assert answer.citation(1).path == "atas.md"
    assert answer.question == "and how long does it take?"


@pytest.mark.model
def test_answer_serialises_to_json(real_answerer):
    data = json.loads(json.dumps(real_answerer.answer("What are UK sanctions?").to_dict()))
    assert data["status"] == "answered"
    assert {"passages", "citations", "contact", "confidence"} <= set(data)


@pytest.mark.model
@pytest.mark.parametrize("question", ["", "   \n  ", "x" * 1001])
def test_empty_or_overlong_questions_are_refused(real_answerer, question):
    with pytest.raises(QuestionError):
        real_answerer.answer(question)


@pytest.mark.model
def test_requests_like_an_off_topic_example_are_declined(real_answerer):
    from bot.answer import Answerer

    examples = ["book me a train or a flight", "how do I claim my travel expenses"]
    strict = Answerer(real_answerer.index, real_answerer.settings, INSTITUTION, examples)
    question = "please book me a flight to the conference in Vienna"
    assert strict.answer(question).status is AnswerStatus.OFF_TOPIC
    assert strict.answer("Do I need an ATAS certificate?").status is AnswerStatus.ANSWERED


def test_off_topic_examples_file_is_read_and_checked(tmp_path):
    from bot.answer import load_off_topic
    from bot.config import ConfigError

    assert load_off_topic(tmp_path / "missing.yaml") == []
    good = tmp_path / "good.yaml"
    good.write_text("- book me a train\n- what's the weather\n")
    assert load_off_topic(good) == ["book me a train", "what's the weather"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("book: a train\n")
    with pytest.raises(ConfigError, match="expected a YAML list"):
        load_off_topic(bad)


@pytest.mark.parametrize(
    "question", ["\u200b", "\u200b\u200c\u200d\u2060\ufeff", " \u200b \n\u2060 ", "\u00ad\u200e\u200f"]
)
def test_a_question_of_invisible_characters_counts_as_empty(question):
    from bot.answer import Answerer
    from bot.config import AnswerSettings

    checker = Answerer.__new__(Answerer)  # check_question needs only the settings
    checker.settings = AnswerSettings()
    with pytest.raises(QuestionError, match="Please ask a question"):
        checker.check_question(question)
    assert checker.check_question("Do I need\u200b a licence?") == "Do I need a licence?"


# --- issue 8: evidence, honesty, review dates --------------------------------------------------

import datetime  # noqa: E402

from bot.answer import Answerer, review_overdue, reviews_overdue  # noqa: E402
from indexer.build import text_hash  # noqa: E402
from indexer.chunking import Chunk  # noqa: E402
from indexer.search import RetrievalOptions, SearchIndex  # noqa: E402
from indexer.store import DocumentRow, StoredChunk  # noqa: E402
from indexer.text import tokenize  # noqa: E402

PASSAGES = [
    (
        "firs.md",
        "FIRS",
        "Deadlines",
        "Register a political influence arrangement within 28 days of making it.",
    ),
    (
        "firs.md",
        "FIRS",
        "Penalties",
        "Failing to register can mean up to 2 years in prison, or 5 years in the enhanced tier.",
    ),
    (
        "atas.md",
        "ATAS",
        "Validity",
        "An ATAS certificate is valid for 6 months and must be held before the visa.",
    ),
    (
        "travel.md",
        "Travel",
        "Devices",
        "Take a clean loan laptop to high-risk countries such as China, Iran and Russia.",
    ),
]


def index_of(chunks, fake_embedder, reviewed=None):
    """A search index over the chunks; ``reviewed``: doc id -> (title, last_reviewed)."""
    vectors = fake_embedder.embed_documents([c.embedding_text for c in chunks])
    stored = [
        StoredChunk(c, tokenize(c.embedding_text), text_hash(c), v)
        for c, v in zip(chunks, vectors, strict=True)
    ]
    reviewed = reviewed or {c.doc_id: (c.doc_id, None) for c in chunks}
    documents = {
        d: DocumentRow(d, d, title, "", (f"https://example.org/{d}",), (), last, None, "h")
        for d, (title, last) in reviewed.items()
    }
    return SearchIndex.from_stored(stored, documents, fake_embedder, RetrievalOptions())


@pytest.fixture
def small_answerer(fake_embedder):
    chunks = [Chunk(f"{d}#{n}", d, n, t, (t, s), text) for n, (d, t, s, text) in enumerate(PASSAGES)]
    reviewed = {
        "firs.md": ("FIRS", "2024-01-10"),
        "atas.md": ("ATAS", "2026-06-01"),
        "travel.md": ("Travel", None),
    }
    index = index_of(chunks, fake_embedder, reviewed)
    settings = AnswerSettings(
        min_similarity=0.05, high_confidence=0.5, min_coverage=0.6, max_review_age_days=365
    )
    return Answerer(index, settings, INSTITUTION, today=lambda: datetime.date(2026, 12, 1))


def test_citations_of_documents_overdue_for_review_are_flagged(small_answerer):
    answer = small_answerer.answer("What is the penalty for failing to register under FIRS?")
    assert answer.status is AnswerStatus.ANSWERED
    flags = {c.path: c.stale for c in answer.citations}
    assert flags.get("firs.md") is True  # reviewed 2024-01-10, more than 365 days before 2026-12-01
    answer = small_answerer.answer("How long is an ATAS certificate valid?")
    assert {c.path: c.stale for c in answer.citations}.get("atas.md") is False


def test_passages_are_excerpts_that_carry_the_facts(small_answerer):
    answer = small_answerer.answer("FIRS: how long do I have to register, and what is the penalty?")
    shown = " ".join(p.text for p in answer.passages)
    assert "28 days" in shown and "5 years" in shown
    for passage in answer.passages:
        assert all(h in passage.text for h in passage.highlights)


def test_a_question_in_another_language_gets_the_english_only_reply(small_answerer):
    answer = small_answerer.answer("¿Necesito una licencia de exportación para compartir datos con un socio?")
    assert answer.status is AnswerStatus.NOT_ENGLISH and answer.passages == ()
    assert "English" in answer.message and INSTITUTION.email in answer.message


def test_a_question_whose_key_terms_the_guidance_never_names_is_not_covered(small_answerer):
    assert small_answerer.answer("What is the penalty for plagiarism?").status is AnswerStatus.NOT_COVERED
    assert small_answerer.answer("What is the FIRS penalty?").status is AnswerStatus.ANSWERED


def test_a_follow_up_is_answered_on_its_own_terms(small_answerer):
    answer = small_answerer.answer("and for Iran?", context="Can I take my laptop to China?")
    assert answer.status is AnswerStatus.ANSWERED and "Iran" in answer.passages[0].text
    declined = small_answerer.answer("what about GDPR?", context="What is the FIRS penalty?")
    assert declined.status is AnswerStatus.NOT_COVERED


def test_review_dates():
    today = datetime.date(2026, 12, 1)
    assert review_overdue("2025-11-30", 365, today) and not review_overdue("2025-12-01", 365, today)
    assert not review_overdue(None, 365, today) and not review_overdue("soon", 365, today)
    rows = [
        DocumentRow(d, d, d, "", (), (), r, None, "h")
        for d, r in [("a.md", "2020-01-01"), ("b.md", "2026-11-01"), ("c.md", None), ("d.md", "2019-05-05")]
    ]
    overdue, undated = reviews_overdue(rows, 365, today)
    assert [row[0] for row in overdue] == ["d.md", "a.md"] and undated == ["c.md"]


def test_not_english_decline_message_names_the_contact():
    message = decline_message(AnswerStatus.NOT_ENGLISH, INSTITUTION.contact())
    assert "English" in message and "TR Office" in message


@pytest.mark.model
@pytest.mark.parametrize(
    ("question", "context", "expected"),
    [
        ("What is the penalty for plagiarism?", None, {AnswerStatus.NOT_COVERED, AnswerStatus.OFF_TOPIC}),
        (
            "Ai-je besoin d'une licence d'exportation pour envoyer mon code en Chine ?",
            None,
            {AnswerStatus.NOT_ENGLISH},
        ),
        ("what about GDPR?", "Do UK sanctions apply to a Russian university?", {AnswerStatus.NOT_COVERED}),
        ("and how long does it take?", "Do I need an ATAS certificate?", {AnswerStatus.ANSWERED}),
        ("Do I need an export licence to email technical data abroad?", None, {AnswerStatus.ANSWERED}),
    ],
)
def test_labelled_honesty_cases_with_the_real_model(real_answerer, question, context, expected):
    answer = real_answerer.answer(question, context=context)
    assert answer.status in expected, (answer.status, [p.text[:60] for p in answer.passages])


@pytest.mark.model
def test_answers_stay_within_the_passage_and_character_budget(real_answerer):
    answer = real_answerer.answer("What does ATAS cover, who needs it and how long does it take?")
    assert answer.status is AnswerStatus.ANSWERED
    assert len(answer.passages) <= real_answerer.settings.top_passages
    assert sum(len(p.text) for p in answer.passages) <= real_answerer.settings.max_quoted_chars


def test_a_question_naming_a_law_the_passages_never_name_is_not_covered(small_answerer):
    answer = small_answerer.answer(
        "Is the FIRS penalty in the Enhanced Tier Act?"
    )  # every word but "Act" known
    assert answer.status is AnswerStatus.NOT_COVERED
    assert small_answerer.answer("What is the FIRS penalty?").status is AnswerStatus.ANSWERED


def test_a_follow_up_finds_the_section_of_the_thread_document_that_names_its_terms(fake_embedder):
    firs = [
        ("FIRS penalties", "The FIRS penalty for failing to register is up to 2 years in prison."),
        ("FIRS registration", "Register FIRS arrangements on time; failing to register is an offence."),
        (
            "FIRS penalty tiers",
            "The FIRS penalty in the enhanced tier is up to 5 years for failing to register.",
        ),
        (
            "FIRS who registers",
            "The person who makes the FIRS arrangement must register it, or face the penalty.",
        ),
        ("FIRS countries", "The enhanced tier names Iran and Russia; China is not on it as of 2026."),
    ]
    others = [
        (f"china-{n}.md", f"China {n}", "China China China: universities in China and their links in China.")
        for n in range(3)
    ]
    chunks = [Chunk(f"firs.md#{n}", "firs.md", n, "FIRS", ("FIRS", s), t) for n, (s, t) in enumerate(firs)]
    chunks += [Chunk(f"{d}#{n}", d, n, t, (t,), text) for d, t, text in others for n in range(3)]
    index = index_of(chunks, fake_embedder)
    settings = AnswerSettings(min_similarity=0.05, candidate_passages=6, min_coverage=0.6)
    answerer = Answerer(index, settings, INSTITUTION)
    answer = answerer.answer("what about China?", context="What is the FIRS penalty for failing to register?")
    assert answer.status is AnswerStatus.ANSWERED
    assert any("China is not on it" in p.text for p in answer.passages)


def test_another_offices_topic_is_referred_to_that_office(small_answerer):
    from bot.records import Referral
    from bot.referrals import ReferralRule

    rules = [ReferralRule("the Data Protection Officer", "dpo@example.ac.uk", ("GDPR",))]
    referring = Answerer(small_answerer.index, small_answerer.settings, INSTITUTION, referrals=rules)
    answer = referring.answer("What is the FIRS penalty for a GDPR breach?")
    assert answer.status is AnswerStatus.NOT_COVERED and answer.passages == ()
    assert answer.referral == Referral("the Data Protection Officer", "dpo@example.ac.uk", "GDPR")
    assert "the Data Protection Officer (dpo@example.ac.uk)" in answer.message
    assert INSTITUTION.email in answer.message  # the research-security side still has its contact
    assert referring.answer("What is the FIRS penalty?").status is AnswerStatus.ANSWERED
