"""Escalation triggers: each condition kind, validation, the shipped rules, and the evaluation helpers."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bot.triggers import (
    LabelledQuestion,
    LabelledSetError,
    Triage,
    Triager,
    TriggerRuleError,
    load_labelled,
    load_rules,
    score_triage,
)
from tests.conftest import REPO, FakeEmbedder

GUIDANCE = REPO / "knowledge" / "guidance"
SHIPPED = REPO / "knowledge" / "triggers.yml"


@dataclass
class FakeCandidate:
    entry: str
    list_name: str = "starter"
    matched_name: str = ""
    score: float = 0.97
    strength: str = "match"
    country: str = "China"
    source_url: str = "https://example.org/list"
    details: dict = field(default_factory=dict)
    explanation: str = ""


class FakeMatcher:
    """Finds the organisations it was given, by exact (case-insensitive) name or alias."""

    def __init__(self, names: dict[str, FakeCandidate]) -> None:
        self.names = names
        self.calls = 0

    def find_mentions(self, text: str) -> list[FakeCandidate]:
        self.calls += 1
        lowered = text.lower()
        return [candidate for name, candidate in self.names.items() if name.lower() in lowered]


NUDT = FakeCandidate(
    "National University of Defense Technology", matched_name="NUDT", details={"risk_level": "very high"}
)
HIT = FakeCandidate("Harbin Institute of Technology", details={"risk_level": "very high"})
POSSIBLE = FakeCandidate("Harbin Engineering University", score=0.71, strength="possible")
SANCTIONED = FakeCandidate("Example Arms Ltd", list_name="uk-sanctions", details={})


def fake_matcher() -> FakeMatcher:
    return FakeMatcher(
        {
            "NUDT": NUDT,
            "Harbin Institute of Technology": HIT,
            "Harbin Engineering": POSSIBLE,
            "Example Arms": SANCTIONED,
        }
    )


def write_rules(tmp_path: Path, body: str, guidance: tuple[str, ...] = ("doc.md",)) -> tuple[Path, Path]:
    folder = tmp_path / "guidance"
    folder.mkdir(exist_ok=True)
    for name in guidance:
        (folder / name).write_text("# doc\n", encoding="utf-8")
    path = tmp_path / "triggers.yml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path, folder


def rule(kind_yaml: str, *, rule_id: str = "r1", severity: str = "high", extra: str = "") -> str:
    """One rule with the given kind (indented YAML lines), inside a rules file."""
    kind = textwrap.indent(textwrap.dedent(kind_yaml).strip(), "    ")
    return (
        f"  - id: {rule_id}\n    severity: {severity}\n    description: A test rule.\n"
        f"    guidance: doc.md\n{kind}\n{extra}"
    )


def triager_for(tmp_path: Path, body: str, **kwargs) -> Triager:
    path, folder = write_rules(tmp_path, body)
    return Triager(load_rules(path, folder), **kwargs)


# --- terms -------------------------------------------------------------------------------------


def test_terms_match_plurals_and_other_forms_through_the_stemmer(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule("terms: [drone, talent programme]"))
    assert triager.triage("We build drones").escalate
    assert triager.triage("She joined two Talent Programmes").escalate
    assert not triager.triage("We build droids").escalate


def test_terms_match_whole_words_only(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule("terms: [arms]"))
    assert triager.triage("an arms dealer").escalate
    assert not triager.triage("It harms nobody").escalate
    assert not triager.triage("The fire alarms went off").escalate
    assert not triager.triage("farmstead").escalate


def test_phrases_match_in_order_and_across_hyphens(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule("terms: [dual use]"))
    assert triager.triage("Is this dual-use?").escalate
    assert triager.triage("a DUAL USE item").escalate
    assert not triager.triage("use of dual monitors").escalate


def test_a_term_of_only_stop_words_is_refused(tmp_path):
    path, folder = write_rules(tmp_path, "rules:\n" + rule("terms: [on their behalf, what is]"))
    with pytest.raises(TriggerRuleError, match=r"rule 'r1'.*'what is' has only stop words"):
        load_rules(path, folder)


def test_the_reason_names_the_terms_that_matched(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule("terms: [hypersonic, PLA, radar]"))
    result = triager.triage("Our hypersonic work with the PLA")
    assert result.matches[0].reason == "mentions 'hypersonic' and 'PLA'"


# --- regex -------------------------------------------------------------------------------------


def test_regex_is_case_insensitive_unless_marked(tmp_path):
    body = "rules:\n" + rule(r"""regex: ['\bsubject to sanctions\b', '(?-i:\bPLA\b)']""")
    triager = triager_for(tmp_path, body)
    assert (
        triager.triage("They are Subject To Sanctions").matches[0].reason == "mentions 'Subject To Sanctions'"
    )
    assert triager.triage("a PLA institute").escalate
    assert not triager.triage("printing with pla filament").escalate


def test_curly_apostrophes_are_read_as_straight_ones(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule(r"""regex: ['\bcan''t publish\b']"""))
    assert triager.triage("we can\u2019t publish").escalate


def test_a_regex_that_does_not_compile_names_the_rule(tmp_path):
    path, folder = write_rules(tmp_path, "rules:\n" + rule("regex: ['(unclosed']", rule_id="bad_regex"))
    with pytest.raises(TriggerRuleError, match=r"rule 'bad_regex': regex '\(unclosed' does not compile"):
        load_rules(path, folder)


def test_a_regex_that_matches_everything_is_refused(tmp_path):
    path, folder = write_rules(tmp_path, "rules:\n" + rule("regex: ['x*']"))
    with pytest.raises(TriggerRuleError, match="matches empty text"):
        load_rules(path, folder)


# --- combinations, sets, unless ------------------------------------------------------------------

COMBINATION = """\
sets:
  country: [China, Iran]
  technology: [hypersonic, drone]
  definitional:
    regex: ['^\\s*(?:what|explain)\\b']
  situation:
    regex: ['\\b(?:my|our) partner\\b']
