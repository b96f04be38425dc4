"""bot.watchlists: importers on fixtures in the published layouts, the store, normalisation, matching."""

from __future__ import annotations

import codecs
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bot.watchlists as wl
from bot.config import ConfigError, ScreeningSettings, config_from_dict
from bot.watchlists import (
    ListInfo,
    Matcher,
    UnknownListError,
    WatchlistError,
    WatchlistFormatError,
    WatchlistStore,
    ensure_starter,
    evaluate_matching,
    list_warnings,
    load_matcher,
    normalise,
    normalise_country,
)
from tests.conftest import REPO

DATA = Path(__file__).resolve().parent / "data" / "watchlists"
STARTER = REPO / "knowledge" / "watchlists" / "starter.csv"
SEVEN_SONS = {
    "Beihang University",
    "Beijing Institute of Technology",
    "Harbin Engineering University",
    "Harbin Institute of Technology",
    "Nanjing University of Aeronautics and Astronautics",
    "Nanjing University of Science and Technology",
    "Northwestern Polytechnical University",
}


@pytest.fixture
def store(tmp_path: Path):
    store = WatchlistStore(tmp_path / "watchlists.db")
    yield store
    store.close()


@pytest.fixture(scope="module")
def matcher(tmp_path_factory) -> Matcher:
    """The starter list and the UK and US fixtures, with the shipped thresholds."""
    store = WatchlistStore(tmp_path_factory.mktemp("matcher") / "watchlists.db")
    store.import_file(STARTER, "csv", "starter")
    store.import_file(DATA / "uk-sanctions.csv", "uk-sanctions")
    store.import_file(DATA / "us-csl.csv", "us-csl")
    matcher = Matcher.from_store(store, ScreeningSettings())
    store.close()
    return matcher


def entries_by_id(store: WatchlistStore, name: str) -> dict[str, wl.Entry]:
    return {entry.entry_id: entry for entry in store.entries(name)}


def names_of(entry: wl.Entry, kind: str | None = None) -> list[str]:
    return [n.text for n in entry.names if kind is None or n.kind == kind]


# -- UK Sanctions List ---------------------------------------------------------------------------
def test_uk_sanctions_list_groups_rows_by_unique_id(store):
    summary = store.import_file(DATA / "uk-sanctions.csv", "uk-sanctions")
    assert summary.list_name == "uk-sanctions"
    assert summary.file_date == "2026-12-01"  # from the "Report Date: 01-Dec-2026" line
    assert summary.entries == 6 and not summary.skipped
    assert any("1 ship" in note for note in summary.notes)  # ARCTIC DAWN is not a research partner
    entries = entries_by_id(store, "uk-sanctions")
    assert set(entries) == {"RUS9001", "IRN9002", "RUS9003", "RUS9005", "CHN9006", "RUS9007"}
    niao = entries["RUS9001"]
    # the Alias row comes first in the file and the primary row is repeated: one entry, primary first
    assert niao.name == "NOVOSIBIRSK INSTITUTE OF APPLIED OPTICS"
    assert niao.names[0] == wl.ListName("NOVOSIBIRSK INSTITUTE OF APPLIED OPTICS", "primary")
    assert names_of(niao, "acronym") == ["NIAO"]
    assert names_of(niao, "non-latin") == ["Новосибирский институт прикладной оптики"]
    assert len(names_of(niao)) == 3  # the "Primary name variation" has the same words as the Cyrillic
    assert niao.entity_type == "organisation" and niao.countries == ("RU",)
    assert niao.listed_on == "2023-06-15" and niao.updated_on == "2026-08-04"
    assert niao.details["sanctions_imposed"] == ["Asset freeze", "Trust services sanctions"]
    assert niao.details["list_kind"] == "sanctions" and niao.risk_level == "sanctioned"
    assert niao.programme == "The Russia (Sanctions) (EU Exit) Regulations 2019"
    assert "optical sights" in niao.reason


def test_uk_name_types_in_any_case_and_empty_means_primary(store):
    store.import_file(DATA / "uk-sanctions.csv", "uk-sanctions")
    entries = entries_by_id(store, "uk-sanctions")
    tarc = entries["IRN9002"]  # "primary name" and "alias" in lower case
    assert tarc.name == "TEHRAN AEROSPACE RESEARCH CENTRE" and names_of(tarc, "acronym") == ["TARC"]
    assert tarc.countries == ("IR",) and tarc.details["un_reference"] == "IRe.999"
    kama = entries["RUS9005"]  # Name type empty; stray spaces around the name and the type
    assert kama.name == "KAMA DEFENCE SYSTEMS, JSC" and kama.entity_type == "organisation"
    person = entries["RUS9003"]
    assert person.name == "Pavel Igorevich KOROLENKO" and person.entity_type == "individual"
    assert ("Pasha KOROLENKO", "weak") in [(n.text, n.kind) for n in person.names]  # Low quality a.k.a
    assert entries["CHN9006"].countries == ("CN", "HK")  # address countries of every row


