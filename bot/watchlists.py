"""Watchlists: the published screening lists and the institution's own, and a fuzzy name matcher.

Imported lists live in a database of their own (``paths.watchlist_db``), one import per list
name; importing under the same name again replaces the earlier import in one transaction, so a
failed or interrupted import leaves the previous list as it was. Three formats are read:

- ``uk-sanctions``: the FCDO UK Sanctions List CSV (a ``Report Date:`` line, then the header; one
  row per name, grouped by ``Unique ID``; ``Name type`` in any case, empty meaning primary);
- ``us-csl``: the ITA Consolidated Screening List CSV (every field quoted; lists joined with
  ``"; "``, the last Entity List alias keeping a leading ``"and "``; ``type`` empty on Commerce
  and State rows, so those rows are kept with their type unstated);
- ``csv``: an institution list, columns documented in ``knowledge/watchlists/README.md``.

Individuals and organisations are kept, each with its entity type; ships and aircraft are left
out (they are not research partners). ``Matcher`` is built once from the store and answers
``search(name)`` (screening one name) and ``find_mentions(text)`` (organisations named in free
text) with ``Candidate`` records: the entry as its list spells it, the name that matched, a
score from 0 to 1, a strength (``match`` or ``possible``) and an explanation of how it matched.

How names are compared (``normalise``, ``Matcher``):

- Text is transliterated to ASCII (anyascii: diacritics, Cyrillic, Chinese pinyin, Persian),
  lower-cased; ``&`` reads as "and"; punctuation, "of", "the" and legal forms (Co. Ltd, LLC, JSC)
  go; abbreviations and spellings are folded ("Univ." = university, "Inst." = institute,
  defence = defense, plural endings), and misspelt organisation words are corrected.
- Organisation-type words (university, institute, college, academy...) are kept apart: they
  never make two names similar, and two names whose type words differ ("University" and
  "Institute") score lower. Every other word is distinctive, descriptive ones too
  ("technology", "aeronautics", "polytechnic", "medical"): a distinctive word on one side only
  lowers the score in proportion (a weighted Dice overlap of the words, each pair of words
  compared with rapidfuzz), so "Harbin Medical University" is far from "Harbin Institute of
  Technology". Words in any order ("University of X" = "X University").
- Acronyms match acronyms exactly, never fuzzily; a query of four characters or fewer, or in
  capitals, is read as an acronym. Names written without spaces (pinyin such as "Haerbin
  Gongye Daxue" run together) are compared letter by letter.
- A given country that differs from the entry's lowers the score (``COUNTRY_MISMATCH``).

``details`` keys: ``list`` (the list's label), ``list_code`` (EL, SDN, UKSL, institution...),
``list_kind`` (``sanctions``, ``export-control`` or ``institution``), and per format the
programme, licence requirement and policy, dates designated and updated, Federal Register
notices, regime, sanctions imposed and source date. Partner names are never logged.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import math
import re
import sqlite3
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pycountry
from anyascii import anyascii
from rapidfuzz import fuzz, process
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from bot.config import Config, ScreeningSettings
from bot.database import iso_utc, secure_file

logger = logging.getLogger(__name__)

FORMATS = ("uk-sanctions", "us-csl", "csv")
STARTER_LIST = "starter"
STARTER_FILE = "starter.csv"
# A different country multiplies the score by this: a qualifier, never a veto.
COUNTRY_MISMATCH = 0.8
# Both names carry organisation-type words and share none ("University" / "Institute").
TYPE_MISMATCH = 0.8
# Neither of the distinctive proper-name words of one side is found on the other.
NO_COMMON_NAME_WORD = 0.6
# A comparison of names letter by letter (spaces ignored) counts from this similarity.
COMPACT_MIN = 0.9
# Candidate names scored per query, at most (the best by word overlap, from the index).
MAX_CANDIDATES = 300
MAX_NAME_CHARS = 500
UK_LIST_URL = "https://www.gov.uk/government/publications/the-uk-sanctions-list"

migrations = Migrations("trbot-watchlists")


@migrations()
def m001_create_tables(db: Database) -> None:
    db["lists"].create(
        {
            "name": str,
            "format": str,
            "source_file": str,
            "sha256": str,
            "file_date": str,
            "imported_at": str,
            "entries": int,
            "aliases": int,
            "skipped": int,
            "skipped_rows": str,
        },
        pk="name",
    )
    db["entries"].create(
        {
            "id": int,
            "list": str,
            "entry_id": str,
            "name": str,
            "entity_type": str,
            "countries": str,
            "programme": str,
            "risk_level": str,
            "reason": str,
            "source_url": str,
            "details": str,
            "listed_on": str,
            "updated_on": str,
        },
        pk="id",
    )
    db["entries"].create_index(["list"])
    db["names"].create(
        {"id": int, "entry": int, "list": str, "name": str, "kind": str, "normalised": str}, pk="id"
    )
    db["names"].create_index(["list"])
    db["names"].create_index(["entry"])
    db["settings"].create({"key": str, "value": str}, pk="key")


# -- errors ----------------------------------------------------------------------------------------
class WatchlistError(Exception):
    """A watchlist cannot be imported, found or read; the message is safe to show."""


class WatchlistFormatError(WatchlistError):
    """A file is not in the format it was imported as (encoding, header, layout)."""


class UnknownListError(WatchlistError):
    """No list of that name has been imported."""


# -- records ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkippedRow:
    """A row left out of an import: ``row`` is the file's line number where the row starts."""

    row: int
    reason: str


@dataclass(frozen=True)
class ListInfo:
    """One imported list: where it came from, when, and how much it holds."""

    name: str
    format: str
    source_file: str
    sha256: str
    file_date: str | None
    imported_at: str
    entries: int
    aliases: int
    skipped: int

    def age_days(self, now: datetime | None = None) -> int:
        """Days since the older of the import and the file's own date (its data is that old)."""
        now = now or datetime.now(UTC)
        moments = [_parse_iso(self.imported_at)]
        if self.file_date:
            moments.append(datetime.combine(date.fromisoformat(self.file_date), datetime.min.time(), UTC))
        return max(0, (now - min(moments)).days)

    def is_stale(self, max_age_days: int, now: datetime | None = None) -> bool:
        return self.age_days(now) > max_age_days

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ImportSummary:
    """What one import did: entries and aliases stored, rows skipped (with reasons), notes."""

    list_name: str
    format: str
    source_file: str
    file_date: str | None
    entries: int
    aliases: int
    skipped: tuple[SkippedRow, ...]
    notes: tuple[str, ...]
    replaced: ListInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "format": self.format,
            "source_file": self.source_file,
            "file_date": self.file_date,
            "entries": self.entries,
            "aliases": self.aliases,
            "skipped": [{"row": s.row, "reason": s.reason} for s in self.skipped],
            "notes": list(self.notes),
            "replaced": self.replaced.to_dict() if self.replaced else None,
        }


@dataclass(frozen=True)
class ListName:
    """One name of an entry: ``kind`` is primary, alias, acronym, former, non-latin or weak."""

    text: str
    kind: str


@dataclass(frozen=True)
class Entry:
    """One listed party, as its list has it (``name`` is the primary name exactly as spelt)."""

    list_name: str
    entry_id: str
    name: str
    entity_type: str  # organisation, individual, or "" where the list does not say
    countries: tuple[str, ...]  # ISO 3166 alpha-2 codes where known, else the list's text
    programme: str
    risk_level: str
    reason: str
    source_url: str
    details: dict[str, Any]
    listed_on: str | None
    updated_on: str | None
    names: tuple[ListName, ...]