rules:
  - id: country_and_technology
    severity: high
    description: A sensitive country and technology.
    guidance: doc.md
    all: [country, technology]
    unless:
      - all: [definitional, {not: situation}]
  - id: tech_only
    severity: medium
    description: Technology alone.
    guidance: doc.md
    terms: [drone]
"""


def test_a_combination_needs_every_part(tmp_path):
    triager = triager_for(tmp_path, COMBINATION)
    result = triager.triage("We ship drones to Iran")
    assert [m.id for m in result.matches] == ["country_and_technology", "tech_only"]
    assert result.matches[0].reason == "mentions 'Iran' and 'drone'"
    assert not triager.triage("We visit Iran").escalate
    assert [m.id for m in triager.triage("hypersonic tunnels").matches] == []


def test_unless_cancels_definitional_questions_but_not_concrete_ones(tmp_path):
    triager = triager_for(tmp_path, COMBINATION)
    assert triager.triage("What are the rules on drones and China?").matches[0].id == "tech_only"
    concrete = triager.triage("What should I do? My partner in China wants our drone code")
    assert concrete.matches[0].id == "country_and_technology"


def test_severity_is_the_highest_matched_and_high_comes_first(tmp_path):
    triager = triager_for(tmp_path, COMBINATION)
    assert triager.triage("drone").severity == "medium"
    result = triager.triage("drone for China")
    assert result.severity == "high"
    assert [m.severity for m in result.matches] == ["high", "medium"]


def test_to_dict_has_exactly_the_shared_fields(tmp_path):
    triager = triager_for(tmp_path, COMBINATION)
    assert triager.triage("hello").to_dict() == {"escalate": False, "severity": None, "rules": []}
    assert triager.triage("drone").to_dict() == {
        "escalate": True,
        "severity": "medium",
        "rules": [{"id": "tech_only", "reason": "mentions 'drone'"}],
    }


def test_any_holds_when_one_part_holds(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule("any: [{terms: [radar]}, {regex: ['sonar']}]"))
    assert triager.triage("sonar arrays").matches[0].reason == "mentions 'sonar'"
    assert not triager.triage("lidar").escalate


# --- organisations -------------------------------------------------------------------------------


def test_organisations_name_the_entry_the_list_and_the_score(tmp_path):
    triager = triager_for(tmp_path, "rules:\n" + rule("organisations: {}"), matcher=fake_matcher())
    result = triager.triage("Can I send our lidar code to my colleague at NUDT?")
    assert result.severity == "high"
    assert result.matches[0].reason == (
        "names National University of Defense Technology as 'NUDT' (starter list, very high risk, score 0.97)"
    )


def test_organisations_ignore_possible_matches_unless_asked(tmp_path):
    default = triager_for(
        tmp_path, "rules:\n" + rule("organisations: {min_strength: match}"), matcher=fake_matcher()
    )
    assert not default.triage("a lab at Harbin Engineering").escalate
    loose = triager_for(
        tmp_path, "rules:\n" + rule("organisations: {min_strength: possible}"), matcher=fake_matcher()
    )
    assert "possible match" in loose.triage("a lab at Harbin Engineering").matches[0].reason


def test_organisations_filter_by_list_risk_level_and_score(tmp_path):
    by_level = triager_for(
        tmp_path, "rules:\n" + rule("organisations: {risk_levels: [Very-High]}"), matcher=fake_matcher()
    )
    assert by_level.triage("NUDT").escalate
    assert not by_level.triage("Example Arms").escalate
    by_list = triager_for(
        tmp_path, "rules:\n" + rule("organisations: {lists: [uk-sanctions]}"), matcher=fake_matcher()
    )
    assert by_list.triage("Example Arms").escalate
    assert not by_list.triage("NUDT").escalate
    by_score = triager_for(
        tmp_path, "rules:\n" + rule("organisations: {min_score: 0.98}"), matcher=fake_matcher()
    )
    assert not by_score.triage("NUDT").escalate


def test_mentions_are_looked_up_once_per_question(tmp_path):
    body = "rules:\n" + rule("organisations: {}") + rule("organisations: {lists: [starter]}", rule_id="r2")
    matcher = fake_matcher()
    triager = triager_for(tmp_path, body, matcher=matcher)
    assert len(triager.triage("NUDT").matches) == 2
    assert matcher.calls == 1


def test_a_rule_needing_the_matcher_fails_at_construction_without_one(tmp_path):
    path, folder = write_rules(tmp_path, "rules:\n" + rule("organisations: {}", rule_id="orgs"))
    rules = load_rules(path, folder)
    with pytest.raises(TriggerRuleError, match=r"rule 'orgs': needs the watchlist matcher"):
        Triager(rules)
    skipping = Triager(rules, skip_unavailable=True)
    assert skipping.skipped == ("orgs",)
    assert not skipping.triage("NUDT").escalate


# --- semantic ------------------------------------------------------------------------------------

SEMANTIC = """\
rules:
  - id: like_a_concern
    severity: medium
    description: Close to a known concern.
    guidance: doc.md
    semantic:
      threshold: 0.8
      examples:
        - "a company asked for admin access from abroad"
        - "someone online offered money for reports"