def test_uk_file_with_bom_and_crlf_reads_the_same(store, tmp_path):
    assert (DATA / "uk-sanctions-bom-crlf.csv").read_bytes().startswith(codecs.BOM_UTF8)
    assert b"\r\n" in (DATA / "uk-sanctions-bom-crlf.csv").read_bytes()
    store.import_file(DATA / "uk-sanctions.csv", "uk-sanctions", "plain")
    summary = store.import_file(DATA / "uk-sanctions-bom-crlf.csv", "uk-sanctions", "bom")
    assert summary.file_date == "2026-12-01"
    plain = [(e.entry_id, e.name, e.names, e.details) for e in store.entries("plain")]
    bom = [(e.entry_id, e.name, e.names, e.details) for e in store.entries("bom")]
    assert plain == bom


def test_uk_bad_rows_are_reported_by_line_and_the_rest_imported(store):
    summary = store.import_file(DATA / "uk-sanctions-bad-rows.csv", "uk-sanctions")
    assert [(s.row, s.reason) for s in summary.skipped] == [
        (4, "no Unique ID"),
        (5, "has 8 fields, the header has 58"),
        (6, "no name (Name 1 to Name 6 are empty)"),
    ]
    assert summary.entries == 3
    assert any("line 7" in note and "Nickname" in note for note in summary.notes)
    odd = entries_by_id(store, "uk-sanctions")["RUS9102"]
    assert odd.name == "ODD NAME TYPE LLC"  # kept, its unknown name type read as an alias
    assert store.skipped_rows("uk-sanctions")[0] == wl.SkippedRow(4, "no Unique ID")


def test_uk_header_without_a_needed_column_is_refused_naming_it(store):
    with pytest.raises(WatchlistFormatError, match="no 'Name type' column"):
        store.import_file(DATA / "uk-sanctions-missing-column.csv", "uk-sanctions")
    assert store.lists() == []


def test_uk_without_report_date_line_and_with_a_wrong_first_line(store, tmp_path):
    text = (DATA / "uk-sanctions.csv").read_text(encoding="utf-8")
    headerless = tmp_path / "no-date.csv"
    headerless.write_text(text.split("\n", 1)[1], encoding="utf-8")
    summary = store.import_file(headerless, "uk-sanctions")
    assert summary.file_date is None and summary.entries == 6
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("hello,world\n1,2\n", encoding="utf-8")
    with pytest.raises(
        WatchlistFormatError, match="neither a 'Report Date:' line nor the UK Sanctions List header"
    ):
        store.import_file(garbage, "uk-sanctions")


def test_a_file_imported_in_the_wrong_format_gets_a_hint(store):
    with pytest.raises(WatchlistFormatError, match="use --format us-csl"):
        store.import_file(DATA / "us-csl.csv", "uk-sanctions")
    with pytest.raises(WatchlistFormatError, match="use --format uk-sanctions"):
        store.import_file(DATA / "uk-sanctions.csv", "csv")


# -- US Consolidated Screening List --------------------------------------------------------------
def test_us_csl_entries_keep_commerce_rows_whose_type_is_empty(store):
    summary = store.import_file(DATA / "us-csl.csv", "us-csl")
    assert summary.entries == 13 and summary.file_date is None
    assert any("1 vessels" in note for note in summary.notes)
    entries = {e.name: e for e in store.entries("us-csl")}
    eiap = entries["Eastern Institute of Aerospace Propulsion (EIAP)"]
    assert eiap.entity_type == ""  # Entity List rows have an empty type: kept, type unstated
    assert eiap.details["list_code"] == "EL" and eiap.details["list_kind"] == "export-control"
    assert eiap.details["federal_register_notice"] == ["88 FR 12345", "89 FR 67890"]
    assert eiap.details["license_policy"] == "Presumption of denial."
    assert eiap.listed_on == "2023-03-02" and eiap.countries == ("CN",)
    assert names_of(eiap, "acronym") == ["EIAP"]
    assert "Eastern Propulsion Institute No. 7" in names_of(eiap)  # the last alias lost its "and "
    assert not any(name.startswith("and ") for e in entries.values() for name in names_of(e))
    karavan = entries["KARAVAN PRECISION INSTRUMENTS LLC"]
    assert karavan.entity_type == "organisation" and karavan.details["list_kind"] == "sanctions"
    assert karavan.details["entity_number"] == "90001" and karavan.risk_level == "sanctioned"
    assert entries["PETROVSKY, Ivan Sergeevich"].entity_type == "individual"


