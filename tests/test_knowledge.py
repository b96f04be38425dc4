"""The shipped guidance corpus and evaluation file: every document parses and is complete."""

from __future__ import annotations

import datetime
import re
from urllib.parse import urlsplit

import pytest
import yaml

from indexer.documents import _PLACEHOLDER, discover_files, read_document
from tests.conftest import REPO

GUIDANCE = REPO / "knowledge" / "guidance"
FILES = [path for path, _ in discover_files([GUIDANCE])]
REQUIRED = ("title", "summary", "sources", "topics", "last_reviewed", "owner")
PLACEHOLDERS = {"institution", "team_name", "email", "slack_channel", "url"}

# Sources are shown to researchers as citations, so they must be canonical public pages: official
# (GOV.UK and its agencies, legislation, parliament, police, UKRI, US federal sites, the EU, NI
# Business Info, Wilton Park), UK universities and UUK, US universities, and ASPI for its China
# Defence Universities Tracker. Law firms, news sites and third-party mirrors are deliberately absent.
ALLOWED_SOURCE_DOMAINS = (
    "gov.uk",  # includes legislation.gov.uk, npsa.gov.uk, ncsc.gov.uk
    "legislation.gov.uk",
    "npsa.gov.uk",
    "ncsc.gov.uk",
    "parliament.uk",
    "police.uk",
    "ukri.org",
    "universitiesuk.ac.uk",
    "ac.uk",
    "gov",  # US federal sites: bis.gov, trade.gov, ecfr.gov, govinfo.gov
    "edu",
    "aspi.org.au",
    "europa.eu",
    "nibusinessinfo.co.uk",  # Northern Ireland government business advice (Invest NI)
    "wiltonpark.org.uk",  # Wilton Park, an executive agency of the FCDO
)
# Staging, test and mirror hosts, third-party copies, and the legacy CPNI domain (now NPSA).
DENIED_HOST_PARTS = ("t4awstest", "t4staging", "test-", "staging")
DENIED_SOURCE_DOMAINS = ("scribd.com", "wikimili.com", "eclesseus.com", "cpni.gov.uk")


def test_corpus_has_at_least_thirty_documents():
    assert len(FILES) >= 30


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


def _on_domain(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _source_problem(url: str) -> str | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return "not https"
    if not host or host.endswith("."):
        return "malformed host"
    if any(part in host for part in DENIED_HOST_PARTS) or any(
        _on_domain(host, d) for d in DENIED_SOURCE_DOMAINS
    ):
        return "staging, test, mirror or legacy host"
    if not any(_on_domain(host, d) for d in ALLOWED_SOURCE_DOMAINS):
        return "domain not on the allow-list"
    return None


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sources_are_canonical_https_pages(path):
    document = read_document(path, path.name, {name: f"<{name}>" for name in PLACEHOLDERS})
    problems = {url: problem for url in document.sources if (problem := _source_problem(url))}
    assert not problems, f"{path.name}: {problems}"


def test_source_check_rejects_staging_mirrors_and_malformed_hosts():
    assert (
        _source_problem("https://www.gov.uk/guidance/export-controls-applying-to-academic-research") is None
    )
    assert _source_problem("https://www.ecfr.gov/current/title-15") is None
    assert _source_problem("http://www.gov.uk/x") == "not https"
    assert _source_problem("https://www.legislation.gov.uk./ukpga/2017/29") == "malformed host"
    for url in (
        "https://t4awstest.cc.ic.ac.uk/research",
        "https://one-web.t4staging.qmul.ac.uk/its",
        "https://test-researchsupport.web.ox.ac.uk/firs",
        "https://www.scribd.com/document/1",
        "https://wikimili.com/en/ATAS",
        "https://eclesseus.com/research-services",
        "https://www.cpni.gov.uk/trusted-research-academia/",
    ):
        assert _source_problem(url) == "staging, test, mirror or legacy host", url
    assert _source_problem("https://www.example-law-firm.com/insight") == "domain not on the allow-list"


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