"""


class CountingEmbedder(FakeEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    def embed_query(self, text: str) -> np.ndarray:
        self.queries += 1
        return super().embed_query(text)


def test_semantic_matches_close_questions_and_names_the_example(tmp_path):
    triager = triager_for(tmp_path, SEMANTIC, embedder=FakeEmbedder())
    result = triager.triage("A company asked for admin access from abroad")
    assert (
        result.matches[0].reason
        == "close to the example 'a company asked for admin access from abroad' (1.00)"
    )
    assert not triager.triage("How long does an export licence take?").escalate


def test_examples_are_embedded_once_and_a_given_vector_is_used(tmp_path):
    embedder = CountingEmbedder()
    triager = triager_for(tmp_path, SEMANTIC, embedder=embedder)
    vector = embedder.embed_query("someone online offered money for reports")
    embedder.queries = 0
    for _ in range(3):
        assert triager.triage("unrelated words entirely", vector=vector).escalate
    assert embedder.queries == 0
    assert embedder.calls == 1  # embed_documents: the examples, at construction
    triager.triage("someone online offered money for reports")
    assert embedder.queries == 1


def test_a_semantic_rule_without_the_embedder_fails_at_construction(tmp_path):
    path, folder = write_rules(tmp_path, SEMANTIC)
    with pytest.raises(TriggerRuleError, match=r"rule 'like_a_concern': needs the embedding model"):
        Triager(load_rules(path, folder))


def test_the_question_is_embedded_only_when_a_semantic_rule_is_reached(tmp_path):
    embedder = CountingEmbedder()
    triager = triager_for(tmp_path, "rules:\n" + rule("terms: [drone]"), embedder=embedder)
    triager.triage("drone")
    assert embedder.queries == 0


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("rules:\n" + rule("terms: [xenon]", extra="    colour: red\n"), r"rule 'r1': unknown key 'colour'"),
        (
            "rules:\n  - id: r1\n    severity: high\n    guidance: doc.md\n    terms: [xenon]\n",
            r"rule 'r1': 'description' is missing",
        ),
        (
            "rules:\n" + rule("terms: [xenon]", severity="urgent"),
            r"rule 'r1': severity 'urgent' is not one of high, medium",
        ),
        ("rules:\n" + rule("terms: []"), r"rule 'r1': 'terms' must be a non-empty list"),
        ("rules:\n" + rule("terms: ['  ']"), r"rule 'r1': 'terms' has an empty or non-text item"),
        ("rules:\n" + rule("all: [country, nowhere]"), r"rule 'r1': unknown set 'country'"),
        (
            "rules:\n" + rule("semantic: {threshold: 0.7}"),
            r"rule 'r1': a semantic condition needs 'examples'",
        ),
        (
            "rules:\n" + rule("semantic: {examples: [a], threshold: 1.5}"),
            r"rule 'r1': threshold must be a number",
        ),
        ("rules:\n" + rule("organisations: {min_strength: maybe}"), r"rule 'r1': min_strength 'maybe'"),
        (
            "rules:\n" + rule("organisations: {country: CN}"),
            r"rule 'r1': unknown organisations option 'country'",
        ),
        (
            "rules:\n" + rule("terms: [xenon]\nregex: [y]"),
            r"rule 'r1': needs exactly one kind .*found: terms, regex",
        ),
        ("rules:\n" + rule("description2: x"), r"rule 'r1': unknown key 'description2'"),
        ("rules:\n" + rule("terms: [xenon]") + rule("terms: [yttrium]"), r"rule 'r1': the id is used twice"),
        (
            "rules:\n" + rule("terms: [xenon]", extra="    unless: nope\n"),
            r"rule 'r1': 'unless' must be a list",
        ),
        ("rules:\n" + rule("not: {terms: [xenon]}"), r"rule 'r1': unknown key 'not'"),
        ("rules:\n  - id: Bad-Id\n", r"rule 1: 'id' must be lower-case"),
        ("rules:\n  - just text\n", r"rule 1: expected a mapping"),
        ("rules: []\n", r"'rules' must be a non-empty list"),
        ("rule:\n" + rule("terms: [xenon]"), r"unknown top-level key 'rule'"),
        (
            "sets:\n  a: {all: [b]}\n  b: {any: [a]}\nrules:\n" + rule("all: [a]"),
            r"set 'a': refers to itself",
        ),
        (
            "sets:\n  a: {colour: red}\nrules:\n" + rule("all: [a]"),
            r"set 'a': unknown condition kind 'colour'",
        ),
        ("- just a list\n", r"the top level must be a mapping"),
    ],
)
def test_validation_names_the_rule_and_the_problem(tmp_path, body, message):
    path, folder = write_rules(tmp_path, body)
    with pytest.raises(TriggerRuleError, match=message):
        load_rules(path, folder)


def test_a_missing_guidance_file_names_the_rule(tmp_path):
    body = (
        "rules:\n  - id: r1\n    severity: high\n    description: d\n    guidance: gone.md\n    terms: [xe]\n"
    )
    path, folder = write_rules(tmp_path, body)
    with pytest.raises(TriggerRuleError, match=r"rule 'r1': guidance file 'gone.md' not found"):
        load_rules(path, folder)
    assert load_rules(path).rules[0].guidance == "gone.md"  # no folder given: not checked


def test_a_missing_file_and_bad_yaml_give_one_line(tmp_path):
    with pytest.raises(TriggerRuleError, match="rules file not found"):
        load_rules(tmp_path / "none.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(TriggerRuleError, match="not valid YAML") as caught:
        load_rules(bad)
    assert "\n" not in str(caught.value)
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00rules")
    with pytest.raises(TriggerRuleError, match="cannot read the rules file"):
        load_rules(binary)


def test_anchors_and_aliases_are_refused(tmp_path):
    body = "sets:\n  a: &terms [x, y]\n  b: *terms\nrules:\n" + rule("all: [a, b]")
    path, folder = write_rules(tmp_path, body)
    with pytest.raises(TriggerRuleError, match=r"line 2: anchors and aliases .* are not allowed"):
        load_rules(path, folder)
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nrules: [*c]\n'
    path.write_text(bomb, encoding="utf-8")
    with pytest.raises(TriggerRuleError, match="anchors and aliases"):
        load_rules(path, folder)


# --- logging -------------------------------------------------------------------------------------


def test_question_text_is_never_logged(tmp_path, caplog):
    triager = triager_for(tmp_path, "rules:\n" + rule("terms: [drone]"))
    with caplog.at_level(logging.DEBUG, logger="bot.triggers"):
        triager.triage("secret drone project with Acme")
    assert "r1" in caplog.text
    assert "secret" not in caplog.text and "Acme" not in caplog.text


# --- the shipped rules ---------------------------------------------------------------------------


def test_the_shipped_rules_load_and_validate_against_the_guidance_folder():
    rules = load_rules(SHIPPED, GUIDANCE)
    assert len(rules.rules) >= 10
    for item in rules.rules:
        assert item.severity in ("high", "medium")
        assert len(item.description) > 30
        assert (GUIDANCE / item.guidance).is_file()
    assert {"organisations", "semantic", "all", "any"} <= {item.kind for item in rules.rules}


@pytest.fixture(scope="module")
def shipped() -> Triager:
    """The shipped rules with a fake matcher and no model (the semantic rule is skipped)."""
    return Triager(load_rules(SHIPPED, GUIDANCE), matcher=fake_matcher(), skip_unavailable=True)


@pytest.mark.parametrize(
    ("question", "rule_id"),
    [
        ("A company wants to use our swarm navigation algorithms in military drones", "military_wmd_end_use"),
        ("Can I send our lidar code to my colleague at NUDT?", "watchlisted_organisation"),
        ("a defence university in China asked to co-supervise my PhD student", "defence_linked_partner"),
        ("our new industrial partner is on the US Entity List", "sanctioned_partner"),
        ("The sponsor wants to own all the IP and decide what we publish", "partner_control_of_ip_or_data"),
        ("a company asked for admin access to our research server from abroad", "unusual_access_request"),
        (
            "someone wants to donate 500k but won't say where the money comes from",
            "foreign_state_or_opaque_funding",
        ),
        ("I've been offered a place on the Thousand Talents plan", "talent_programme"),
        (
            "my colleague has a paid position abroad that he hasn't told anyone about",
            "undisclosed_affiliation",
        ),
        ("A recruiter on LinkedIn offered me paid consultancy to write reports", "suspicious_approach"),
        ("An embassy has asked me to organise a lobbying event with MPs on their behalf", "firs_arrangement"),
        ("we need to ship the prototype gyroscope to a lab in Turkey", "export_licence_transfer"),
        (
            "our semiconductor lithography designs for collaborators in China",
            "sensitive_country_and_technology",
        ),
        ("The company says the end user of our sensors is confidential", "unclear_end_use"),
        (
            "Xi'an jiaotong colleague asking for our trained models of the missile seeker",
            "military_wmd_end_use",
        ),
    ],
)
def test_each_shipped_rule_catches_a_clear_case(shipped, question, rule_id):
    assert rule_id in [match.id for match in shipped.triage(question).matches]


@pytest.mark.parametrize(
    "question",
    [
        "What are export controls?",
        "what is the Entity List?",
        "how does ATAS work?",
        "What is FIRS?",
        "how do I check a partner?",
        "What is the Military End-Use Control?",
        "What are the Seven Sons of National Defence?",
        "What should I do if I get a suspicious LinkedIn message?",
        "I'm travelling to a conference in France with my laptop, anything I need to do?",
        "Can students from abroad access our university VPN while studying remotely?",
        "I 3D-print brackets with PLA filament",
        "The army cadets want to visit our lab for a careers day",
        "the university wants all our data stored on the university OneDrive",
        "does the WMD rule still apply to me while I'm abroad on sabbatical?",
        "is sharing a password-protected dropbox folder with a Korean partner an export?",
        "I'm reviewing a paper from Beijing about quantum algorithms for a journal",
    ],
)
def test_the_shipped_rules_leave_guidance_questions_alone(shipped, question):
    assert shipped.triage(question).matches == ()


# --- with the real watchlist matcher over the shipped starter list --------------------------------


@pytest.fixture(scope="module")
def with_starter_list(tmp_path_factory) -> Triager:
    """The shipped rules with the real Matcher over knowledge/watchlists (no model)."""
    watchlists = pytest.importorskip("bot.watchlists")
    from bot.config import config_from_dict

    folder = tmp_path_factory.mktemp("watchlists")
    config = config_from_dict(
        {
            "paths": {
                "watchlist_db": str(folder / "watchlists.db"),
                "watchlists_dir": str(REPO / "knowledge/watchlists"),
            }
        }
    )
    matcher = watchlists.load_matcher(config)
    return Triager(load_rules(SHIPPED, GUIDANCE), matcher=matcher, skip_unavailable=True)


def test_a_starter_list_institution_escalates_and_its_look_alike_does_not(with_starter_list):
    result = with_starter_list.triage("my co-author at Harbin Institute of Technology wants our drone code")
    assert result.severity == "high"
    named = next(match for match in result.matches if match.id == "watchlisted_organisation")
    assert named.reason.startswith(
        "names Harbin Institute of Technology (starter list, very high risk, score "
    )
    assert not with_starter_list.triage("Harbin Medical University").escalate
    assert not with_starter_list.triage(
        "my co-author at Harbin Medical University wants our survey data"
    ).escalate


@pytest.mark.parametrize(
    ("question", "escalates"),
    [
        ("collaborator at Beihang wants our wind-tunnel data", True),
        ("colleague at BUAA asked for the turbine models", True),
        ("Can I send our lidar code to my colleague at NUDT?", True),
        ("My co-author is at Northwestern University in Chicago, can I share our survey data?", False),
        ("A postdoc from Nanjing University is joining us to work on Chinese literature", False),
        ("Is a collaboration with Tsinghua on poetry translation a problem?", False),
        ("What does the ASPI tracker say about Harbin Institute of Technology?", False),
    ],
)
def test_partners_named_in_questions_against_the_starter_list(with_starter_list, question, escalates):
    assert with_starter_list.triage(question).escalate is escalates


# --- labelled sets and scoring -------------------------------------------------------------------


def test_scores_count_misses_false_alarms_and_severity():
    items = [
        LabelledQuestion("a", "x", True, "high"),
        LabelledQuestion("b", "x", True, "medium"),
        LabelledQuestion("c", "x", True, "high"),
        LabelledQuestion("d", "x", False),
        LabelledQuestion("e", "x", False),
    ]
    results = {
        "a": Triage(True, "high").to_dict(),
        "b": Triage(True, "high").to_dict(),
        "c": Triage(False, None).to_dict(),
        "d": Triage(True, "medium").to_dict(),
        "e": Triage(False, None).to_dict(),
    }
    scores = score_triage(items, results)
    assert (scores.recall, scores.precision, scores.benign_escalation_rate) == (2 / 3, 2 / 3, 0.5)
    assert [(m["id"], m["kind"]) for m in scores.misses] == [
        ("b", "severity"),
        ("c", "missed"),
        ("d", "false alarm"),
    ]
    assert scores.to_dict()["severity_agreement"] == "1/2"


def test_the_shipped_labelled_sets_are_valid_and_large_enough():
    tuning = load_labelled(REPO / "eval" / "triage.yaml")
    holdout = load_labelled(REPO / "eval" / "triage-holdout.yaml")
    assert len(tuning) >= 80 and len(holdout) >= 25
    assert not {item.text for item in tuning} & {item.text for item in holdout}
    for items in (tuning, holdout):
        assert any(item.escalate for item in items) and any(not item.escalate for item in items)
        assert all(item.severity for item in items if item.escalate)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {id: a, text: x}\n", "escalate must be true or false"),
        ("- {id: a, text: x, escalate: true}\n- {id: a, text: y, escalate: false}\n", "id 'a' is used twice"),
        ("- {id: a, text: x, escalate: true, severity: low}\n", "severity 'low'"),
        ("- {id: a, text: '', escalate: true}\n", "needs an id and a non-empty text"),
        ("{}\n", "expected a non-empty YAML list"),
    ],
)
def test_a_bad_labelled_file_names_the_item(tmp_path, text, message):
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelledSetError, match=message):
        load_labelled(path)


# --- with the real model -------------------------------------------------------------------------


@pytest.mark.model
def test_the_shipped_rules_on_the_real_model(real_embedder):
    triager = Triager(load_rules(SHIPPED, GUIDANCE), embedder=real_embedder, matcher=fake_matcher())
    for question in (
        "Can I send our lidar code to my colleague at NUDT?",
        "cn i snd the drone autopilot code to my frend in Iran",
        "A recruiter on LinkedIn offered me paid consultancy to write reports on UK defence research",
        "Border officials took my phone and laptop for an hour when I entered the country",
    ):
        assert triager.triage(question).escalate, question
    for question in (
        "What are export controls?",
        "what is the Entity List?",
        "how does ATAS work?",
        "What is FIRS?",
        "We're collaborating with Harbin Medical University on a diabetes study, what checks do we need?",
        "My co-author is at Northwestern University in Chicago, can I share our survey data?",
        "I'm travelling to a conference in France with my laptop, anything I need to do?",
    ):
        assert not triager.triage(question).escalate, question
    vector = real_embedder.embed_query("a military organisation wants to use our research")
    assert triager.triage("unrelated", vector=vector).matches[0].id == "concern_like_known_cases"