def test_us_csl_names_lose_their_tails_and_give_their_embedded_names(store):
    store.import_file(DATA / "us-csl.csv", "us-csl")
    entries = {e.entry_id[:4]: e for e in store.entries("us-csl")}
    coastal = entries["f607"]  # "...; and any successor, sub-unit, or subsidiary thereof"
    assert coastal.name.endswith("subsidiary thereof")  # the entry as the list spells it
    assert names_of(coastal, "primary") == ["Coastal Star Trading Company"]
    sunrise = entries["c3d4"]  # "X (SMG 21).  Subordinate Institution - Sunrise Photonics"
    assert names_of(sunrise, "primary") == ["Sunrise Microwave Group Corporation 21st Research Institute"]
    assert {"SMG 21", "Sunrise Photonics", "SMRI"} <= set(names_of(sunrise))
    lotus = entries["d4e5"]  # "(Hong Kong)" is where it is, not a name
    assert "Lotus Harbour Trading Co., Ltd" in names_of(lotus) and "Hong Kong" not in names_of(lotus)
    assert lotus.countries == ("HK",)
    pacific = entries["3d4e"]  # "[aka A, aka B]"
    assert {"Pacific Tech Supply", "Great Wall Components Trading"} <= set(names_of(pacific, "alias"))


def test_us_csl_with_bom_and_crlf_reads_the_same(store):
    store.import_file(DATA / "us-csl.csv", "us-csl", "plain")
    store.import_file(DATA / "us-csl-bom-crlf.csv", "us-csl", "bom")
    assert [(e.name, e.names) for e in store.entries("plain")] == [
        (e.name, e.names) for e in store.entries("bom")
    ]


def test_us_csl_bad_rows_and_missing_column(store):
    summary = store.import_file(DATA / "us-csl-bad-rows.csv", "us-csl")
    assert [(s.row, s.reason) for s in summary.skipped] == [
        (3, "no _id"),
        (4, "has 30 fields, the header has 29"),
        (5, "no name"),
        (6, "the same _id as line 2"),
    ]
    assert summary.entries == 2
    with pytest.raises(WatchlistFormatError, match="no 'alt_names' column"):
        store.import_file(DATA / "us-csl-missing-column.csv", "us-csl")


# -- institution CSV -----------------------------------------------------------------------------
def test_institution_csv(store):
    summary = store.import_file(DATA / "institutions.csv", "csv", "ours")
    assert summary.file_date == "2026-11-20" and summary.entries == 3
    entries = entries_by_id(store, "ours")
    polar = entries["polar"]
    assert polar.countries == ("RU",) and polar.risk_level == "very high"
    assert names_of(polar, "acronym") == ["PIH"] and names_of(polar, "former") == [
        "Arctic Gas Dynamics Laboratory"
    ]
    assert polar.details["source_date"] == "2026-11-01" and polar.source_url == "https://example.org/polar"
    assert entries["lakeside"].risk_level == "high"  # "High" in the file
    assert entries["lakeside"].entity_type == "organisation"  # type left empty
    assert "Lakeside Marine Univ." in names_of(entries["lakeside"], "alias")