@dataclass(frozen=True)
class Candidate:
    """A list entry that may be the organisation asked about, and why.

    ``entry`` is the primary name as its list spells it; ``matched_name`` the name or alias
    that scored best; ``strength`` is ``match``, ``possible`` ("possible match: check") or, only
    when near misses were asked for, ``below``. ``country`` is the entry's first country (an
    ISO code where known). ``query`` is the text that was compared (for ``find_mentions`` the
    words found in the text, at ``span``).
    """

    entry: str
    list_name: str
    matched_name: str
    score: float
    strength: str
    source_url: str
    details: dict[str, Any]
    explanation: str
    country: str
    entry_id: str = ""
    matched_kind: str = ""
    entity_type: str = ""
    risk_level: str = ""
    programme: str = ""
    reason: str = ""
    countries: tuple[str, ...] = ()
    list_format: str = ""
    stale: bool = False
    query: str = ""
    span: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The match object of a screening result (``list`` is the list's name)."""
        return {
            "entry": self.entry,
            "list": self.list_name,
            "matched_name": self.matched_name,
            "score": round(self.score, 3),
            "strength": self.strength,
            "source_url": self.source_url,
            "details": self.details,
            "explanation": self.explanation,
            "country": self.country,
            "countries": list(self.countries),
            "entry_id": self.entry_id,
            "matched_kind": self.matched_kind,
            "entity_type": self.entity_type,
            "risk_level": self.risk_level,
            "programme": self.programme,
            "reason": self.reason,
            "list_format": self.list_format,
            "stale": self.stale,
            "query": self.query,
            "span": list(self.span) if self.span else None,
        }


# -- normalisation ---------------------------------------------------------------------------------
_STOPWORDS = frozenset(
    "of the and for at in on to de la le les del della der die das des di du da do dos y e et und an a"
    " named after imeni im vo".split()
)
_LEGAL_FORMS = frozenset(
    "company co limited ltd llc inc incorporated corporation corp plc llp lp gmbh ag sa sarl srl spa bv nv"
    " oy ab jsc ojsc pjsc cjsc ooo zao oao pao ao fzco fze fzc fzllc pte pty bhd sdn kk stock gongsi youxian"
    " zerenyouxian".split()
)
_TYPE_WORDS = frozenset(
    "university institute college school academy center laboratory faculty department branch campus group"
    " holding institution organization establishment enterprise educational education higher budgetary"
    " autonomous unitary research scientific association society foundation council bureau office agency"
    " administration ministry plant factory work npo npp nii fgup fgbu fgbou fgaou gup division unit"
    " subsidiary affiliate".split()
)
_QUALIFIERS = frozenset(
    "national state federal central people republic international joint public open closed general first"
    " second third new china chinese russia russian iran iranian islamic american usa us uk british united"
    " kingdom pla".split()
)
# Descriptive words are as distinctive as proper names (they tell "Harbin Medical University"
# from "Harbin Institute of Technology"); this set only feeds the explanations and the rule
# that two names must share a proper name when either has one.
_DESCRIPTORS = frozenset(
    "technology technical science engineering aeronautic astronautic aerospace aviation polytechnic medical"
    " defense military physic physical chemical chemistry nuclear electronic electric electrical information"
    " telecommunication post normal agricultural agriculture industrial industry economic economy finance"
    " financial petroleum mining geoscience geology forestry marine ocean maritime naval navy shipbuilding"
    " ship radio optic optical precision instrument mechanical mechanic mathematic computing computer energy"
    " power transport communication space missile weapon rocket propulsion ordnance armament security police"
    " intelligence applied advanced automation material semiconductor microelectronic biotechnology biology"
    " biological health pharmaceutical textile water environment environmental art business management law"
    " language foreign teacher sport".split()
)
_SYNONYMS = {
    **dict.fromkeys(
        "univ universities universitet universidad universidade universita universite universitat"
        " universiteit universitatea uniwersytet daxue".split(),
        "university",
    ),
    **dict.fromkeys("inst institut instituto istituto yanjiusuo".split(), "institute"),
    **dict.fromkeys(
        "tech techn technol technological technologie tecnologia tecnologico technologique tekhnologiy"
        " tekhnologii".split(),
        "technology",
    ),
    **dict.fromkeys("acad academia akademiya academie akademie yanjiuyuan".split(), "academy"),
    **dict.fromkeys(
        "polytechnical polytechnique politecnico politecnica politechnika polytech".split(), "polytechnic"
    ),
    **dict.fromkeys("gosudarstvennyy gosudarstvennyi gosudarstvennyj".split(), "state"),
    **dict.fromkeys("natl natsionalnyy natsionalnyi".split(), "national"),
    **dict.fromkeys("ecole escuela shkola".split(), "school"),
    **dict.fromkeys("centre tsentr ctr".split(), "center"),
    **dict.fromkeys("st ste sankt".split(), "saint"),
    "sci": "science",
    "nauki": "science",
    "eng": "engineering",
    "engg": "engineering",
    "intl": "international",
    "coll": "college",
    "xueyuan": "college",
    "dept": "department",
    "lab": "laboratory",
    "defence": "defense",
    "aeronautical": "aeronautic",
    "astronautical": "astronautic",
    "medicine": "medical",
    "telecom": "telecommunication",
    "organisation": "organization",
    "federalnyy": "federal",
    "mt": "mount",
    # older romanisations of Chinese place names
    "peking": "beijing",
    "nanking": "nanjing",
    "tientsin": "tianjin",
    "canton": "guangzhou",
    "amoy": "xiamen",
    "sian": "xian",
}
_CLASS_TYPE, _CLASS_QUALIFIER, _CLASS_DESCRIPTOR, _CLASS_PROPER = "type", "qualifier", "descriptor", "proper"
_WEIGHTS = {_CLASS_QUALIFIER: 0.5, _CLASS_DESCRIPTOR: 1.0, _CLASS_PROPER: 1.0, _CLASS_TYPE: 1.0}
# Misspelt organisation and descriptive words are corrected against this vocabulary.
_VOCABULARY = sorted(w for w in _TYPE_WORDS | _DESCRIPTORS | set(_SYNONYMS.values()) if len(w) >= 6)

_APOSTROPHES = re.compile(r"['’‘`´]")
_DOTTED = re.compile(r"\b(?:[a-z]\.){2,}")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_PARENS = re.compile(r"\(([^()]*)\)")
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_ACRONYM = re.compile(r"^(?=(?:[^A-Z]*[A-Z]){2})[A-Z0-9][A-Z0-9&\-]{1,7}$")


def to_ascii(text: str) -> str:
    """Compatibility-normalised text, transliterated to ASCII where it is not (anyascii)."""
    text = unicodedata.normalize("NFKC", text)
    return text if text.isascii() else anyascii(text)


@lru_cache(maxsize=200_000)
def normalise(text: str) -> str:
    """The words of a name as the matcher compares them.

    "Harbin Inst. of Tech." -> "harbin institute technology".
    """
    return " ".join(_tokens(text))


def _tokens(text: str) -> list[str]:
    return [token for raw in _raw_words(text) if (token := _canonical(raw)) is not None]


_DROP_APOSTROPHES = str.maketrans("", "", "'’‘`´")


def _raw_words(text: str) -> list[str]:
    text = to_ascii(text).lower().replace("&", " and ").translate(_DROP_APOSTROPHES)
    if "." in text:
        text = _DOTTED.sub(lambda m: m.group(0).replace(".", "") + " ", text)
    return _NON_WORD.sub(" ", text).split()


@lru_cache(maxsize=100_000)
def _canonical(raw: str) -> str | None:
    """One lower-case ASCII word folded to the form the matcher compares; None if it carries no meaning."""
    token = _SYNONYMS.get(raw, raw)
    if token in _STOPWORDS or token in _LEGAL_FORMS:
        return None
    if len(token) > 4 and not token.isdigit():
        if token.endswith("ies"):
            token = token[:-3] + "y"
        elif token.endswith("s") and not token.endswith(("ss", "us", "is")):
            token = token[:-1]
        token = _SYNONYMS.get(token, token)
        if token in _LEGAL_FORMS:
            return None
    if len(token) >= 6 and _token_class(token) == _CLASS_PROPER and not any(c.isdigit() for c in token):
        fixed = process.extractOne(token, _VOCABULARY, scorer=fuzz.ratio, score_cutoff=88)
        if fixed:
            token = fixed[0]
    return token


_CLASS_OF = {
    **dict.fromkeys(_DESCRIPTORS, _CLASS_DESCRIPTOR),
    **dict.fromkeys(_QUALIFIERS, _CLASS_QUALIFIER),
    **dict.fromkeys(_TYPE_WORDS, _CLASS_TYPE),
}


def _token_class(token: str) -> str:
    """type (university, institute...), qualifier (national, state...), descriptor or proper."""
    return _CLASS_OF.get(token, _CLASS_PROPER)


def is_acronym(text: str) -> bool:
    """A name in capitals of 2 to 8 characters without spaces ("HIT", "NUDT", "CETC")."""
    return bool(_ACRONYM.match(text.strip()))


def _compact(text: str) -> str:
    return "".join(_raw_words(text))


@dataclass(frozen=True, slots=True)
class _Name:
    """A name prepared for comparison."""

    text: str
    tokens: tuple[str, ...]
    core: tuple[str, ...]
    weights: tuple[float, ...]
    proper: frozenset[str]
    types: frozenset[str]
    compact: str
    digits: str
    raw_count: int
    core_set: frozenset[str] = frozenset()

    @classmethod
    def of(cls, text: str) -> _Name:
        raw = _raw_words(text)
        tokens = tuple(token for word in raw if (token := _canonical(word)) is not None)
        return cls.from_tokens(text, tokens, "".join(raw), len(raw))

    @classmethod
    def from_tokens(cls, text: str, tokens: tuple[str, ...], compact: str, raw_count: int) -> _Name:
        core: list[str] = []
        weights: list[float] = []
        types: set[str] = set()
        proper: set[str] = set()
        for token in tokens:
            kind = _CLASS_OF.get(token, _CLASS_PROPER)
            if kind == _CLASS_TYPE:
                types.add(token)
                continue
            core.append(token)
            weights.append(_WEIGHTS[kind])
            if kind == _CLASS_PROPER:
                proper.add(token)
        if not core:  # a name of organisation words only ("Research Institute"): compare those
            core, weights, types = list(tokens), [1.0] * len(tokens), set()
        digits = "" if compact.isalpha() else "".join(filter(str.isdigit, compact))
        return cls(text, tokens, tuple(core), tuple(weights), frozenset(proper), frozenset(types), compact,
                   digits, raw_count, frozenset(core))  # fmt: skip


def _token_similarity(a: str, b: str) -> float:
    """How alike two words are (rapidfuzz ratio), 0 below the cut: short words and numbers must be equal."""
    if a == b:
        return 1.0
    shorter = min(len(a), len(b))
    if shorter < 5 or a.isdigit() or b.isdigit():
        return 0.0
    similarity = fuzz.ratio(a, b) / 100.0
    return similarity if similarity >= _token_cutoff(shorter) else 0.0


def _token_cutoff(length: int) -> float:
    """One slip in a short word, two in a long one; run-together names (Chinese place and
    institution names in pinyin) differ in a syllable or two, so those need more."""
    return 0.85 if length <= 7 else 0.80 if length < 12 else 0.90


@dataclass(frozen=True)
class _Score:
    score: float
    method: str  # words, compact or acronym
    matched: tuple[tuple[str, str, float], ...] = ()
    only_query: tuple[str, ...] = ()
    only_name: tuple[str, ...] = ()
    factors: tuple[tuple[str, float], ...] = ()


def _score(query: _Name, name: _Name, cache: dict[tuple[str, str], float] | None = None) -> _Score:
    """A query's similarity to one list name, 0 to 1, with the evidence for the explanation.

    A weighted Dice overlap of the two names' distinctive words, each pair of words compared
    with ``_token_similarity`` and paired best first; then the factors (no proper-name word in
    common, different organisation types); or the letter-by-letter comparison if higher.
    ``cache`` keeps word similarities across the candidates of one query.
    """
    cache = {} if cache is None else cache
    pairs = []
    for i, a in enumerate(query.core):
        for j, b in enumerate(name.core):
            if a == b:
                pairs.append((1.0, i, j))
                continue
            similarity = cache.get((a, b))
            if similarity is None:
                similarity = cache[(a, b)] = _token_similarity(a, b)
            if similarity:
                pairs.append((similarity, i, j))
    pairs.sort(reverse=True)
    used_q: set[int] = set()
    used_n: set[int] = set()
    matched, numerator = [], 0.0
    for similarity, i, j in pairs:
        if i in used_q or j in used_n:
            continue
        used_q.add(i)
        used_n.add(j)
        numerator += similarity * (query.weights[i] + name.weights[j])
        matched.append((query.core[i], name.core[j], similarity))
    denominator = sum(query.weights) + sum(name.weights)
    score = numerator / denominator if denominator else 0.0
    factors = []
    if query.proper or name.proper:
        shared = {q for q, _, _ in matched if q in query.proper} | {
            n for _, n, _ in matched if n in name.proper
        }
        if not shared:
            factors.append(("no proper-name word in common", NO_COMMON_NAME_WORD))
    if query.types and name.types and not query.types & name.types:
        types = f"{'/'.join(sorted(query.types))} vs {'/'.join(sorted(name.types))}"
        factors.append((f"organisation type differs ({types})", TYPE_MISMATCH))
    for _, factor in factors:
        score *= factor
    words = _Score(
        score,
        "words",
        tuple(matched),
        tuple(t for i, t in enumerate(query.core) if i not in used_q),
        tuple(t for j, t in enumerate(name.core) if j not in used_n),
        tuple(factors),
    )
    compact = _compact_score(query, name)
    return compact if compact and compact.score > words.score else words


def _compact_score(query: _Name, name: _Name) -> _Score | None:
    """Names spaced differently ("Haerbingongyedaxue" / "Haerbin Gongye Daxue"), letter by letter."""
    if query.raw_count == name.raw_count or min(len(query.compact), len(name.compact)) < 7:
        return None
    if query.digits != name.digits:
        return None
    similarity = fuzz.ratio(query.compact, name.compact) / 100.0
    return _Score(similarity, "compact") if similarity >= COMPACT_MIN else None


# -- countries -------------------------------------------------------------------------------------
_COUNTRY_ALIASES = {
    "uk": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "usa": "US",
    "united states": "US",
    "united states of america": "US",
    "america": "US",
    "russia": "RU",
    "russian federation": "RU",
    "iran": "IR",
    "china": "CN",
    "prc": "CN",
    "peoples republic of china": "CN",
    "china peoples republic of": "CN",
    "mainland china": "CN",
    "south korea": "KR",
    "korea": "KR",
    "north korea": "KP",
    "dprk": "KP",
    "turkey": "TR",
    "turkiye": "TR",
    "macau": "MO",
    "macao": "MO",
    "hong kong": "HK",
    "taiwan": "TW",
    "syria": "SY",
    "vietnam": "VN",
    "laos": "LA",
    "czech republic": "CZ",
    "uae": "AE",
    "burma": "MM",
    "ivory coast": "CI",
    "kosovo": "XK",
    "west bank": "PS",
    "gaza": "PS",
    "palestine": "PS",
    "moldova": "MD",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
}


@lru_cache(maxsize=4096)
def normalise_country(text: str | None) -> str | None:
    """An ISO 3166 alpha-2 code for a country name or code ("Russia", "ru", "Iran"), or None."""
    if not text or not text.strip():
        return None
    key = " ".join(_raw_words(text))
    if key in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key]
    if len(key) == 2 and key.isalpha():
        return key.upper() if pycountry.countries.get(alpha_2=key.upper()) or key == "xk" else None
    try:
        return pycountry.countries.lookup(text.strip()).alpha_2
    except LookupError:
        pass
    for country in pycountry.countries:
        names = (country.name, getattr(country, "common_name", ""), getattr(country, "official_name", ""))
        if any(" ".join(_raw_words(n)) == key for n in names if n):
            return country.alpha_2
    return None


