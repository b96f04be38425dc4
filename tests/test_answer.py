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