def test_institution_csv_bad_rows_missing_column_and_encoding(store, tmp_path):
    summary = store.import_file(DATA / "institutions-bad-rows.csv", "csv")
    assert [s.row for s in summary.skipped] == [5, 6, 7, 8]
    reasons = [s.reason for s in summary.skipped]
    assert reasons[0] == "no name" and "'extreme' is not one of very high" in reasons[1]
    assert "not an http(s) address" in reasons[2] and "not a date (YYYY-MM-DD)" in reasons[3]
    assert summary.entries == 2
    with pytest.raises(WatchlistFormatError, match="no 'risk_level' column"):
        store.import_file(DATA / "institutions-missing-column.csv", "csv")
    with pytest.raises(WatchlistFormatError, match="not UTF-8 text .*save the file as CSV UTF-8"):
        store.import_file(DATA / "institutions-latin1.csv", "csv")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes((DATA / "institutions.csv").read_text(encoding="utf-8").encode("utf-16"))
    assert store.import_file(utf16, "csv", "utf16").entries == 3
    workbook = tmp_path / "list.csv"
    workbook.write_bytes(b"PK\x03\x04rest of a zip file")
    with pytest.raises(WatchlistFormatError, match="spreadsheet workbook"):
        store.import_file(workbook, "csv")
    with pytest.raises(WatchlistError, match="no such file"):
        store.import_file(tmp_path / "missing.csv", "csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(WatchlistFormatError, match="no header"):
        store.import_file(empty, "csv")


def test_header_names_are_read_case_blind_with_spaces(store, tmp_path):
    path = tmp_path / "spaced.csv"
    path.write_text(
        "Name,Aliases,Country,Risk Level,Reason,Source URL\nSome Institute of Optics,SIO,CN,high,test,\n",
        encoding="utf-8",
    )
    entry = next(store.entries() if store.import_file(path, "csv") else iter(()))
    assert entry.name == "Some Institute of Optics" and names_of(entry, "acronym") == ["SIO"]


# -- the store: atomic replace, remove, names ----------------------------------------------------
def test_importing_again_replaces_the_list(store):
    store.import_file(DATA / "us-csl.csv", "us-csl", "lists")
    summary = store.import_file(DATA / "uk-sanctions.csv", "uk-sanctions", "lists")
    assert summary.replaced is not None and summary.replaced.entries == 13
    assert [e.entry_id for e in store.entries("lists")][0] == "RUS9001"
    assert store.get_list("lists").format == "uk-sanctions"


def test_a_failed_import_leaves_the_previous_list_as_it_was(store):
    store.import_file(DATA / "us-csl.csv", "us-csl")
    before = [(e.entry_id, e.names) for e in store.entries("us-csl")]
    with pytest.raises(WatchlistFormatError):
        store.import_file(DATA / "us-csl-missing-column.csv", "us-csl")
    assert [(e.entry_id, e.names) for e in store.entries("us-csl")] == before
    assert store.get_list("us-csl").entries == 13


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_import_interrupted_while_writing_leaves_the_previous_list(store, monkeypatch, failure):
    store.import_file(DATA / "us-csl.csv", "us-csl")
    before = [(e.entry_id, e.names) for e in store.entries("us-csl")]
    info = store.get_list("us-csl")

    def fail(conn, rows):  # the entries are written; the names fail
        raise failure

    monkeypatch.setattr(wl, "_insert_names", fail)
    with pytest.raises(type(failure)):
        store.import_file(DATA / "uk-sanctions.csv", "uk-sanctions", "us-csl")
    monkeypatch.undo()
    assert [(e.entry_id, e.names) for e in store.entries("us-csl")] == before
    assert store.get_list("us-csl") == info
    reopened = WatchlistStore(store.path)  # and on disk
    assert reopened.get_list("us-csl") == info
    reopened.close()


def test_remove_and_unknown_lists(store):
    store.import_file(DATA / "us-csl.csv", "us-csl")
    assert store.remove("US-CSL").name == "us-csl"
    assert store.lists() == [] and list(store.entries()) == []
    with pytest.raises(UnknownListError, match="no list named 'us-csl'"):
        store.remove("us-csl")


@pytest.mark.parametrize("name", ["has space", "../up", "-dash", "x" * 65])
def test_list_names_must_be_short_slugs(store, name):
    with pytest.raises(WatchlistError, match="list name"):
        store.import_file(DATA / "us-csl.csv", "us-csl", name)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "watchlists.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(WatchlistError, match="not a watchlist database"):
        WatchlistStore(path)


def test_unknown_format(store):
    with pytest.raises(WatchlistFormatError, match="unknown format 'xml'"):
        store.import_file(DATA / "us-csl.csv", "xml")


# -- the starter list ------------------------------------------------------------------------------
def test_starter_list_is_labelled_and_every_entry_is_sourced(store):
    head = STARTER.read_text(encoding="utf-8").splitlines()[:3]
    assert "STARTER" in head[0] and "keep it current" in head[1] and head[2] == "# date: 2026-12-01"
    summary = store.import_file(STARTER, "csv", "starter")
    assert not summary.skipped and not summary.notes and summary.entries >= 20
    entries = list(store.entries("starter"))
    assert SEVEN_SONS <= {e.name for e in entries}
    for entry in entries:
        assert entry.reason and entry.source_url.startswith("http") and entry.details["source_date"]
        assert entry.risk_level in ("very high", "high") and len(entry.countries[0]) == 2
    acronyms = {n.text for e in entries for n in e.names if n.kind == "acronym"}
    assert {"HIT", "NUDT", "BUAA", "NPU", "NWPU", "NUAA", "NJUST", "MIPT", "BIT", "HEU"} <= acronyms


def test_starter_is_imported_on_first_use_and_again_when_the_file_changes(store, tmp_path):
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "starter.csv").write_bytes(STARTER.read_bytes())
    assert ensure_starter(store, folder).entries >= 20
    assert ensure_starter(store, folder) is None  # unchanged: not imported again
    (folder / "starter.csv").write_text(
        STARTER.read_text(encoding="utf-8")
        + "extra,Extra Test Institute,,,,CN,,high,test,https://example.org,,\n",
        encoding="utf-8",
    )
    again = ensure_starter(store, folder)
    assert again is not None and again.replaced is not None
    assert (
        store.get_list("starter").sha256 == hashlib.sha256((folder / "starter.csv").read_bytes()).hexdigest()
    )