def country_name(code: str) -> str:
    """The common name of a country code ("CN" -> "China"); the text itself if it is not a code."""
    country = pycountry.countries.get(alpha_2=code.upper()) if len(code) == 2 else None
    if not country:
        return code
    return getattr(country, "common_name", None) or country.name


def _countries(values: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        code = normalise_country(value) or value
        if code not in found:
            found.append(code)
    return tuple(found)


# -- reading files ---------------------------------------------------------------------------------
@dataclass
class _ParsedEntry:
    entry_id: str
    name: str
    entity_type: str
    countries: tuple[str, ...]
    programme: str
    risk_level: str
    reason: str
    source_url: str
    details: dict[str, Any]
    listed_on: str | None
    updated_on: str | None
    names: list[ListName]


@dataclass
class _Parsed:
    format: str
    file_date: str | None = None
    entries: list[_ParsedEntry] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _decode(data: bytes, source: str) -> str:
    if data.startswith(b"PK\x03\x04"):
        raise WatchlistFormatError(
            f"{source}: this is a spreadsheet workbook, not CSV: save it as CSV (UTF-8)"
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise WatchlistFormatError(f"{source}: not valid UTF-16 text (byte {exc.start})") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise WatchlistFormatError(
            f"{source}: not UTF-8 text (line {line} has a byte that is not UTF-8): "
            "save the file as CSV UTF-8 and import it again"
        ) from exc
    if "\x00" in text:
        raise WatchlistFormatError(f"{source}: this is a binary file, not CSV text")
    return text


def _records(text: str, source: str, first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """CSV records with the file line each one starts on (quoted fields may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    previous = 0
    try:
        for row in reader:
            yield previous + first_line, row
            previous = reader.line_num
    except csv.Error as exc:
        raise WatchlistFormatError(f"{source}: line {previous + first_line}: not valid CSV ({exc})") from exc


def _columns(
    header: list[str], required: Sequence[str], optional: Sequence[str], source: str, fmt: str, key=None
) -> dict[str, int]:
    key = key or (lambda cell: cell.strip().lower())
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        positions.setdefault(key(cell), index)
    missing = [column for column in required if key(column) not in positions]
    if missing:
        quoted = [f"'{column}'" for column in missing]
        names = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
        noun = "column" if len(missing) == 1 else "columns"
        raise WatchlistFormatError(
            f"{source}: the header has no {names} {noun}, which a {fmt} file needs{_format_hint(header, fmt)}"
        )
    return {key(c): positions[key(c)] for c in [*required, *optional] if key(c) in positions}


def _format_hint(header: list[str], fmt: str) -> str:
    cells = {cell.strip().lower() for cell in header}
    if fmt != "uk-sanctions" and header and header[0].strip().lower().startswith("report date"):
        return " (it looks like a UK Sanctions List file: use --format uk-sanctions)"
    if fmt != "us-csl" and {"_id", "alt_names"} <= cells:
        return " (it looks like a US Consolidated Screening List file: use --format us-csl)"
    if fmt != "uk-sanctions" and {"unique id", "name 6"} <= cells:
        return " (it looks like a UK Sanctions List file: use --format uk-sanctions)"
    if fmt != "csv" and {"name", "risk_level"} <= {c.replace(" ", "_") for c in cells}:
        return " (it looks like an institution list: use --format csv)"
    return ""


def _clean(value: str) -> str:
    return " ".join(value.split())


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(text: str, formats: Sequence[str]) -> str | None:
    text = text.strip()
    if not text:
        return None
    if _ISO_DATE.fullmatch(text):
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            return None
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _split_name(name: str) -> tuple[str, list[ListName]]:
    """A list name without its parenthesised or bracketed parts, and the names those parts give.

    "Beihang University (BUAA)" -> ("Beihang University", [acronym BUAA]); "(formerly X)" gives
    a former name; "[aka A, aka B]" aliases; a single word in brackets (a city) is dropped.
    """
    if "(" not in name and "[" not in name:
        return _clean(name), []
    extra: list[ListName] = []

    def take(content: str, base: str) -> None:
        content = _clean(content)
        lowered = content.lower()
        for prefix, kind in (
            ("formerly known as ", "former"),
            ("formerly ", "former"),
            ("former name ", "former"),
            ("f.k.a. ", "former"),
            ("fka ", "former"),
            ("previously ", "former"),
            ("a.k.a. ", "alias"),
            ("a.k.a., ", "alias"),
            ("aka ", "alias"),
            ("also known as ", "alias"),
        ):
            if lowered.startswith(prefix):
                for part in re.split(r",?\s*\baka\b\s*|;\s*", content[len(prefix) :]):
                    if part.strip(" ,;"):
                        extra.append(ListName(part.strip(" ,;"), kind))
                return
        for part in re.split(r";\s*|,\s*(?=aka\b)", content):
            part = re.sub(r"^aka\s+", "", part.strip(" ,"), flags=re.IGNORECASE)
            words = part.split()
            if is_acronym(part) or re.fullmatch(r"[A-Z]{2,8}\s?\d{1,3}", part):
                extra.append(ListName(part, "acronym" if is_acronym(part) else "alias"))
            elif normalise_country(part):
                continue  # "(Hong Kong)": where it is, not a name
            elif len(words) >= 2 or (words and words[0].lower() in base.lower().split()):
                extra.append(ListName(part, "alias"))  # a short form: "Huawei Technologies (Huawei)"

    def replace(match: re.Match[str]) -> str:
        take(match.group(1), name)
        return " "

    base = _BRACKETS.sub(replace, name)
    base = _PARENS.sub(replace, base)
    base = _clean(base).strip(" ,;")
    base = re.sub(r"\s+([,.;])", r"\1", base)
    return (base or _clean(name)), extra


# US CSL names carry relationship text after the name itself.
_CSL_TAILS = re.compile(
    r"(?:;|,)?\s*(?:and\s+)?(?:any successor, sub-unit, or subsidiary thereof|its sub-units and successors"
    r"|including (?:its )?sub-units and successors)\.?\s*$",
    re.IGNORECASE,
)
_CSL_RELATED = re.compile(
    r"\.?\s+(?:Subordinate Institution\s*-|Affiliated Entity:|,? and subordinate entity)\s*",
    re.IGNORECASE,
)


def _csl_names(raw: str) -> tuple[str, list[ListName]]:
    """The primary name of a CSL ``name`` and the further names it embeds."""
    text = _CSL_TAILS.sub("", _clean(raw))
    parts = _CSL_RELATED.split(text)
    primary, extra = _split_name(parts[0].rstrip(" .,") if len(parts) > 1 else parts[0])
    for related in parts[1:]:
        related = _CSL_TAILS.sub("", related).strip(" .,;")
        if related:
            base, more = _split_name(related)
            extra.append(ListName(base, "alias"))
            extra.extend(more)
    return primary, extra


def _names(primary: str, others: Iterable[ListName]) -> list[ListName]:
    """The names to match: the primary name without its bracketed parts first, then the rest.

    No repeats (same kind and words); capitalised short names become acronyms.
    """
    base, extra = _split_name(primary)
    result = [ListName(base, "primary")]
    seen = {_name_key(base, "primary")}
    for name in [*extra, *others]:
        text = _clean(name.text)[:MAX_NAME_CHARS]
        if not text:
            continue
        kind = "acronym" if name.kind in ("alias", "acronym") and is_acronym(text) else name.kind
        if kind == "acronym" and not is_acronym(text):
            kind = "alias"
        if kind not in ("acronym", "non-latin"):
            inner_base, inner = _split_name(text)
            for item in inner:
                key = _name_key(item.text, item.kind)
                if key not in seen:
                    seen.add(key)
                    result.append(item)
            if inner_base != text:
                key = _name_key(inner_base, kind)
                if key not in seen:
                    seen.add(key)
                    result.append(ListName(inner_base, kind))
        key = _name_key(text, kind)
        if key in seen or not key[1]:
            continue
        seen.add(key)
        result.append(ListName(text, kind))
    return result


def _name_key(text: str, kind: str) -> tuple[bool, str]:
    """Names are repeats when their words are the same (acronyms when their letters are)."""
    return (True, _compact(text)) if kind == "acronym" else (False, normalise(text))


# UK Sanctions List (FCDO) -----------------------------------------------------------------------
_UK_REQUIRED = (
    "Unique ID",
    "Name 1",
    "Name 2",
    "Name 3",
    "Name 4",
    "Name 5",
    "Name 6",
    "Name type",
    "Regime Name",
    "Designation Type",
)
_UK_OPTIONAL = (
    "Last Updated",
    "OFSI Group ID",
    "UN Reference Number",
    "Alias strength",
    "Name non-latin script",
    "Non-latin script language",
    "Designation source",
    "Sanctions Imposed",
    "Other Information",
    "UK Statement of Reasons",
    "Address Country",
    "Website",
    "Date Designated",
    "Nationality(/ies)",
    "Type of entity",
    "Parent company",
)
_UK_NAME_TYPES = {
    "": "primary",
    "primary name": "primary",
    "primary name variation": "alias",
    "alias": "alias",
}
_UK_TYPES = {"individual": "individual", "entity": "organisation", "ship": "vessel"}


def parse_uk_sanctions(text: str, source: str) -> _Parsed:
    """The FCDO UK Sanctions List CSV: a ``Report Date:`` line, the header, one row per name."""
    parsed = _Parsed("uk-sanctions")
    records = _records(text, source)
    first = next(records, None)
    if first is None:
        raise WatchlistFormatError(f"{source}: the file is empty")
    line, row = first
    if row and row[0].strip().lower().startswith("report date"):
        stamp = row[0].split(":", 1)[-1].strip()
        parsed.file_date = _iso_date(stamp, ("%d-%b-%Y", "%d/%m/%Y", "%Y-%m-%d"))
        if not parsed.file_date:
            parsed.notes.append(f"the Report Date line ({stamp!r}) is not a date this importer reads")
        first = next(records, None)
        if first is None:
            raise WatchlistFormatError(f"{source}: no header after the Report Date line")
        line, row = first
    elif not any(cell.strip().lower() == "unique id" for cell in row):
        raise WatchlistFormatError(
            f"{source}: line {line} is neither a 'Report Date:' line nor the UK Sanctions List header"
            f"{_format_hint(row, 'uk-sanctions')}"
        )
    else:
        parsed.notes.append("no 'Report Date:' line: the file's date is unknown")
    header = [cell.replace("\ufeff", "") for cell in row]
    columns = _columns(header, _UK_REQUIRED, _UK_OPTIONAL, source, "uk-sanctions", _uk_key)
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in records:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            parsed.skipped.append(SkippedRow(line, f"has {len(row)} fields, the header has {len(header)}"))
            continue
        values = {column: row[index].strip() for column, index in columns.items()}
        if not values["unique id"]:
            parsed.skipped.append(SkippedRow(line, "no Unique ID"))
            continue
        if not _uk_full_name(values):
            parsed.skipped.append(SkippedRow(line, "no name (Name 1 to Name 6 are empty)"))
            continue
        groups.setdefault(values["unique id"], []).append((line, values))
    left_out = 0
    for uid, rows in groups.items():
        entry = _uk_entry(uid, rows, parsed)
        if entry is None:
            left_out += 1
        else:
            parsed.entries.append(entry)
    if left_out:
        parsed.notes.append(f"{left_out} ship designations left out (not research partners)")
    return parsed


def _uk_key(cell: str) -> str:
    """A UK header cell compared case-blind; an older layout named Designation Type differently."""
    cell = cell.strip().lower()
    return "designation type" if cell == "individual, entity, ship" else cell


def _uk_full_name(values: dict[str, str]) -> str:
    return _clean(" ".join(values[f"name {n}"] for n in (1, 2, 3, 4, 5, 6)))


def _uk_entry(uid: str, rows: list[tuple[int, dict[str, str]]], parsed: _Parsed) -> _ParsedEntry | None:
    names: list[ListName] = []
    for line, values in rows:
        name_type = values["name type"].lower()
        kind = _UK_NAME_TYPES.get(name_type)
        if kind is None:
            parsed.notes.append(
                f"line {line}: Name type {values['name type']!r} is not known: read as an alias"
            )
            kind = "alias"
        if kind == "alias" and "low quality" in values.get("alias strength", "").lower():
            kind = "weak"
        names.append(ListName(_uk_full_name(values), kind))
        if values.get("name non-latin script"):
            names.append(ListName(_clean(values["name non-latin script"]), "non-latin"))
    primaries = [n for n in names if n.kind == "primary"]
    primary = primaries[0] if primaries else names[0]
    main = next(values for _, values in rows if _uk_full_name(values) == primary.text)
    designation = main["designation type"].lower()
    entity_type = _UK_TYPES.get(designation, "")
    if entity_type == "vessel":
        return None
    if not entity_type:
        parsed.notes.append(f"entry {uid}: Designation Type {main['designation type']!r} is not known")
    others = [n if n.kind != "primary" else ListName(n.text, "alias") for n in names if n is not primary]
    countries = _countries(
        [values.get("address country", "") for _, values in rows]
        + (
            [part for _, v in rows for part in v.get("nationality(/ies)", "").split(",")]
            if entity_type == "individual"
            else []
        )
    )
    regimes = _unique(values["regime name"] for _, values in rows)
    details = _without_empty(
        {
            "list": "UK Sanctions List",
            "list_code": "UKSL",
            "list_kind": "sanctions",
            "unique_id": uid,
            "ofsi_group_id": main.get("ofsi group id"),
            "un_reference": main.get("un reference number"),
            "regime": "; ".join(regimes),
            "designation_source": main.get("designation source"),
            "sanctions_imposed": [
                s.strip() for s in main.get("sanctions imposed", "").split("|") if s.strip()
            ],
            "date_designated": _iso_date(main.get("date designated", ""), ("%d/%m/%Y",))
            or main.get("date designated"),
            "last_updated": _iso_date(main.get("last updated", ""), ("%d/%m/%Y",))
            or main.get("last updated"),
            "other_information": main.get("other information"),
            "website": main.get("website"),
            "type_of_entity": main.get("type of entity"),
            "parent_company": main.get("parent company"),
        }
    )
    return _ParsedEntry(
        entry_id=uid,
        name=primary.text,
        entity_type=entity_type,
        countries=countries,
        programme="; ".join(regimes),
        risk_level="sanctioned",
        reason=main.get("uk statement of reasons") or main.get("other information", ""),
        source_url=UK_LIST_URL,
        details=details,
        listed_on=_iso_date(main.get("date designated", ""), ("%d/%m/%Y",)),
        updated_on=_iso_date(main.get("last updated", ""), ("%d/%m/%Y",)),
        names=_names(primary.text, others),
    )


# US Consolidated Screening List (ITA) -----------------------------------------------------------
_CSL_REQUIRED = (
    "_id",
    "source",
    "type",
    "name",
    "alt_names",
    "addresses",
    "programs",
    "start_date",
    "source_information_url",
)
_CSL_OPTIONAL = (
    "entity_number",
    "title",
    "federal_register_notice",
    "end_date",
    "standard_order",
    "license_requirement",
    "license_policy",
    "remarks",
    "source_list_url",
    "citizenships",
    "dates_of_birth",
    "nationalities",
    "places_of_birth",
)
# The 13 source labels: (code, kind, risk level).
_CSL_SOURCES = {
    "Entity List (EL) - Bureau of Industry and Security": ("EL", "export-control", "restricted"),
    "Denied Persons List (DPL) - Bureau of Industry and Security": ("DPL", "export-control", "restricted"),
    "Unverified List (UVL) - Bureau of Industry and Security": ("UVL", "export-control", "restricted"),
    "Military End User (MEU) List - Bureau of Industry and Security": ("MEU", "export-control", "restricted"),
    "ITAR Debarred (DTC) - State Department": ("DTC", "export-control", "restricted"),
    "Nonproliferation Sanctions (ISN) - State Department": ("ISN", "sanctions", "sanctioned"),
    "Specially Designated Nationals (SDN) - Treasury Department": ("SDN", "sanctions", "sanctioned"),
    "Sectoral Sanctions Identifications List (SSI) - Treasury Department": ("SSI", "sanctions", "sanctioned"),
    "Foreign Sanctions Evaders (FSE) - Treasury Department": ("FSE", "sanctions", "sanctioned"),
    "Capta List (CAP) - Treasury Department": ("CAP", "sanctions", "sanctioned"),
    "Non-SDN Chinese Military-Industrial Complex Companies List (CMIC) - Treasury Department": (
        "CMIC",
        "sanctions",
        "sanctioned",
    ),
    "Non-SDN Menu-Based Sanctions List (NS-MBS List) - Treasury Department": (
        "NS-MBS",
        "sanctions",
        "sanctioned",
    ),
    "Palestinian Legislative Council List (PLC) - Treasury Department": ("PLC", "sanctions", "sanctioned"),
}
_CSL_TYPES = {
    "entity": "organisation",
    "individual": "individual",
    "vessel": "vessel",
    "aircraft": "aircraft",
}
_CSL_COUNTRY = re.compile(r",\s*([A-Z]{2})\s*$")


def parse_us_csl(text: str, source: str) -> _Parsed:
    """The ITA Consolidated Screening List CSV: the header, then one row per listing."""
    parsed = _Parsed("us-csl")
    records = _records(text, source)
    first = next(records, None)
    if first is None:
        raise WatchlistFormatError(f"{source}: the file is empty")
    header = [cell.replace("\ufeff", "") for cell in first[1]]
    columns = _columns(header, _CSL_REQUIRED, _CSL_OPTIONAL, source, "us-csl")
    seen: dict[str, int] = {}
    left_out, unknown_sources = 0, set()
    for line, row in records:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            parsed.skipped.append(SkippedRow(line, f"has {len(row)} fields, the header has {len(header)}"))
            continue
        values = {column: row[index].strip() for column, index in columns.items()}
        if not values["_id"]:
            parsed.skipped.append(SkippedRow(line, "no _id"))
            continue
        if not values["name"]:
            parsed.skipped.append(SkippedRow(line, "no name"))
            continue
        if values["_id"] in seen:
            parsed.skipped.append(SkippedRow(line, f"the same _id as line {seen[values['_id']]}"))
            continue
        seen[values["_id"]] = line
        entry = _csl_entry(values, parsed, line, unknown_sources)
        if entry is None:
            left_out += 1
        else:
            parsed.entries.append(entry)
    if left_out:
        parsed.notes.append(f"{left_out} vessels and aircraft left out (not research partners)")
    return parsed


def _split_list(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(";")]
    return [re.sub(r"^and\s+", "", part) for part in parts if part and part.lower() != "and"]


def _csl_entry(values: dict[str, str], parsed: _Parsed, line: int, unknown: set[str]) -> _ParsedEntry | None:
    type_text = values["type"].lower()
    entity_type = _CSL_TYPES.get(type_text, "")
    if type_text and not entity_type:
        parsed.notes.append(f"line {line}: type {values['type']!r} is not known: read as unstated")
    if entity_type in ("vessel", "aircraft"):
        return None
    person_fields = ("dates_of_birth", "citizenships", "nationalities", "places_of_birth")
    inferred = not entity_type and any(values.get(f) for f in person_fields)
    if inferred:
        entity_type = "individual"
    label = values["source"]
    code, kind, risk = _CSL_SOURCES.get(label, ("", "other", ""))
    if not code:
        found = re.search(r"\(([^()]+)\)", label)
        code = found.group(1) if found else label
        if label not in unknown:
            unknown.add(label)
            parsed.notes.append(f"source {label!r} is not one of the 13 CSL lists this importer knows")
    primary, extra = _csl_names(values["name"])
    aliases = [ListName(alias, "alias") for alias in _split_list(values["alt_names"])]
    addresses = _split_list(values["addresses"])
    codes = [m.group(1) for address in addresses if (m := _CSL_COUNTRY.search(address))]
    if entity_type == "individual":
        codes += _split_list(values.get("nationalities", "")) + _split_list(values.get("citizenships", ""))
    programmes = _split_list(values["programs"])
    start = values["start_date"] if _iso_date(values["start_date"], ("%Y-%m-%d",)) else None
    details = _without_empty(
        {
            "list": label,
            "list_code": code,
            "list_kind": kind,
            "programmes": programmes,
            "license_requirement": values.get("license_requirement"),
            "license_policy": values.get("license_policy"),
            "federal_register_notice": _split_list(values.get("federal_register_notice", "")),
            "start_date": values["start_date"],
            "end_date": values.get("end_date"),
            "standard_order": values.get("standard_order"),
            "remarks": values.get("remarks"),
            "source_list_url": values.get("source_list_url"),
            "entity_number": values.get("entity_number"),
            "title": values.get("title"),
            "addresses": addresses[:5],
            "type_inferred": inferred or None,
        }
    )
    return _ParsedEntry(
        entry_id=values["_id"],
        name=values["name"],
        entity_type=entity_type,
        countries=_countries(codes),
        programme="; ".join(programmes) or code,
        risk_level=risk,
        reason=values.get("remarks", ""),
        source_url=values["source_information_url"] or values.get("source_list_url", ""),
        details=details,
        listed_on=start,
        updated_on=None,
        names=_names(primary, [*extra, *aliases]),
    )


# Institution CSV --------------------------------------------------------------------------------
_CSV_REQUIRED = ("name", "aliases", "country", "risk_level", "reason", "source_url")
_CSV_OPTIONAL = (
    "id",
    "acronyms",
    "former_names",
    "type",
    "source_date",
    "other_sources",
    "notes",
    "programme",
)
RISK_LEVELS = ("very high", "high", "medium", "low")
_CSV_TYPES = {"": "organisation", "organisation": "organisation", "organization": "organisation",
              "individual": "individual", "person": "individual"}  # fmt: skip


def _csv_key(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def parse_institution_csv(text: str, source: str) -> _Parsed:
    """An institution list: optional ``#`` comment lines (``# date: YYYY-MM-DD``), then the header."""
    parsed = _Parsed("csv")
    lines = text.splitlines(keepends=True)
    skip = 0
    while skip < len(lines) and (lines[skip].lstrip().startswith("#") or not lines[skip].strip()):
        comment = lines[skip].strip().lstrip("#").strip()
        found = re.match(r"(?:date|as of|as at|updated)\s*:\s*(\d{4}-\d{2}-\d{2})", comment, re.IGNORECASE)
        if found and _iso_date(found.group(1), ("%Y-%m-%d",)):
            parsed.file_date = found.group(1)
        skip += 1
    records = _records("".join(lines[skip:]), source, first_line=skip + 1)
    first = next(records, None)
    if first is None:
        raise WatchlistFormatError(f"{source}: the file has no header")
    header = [cell.replace("\ufeff", "") for cell in first[1]]
    columns = _columns(header, _CSV_REQUIRED, _CSV_OPTIONAL, source, "csv", _csv_key)
    ids: dict[str, int] = {}
    for line, row in records:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            parsed.skipped.append(SkippedRow(line, f"has {len(row)} fields, the header has {len(header)}"))
            continue
        values = {column: row[index].strip() for column, index in columns.items()}
        problem = _csv_problem(values)
        if problem:
            parsed.skipped.append(SkippedRow(line, problem))
            continue
        entry_id = values.get("id") or _slug(values["name"])
        if entry_id in ids:
            if values.get("id"):
                parsed.skipped.append(SkippedRow(line, f"the same id as line {ids[entry_id]}"))
                continue
            entry_id = f"{entry_id}-{line}"
        ids[entry_id] = line
        parsed.entries.append(_csv_entry(entry_id, values, parsed, line))
    return parsed


def _csv_problem(values: dict[str, str]) -> str | None:
    if not values["name"]:
        return "no name"
    if len(values["name"]) > MAX_NAME_CHARS:
        return f"the name is longer than {MAX_NAME_CHARS} characters"
    risk = _risk_level(values["risk_level"])
    if risk not in RISK_LEVELS:
        return f"risk_level {values['risk_level']!r} is not one of {', '.join(RISK_LEVELS)}"
    for column in ("source_url",):
        if values[column] and not re.match(r"https?://\S+$", values[column]):
            return f"{column} {values[column]!r} is not an http(s) address"
    if values.get("source_date") and not _iso_date(values["source_date"], ("%Y-%m-%d",)):
        return f"source_date {values['source_date']!r} is not a date (YYYY-MM-DD)"
    if values.get("type", "").lower() not in _CSV_TYPES:
        return f"type {values['type']!r} is not organisation or individual"
    return None


def _risk_level(text: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", text.strip().lower()))


def _csv_entry(entry_id: str, values: dict[str, str], parsed: _Parsed, line: int) -> _ParsedEntry:
    others = [ListName(a, "alias") for a in _split_semicolons(values["aliases"])]
    others += [ListName(a, "acronym") for a in _split_semicolons(values.get("acronyms", ""))]
    others += [ListName(a, "former") for a in _split_semicolons(values.get("former_names", ""))]
    countries = _countries(_split_semicolons(values["country"]))
    unknown = [c for c in countries if len(c) != 2]
    if unknown:
        parsed.notes.append(
            f"line {line}: country {', '.join(unknown)!r} is not a country this importer knows"
        )
    risk = _risk_level(values["risk_level"])
    details = _without_empty(
        {
            "list": "institution list",
            "list_code": "institution",
            "list_kind": "institution",
            "risk_level": risk,
            "source_date": values.get("source_date"),
            "other_sources": values.get("other_sources", "").split(),
            "notes": values.get("notes"),
        }
    )
    return _ParsedEntry(
        entry_id=entry_id,
        name=values["name"],
        entity_type=_CSV_TYPES[values.get("type", "").lower()],
        countries=countries,
        programme=values.get("programme", ""),
        risk_level=risk,
        reason=values["reason"],
        source_url=values["source_url"],
        details=details,
        listed_on=values.get("source_date") or None,
        updated_on=None,
        names=_names(values["name"], others),
    )


def _split_semicolons(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _slug(name: str) -> str:
    return "-".join(_raw_words(name))[:80] or "entry"


def _unique(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        value = value.strip()
        if value and value not in out:
            out.append(value)
    return out


def _without_empty(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if value not in (None, "", [], ())}


_PARSERS = {"uk-sanctions": parse_uk_sanctions, "us-csl": parse_us_csl, "csv": parse_institution_csv}


def parse_file(path: str | Path, fmt: str) -> tuple[_Parsed, str]:
    """Read and parse a list file; returns the parsed list and the file's SHA-256."""
    if fmt not in _PARSERS:
        raise WatchlistFormatError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise WatchlistError(f"{path}: no such file") from exc
    except OSError as exc:
        raise WatchlistError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    text = _decode(data, path.name)
    parsed = _PARSERS[fmt](text, path.name)
    return parsed, hashlib.sha256(data).hexdigest()


# -- the store -------------------------------------------------------------------------------------
_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_list_name(name: str) -> str:
    """A list name as stored (lower case); raises ``WatchlistError`` if it is not a short slug."""
    cleaned = name.strip().lower()
    if not _LIST_NAME.match(cleaned):
        raise WatchlistError(
            f"list name {name!r}: use up to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return cleaned


class WatchlistStore:
    """The watchlist database at ``path`` (created, and migrated, on first use).

    Args:
        path: The SQLite file (``config.paths.watchlist_db``); its folder is created if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        secure_file(self.path)  # 0600, folders 0700: the team's lists and imports are theirs alone
        try:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.db = Database(conn)
            self.db.enable_wal()
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise WatchlistError(f"{self.path}: not a watchlist database ({exc})") from exc

    def close(self) -> None:
        self.db.close()

    # -- importing ------------------------------------------------------------------------------
    def import_file(self, path: str | Path, fmt: str, name: str | None = None) -> ImportSummary:
        """Import a list file under ``name`` (default: the format), replacing any earlier import of it.

        The whole file is read and checked first; the old list is then replaced in one
        transaction, so a failure leaves it as it was.

        Raises:
            WatchlistFormatError: the file is not in ``fmt`` (encoding, header...).
            WatchlistError: the file cannot be read, or the name is not valid.
        """
        list_name = check_list_name(name or fmt)
        parsed, digest = parse_file(path, fmt)
        if not parsed.entries:
            problem = f"; {len(parsed.skipped)} rows skipped" if parsed.skipped else ""
            raise WatchlistFormatError(f"{Path(path).name}: no entries to import{problem}")
        replaced = self._write(list_name, parsed, Path(path).name, digest)
        if list_name == STARTER_LIST:
            self._set("starter_removed", None)
        logger.info(
            "watchlists: imported %s (%d entries, %d skipped)",
            list_name,
            len(parsed.entries),
            len(parsed.skipped),
        )
        return ImportSummary(
            list_name=list_name,
            format=fmt,
            source_file=Path(path).name,
            file_date=parsed.file_date,
            entries=len(parsed.entries),
            aliases=sum(len(e.names) - 1 for e in parsed.entries),
            skipped=tuple(parsed.skipped),
            notes=tuple(parsed.notes),
            replaced=replaced,
        )

    def _write(self, list_name: str, parsed: _Parsed, source_file: str, digest: str) -> ListInfo | None:
        previous = self.get_list(list_name)
        conn = self.db.conn
        with self.db.atomic():
            conn.execute("DELETE FROM names WHERE list = ?", [list_name])
            conn.execute("DELETE FROM entries WHERE list = ?", [list_name])
            conn.execute("DELETE FROM lists WHERE name = ?", [list_name])
            next_id = (conn.execute("SELECT MAX(id) FROM entries").fetchone()[0] or 0) + 1
            entry_rows, name_rows = [], []
            for offset, entry in enumerate(parsed.entries):
                entry_rows.append(_entry_row(next_id + offset, list_name, entry))
                name_rows.extend(
                    (next_id + offset, list_name, n.text, n.kind, normalise(n.text)) for n in entry.names
                )
            _insert_entries(conn, entry_rows)
            _insert_names(conn, name_rows)
            conn.execute(
                "INSERT INTO lists (name, format, source_file, sha256, file_date, imported_at, entries,"
                " aliases, skipped, skipped_rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    list_name,
                    parsed.format,
                    source_file,
                    digest,
                    parsed.file_date,
                    _now(),
                    len(entry_rows),
                    len(name_rows) - len(entry_rows),
                    len(parsed.skipped),
                    json.dumps([[s.row, s.reason] for s in parsed.skipped[:1000]]),
                ],
            )
        return previous

    # -- reading --------------------------------------------------------------------------------
    def lists(self) -> list[ListInfo]:
        """Every imported list, by name."""
        rows = self.db.execute("SELECT * FROM lists ORDER BY name").fetchall()
        columns = [c[0] for c in self.db.execute("SELECT * FROM lists LIMIT 0").description]
        return [_list_info(dict(zip(columns, row, strict=True))) for row in rows]

    def get_list(self, name: str) -> ListInfo | None:
        return next((info for info in self.lists() if info.name == name.strip().lower()), None)

    def remove(self, name: str) -> ListInfo:
        """Remove one list and its entries; raises ``UnknownListError`` if there is none of that name."""
        info = self.get_list(name)
        if info is None:
            known = ", ".join(i.name for i in self.lists()) or "none yet"
            raise UnknownListError(f"no list named {name!r} (imported lists: {known})")
        with self.db.atomic():
            for sql in (
                "DELETE FROM names WHERE list = ?",
                "DELETE FROM entries WHERE list = ?",
                "DELETE FROM lists WHERE name = ?",
            ):
                self.db.conn.execute(sql, [info.name])
        if info.name == STARTER_LIST:
            self._set("starter_removed", _now())
        return info

    def entries(self, list_name: str | None = None) -> Iterator[Entry]:
        """The entries of one list, or of all lists, each with its names."""
        where, params = ("WHERE list = ?", [list_name]) if list_name else ("", [])
        names: dict[int, list[ListName]] = {}
        for entry, text, kind in self.db.execute(
            f"SELECT entry, name, kind FROM names {where} ORDER BY id", params
        ):
            names.setdefault(entry, []).append(ListName(text, kind))
        query = f"SELECT * FROM entries {where} ORDER BY id"
        cursor = self.db.execute(query, params)
        columns = [c[0] for c in cursor.description]
        for row in cursor:
            record = dict(zip(columns, row, strict=True))
            yield Entry(
                list_name=record["list"],
                entry_id=record["entry_id"],
                name=record["name"],
                entity_type=record["entity_type"] or "",
                countries=tuple(json.loads(record["countries"] or "[]")),
                programme=record["programme"] or "",
                risk_level=record["risk_level"] or "",
                reason=record["reason"] or "",
                source_url=record["source_url"] or "",
                details=json.loads(record["details"] or "{}"),
                listed_on=record["listed_on"],
                updated_on=record["updated_on"],
                names=tuple(names.get(record["id"], ())),
            )

    def skipped_rows(self, name: str) -> list[SkippedRow]:
        row = self.db.execute("SELECT skipped_rows FROM lists WHERE name = ?", [name]).fetchone()
        return [SkippedRow(r, reason) for r, reason in json.loads(row[0] or "[]")] if row else []

    def starter_removed(self) -> bool:
        """True once the starter list has been removed on purpose (it is then not imported again)."""
        return self._get("starter_removed") is not None

    def _get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _set(self, key: str, value: str | None) -> None:
        with self.db.atomic():
            if value is None:
                self.db.conn.execute("DELETE FROM settings WHERE key = ?", [key])
            else:
                self.db.conn.execute(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", [key, value]
                )


def _entry_row(row_id: int, list_name: str, entry: _ParsedEntry) -> tuple[Any, ...]:
    return (
        row_id,
        list_name,
        entry.entry_id,
        entry.name,
        entry.entity_type,
        json.dumps(list(entry.countries)),
        entry.programme,
        entry.risk_level,
        entry.reason,
        entry.source_url,
        json.dumps(entry.details, ensure_ascii=False),
        entry.listed_on,
        entry.updated_on,
    )


def _insert_entries(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO entries (id, list, entry_id, name, entity_type, countries, programme, risk_level,"
        " reason, source_url, details, listed_on, updated_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _insert_names(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany("INSERT INTO names (entry, list, name, kind, normalised) VALUES (?, ?, ?, ?, ?)", rows)


def _list_info(row: dict[str, Any]) -> ListInfo:
    return ListInfo(
        name=row["name"],
        format=row["format"],
        source_file=row["source_file"] or "",
        sha256=row["sha256"] or "",
        file_date=row["file_date"],
        imported_at=row["imported_at"],
        entries=row["entries"] or 0,
        aliases=row["aliases"] or 0,
        skipped=row["skipped"] or 0,
    )


def ensure_starter(store: WatchlistStore, watchlists_dir: Path) -> ImportSummary | None:
    """Import the shipped starter list as ``starter`` if it is missing or the shipped file has changed.

    Not again once someone has removed ``starter`` on purpose (``trbot watchlists remove starter``);
    importing it by hand brings it back.
    """
    path = Path(watchlists_dir) / STARTER_FILE
    if not path.exists() or store.starter_removed():
        return None
    current = store.get_list(STARTER_LIST)
    if current and current.sha256 == hashlib.sha256(path.read_bytes()).hexdigest():
        return None
    return store.import_file(path, "csv", STARTER_LIST)


# -- matching --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Ref:
    entry: int
    kind: str
    name: _Name


class Matcher:
    """Fuzzy name matching over every entry of every list, built once and read by many threads.

    Args:
        entries: The entries to match against (``WatchlistStore.entries()``).
        lists: The lists they come from (for the stale flag and the warnings).
        settings: ``Config.screening``: the match and possible thresholds, the list age limit.
        now: The current time (tests).
    """

    def __init__(
        self,
        entries: Iterable[Entry],
        lists: Sequence[ListInfo] = (),
        settings: ScreeningSettings | None = None,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings or ScreeningSettings()
        self.lists = tuple(lists)
        self._now = now
        self.entries: list[Entry] = list(entries)
        stale = {info.name for info in self.lists if info.is_stale(self.settings.max_list_age_days, now)}
        self._stale = frozenset(stale)
        self._formats = {info.name: info.format for info in self.lists}
        self._refs: list[_Ref] = []
        self._acronyms: dict[str, list[int]] = {}
        self._exact: dict[str, list[int]] = {}
        self._compacts: dict[str, list[int]] = {}
        for index, entry in enumerate(self.entries):
            for name in entry.names:
                self._add(index, name)
        self._build_index()
        self._similar_cache: dict[str, tuple[tuple[str, float], ...]] = {}

    @classmethod
    def from_store(
        cls, store: WatchlistStore, settings: ScreeningSettings | None = None, now=None
    ) -> Matcher:
        return cls(store.entries(), store.lists(), settings, now)

    def __len__(self) -> int:
        return len(self.entries)

    def warnings(self) -> list[str]:
        """One line per list older than ``max_list_age_days`` (show them with every result)."""
        return list_warnings(self.lists, self.settings.max_list_age_days, self._now)

    def _add(self, entry: int, list_name: ListName) -> None:
        ref = len(self._refs)
        if list_name.kind == "acronym":
            key = _compact(list_name.text)
            self._refs.append(_Ref(entry, "acronym", _Name.from_tokens(list_name.text, (key,), key, 1)))
            self._acronyms.setdefault(key, []).append(ref)
            return
        name = _Name.of(list_name.text)
        if not name.core:
            return
        self._refs.append(_Ref(entry, list_name.kind, name))
        self._exact.setdefault(" ".join(sorted(name.core)), []).append(ref)
        if len(name.compact) >= 7:
            self._compacts.setdefault(name.compact, []).append(ref)

    def _build_index(self) -> None:
        """Each name is found through its two rarest words (three for long names), its anchors."""
        frequency: dict[str, int] = {}
        for ref in self._refs:
            if ref.kind != "acronym":
                for token in set(ref.name.core):
                    frequency[token] = frequency.get(token, 0) + 1
        self._postings: dict[str, list[int]] = {}
        for index, ref in enumerate(self._refs):
            if ref.kind == "acronym":
                continue
            ranked = sorted(
                set(ref.name.core),
                key=lambda t: (frequency[t] * (4 if _token_class(t) == _CLASS_QUALIFIER else 1), -len(t), t),
            )
            for token in ranked[: 3 if len(ranked) >= 5 else 2]:
                self._postings.setdefault(token, []).append(index)
        self._frequency = frequency
        self._vocabulary_by_length: dict[int, list[str]] = {}
        for token in frequency:  # every word of every name, so that misspellings of any are found
            self._vocabulary_by_length.setdefault(len(token), []).append(token)
        self._compacts_by_length: dict[int, list[str]] = {}
        for compact in self._compacts:
            self._compacts_by_length.setdefault(len(compact), []).append(compact)

    # -- lookups --------------------------------------------------------------------------------
    def _similar_tokens(self, token: str) -> tuple[tuple[str, float], ...]:
        """Words of the lists like ``token``: itself, and misspellings of it for words of 5+ letters."""
        cached = self._similar_cache.get(token)
        if cached is not None:
            return cached
        found: dict[str, float] = {token: 1.0} if token in self._frequency else {}
        if len(token) >= 5 and not token.isdigit():
            cutoff = 100 * min(_token_cutoff(n) for n in range(5, len(token) + 1))
            low, high = math.floor(len(token) * 0.66), math.ceil(len(token) * 1.5)
            for length in range(max(5, low), high + 1):
                pool = self._vocabulary_by_length.get(length)
                if not pool:
                    continue
                for other, _, _ in process.extract(
                    token, pool, scorer=fuzz.ratio, score_cutoff=cutoff, limit=None
                ):
                    similarity = _token_similarity(token, other)
                    if similarity:
                        found[other] = max(found.get(other, 0.0), similarity)
        result = tuple(found.items())
        if len(self._similar_cache) > 50_000:
            self._similar_cache.clear()
        self._similar_cache[token] = result
        return result

    def _similar_compacts(self, compact: str, fuzzy: bool = True) -> list[str]:
        """Names whose letters (spaces ignored) are the same as, or with ``fuzzy`` close to, ``compact``."""
        if len(compact) < 7:
            return []
        found = [compact] if compact in self._compacts else []
        if not fuzzy:
            return found
        low, high = math.floor(len(compact) * 0.81), math.ceil(len(compact) * 1.23)
        for length in range(low, high + 1):
            pool = self._compacts_by_length.get(length)
            if pool:
                matches = process.extract(
                    compact, pool, scorer=fuzz.ratio, score_cutoff=COMPACT_MIN * 100, limit=20
                )
                found.extend(m[0] for m in matches if m[0] != compact)
        return found

    def _candidates(self, query: _Name, cutoff: float) -> list[int]:
        """Names that share an anchor word (or, spaced differently, the letters) with the query.

        Names that cannot reach ``cutoff`` by their words (``_upper_bound``) are left out; the
        rest, if too many, are kept by how rare the shared words are. Once there are enough
        candidates, common words ("beijing", "technology") only re-rank them: a name found only
        through such a word cannot win.
        """
        refs = self._refs
        weight: dict[int, float] = {}
        present: set[str] = set()
        similar = {token: self._similar_tokens(token) for token in set(query.core)}
        for found in similar.values():
            present.update(other for other, _ in found)
        by_rarity = sorted(similar, key=lambda t: min((self._frequency[o] for o, _ in similar[t]), default=0))
        for token in by_rarity:
            hits = [(other, sim) for other, sim in similar[token] if other in self._postings]
            if len(weight) >= MAX_CANDIDATES and sum(len(self._postings[o]) for o, _ in hits) > len(weight):
                for ref in weight:
                    core = refs[ref].name.core_set
                    for other, sim in hits:
                        if other in core:
                            weight[ref] += sim / math.log2(2 + self._frequency[other])
                continue
            for other, sim in hits:
                rarity = 1.0 / math.log2(2 + self._frequency[other])
                for ref in self._postings[other]:
                    weight[ref] = weight.get(ref, 0.0) + sim * rarity
        total = sum(query.weights)
        like_proper = {other for token in query.proper for other, _ in similar.get(token, ())}
        weight = {
            r: w
            for r, w in weight.items()
            if _upper_bound(total, refs[r].name, present, like_proper) >= cutoff
        }
        for compact in self._similar_compacts(query.compact, fuzzy=query.raw_count == 1):
            for ref in self._compacts[compact]:
                weight[ref] = weight.get(ref, 0.0) + 1.0
        if len(weight) <= MAX_CANDIDATES:
            return list(weight)
        return sorted(weight, key=weight.__getitem__, reverse=True)[:MAX_CANDIDATES]

    # -- search ---------------------------------------------------------------------------------
    def search(
        self,
        name: str,
        country: str | None = None,
        limit: int = 10,
        *,
        entity_types: Collection[str] | None = None,
        floor: float | None = None,
    ) -> list[Candidate]:
        """The entries whose names are like ``name``, best first: ``match`` and ``possible`` ones.

        Args:
            name: The organisation (or person) to screen, as the researcher wrote it.
            country: Its country (a name or ISO code), if known: a different country lowers the score.
            limit: Candidates returned, at most.
            entity_types: Keep only these types ("organisation", "individual"); entries whose
                list does not say (US Commerce and State rows) are always kept.
            floor: Also return near misses scoring at least this (strength ``below``), to show
                why a name did not match.
        """
        text = _clean(name)[:MAX_NAME_CHARS]
        if not text:
            return []
        base, extra = _split_name(text)
        queries = [base] + [n.text for n in extra]
        code = normalise_country(country) if country else None
        cutoff = (
            self.settings.possible_threshold
            if floor is None
            else min(floor, self.settings.possible_threshold)
        )
        if code:
            cutoff *= COUNTRY_MISMATCH  # a name that scores less cannot reach it, whatever the country
        best: dict[int, tuple[float, int, _Score, str]] = {}
        for query_text in queries:
            for ref, score in self._score_query(query_text, cutoff):
                entry = self._refs[ref].entry
                if entry not in best or score.score > best[entry][0]:
                    best[entry] = (score.score, ref, score, query_text)
        return self._candidates_from(best, code, country, limit, entity_types, floor)

    def _score_query(self, text: str, cutoff: float) -> Iterator[tuple[int, _Score]]:
        query = _Name.of(text)
        if not query.tokens:
            return
        if self._is_short(text, query):
            for ref in self._acronyms.get(query.compact, []):
                yield ref, _Score(1.0, "acronym")
            for ref in self._exact.get(" ".join(sorted(query.core)), []):
                yield ref, _Score(1.0, "exact-short")
            return
        for ref in self._acronyms.get(query.compact, []):  # "Skoltech" and an alias "SKOLTECH"
            yield ref, _Score(1.0, "acronym")
        cache: dict[tuple[str, str], float] = {}
        refs = self._refs
        for ref in self._candidates(query, cutoff):
            yield ref, _score(query, refs[ref].name, cache)

    @staticmethod
    def _is_short(text: str, query: _Name) -> bool:
        """Read as an acronym: one word of at most four characters, or in capitals of at most eight."""
        word = text.strip()
        return query.raw_count == 1 and (len(query.compact) <= 4 or (is_acronym(word) and len(word) <= 8))

    def _candidates_from(
        self,
        best: dict[int, tuple[float, int, _Score, str]],
        code: str | None,
        country: str | None,
        limit: int,
        entity_types: Collection[str] | None,
        floor: float | None,
        span: dict[int, tuple[int, int]] | None = None,
    ) -> list[Candidate]:
        cutoff = (
            self.settings.possible_threshold
            if floor is None
            else min(floor, self.settings.possible_threshold)
        )
        results: list[Candidate] = []
        for entry_index, (raw_score, ref, score, query_text) in best.items():
            entry = self.entries[entry_index]
            if entity_types is not None and entry.entity_type and entry.entity_type not in entity_types:
                continue
            factor, country_note = self._country_factor(entry, code, country)
            final = raw_score * factor
            if final < cutoff:
                continue
            strength = self._strength(final, self._refs[ref].kind)
            results.append(
                self._candidate(
                    entry,
                    self._refs[ref],
                    score,
                    final,
                    strength,
                    country_note,
                    query_text,
                    span.get(entry_index) if span else None,
                )  # fmt: skip
            )
        results.sort(key=lambda c: (-c.score, c.list_name, c.entry))
        return results[:limit]

    def _strength(self, score: float, kind: str) -> str:
        if score >= self.settings.match_threshold:
            return "possible" if kind == "weak" else "match"
        return "possible" if score >= self.settings.possible_threshold else "below"

    @staticmethod
    def _country_factor(entry: Entry, code: str | None, given: str | None) -> tuple[float, str]:
        if not given:
            return 1.0, ""
        if not code:
            return 1.0, f"country {given!r} not recognised, not used"
        codes = [c for c in entry.countries if len(c) == 2]
        if not codes:
            return 1.0, "the entry has no country"
        if code in codes:
            return 1.0, f"country {code} matches"
        return (
            COUNTRY_MISMATCH,
            f"country differs (query {code}, list {', '.join(codes)}) x{COUNTRY_MISMATCH}",
        )

    def _candidate(
        self,
        entry: Entry,
        ref: _Ref,
        score: _Score,
        final: float,
        strength: str,
        country_note: str,
        query_text: str,
        span: tuple[int, int] | None,
    ) -> Candidate:
        return Candidate(
            entry=entry.name,
            list_name=entry.list_name,
            matched_name=ref.name.text,
            score=round(final, 4),
            strength=strength,
            source_url=entry.source_url,
            details=entry.details,
            explanation=self._explain(query_text, ref, score, final, strength, country_note),
            country=entry.countries[0] if entry.countries else "",
            entry_id=entry.entry_id,
            matched_kind=ref.kind,
            entity_type=entry.entity_type,
            risk_level=entry.risk_level,
            programme=entry.programme,
            reason=entry.reason,
            countries=entry.countries,
            list_format=self._formats.get(entry.list_name, ""),
            stale=entry.list_name in self._stale,
            query=query_text,
            span=span,
        )

    def _explain(
        self, query_text: str, ref: _Ref, score: _Score, final: float, strength: str, country: str
    ) -> str:
        kind = {"primary": "name", "non-latin": "original-script name", "weak": "weak alias"}.get(
            ref.kind, ref.kind
        )
        query = _Name.of(query_text)
        if score.method == "acronym":
            parts = [f"acronym {ref.name.text!r} equals {query_text!r} (acronyms match exactly only)"]
        elif score.method == "exact-short":
            parts = [f"short query {query_text!r} equals {kind} {ref.name.text!r} word for word"]
        elif score.method == "compact":
            parts = [
                f"{kind} {ref.name.text!r}: letters {ref.name.compact!r} vs {query.compact!r} "
                f"(spacing ignored) similarity {score.score:.2f}"
            ]
        else:
            order = {token: i for i, token in enumerate(query.core)}
            matched = sorted(score.matched, key=lambda m: order.get(m[0], 0))
            words = ", ".join(q if q == n else f"{q}~{n} {s:.2f}" for q, n, s in matched) or "none"
            parts = [
                f"{kind} {ref.name.text!r}: weighted word overlap {score.score:.2f} between "
                f"{' '.join(query.core)!r} and {' '.join(ref.name.core)!r}; words in common: {words}"
            ]
            if score.only_query:
                parts.append(f"only in the query: {', '.join(score.only_query)}")
            if score.only_name:
                parts.append(f"only in the list name: {', '.join(score.only_name)}")
            parts += [f"{label} x{factor}" for label, factor in score.factors]
        if country:
            parts.append(country)
        if ref.kind == "weak":
            parts.append("a low-quality alias is at most a possible match")
        band = {"match": "match", "possible": "possible match: check", "below": "no match"}[strength]
        parts.append(
            f"score {final:.2f}: {band} (match from {self.settings.match_threshold:.2f}, "
            f"possible from {self.settings.possible_threshold:.2f})"
        )
        return "; ".join(parts)

    # -- mentions in free text ------------------------------------------------------------------
    def find_mentions(self, text: str, limit: int = 10) -> list[Candidate]:
        """Organisations on the lists named inside free text (a question, a message), best first.

        Acronyms count only as whole words written in capitals ("HIT", not "hit"); names are
        found through the words they share with the text, then the best window of the text's
        words around them is scored like a ``search``.
        """
        words = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text[:20_000])]
        best: dict[int, tuple[float, int, _Score, str]] = {}
        spans: dict[int, tuple[int, int]] = {}

        def keep(ref: int, score: _Score, first: int, last: int) -> None:
            entry = self._refs[ref].entry
            start, end = words[first][1], words[last][2]
            if entry in best:  # the better score; on a tie, the longer stretch of text
                held_start, held_end = spans[entry]
                if (score.score, end - start) <= (best[entry][0], held_end - held_start):
                    return
            best[entry] = (score.score, ref, score, text[start:end])
            spans[entry] = (start, end)

        canonical: list[str | None] = []
        raws: list[list[str]] = []
        for position, (word, _, _) in enumerate(words):
            if is_acronym(word) and len(word) >= 3 and word.isupper():
                for ref in self._acronyms.get(_compact(word), []):
                    keep(ref, _Score(1.0, "acronym"), position, position)
            raw = _raw_words(word)
            raws.append(raw)
            tokens = [t for w in raw if (t := _canonical(w)) is not None]
            canonical.append(tokens[0] if len(tokens) == 1 else (" ".join(tokens) or None))
        hits: dict[int, list[int]] = {}
        present: set[str] = set()
        for position, token in enumerate(canonical):
            if not token or _token_class(token) == _CLASS_TYPE:
                continue
            if " " in token or (len(token) >= 7 and not words[position][0].isascii()):
                self._mention_compact(words, raws, position, keep)
                continue
            if len(token) >= 12:  # pinyin run together ("Haerbingongyedaxue")
                self._mention_compact(words, raws, position, keep)
            present.add(token)
            for other, _ in self._similar_tokens(token):
                present.add(other)
                for ref in self._postings.get(other, ()):
                    hits.setdefault(ref, []).append(position)
        similar: dict[tuple[str, str], float] = {}
        windows: dict[tuple[int, int], _Name] = {}
        cutoff = self.settings.possible_threshold
        for ref, positions in hits.items():
            name = self._refs[ref].name
            if not _may_reach(name, present, cutoff):
                continue
            for first, last in _clusters(sorted(set(positions)), len(name.core)):
                first, last = _widen(name, canonical, first, last, similar)
                window = self._best_window(ref, canonical, raws, first, last, similar, windows)
                if window:
                    keep(ref, *window)
        return self._candidates_from(best, None, None, limit, None, None, spans)

    def _mention_compact(self, words, raws, position: int, keep) -> None:
        compact = "".join(raws[position])
        query = _Name.from_tokens(words[position][0], (compact,), compact, 1)
        for other in self._similar_compacts(compact):
            for ref in self._compacts[other]:
                score = _compact_score(query, self._refs[ref].name) or (
                    _Score(1.0, "compact") if other == self._refs[ref].name.compact else None
                )
                if score:
                    keep(ref, score, position, position)

    def _best_window(
        self,
        ref: int,
        canonical: list[str | None],
        raws: list[list[str]],
        first: int,
        last: int,
        similar: dict[tuple[str, str], float],
        windows: dict[tuple[int, int], _Name],
    ) -> tuple[_Score, int, int] | None:
        """The best-scoring run of the text's words around ``first``..``last`` for one list name."""
        name = self._refs[ref].name
        best: tuple[_Score, int, int] | None = None
        best_key: tuple[float, int, int] = (0.0, 0, 0)
        starts = [first] + [s for s in range(first - 1, max(-1, first - 4), -1) if _bridging(canonical[s])]
        ends = [last] + [e for e in range(last + 1, min(len(canonical), last + 4)) if _bridging(canonical[e])]
        for start in _contiguous(starts, first, -1):
            for end in _contiguous(ends, last, 1):
                if canonical[start] is None or canonical[end] is None:
                    continue  # a window neither starts nor ends with "of" or "the"
                query = windows.get((start, end))
                if query is None:
                    tokens = tuple(t for token in canonical[start : end + 1] if token for t in token.split())
                    raw = [w for words in raws[start : end + 1] for w in words]
                    query = windows[(start, end)] = _Name.from_tokens(
                        " ".join(tokens), tokens, "".join(raw), len(raw)
                    )
                score = _score(query, name, similar)
                # on a tie, the window whose organisation words agree with the name's, then the longer
                key = (score.score, -len(query.types ^ name.types), end - start)
                if best is None or key > best_key:
                    best, best_key = (score, start, end), key
        return best


def _upper_bound(query_weight: float, name: _Name, present: set[str], like_proper: set[str]) -> float:
    """The most ``_score`` could give by words: only the name's words like some query word can pair.

    ``present``: the list words like some query word; ``like_proper``: those like a query
    proper-name word (if none of them is in the name either, no proper-name word can be shared).
    """
    found = [w for token, w in zip(name.core, name.weights, strict=True) if token in present]
    if not found:
        return 0.0
    paired = min(query_weight, float(len(found)))  # each pair takes one query word (weight <= 1)
    bound = (sum(found) + paired) / (query_weight + sum(name.weights))
    if name.proper and not name.proper & present and not name.core_set & like_proper:
        bound *= NO_COMMON_NAME_WORD
    return bound


def _may_reach(name: _Name, present: set[str], cutoff: float) -> bool:
    """Whether a name could score ``cutoff`` against text holding the words ``present`` (an upper bound)."""
    total = sum(name.weights)
    found = sum(w for token, w in zip(name.core, name.weights, strict=True) if token in present)
    bound = 2 * found / (found + total) if found else 0.0
    if name.proper and not name.proper & present:
        bound *= NO_COMMON_NAME_WORD
    return bound >= cutoff


def _widen(
    name: _Name, canonical: list[str | None], first: int, last: int, similar: dict[tuple[str, str], float]
) -> tuple[int, int]:
    """Stretch a run of anchor words to the name's other words nearby ("Nanjing" before "Aeronautics")."""
    reach = len(name.core) + 2
    low, high = first, last
    for position in range(max(0, first - reach), min(len(canonical), last + reach + 1)):
        token = canonical[position]
        if not token or _token_class(token) == _CLASS_TYPE:
            continue
        for word in name.core:
            key = (token, word)
            if key not in similar:
                similar[key] = _token_similarity(token, word)
            if similar[key]:
                low, high = min(low, position), max(high, position)
                break
    return low, high


def _bridging(token: str | None) -> bool:
    """Words a window may take in beside the ones that matched: organisation words and "of", "the"."""
    return token is None or _token_class(token) == _CLASS_TYPE


def _contiguous(positions: list[int], origin: int, step: int) -> list[int]:
    """The positions reachable from ``origin`` one word at a time (no gap)."""
    reachable, expected = [], origin
    for position in positions:
        if position != expected:
            break
        reachable.append(position)
        expected += step
    return reachable


def _clusters(positions: list[int], size: int) -> Iterator[tuple[int, int]]:
    """Runs of positions no further apart than a name of ``size`` words could stretch."""
    gap = max(2, size + 1)
    start = previous = positions[0]
    for position in positions[1:]:
        if position - previous > gap:
            yield start, previous
            start = position
        previous = position
    yield start, previous


def load_matcher(config: Config, store: WatchlistStore | None = None) -> Matcher:
    """The matcher over every imported list, importing the shipped starter list first if needed.

    Built once (at start-up); a list imported afterwards is seen by a new matcher.
    """
    own = store is None
    store = store or WatchlistStore(config.paths.watchlist_db)
    try:
        if config.screening.starter_list:
            summary = ensure_starter(store, config.paths.watchlists_dir)
            if summary:
                logger.info("watchlists: imported the starter list (%d entries)", summary.entries)
        return Matcher.from_store(store, config.screening)
    finally:
        if own:
            store.close()


def list_warnings(lists: Iterable[ListInfo], max_age_days: int, now: datetime | None = None) -> list[str]:
    """One line for each list whose data is older than ``max_age_days``."""
    lines = []
    for info in lists:
        if info.is_stale(max_age_days, now):
            dated = f", file dated {info.file_date}" if info.file_date else ""
            lines.append(
                f"list '{info.name}' is {info.age_days(now)} days old "
                f"(imported {info.imported_at[:10]}{dated}; older than {max_age_days} days): "
                "import a current copy"
            )
    return lines


def _now() -> str:
    return iso_utc(datetime.now(UTC))


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- the labelled name-matching set ----------------------------------------------------------------
@dataclass(frozen=True)
class MatchingCase:
    """One labelled screening: ``expect`` is the entry's primary name, or None for a hard negative."""

    id: str
    query: str
    expect: str | None
    country: str | None = None
    variant: str = ""


@dataclass(frozen=True)
class MatchingOutcome:
    """What the matcher said about one case: ``verdict`` is one of ``VERDICTS``."""

    case: MatchingCase
    verdict: str
    best: Candidate | None
    expected: Candidate | None

    @property
    def is_error(self) -> bool:
        return self.verdict in ("missed", "wrong match", "false match")


VERDICTS = (
    "match",
    "possible",
    "missed",
    "wrong match",
    "false match",
    "negative possible",
    "negative clean",
)


@dataclass(frozen=True)
class MatchingReport:
    """Precision and recall of ``match``, how many ``possible``, and every error."""

    outcomes: tuple[MatchingOutcome, ...]
    match_threshold: float
    possible_threshold: float

    def count(self, verdict: str) -> int:
        return sum(1 for o in self.outcomes if o.verdict == verdict)

    @property
    def positives(self) -> int:
        return sum(1 for o in self.outcomes if o.case.expect)

    @property
    def negatives(self) -> int:
        return len(self.outcomes) - self.positives

    @property
    def match_precision(self) -> float:
        """Of the screenings whose best candidate is a ``match``, the share that is the right entry."""
        matched = self.count("match") + self.count("wrong match") + self.count("false match")
        return self.count("match") / matched if matched else 1.0

    @property
    def match_recall(self) -> float:
        """Of the listed organisations, the share whose best candidate is a ``match`` on the right entry."""
        return self.count("match") / self.positives if self.positives else 1.0

    @property
    def caught(self) -> float:
        """Of the listed organisations, the share found as ``match`` or at least ``possible``."""
        found = self.count("match") + self.count("possible")
        return found / self.positives if self.positives else 1.0

    @property
    def possible_count(self) -> int:
        """Screenings whose best candidate is a ``possible`` match (listed or not)."""
        return sum(1 for o in self.outcomes if o.best is not None and o.best.strength == "possible")

    def sweep(self, thresholds: Iterable[float]) -> list[dict[str, float]]:
        """Precision and recall of ``match`` had the match threshold been each of ``thresholds``."""
        rows = []
        for threshold in thresholds:
            correct = wrong = 0
            for outcome in self.outcomes:
                best = outcome.best
                if best is None or best.score < threshold or best.matched_kind == "weak":
                    continue
                if outcome.case.expect and best.entry == outcome.case.expect:
                    correct += 1
                else:
                    wrong += 1
            rows.append(
                {
                    "threshold": round(threshold, 3),
                    "precision": correct / (correct + wrong) if correct + wrong else 1.0,
                    "recall": correct / self.positives if self.positives else 1.0,
                    "false_matches": wrong,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "screenings": len(self.outcomes),
            "positives": self.positives,
            "negatives": self.negatives,
            "match_threshold": self.match_threshold,
            "possible_threshold": self.possible_threshold,
            "match_precision": round(self.match_precision, 4),
            "match_recall": round(self.match_recall, 4),
            "caught": round(self.caught, 4),
            "possible": self.possible_count,
            "verdicts": {verdict: self.count(verdict) for verdict in VERDICTS},
            "errors": [
                {
                    "id": o.case.id,
                    "query": o.case.query,
                    "expect": o.case.expect,
                    "verdict": o.verdict,
                    "best": o.best.to_dict() if o.best else None,
                }
                for o in self.outcomes
                if o.is_error
            ],
        }


def load_matching_set(path: str | Path) -> tuple[list[dict[str, str]], list[MatchingCase]]:
    """The lists and cases of a labelled set (``eval/matching.yaml``)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WatchlistError(f"{path}: cannot be read as YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("screenings"), list):
        raise WatchlistError(f"{path}: expected 'lists' and 'screenings'")
    lists = data.get("lists") or []
    cases, seen = [], set()
    for number, item in enumerate(data["screenings"], 1):
        if not isinstance(item, dict) or not str(item.get("query") or "").strip() or "expect" not in item:
            raise WatchlistError(
                f"{path}: screening {number} needs a query and an expect (null for a negative)"
            )
        case_id = str(item.get("id") or number)
        if case_id in seen:
            raise WatchlistError(f"{path}: screening id {case_id!r} is used twice")
        seen.add(case_id)
        country = item.get("country")
        cases.append(
            MatchingCase(
                case_id,
                str(item["query"]),
                item["expect"],
                str(country) if country else None,
                str(item.get("variant", "")),
            )  # fmt: skip
        )
    return lists, cases


def evaluate_matching(
    path: str | Path, settings: ScreeningSettings | None = None, root: str | Path | None = None
) -> MatchingReport:
    """Run a labelled set against its lists, imported into a scratch database.

    Args:
        path: The set (``eval/matching.yaml``).
        settings: The thresholds to judge by (default: the shipped ones).
        root: The folder the set's list files are relative to (default: the set's parent's parent).
    """
    import tempfile

    settings = settings or ScreeningSettings()
    path = Path(path)
    base = Path(root) if root else path.resolve().parent.parent
    lists, cases = load_matching_set(path)
    with tempfile.TemporaryDirectory() as scratch:
        store = WatchlistStore(Path(scratch) / "watchlists.db")
        try:
            for item in lists:
                store.import_file(base / item["file"], item["format"], item.get("name"))
            matcher = Matcher.from_store(store, settings)
        finally:
            store.close()
    known = {entry.name for entry in matcher.entries}
    for case in cases:
        if case.expect and case.expect not in known:
            raise WatchlistError(
                f"{path}: {case.id}: the expected entry {case.expect!r} is on none of the lists"
            )
    outcomes = tuple(_outcome(case, matcher.search(case.query, case.country, limit=10)) for case in cases)
    return MatchingReport(outcomes, settings.match_threshold, settings.possible_threshold)


def _outcome(case: MatchingCase, candidates: list[Candidate]) -> MatchingOutcome:
    best = candidates[0] if candidates else None
    expected = next((c for c in candidates if case.expect and c.entry == case.expect), None)
    if not case.expect:
        verdict = "negative clean"
        if best and best.strength == "match":
            verdict = "false match"
        elif best:
            verdict = "negative possible"
    elif best and best.strength == "match" and best.entry != case.expect:
        verdict = "wrong match"
    elif expected and expected.strength == "match":
        verdict = "match"
    elif expected:
        verdict = "possible"
    else:
        verdict = "missed"
    return MatchingOutcome(case, verdict, best, expected)
