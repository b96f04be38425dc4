"""The shipped guidance corpus and evaluation file: every document parses and is complete."""

from __future__ import annotations

import datetime
import re

import pytest
import yaml

from indexer.documents import _PLACEHOLDER, discover_files, read_document
from tests.conftest import REPO

GUIDANCE = REPO / "knowledge" / "guidance"
FILES = [path for path, _ in discover_files([GUIDANCE])]
REQUIRED = ("title", "summary", "sources", "topics", "last_reviewed", "owner")
PLACEHOLDERS = {"institution", "team_name", "email", "slack_channel", "url"}


def test_corpus_has_at_least_fifteen_documents():
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_document_parses_with_complete_front_matter(path):
    document = read_document(path, path.name, {name: f"<{name}>" for name in PLACEHOLDERS})
    meta = document.metadata
    missing = [field for field in REQUIRED if not meta.get(field)]
    assert not missing, f"{path.name} lacks {missing}"
    assert all(re.match(r"https?://\S+$", url) for url in document.sources)
    assert isinstance(meta["topics"], list) and meta["topics"]
    assert isinstance(meta["last_reviewed"], datetime.date)
    assert len(document.sections) >= 3, "documents are cut into sections for citation"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_document_uses_only_known_placeholders(path):
    names = set(_PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
    assert names <= PLACEHOLDERS


def test_contact_details_come_from_placeholders_not_text():
    # Institution-specific details belong in app.yml: the corpus names no ac.uk mailbox itself.
    for path in FILES:
        assert not re.search(r"[\w.-]+@[\w.-]+\.ac\.uk", path.read_text(encoding="utf-8")), path.name


def test_escalation_document_names_the_configured_contact():
    text = (GUIDANCE / "escalation-and-contacts.md").read_text(encoding="utf-8")
    assert "{{ email }}" in text and "{{ team_name }}" in text


def test_evaluation_questions_point_at_real_documents():
    questions = yaml.safe_load((REPO / "eval" / "questions.yaml").read_text(encoding="utf-8"))
    names = {path.name for path in FILES}
    assert len([q for q in questions if q["expect"]]) >= 40
    assert len({q["id"] for q in questions}) == len(questions)
    for question in questions:
        assert set(question["expect"]) <= names, question["id"]
        text = " ".join((GUIDANCE / name).read_text(encoding="utf-8").lower() for name in question["expect"])
        for phrase in question.get("phrases") or []:
            assert phrase.lower() in text, (question["id"], phrase)


def test_shipped_off_topic_examples_load():
    from bot.answer import load_off_topic

    assert len(load_off_topic(REPO / "knowledge" / "off-topic.yaml")) >= 20