def test_a_removed_starter_stays_removed_until_imported_by_hand(store):
    folder = STARTER.parent
    ensure_starter(store, folder)
    store.remove("starter")
    assert store.starter_removed() and ensure_starter(store, folder) is None
    store.import_file(STARTER, "csv", "starter")
    assert not store.starter_removed()


def test_load_matcher_imports_the_starter_and_can_be_told_not_to(tmp_path):
    base = {"paths": {"watchlist_db": str(tmp_path / "w.db"), "watchlists_dir": str(STARTER.parent)}}
    matcher = load_matcher(config_from_dict(base))
    assert [info.name for info in matcher.lists] == ["starter"]
    assert matcher.search("Harbin Institute of Technology")[0].strength == "match"
    off = config_from_dict({**base, "paths": {**base["paths"], "watchlist_db": str(tmp_path / "x.db")},
                            "screening": {"starter_list": False}})  # fmt: skip
    assert len(load_matcher(off)) == 0


# -- staleness -------------------------------------------------------------------------------------
def test_a_list_is_stale_when_its_import_or_its_file_date_is_old():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    fresh = ListInfo("a", "csv", "a.csv", "", "2026-11-25", "2026-11-30T10:00:00+00:00", 1, 0, 0)
    old_file = ListInfo("b", "csv", "b.csv", "", "2026-09-01", "2026-11-30T10:00:00+00:00", 1, 0, 0)
    old_import = ListInfo("c", "us-csl", "c.csv", "", None, "2026-10-01T10:00:00+00:00", 1, 0, 0)
    assert not fresh.is_stale(30, now)
    assert old_file.is_stale(30, now) and old_file.age_days(now) == 91
    assert old_import.is_stale(30, now)
    warnings = list_warnings([fresh, old_file, old_import], 30, now)
    assert len(warnings) == 2 and "list 'b' is 91 days old" in warnings[0]


def test_candidates_from_a_stale_list_say_so(tmp_path):
    store = WatchlistStore(tmp_path / "w.db")
    store.import_file(STARTER, "csv", "starter")
    later = datetime.now(UTC) + timedelta(days=90)
    matcher = Matcher(store.entries(), store.lists(), ScreeningSettings(max_list_age_days=30), now=later)
    store.close()
    assert matcher.search("HIT")[0].stale is True
    assert len(matcher.warnings()) == 1 and "list 'starter' is" in matcher.warnings()[0]
    fresh = Matcher(matcher.entries, matcher.lists, ScreeningSettings(max_list_age_days=365))
    assert fresh.search("HIT")[0].stale is False


# -- settings --------------------------------------------------------------------------------------
def test_screening_thresholds_are_checked():
    with pytest.raises(ValueError, match="match_threshold"):
        ScreeningSettings(match_threshold=0.5, possible_threshold=0.7)
    with pytest.raises(ConfigError, match="screening.match_threshold"):
        config_from_dict({"screening": {"match_threshold": 1.5}})
    with pytest.raises(ConfigError, match="screening.max_list_age_days"):
        config_from_dict({"screening": {"max_list_age_days": 0}})


