"""Partner pre-screening core: the rules file and its checks, ratings and reasons on hand-checked
cases, the result's JSON, research areas by keyword and by meaning, and routing DMs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import InstitutionSettings, ScreeningSettings, config_from_dict
from bot.screening import (
    AreaClassifier,
    PartnerQuery,
    PartnerQueryError,
    Screener,
    ScreeningRuleError,
    check_query,
    keyword_pattern,
    load_rules,
    rating_of,
    route_message,
)
from tests.conftest import REPO

RULES = REPO / "knowledge" / "screening-rules.yml"
GUIDANCE = REPO / "knowledge" / "guidance"
FIXTURES = REPO / "tests" / "data" / "watchlists"


@pytest.fixture(scope="module")
def rules():
    return load_rules(RULES, GUIDANCE)


@dataclass
class Cand:
    """A candidate as ``bot.watchlists.Matcher`` returns it."""

    entry: str
    list_name: str
    matched_name: str
    score: float
    strength: str
    source_url: str = "https://lists.example/entry"
    details: dict[str, Any] = field(default_factory=dict)
    explanation: str = "exact"
    country: str = ""
    list_format: str = ""
    risk_level: str = ""
    programme: str = ""
    reason: str = ""


class FakeMatcher:
    """Returns the candidates registered for a name (exact, case-insensitive); records calls."""

    def __init__(
        self, table: dict[str, list[Cand]] | None = None, mentions: list[Cand] | None = None
    ) -> None:
        self.table = {key.lower(): value for key, value in (table or {}).items()}
        self.mentions = mentions or []
        self.calls: list[tuple[str, str | None]] = []

    def search(self, name: str, country: str | None = None, limit: int = 10) -> list[Cand]:
        self.calls.append((name, country))
        return self.table.get(name.lower(), [])[:limit]

    def find_mentions(self, text: str) -> list[Cand]:
        return [m for m in self.mentions if m.matched_name.lower() in text.lower()]


HIT = Cand(
    "Harbin Institute of Technology",
    "starter",
    "HIT",
    1.0,
    "match",
    "https://unitracker.aspi.org.au/universities/harbin-institute-of-technology/",
    {"list": "institution list"},
    country="CN",
    list_format="csv",
    risk_level="very high",
    reason="One of the Seven Sons of National Defence.",
)
ZJU = Cand(
    "Zhejiang University",
    "starter",
    "Zhejiang University",
    1.0,
    "match",
    country="CN",
    list_format="csv",
    risk_level="high",
    reason="Rated high risk by the ASPI China Defence Universities Tracker.",
)
EL = Cand(
    "Eastern Institute of Aerospace Propulsion (EIAP)",
    "us-csl",
    "EIAP",
    0.97,
    "match",
    details={"list": "Entity List (EL) - Bureau of Industry and Security", "list_code": "EL"},
    country="CN",
    list_format="us-csl",
)
UVL = Cand(
    "Caspian Optics Trading",
    "us-csl",
    "Caspian Optics Trading",
    1.0,
    "match",
    details={"list": "Unverified List (UVL) - Bureau of Industry and Security", "list_code": "UVL"},
    country="AZ",
    list_format="us-csl",
)
UK = Cand(
    "NOVOSIBIRSK INSTITUTE OF APPLIED OPTICS",
    "uk-sanctions",
    "NIAO",
    1.0,
    "match",
    country="RU",
    list_format="uk-sanctions",
    programme="The Russia (Sanctions) (EU Exit) Regulations 2019",
)
LOW = Cand("Quiet Institute", "local", "Quiet Institute", 1.0, "match", list_format="csv", risk_level="low")


def _screener(rules, table=None, **kwargs) -> Screener:
    return Screener(FakeMatcher(table), rules, **kwargs)


# -- the rules file ------------------------------------------------------------------------------


def test_the_shipped_rules_load_and_every_citation_names_a_real_section(rules):
    assert set(rules.lists) == {"uk-sanctions", "us-csl", "csv"}
    assert {"uk-sanctions-regime", "uk-arms-embargo", "firs-enhanced-tier"} <= {
        f.id for f in rules.country_factors
    }
    firs = next(f for f in rules.country_factors if f.id == "firs-enhanced-tier")
    assert firs.countries == {"IR", "RU"}  # China is not on the enhanced tier (as of 2026)
    nsi = [a for a in rules.areas if a.group == "nsi"]
    assert len([a for a in nsi if a.status == "in_force"]) == 15  # the 17, less the two supplier areas
    assert {a.name for a in nsi if a.status == "pending"} == {"Water", "Critical Minerals", "Semiconductors"}
    assert len([a for a in rules.areas if a.group == "export"]) == 10
    citation = rules.lists["uk-sanctions"].citation
    assert (citation.document, citation.title) == ("sanctions.md", "Sanctions and research partners")
    assert citation.url and citation.url.startswith("https://")


def _write(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["areas"][0].update(colour="blue"),
            "area 'nsi-advanced-materials': unknown key 'colour'",
        ),
        (
            lambda d: d["country_factors"][0].update(raises="purple"),
            "country factor 'uk-sanctions-regime': raises",
        ),
        (
            lambda d: d["area_groups"]["nsi"]["citation"].update(section="No such heading"),
            "area group 'nsi': citation: no section 'No such heading' in nsi-act.md",
        ),
        (
            lambda d: d["lists"]["csv"]["citation"].update(document="missing.md"),
            "list 'csv': citation: no readable guidance document 'missing.md'",
        ),
        (
            lambda d: d["areas"][1].update(id=d["areas"][0]["id"]),
            "area 'nsi-advanced-materials': the id is used twice",
        ),
        (lambda d: d["country_factors"][0]["countries"].append("ZZ"), "'ZZ' has no entry in country_names"),
        (
            lambda d: d["areas"][0].update(keywords=[]),
            "area 'nsi-advanced-materials': keywords: at least one",
        ),
        (lambda d: d["areas"][0].update(group="nonsense"), "group: 'nonsense' is not in area_groups"),
        (lambda d: d.pop("disclaimer"), "disclaimer: expected some text"),
        (lambda d: d.update(version=2), "version: expected 1"),
        (lambda d: d["lists"].pop("us-csl"), "no policy for the 'us-csl' format"),
        (
            lambda d: d["collaboration_kinds"]["equipment"]["checks"][0].update(when_area_group="art"),
            "collaboration check 'kind-equipment-export': when_area_group",
        ),
    ],
)
def test_a_malformed_rule_is_refused_naming_it(tmp_path, edit, message):
    with pytest.raises(ScreeningRuleError) as error:
        load_rules(_write(tmp_path, edit), GUIDANCE)
    assert message in str(error.value)


def test_yaml_reading_norway_as_false_is_caught(tmp_path):
    text = RULES.read_text(encoding="utf-8").replace('"NO": {name: Norway}', "NO: {name: Norway}")
    path = tmp_path / "rules.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScreeningRuleError, match="country 'False': the key must be a two-letter ISO code"):
        load_rules(path, GUIDANCE)


def test_a_missing_or_unreadable_rules_file_is_one_clear_error(tmp_path):
    with pytest.raises(ScreeningRuleError, match="not found"):
        load_rules(tmp_path / "nope.yml", GUIDANCE)
    bad = tmp_path / "bad.yml"
    bad.write_text("lists: [unclosed", encoding="utf-8")
    with pytest.raises(ScreeningRuleError, match="cannot be read"):
        load_rules(bad, GUIDANCE)


def test_keywords_are_whole_words_with_optional_endings_and_capitals_for_acronyms():
    assert keyword_pattern("robot*").search("Swarm Robotics lab")
    assert not keyword_pattern("robot*").search("carrobots")
    assert keyword_pattern("AI").search("AI for drug discovery")
    assert not keyword_pattern("AI").search("Thai cuisine and ai")
    assert keyword_pattern("dual-use").search("dual use items")
    assert keyword_pattern("machine learning").search("Machine-Learning models")
    assert not keyword_pattern("nuclear").search("unnuclear")


def test_countries_are_read_as_typed_and_from_organisation_names(rules):
    for text in ("China", "PRC", "cn", "People's Republic of China", "  china "):
        assert rules.resolve_country(text) == "CN"
    assert rules.resolve_country("Russian Federation") == "RU"
    assert rules.resolve_country("Narnia") is None
    assert rules.country_in_text("Russian Academy of Sciences") == "RU"
    assert rules.country_in_text("Harbin Medical University") == "CN"
    assert rules.country_in_text("Zhejiang University of Technology") == "CN"
    assert rules.country_in_text("Northwestern University") is None
    assert rules.country_in_text("Korea University") is None  # not read as North Korea


# -- ratings, hand-checked --------------------------------------------------------------------------


def test_a_very_high_starter_match_is_red_with_its_list_entry_cited(rules):
    screening = _screener(rules, {"HIT": [HIT]}).screen(PartnerQuery("HIT"))
    assert screening.rating == "red"
    watch = screening.reasons[0]
    assert watch.kind == "watchlist" and watch.level == "red"
    assert "Harbin Institute of Technology" in watch.text and "matched on 'HIT'" in watch.text
    assert watch.citation.to_dict() == {
        "type": "watchlist",
        "list": "starter",
        "entry": "Harbin Institute of Technology",
        "source_url": "https://unitracker.aspi.org.au/universities/harbin-institute-of-technology/",
    }
    # the country comes from the confirmed list entry: China's factors fire and say so
    countries = [r for r in screening.reasons if r.kind == "country"]
    assert {r.rule for r in countries} == {"uk-arms-embargo", "institution-sensitive-country"}
    assert all("(country from the list entry)" in r.text for r in countries)
    assert screening.next_steps[0].text.startswith("Do not sign")


def test_a_high_entry_is_amber_unless_its_reason_records_a_listing(rules):
    assert _screener(rules, {"ZJU": [ZJU]}).screen(PartnerQuery("ZJU")).rating == "amber"
    listed = dataclasses.replace(ZJU, reason="Reported added to the US Entity List on 18 December 2020.")
    screening = _screener(rules, {"ZJU": [listed]}).screen(PartnerQuery("ZJU"))
    assert screening.rating == "red"
    assert "the entry records: Reported added to the US Entity List" in screening.reasons[0].text


def test_sanctions_and_entity_list_matches_are_red_and_other_csl_lists_amber(rules):
    assert _screener(rules, {"NIAO": [UK]}).screen(PartnerQuery("NIAO")).rating == "red"
    el = _screener(rules, {"EIAP": [EL]}).screen(PartnerQuery("EIAP"))
    assert el.rating == "red" and "On the Entity List (EL)" in el.reasons[0].text
    uvl = _screener(rules, {"Caspian Optics Trading": [UVL]}).screen(PartnerQuery("Caspian Optics Trading"))
    assert uvl.reasons[0].level == "amber" and uvl.rating == "amber"


def test_a_possible_match_is_amber_and_says_check(rules):
    possible = dataclasses.replace(UK, strength="possible", score=0.78)
    screening = _screener(rules, {"Novosibirsk Optics": [possible]}).screen(
        PartnerQuery("Novosibirsk Optics", country="Germany")
    )
    assert screening.rating == "amber"
    assert screening.reasons[0].text.startswith("Possible match, check:")


def test_a_low_risk_entry_is_listed_as_a_reason_but_stays_green(rules):
    screening = _screener(rules, {"Quiet Institute": [LOW]}).screen(PartnerQuery("Quiet Institute"))
    assert screening.rating == "green"
    assert screening.reasons[0].level == "note"


def test_a_sensitive_country_alone_is_amber_and_never_red(rules):
    screening = _screener(rules).screen(PartnerQuery("Harbin Medical University"))
    assert screening.rating == "amber"
    assert not screening.matches
    assert all(r.kind == "country" for r in screening.reasons)
    assert "(country read from the organisation's name)" in screening.reasons[0].text
    russia = _screener(rules).screen(PartnerQuery("Some Institute", country="Russian Federation"))
    assert {r.rule for r in russia.reasons} == {
        "uk-sanctions-regime",
        "uk-arms-embargo",
        "firs-enhanced-tier",
        "institution-sensitive-country",
    }


def test_a_sensitive_area_alone_is_amber_and_cites_the_nsi_section(rules):
    screening = _screener(rules).screen(PartnerQuery("University of Leeds", area="battery chemistry"))
    assert screening.rating == "amber"
    (reason,) = [r for r in screening.reasons if r.level == "amber"]
    assert reason.kind == "area" and '"Energy"' in reason.text and "matched on 'battery'" in reason.text
    assert reason.citation.section == "The 17 sensitive areas under the NSI Act"
    pending = _screener(rules).screen(PartnerQuery("University of Leeds", area="desalination membranes"))
    water = next(r for r in pending.reasons if r.kind == "area")
    assert "confirmed in March 2026" in water.text
    assert water.citation.section == "2026 changes: the NSI areas are going from 17 to 19"


def test_green_still_says_what_to_check(rules):
    screening = _screener(rules).screen(PartnerQuery("University of Manchester", kind="funding"))
    assert screening.rating == "green"
    assert [r.kind for r in screening.reasons] == ["collaboration"]
    texts = [step.text for step in screening.next_steps]
    assert any("who owns and controls the partner" in text for text in texts)
    assert any("Involve the research office" in text for text in texts)  # the funding check's step


def test_a_visiting_researcher_in_an_atas_subject_raises_atas_unless_the_country_is_exempt(rules):
    def atas(country):
        query = PartnerQuery(
            "Some University", country=country, area="quantum optics", kind="visiting researcher"
        )
        return {r.rule: r.level for r in _screener(rules).screen(query).reasons}

    assert atas("Brazil")["kind-visiting-atas"] == "amber"
    assert "kind-visiting-atas" not in atas("Japan")
    assert "kind-visiting-atas" not in atas("Germany")


def test_equipment_data_and_licences_raise_export_and_nsi_checks(rules):
    def checks(kind):
        query = PartnerQuery("Uppsala University", country="Sweden", kind=kind)
        return {r.rule for r in _screener(rules).screen(query).reasons}

    assert checks("equipment") == {"kind-equipment-export", "kind-equipment-nsi"}
    assert checks("data-sharing") == {"kind-data-export", "kind-data-access"}
    assert checks("licence") == {"kind-licence-nsi", "kind-licence-export"}


def test_rating_is_the_highest_level_given():
    from bot.screening import GuidanceCitation, Reason

    cite = GuidanceCitation("a.md", "A", "S", None)
    assert rating_of([]) == "green"
    assert rating_of([Reason("x", "area", cite, "r", "note")]) == "green"
    assert (
        rating_of([Reason("x", "area", cite, "r", "amber"), Reason("y", "country", cite, "q", "note")])
        == "amber"
    )
    assert (
        rating_of([Reason("x", "area", cite, "r", "amber"), Reason("y", "watchlist", cite, "q", "red")])
        == "red"
    )


def test_matches_are_deduplicated_ordered_and_capped(rules):
    second = dataclasses.replace(HIT, matched_name="Harbin Gongye Daxue", score=0.9)
    possible = dataclasses.replace(ZJU, strength="possible", score=0.95)
    below = dataclasses.replace(UVL, strength="below", score=0.5)
    matcher = FakeMatcher({"x": [possible, second, HIT, below]})
    screener = Screener(matcher, rules, settings=ScreeningSettings(max_matches=5))
    screening = screener.screen(PartnerQuery("x", country="China"))
    assert [(m.entry, m.strength) for m in screening.matches] == [
        ("Harbin Institute of Technology", "match"),
        ("Zhejiang University", "possible"),
    ]
    assert matcher.calls == [("x", "CN")]  # the country goes to the matcher as its ISO code


# -- the result's JSON --------------------------------------------------------------------------------


def test_to_dict_is_exactly_the_issues_object(rules):
    screener = _screener(rules, {"HIT": [HIT]}, warnings=lambda: ["Warning: list 'starter' is 40 days old."])
    data = screener.screen(PartnerQuery("HIT", area="aerodynamics")).to_dict()
    assert list(data) == ["rating", "matches", "reasons", "next_steps", "disclaimer", "case"]
    assert data["case"] is None
    assert list(data["matches"][0]) == [
        "entry",
        "list",
        "matched_name",
        "score",
        "strength",
        "source_url",
        "details",
    ]
    assert all(list(reason) == ["text", "kind", "citation"] for reason in data["reasons"])
    guidance = next(r["citation"] for r in data["reasons"] if r["kind"] == "area")
    assert set(guidance) == {"type", "document", "title", "section", "url"}
    assert all(set(step) == {"text", "citation"} for step in data["next_steps"])
    assert data["disclaimer"].startswith("Warning: list 'starter' is 40 days old.")
    assert "first screen, not a clearance" in data["disclaimer"]
    assert "Research Security Team" in data["disclaimer"]


def test_with_case_and_the_attachment_keep_the_whole_screening(rules):
    screening = _screener(rules, {"HIT": [HIT]}).screen(PartnerQuery("HIT", notes="a visit"))
    opened = screening.with_case("RS-2026-0001")
    assert opened.to_dict()["case"] == "RS-2026-0001"
    attachment = opened.to_attachment()
    assert attachment["query"]["organisation"] == "HIT" and attachment["country"] == "CN"
    assert attachment["rating"] == "red" and attachment["case"] == "RS-2026-0001"


def test_the_institution_fills_the_text(rules):
    institution = InstitutionSettings(name="Uni of X", team_name="Safety Desk", email="desk@x.ac.uk")
    screening = _screener(rules, institution=institution).screen(
        PartnerQuery("Some Institute", country="Iran")
    )
    assert "Safety Desk" in screening.disclaimer and "desk@x.ac.uk" in screening.disclaimer
    assert any("Uni of X's list of sensitive countries" in r.text for r in screening.reasons)


def test_stale_lists_warn_in_every_result(rules):
    from datetime import UTC, datetime, timedelta

    from bot.watchlists import ListInfo

    old = (datetime.now(UTC) - timedelta(days=90)).isoformat(timespec="seconds")
    matcher = FakeMatcher()
    matcher.lists = (ListInfo("uk-sanctions", "uk-sanctions", "f.csv", "x", None, old, 10, 2, 0),)
    screening = Screener(matcher, rules).screen(PartnerQuery("Anything"))
    assert screening.warnings and "uk-sanctions" in screening.warnings[0]
    assert "90 days old" in screening.to_dict()["disclaimer"]


# -- the query -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (PartnerQuery("   "), "Please give the organisation's name"),
        (PartnerQuery("x" * 201), "201 characters long"),
        (PartnerQuery("X", notes="n" * 1001), "The notes is 1001 characters long"),
        (PartnerQuery("X", kind="spaceship"), "Unknown kind of collaboration 'spaceship'"),
    ],
)
def test_a_bad_query_is_refused_with_a_clear_message(rules, query, message):
    with pytest.raises(PartnerQueryError, match=message):
        check_query(query, rules)


def test_the_query_is_tidied_and_its_kind_resolved(rules):
    query = check_query(PartnerQuery("  Beihang \n University ", kind="Data sharing", area=""), rules)
    assert query == PartnerQuery("Beihang University", kind="data-sharing")


# -- research areas ----------------------------------------------------------------------------------


def test_areas_fire_by_meaning_with_an_embedder_and_atas_by_keywords_only(rules, fake_embedder):
    classifier = AreaClassifier(rules.areas, fake_embedder, 0.3, meaning_groups=["nsi", "export"])
    hits = classifier.classify("quantum computing hardware architecture")
    assert any(h.how == "keyword" and h.area.id == "nsi-quantum" for h in hits)
    meaning = classifier.classify("superconducting circuits for computing hardware")
    assert any(h.how == "meaning" for h in meaning)
    assert not any(h.how == "meaning" and h.area.group == "atas" for h in meaning)
    assert AreaClassifier(rules.areas).classify("medieval poetry") == []


def test_notes_are_searched_for_keywords_but_not_by_meaning(rules, fake_embedder):
    classifier = AreaClassifier(rules.areas, fake_embedder, 0.01)
    hits = classifier.classify(None, "we would share drone flight logs")
    assert {h.how for h in hits} == {"keyword"}
    assert "nsi-military-dual-use" in {h.area.id for h in hits}


@pytest.mark.model
def test_the_real_model_finds_areas_the_keywords_miss(rules, real_embedder):
    screener = Screener(FakeMatcher(), rules, real_embedder)
    screening = screener.screen(PartnerQuery("University of Leeds", area="superconducting qubits"))
    area = next(r for r in screening.reasons if r.kind == "area")
    assert '"Quantum Technologies"' in area.text and "close in meaning" in area.text
    assert screener.screen(PartnerQuery("University of Leeds", area="Victorian poetry")).rating == "green"


# -- routing DMs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "organisation", "area", "country"),
    [
        ("prescreen Harbin Institute of Technology", "Harbin Institute of Technology", None, None),
        ("can you check Skoltech for a battery project?", "Skoltech", "battery", None),
        ("is it ok to work with BUAA on aerodynamics?", "BUAA", "aerodynamics", None),
        (
            "please check Nanjing University (China) for a materials collaboration",
            "Nanjing University",
            "materials",
            "China",
        ),
        ("Is Tsinghua University on the Entity List?", "Tsinghua University", None, None),
        ("Pre-screen: “Beihang University”", "Beihang University", None, None),
    ],
)
def test_a_message_asking_to_check_a_named_organisation_is_screened(rules, text, organisation, area, country):
    route = route_message(text, rules=rules)
    assert route.kind == "screen"
    assert (route.query.organisation, route.query.area, route.query.country) == (organisation, area, country)


@pytest.mark.parametrize(
    "text",
    [
        "What is the Entity List?",
        "Do I need an export licence to email technical data abroad?",
        "can you check whether my data counts as an export?",
        "Is it ok to work with a company in China on AI?",
        "Is it ok to work with Chinese universities on AI?",
        "Can you check this draft agreement for me?",
        "",
    ],
)
def test_other_messages_are_answered_from_the_guidance(rules, text):
    assert route_message(text, rules=rules).kind == "guidance"


def test_a_listed_organisation_named_without_asking_to_check_it_is_unsure():
    matcher = FakeMatcher(mentions=[dataclasses.replace(HIT, matched_name="Harbin Institute of Technology")])
    route = route_message(
        "Someone from Harbin Institute of Technology emailed me, what now?", matcher=matcher
    )
    assert route.kind == "unsure"
    assert route.query.organisation == "Harbin Institute of Technology"


def test_checking_something_that_does_not_look_like_a_name_is_unsure(rules):
    route = route_message("can you check the collaboration terms for me", rules=rules)
    assert route.kind in ("unsure", "guidance")
    assert route_message("check out this cool paper", rules=rules).kind != "screen"


# -- with the real watchlists ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_screener(tmp_path_factory, rules):
    from bot.watchlists import WatchlistStore, load_matcher

    tmp = tmp_path_factory.mktemp("watchlists")
    config = config_from_dict(
        {
            "paths": {
                "watchlist_db": str(tmp / "watchlists.db"),
                "watchlists_dir": str(REPO / "knowledge" / "watchlists"),
            }
        }
    )
    store = WatchlistStore(config.paths.watchlist_db)
    store.import_file(FIXTURES / "uk-sanctions.csv", "uk-sanctions")
    store.import_file(FIXTURES / "us-csl.csv", "us-csl")
    matcher = load_matcher(config, store)
    store.close()
    return Screener(matcher, rules, settings=config.screening)


@pytest.mark.parametrize(
    ("organisation", "country", "rating", "entry"),
    [
        ("Harbin Inst. of Tech.", None, "red", "Harbin Institute of Technology"),
        ("BUAA", None, "red", "Beihang University"),
        ("Novosibirsk Institute of Applied Optics", None, "red", "NOVOSIBIRSK INSTITUTE OF APPLIED OPTICS"),
        (
            "Eastern Propulsion Institute No. 7",
            None,
            "red",
            "Eastern Institute of Aerospace Propulsion (EIAP)",
        ),
        ("Zhejiang Univ.", None, "amber", "Zhejiang University"),
        ("Harbin Medical University", None, "amber", None),
        ("Nanjing University", None, "amber", None),
        ("Northwestern University", None, "green", None),
        ("Hitachi", "Japan", "green", None),
        ("University of Edinburgh", None, "green", None),
    ],
)
def test_hand_checked_screens_against_the_starter_list_and_fixtures(
    real_screener, organisation, country, rating, entry
):
    screening = real_screener.screen(PartnerQuery(organisation, country=country))
    assert screening.rating == rating
    top = (
        screening.matches[0].entry if screening.matches and screening.matches[0].strength == "match" else None
    )
    assert top == entry


# -- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("area_similarity", 1.5, "setting 'screening.area_similarity': must be above 0 and at most 1"),
        ("max_matches", 0, "setting 'screening.max_matches': must be between 1 and 20"),
        ("command", "prescreen", "setting 'screening.command': must be a slash command"),
    ],
)
def test_bad_screening_settings_name_the_key(key, value, message):
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"screening": {key: value}})