# -- normalisation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Harbin Inst. of Tech.", "harbin institute technology"),
        ("University of Nanjing", "university nanjing"),
        ("Nanjing Univ. of Sci. & Tech.", "nanjing university science technology"),
        ("Zhèjiāng Dàxué", "zhejiang university"),  # diacritics; daxue is "university"
        ("Shenzhen Bright Star Electronics Co., Ltd", "shenzhen bright star electronic"),  # legal form
        ("Academy of Military Medical Sciences", "academy military medical science"),  # plurals
        ("National University of Defence Technology", "national university defense technology"),
        ("N.U.D.T.", "nudt"),
        ("Harbin Univeristy", "harbin university"),  # a misspelt organisation word is corrected
        ("Xi'an Jiaotong", "xian jiaotong"),
        ("Peking University", "beijing university"),  # older romanisation
    ],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_transliteration_of_other_scripts():
    assert normalise("Московский физико-технический институт") == "moskovskiy fiziko tekhnicheskiy institute"
    assert wl.to_ascii("哈尔滨工业大学").lower() == "haerbingongyedaxue"
    assert normalise("مرکز تحقیقات هوافضای تهران")  # Persian gives ASCII words too


@pytest.mark.parametrize(
    ("text", "code"),
    [("Russia", "RU"), ("ru", "RU"), ("UK", "GB"), ("United Kingdom", "GB"), ("Iran", "IR"),
     ("People's Republic of China", "CN"), ("Hong Kong", "HK"), ("Narnia", None), ("", None)],
)  # fmt: skip
def test_normalise_country(text, code):
    assert normalise_country(text) == code


def test_acronym_shapes():
    assert wl.is_acronym("HIT") and wl.is_acronym("NUDT") and wl.is_acronym("CETC")
    assert not wl.is_acronym("Hit") and not wl.is_acronym("H") and not wl.is_acronym("SKOLKOVOXX")


# -- matching: hand-checked cases -----------------------------------------------------------------
def best(matcher: Matcher, query: str, country: str | None = None) -> wl.Candidate | None:
    found = matcher.search(query, country)
    return found[0] if found else None


@pytest.mark.parametrize(
    ("query", "entry"),
    [
        ("HIT", "Harbin Institute of Technology"),
        ("NUDT", "National University of Defense Technology"),
        ("Harbin Inst. of Tech.", "Harbin Institute of Technology"),
        ("Harbin Technology Institute", "Harbin Institute of Technology"),  # word order
        ("Harbin Institute Technology", "Harbin Institute of Technology"),  # missing "of"
        ("Beijing Univ. of Aeronautics & Astronautics", "Beihang University"),  # alias
        ("Beihang University (BUAA)", "Beihang University"),  # parenthesised acronym
        ("Nortwestern Polytechnical University", "Northwestern Polytechnical University"),  # misspelt
        ("Moskovskii fiziko-tekhnicheskii institut", "Moscow Institute of Physics and Technology"),
        ("哈尔滨工业大学", "Harbin Institute of Technology"),
        ("Haerbingongyedaxue", "Harbin Institute of Technology"),  # pinyin without spaces
        ("Aryamehr University of Technology", "Sharif University of Technology"),  # former name
        ("Skoltech", "Skolkovo Institute of Science and Technology"),
        ("Tehran Aerospace Research Center", "TEHRAN AEROSPACE RESEARCH CENTRE"),
        ("Karavan Precision Instruments", "KARAVAN PRECISION INSTRUMENTS LLC"),
    ],
)
def test_listed_organisations_match_under_variants(matcher, query, entry):
    found = best(matcher, query)
    assert found is not None and found.entry == entry and found.strength == "match", found


@pytest.mark.parametrize(
    "query",
    [
        "Harbin Medical University",  # shares "Harbin" with HIT and HEU, not their distinctive words
        "Northwestern University",  # lacks "Polytechnical"
        "Nanjing University",  # lacks "Aeronautics and Astronautics" / "Science and Technology"
        "Hitachi",
        "University of Manchester",
        "ETH Zurich",
        "Imperial College London",
        "Harbin",
    ],
)
def test_hard_negatives_are_not_even_possible(matcher, query):
    assert matcher.search(query) == []


def test_distinctive_words_on_one_side_lower_the_score(matcher):
    [near] = [c for c in matcher.search("Harbin Medical University", floor=0.3) if "Technology" in c.entry]
    assert near.score == pytest.approx(0.5) and near.strength == "below"
    assert "only in the query: medical" in near.explanation
    assert "only in the list name:" in near.explanation
    npu = matcher.search("Northwestern University", floor=0.3)[0]
    assert npu.entry == "Northwestern Polytechnical University" and npu.score < 0.72


def test_acronyms_match_exactly_only(matcher):
    assert matcher.search("HITT") == [] and matcher.search("BUA") == []
    assert matcher.search("Hit") == [] or matcher.search("Hit")[0].entry == "Harbin Institute of Technology"
    assert matcher.search("HI") == [] and matcher.search("NU") == []  # two letters: nothing fuzzy
    [hit] = matcher.search("HIT")
    assert hit.matched_kind == "acronym" and "acronyms match exactly only" in hit.explanation


def test_a_different_country_lowers_the_score_without_a_veto(matcher):
    same = best(matcher, "Harbin Institute of Technology", "China")
    other = best(matcher, "Harbin Institute of Technology", "GB")
    assert same.strength == "match" and "country CN matches" in same.explanation
    assert other.entry == same.entry and other.strength == "possible"
    assert other.score == pytest.approx(wl.COUNTRY_MISMATCH)
    assert "country differs (query GB, list CN)" in other.explanation
    unknown = best(matcher, "Harbin Institute of Technology", "Atlantis")
    assert unknown.strength == "match" and "not recognised" in unknown.explanation


def test_different_organisation_types_give_a_possible_match(matcher):
    found = best(matcher, "Beijing University of Technology")
    assert found.entry == "Beijing Institute of Technology" and found.strength == "possible"
    assert "organisation type differs" in found.explanation


def test_a_weak_alias_is_at_most_possible(matcher):
    found = best(matcher, "Pasha Korolenko")
    assert found.matched_kind == "weak" and found.strength == "possible" and found.score == 1.0


def test_entity_type_filter_keeps_entries_whose_type_is_not_stated(matcher):
    assert matcher.search("Ivan Petrovsky")[0].entity_type == "individual"
    assert matcher.search("Ivan Petrovsky", entity_types={"organisation"}) == []
    eiap = matcher.search("Eastern Institute of Aerospace Propulsion", entity_types={"organisation"})
    assert eiap and eiap[0].entity_type == ""


def test_candidate_record(matcher):
    found = best(matcher, "Harbin Inst. of Tech.")
    assert found.list_name == "starter" and found.country == "CN" and found.countries == ("CN",)
    assert found.source_url.startswith("https://unitracker.aspi.org.au/")
    assert found.risk_level == "very high" and found.details["list_kind"] == "institution"
    assert found.list_format == "csv" and found.query == "Harbin Inst. of Tech."
    assert "words in common: harbin, technology" in found.explanation
    record = found.to_dict()
    for key in ("entry", "list", "matched_name", "score", "strength", "source_url", "details", "explanation"):
        assert key in record
    assert record["list"] == "starter" and record["strength"] == "match"


def test_candidates_from_published_lists_carry_their_details(matcher):
    found = best(matcher, "Eastern Institute of Aerospace Propulsion")
    assert found.entry == "Eastern Institute of Aerospace Propulsion (EIAP)"
    assert found.details["list_code"] == "EL" and found.details["license_policy"] == "Presumption of denial."
    uk = best(matcher, "NIAO")
    assert uk.list_name == "uk-sanctions" and uk.details["regime"].startswith("The Russia")


def test_indexed_search_finds_what_a_full_scan_finds(matcher):
    queries = ["Harbin Inst. of Tech.", "Nanjng Univ of Aeronautics", "Skolkovo Inst of Science",
               "Tsinghau University", "Lotus Harbour", "Sharif Univ", "Novosibirsk Optics"]  # fmt: skip
    for query in queries:
        name = wl._Name.of(query)
        scan = max(
            (wl._score(name, ref.name).score, ref.entry) for ref in matcher._refs if ref.kind != "acronym"
        )
        found = matcher.search(query, floor=0.3)
        if scan[0] >= 0.3:
            assert found and found[0].score == pytest.approx(scan[0], abs=1e-3), query


def test_empty_and_meaningless_queries(matcher):
    assert matcher.search("") == [] and matcher.search("   ") == [] and matcher.search("the of and") == []


# -- find_mentions ---------------------------------------------------------------------------------
def test_find_mentions_in_free_text(matcher):
    text = "Can I share our code with Harbin Institute of Technology and the University of Manchester?"
    [found] = matcher.find_mentions(text)
    assert found.entry == "Harbin Institute of Technology" and found.strength == "match"
    assert text[found.span[0] : found.span[1]] == "Harbin Institute of Technology" == found.query


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("A professor from HIT wants to visit our lab.", "Harbin Institute of Technology"),
        ("Researchers at Beihang want our CFD code", "Beihang University"),
        ("We got an email from 哈尔滨工业大学 about a PhD student.", "Harbin Institute of Technology"),
        ("prescreen the Nanjing Univ. of Aeronautics & Astronautics please",
         "Nanjing University of Aeronautics and Astronautics"),
        ("paid by the National Univ. of Defence Technology", "National University of Defense Technology"),
        ("Can Skoltech staff get remote access?", "Skolkovo Institute of Science and Technology"),
    ],
)  # fmt: skip
def test_find_mentions_finds_listed_names(matcher, text, entry):
    found = matcher.find_mentions(text)
    assert found and found[0].entry == entry and found[0].strength == "match"


@pytest.mark.parametrize(
    "text",
    [
        "We hit a problem with our Hitachi microscope.",  # acronyms only in capitals
        "Is it ok to collaborate with Harbin Medical University on cancer research?",
        "I have a joint paper with Northwestern University and Nanjing University.",
        "What is the Entity List and why does it matter?",
        "I met colleagues from ETH Zurich at a workshop in Harbin.",
    ],
)
def test_find_mentions_ignores_look_alikes(matcher, text):
    assert matcher.find_mentions(text) == []


def test_find_mentions_reports_the_whole_name_on_a_tie(matcher):
    [found] = matcher.find_mentions(
        "Our partner is the Univ. of Electronic Science & Technology of China (UESTC)."
    )
    assert found.query == "Univ. of Electronic Science & Technology of China"


# -- the labelled set --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["matching.yaml", "matching-holdout.yaml"])
def test_the_labelled_sets_catch_every_listed_organisation_and_match_no_unlisted_one(name):
    report = evaluate_matching(REPO / "eval" / name)
    assert len(report.outcomes) >= (60 if name == "matching.yaml" else 20)
    assert report.count("false match") == 0 and report.count("wrong match") == 0
    assert report.caught == 1.0 and report.match_precision == 1.0


def test_evaluation_counts_verdicts(tmp_path):
    set_file = tmp_path / "eval" / "set.yaml"
    set_file.parent.mkdir()
    (tmp_path / "list.csv").write_bytes((DATA / "institutions.csv").read_bytes())
    set_file.write_text(
        "lists: [{name: t, format: csv, file: list.csv}]\n"
        "screenings:\n"
        "  - {id: a, query: PIH, expect: Polar Institute of Hypersonics}\n"
        "  - {id: b, query: Polar Institute of Hypersonics, country: GB,"
        " expect: Polar Institute of Hypersonics}\n"
        "  - {id: c, query: Quite Unrelated Trading, expect: Polar Institute of Hypersonics}\n"
        "  - {id: d, query: Lakeside University of Marine Engineering, expect: null}\n"
        "  - {id: e, query: Somewhere Else, expect: null}\n",
        encoding="utf-8",
    )
    report = evaluate_matching(set_file)
    assert [o.verdict for o in report.outcomes] == [
        "match",
        "possible",
        "missed",
        "false match",
        "negative clean",
    ]
    assert report.match_precision == 0.5 and report.match_recall == pytest.approx(1 / 3)
    assert report.caught == pytest.approx(2 / 3) and report.possible_count == 1
    assert [e["id"] for e in report.to_dict()["errors"]] == ["c", "d"]
    sweep = {row["threshold"]: row for row in report.sweep([0.5, 0.9])}
    assert sweep[0.5]["recall"] == pytest.approx(2 / 3) and sweep[0.9]["false_matches"] == 1


def test_a_labelled_set_with_mistakes_is_refused(tmp_path):
    (tmp_path / "list.csv").write_bytes((DATA / "institutions.csv").read_bytes())
    (tmp_path / "eval").mkdir()
    bad = tmp_path / "eval" / "bad.yaml"
    bad.write_text(
        "lists: [{name: t, format: csv, file: list.csv}]\nscreenings:\n  - {id: a, query: X, expect: Nope}\n"
    )
    with pytest.raises(WatchlistError, match="'Nope' is on none of the lists"):
        evaluate_matching(bad)
    bad.write_text("screenings:\n  - {id: a, query: X}\n")
    with pytest.raises(WatchlistError, match="needs a query and an expect"):
        evaluate_matching(bad)
    bad.write_text("screenings:\n  - {id: a, query: X, expect: null}\n  - {id: a, query: Y, expect: null}\n")
    with pytest.raises(WatchlistError, match="used twice"):
        evaluate_matching(bad)
