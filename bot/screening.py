"""Partner pre-screening: an organisation in, a cited red/amber/green first screen out.

``Screener.screen(PartnerQuery)`` compares the name with the imported watchlists (through the
``Matcher`` of ``bot.watchlists``) and applies the rules in ``knowledge/screening-rules.yml``
(``load_rules``): country factors, research-area sensitivity and the kind of collaboration.
Every rule that fires is a ``Reason`` with its citation (a list entry and its source, or a
guidance document and section with its link); the rating is the highest level any reason gives.

``route_message`` decides whether a direct message asks to screen a partner, asks a guidance
question, or is unclear; the Slack adapter acts on its answer.

No Slack imports. Partner names and question text are never logged (counts and ratings are).
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from bot.config import Config, InstitutionSettings, ScreeningSettings
from indexer.documents import Document, read_document
from indexer.errors import IndexerError

logger = logging.getLogger(__name__)

RATINGS = ("green", "amber", "red")
LEVELS = ("note", "amber", "red")  # what a rule can give: note (a reason only), amber, red
REASON_KINDS = ("watchlist", "country", "area", "collaboration")
STRENGTHS = ("match", "possible")
LIST_FORMATS = ("uk-sanctions", "us-csl", "csv")
AREA_GROUPS = ("nsi", "export", "atas")
# One line that says what a rating means, for every adapter ({team}: institution.team_name).
HEADLINES = {
    "red": "Red: stop, and check with the {team} before going further",
    "amber": "Amber: check with the {team} before agreeing anything",
    "green": "Green: no list match found, but check the partner yourself",
}
PENDING_NOTE = " (An area confirmed in March 2026: it applies once the amending regulations are made.)"
MAX_ORGANISATION_CHARS = 200
MAX_FIELD_CHARS = 1000
# Areas found by meaning: at most this many per group (the best), so one vague phrase does
# not list half the NSI areas.
MEANING_AREAS_PER_GROUP = 2


class ScreeningError(Exception):
    """Base of the errors a user can cause in pre-screening; the message is safe to show."""


class ScreeningRuleError(ScreeningError):
    """The rules file is malformed; the message names the rule and the problem."""


class PartnerQueryError(ScreeningError):
    """A screening request cannot be run as it is (no organisation, a field too long...)."""


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerQuery:
    """What to screen: the organisation, and what is known about the collaboration."""

    organisation: str
    country: str | None = None
    area: str | None = None
    kind: str | None = None  # a key of collaboration_kinds: joint-research, visiting-researcher...
    funding: str | None = None
    notes: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "organisation": self.organisation,
            "country": self.country,
            "area": self.area,
            "kind": self.kind,
            "funding": self.funding,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class GuidanceCitation:
    """A section of a guidance document, with the document's title and link."""

    document: str
    title: str
    section: str
    url: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "guidance",
            "document": self.document,
            "title": self.title,
            "section": self.section,
            "url": self.url,
        }


@dataclass(frozen=True)
class ListCitation:
    """A watchlist entry and where the list says it comes from."""

    list: str
    entry: str
    source_url: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "watchlist", "list": self.list, "entry": self.entry, "source_url": self.source_url}


Citation = GuidanceCitation | ListCitation


@dataclass(frozen=True)
class Reason:
    """One rule that fired. ``level`` is what it does to the rating (note: nothing)."""

    text: str
    kind: str
    citation: Citation
    rule: str
    level: str = "note"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "citation": self.citation.to_dict()}


@dataclass(frozen=True)
class Match:
    """A watchlist candidate for the organisation, as the matcher scored it."""

    entry: str
    list: str
    matched_name: str
    score: float
    strength: str
    source_url: str | None
    details: dict[str, Any]
    explanation: str = ""
    country: str | None = None
    list_format: str | None = None
    risk_level: str = ""
    programme: str = ""
    reason: str = ""  # why the list has the entry (institution lists)

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "list": self.list,
            "matched_name": self.matched_name,
            "score": round(float(self.score), 3),
            "strength": self.strength,
            "source_url": self.source_url,
            "details": self.details,
        }


@dataclass(frozen=True)
class NextStep:
    text: str
    citation: GuidanceCitation | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citation": self.citation.to_dict() if self.citation else None}


@dataclass(frozen=True)
class Screening:
    """A first screen of one partner.

    ``warnings`` (for example a list older than ``screening.max_list_age_days``) are shown with
    the result; ``to_dict`` adds them to the disclaimer so the JSON keeps the issue's shape.
    """

    query: PartnerQuery
    rating: str
    matches: tuple[Match, ...]
    reasons: tuple[Reason, ...]
    next_steps: tuple[NextStep, ...]
    disclaimer: str
    case: str | None = None
    warnings: tuple[str, ...] = ()
    country: str | None = None  # the ISO code the rules used (given, read from the name, or a match's)

    def with_case(self, ref: str | None) -> Screening:
        return replace(self, case=ref)

    @property
    def full_disclaimer(self) -> str:
        return " ".join((*self.warnings, self.disclaimer))

    def to_dict(self) -> dict[str, Any]:
        """The result as the issue's JSON object: rating, matches, reasons, next_steps, disclaimer, case."""
        return {
            "rating": self.rating,
            "matches": [match.to_dict() for match in self.matches],
            "reasons": [reason.to_dict() for reason in self.reasons],
            "next_steps": [step.to_dict() for step in self.next_steps],
            "disclaimer": self.full_disclaimer,
            "case": self.case,
        }

    def to_attachment(self) -> dict[str, Any]:
        """What a case keeps: the whole result and what was screened."""
        return {"query": self.query.to_dict(), "country": self.country, **self.to_dict()}


# -- the rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListPolicy:
    format: str
    label: str
    match: str
    possible: str
    citation: GuidanceCitation
    red_list_codes: tuple[str, ...] = ()
    red_risk_levels: tuple[str, ...] = ()
    red_reason_phrases: tuple[str, ...] = ()
    note_risk_levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class CountryFactor:
    id: str
    label: str
    raises: str
    text: str
    citation: GuidanceCitation
    countries: frozenset[str]
    next_step: str | None = None


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    aliases: tuple[str, ...] = ()
    adjectives: tuple[str, ...] = ()
    places: tuple[str, ...] = ()


@dataclass(frozen=True)
class AreaGroup:
    id: str
    label: str
    raises: str
    text: str
    citation: GuidanceCitation
    next_step: str | None = None
    by_meaning: bool = True  # False: by keywords only


@dataclass(frozen=True)
class Area:
    id: str
    group: str
    name: str
    keywords: tuple[str, ...]
    description: str
    citation: GuidanceCitation | None = None  # None: the group's
    status: str = "in_force"  # or "pending" (the 2026 NSI changes, not yet in force)
    patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def keyword_in(self, text: str) -> str | None:
        """The first keyword found in ``text`` (as typed there), or None."""
        for pattern in self.patterns:
            found = pattern.search(text)
            if found:
                return found.group(0)
        return None


@dataclass(frozen=True)
class KindCheck:
    id: str
    raises: str
    text: str
    citation: GuidanceCitation
    when_area_group: str | None = None
    unless_country_in: str | None = None
    next_step: str | None = None


@dataclass(frozen=True)
class CollaborationKind:
    id: str
    label: str
    checks: tuple[KindCheck, ...]


@dataclass(frozen=True)
class ScreeningRules:
    """The loaded, checked rules file (``load_rules``)."""

    lists: dict[str, ListPolicy]
    country_factors: tuple[CountryFactor, ...]
    countries: dict[str, Country]
    atas_exempt: frozenset[str]
    atas_exempt_citation: GuidanceCitation
    area_groups: dict[str, AreaGroup]
    areas: tuple[Area, ...]
    kinds: dict[str, CollaborationKind]
    next_steps: dict[str, tuple[NextStep, ...]]
    disclaimer: str
    _lookup: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _in_text: tuple[tuple[re.Pattern[str], str], ...] = field(default=(), compare=False, repr=False)

    def resolve_country(self, text: str | None) -> str | None:
        """The ISO code for a country as typed ("China", "PRC", "cn", "Russian Federation"), or None."""
        if not text:
            return None
        return self._lookup.get(_fold(text))

    def country_in_text(self, text: str) -> str | None:
        """A country named in ``text`` ("Russian Academy of Sciences" -> RU), or None.

        Names, aliases and adjectives are matched as whole words; the longest match wins
        ("North Korea" before "Korea"), and capitalised in the text for short codes like "UK".
        """
        for pattern, code in self._in_text:
            if pattern.search(text):
                return code
        return None

    def country_name(self, code: str | None) -> str | None:
        if not code:
            return None
        country = self.countries.get(code)
        return country.name if country else code

    def kind_id(self, text: str | None) -> str | None:
        """The collaboration kind for its id or label ("data sharing", "data-sharing"), or None."""
        if not text:
            return None
        key = _fold(text).replace(" ", "-")
        for kind in self.kinds.values():
            if key in (kind.id, _fold(kind.label).replace(" ", "-")):
                return kind.id
        return None


def load_rules(
    path: str | Path,
    guidance_dir: str | Path | None = None,
    placeholders: Mapping[str, str] | None = None,
) -> ScreeningRules:
    """Read and check the screening rules.

    Args:
        path: The rules file (``paths.screening_rules``).
        guidance_dir: Where the cited guidance documents are (``paths.guidance_dir``); every
            citation must name a document there and one of its section headings.
        placeholders: Values for ``{{ name }}`` in the guidance's titles and headings.

    Raises:
        ScreeningRuleError: the file cannot be read, or a rule is malformed; names the rule.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ScreeningRuleError(f"screening rules: {path} not found (paths.screening_rules)") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScreeningRuleError(f"screening rules: {path} cannot be read ({_first_line(exc)})") from exc
    citations = _CitationResolver(Path(guidance_dir) if guidance_dir else None, placeholders or {})
    return _RulesParser(data, citations).parse()


class _CitationResolver:
    """Turns ``{document, section}`` into a ``GuidanceCitation``, checking both exist."""

    def __init__(self, guidance_dir: Path | None, placeholders: Mapping[str, str]) -> None:
        self.guidance_dir = guidance_dir
        self.placeholders = dict(placeholders)
        self._documents: dict[str, Document | None] = {}

    def resolve(self, spec: Any, where: str) -> GuidanceCitation:
        spec = _mapping(spec, f"{where}: citation")
        _only(spec, {"document", "section"}, f"{where}: citation")
        document = _text(spec, "document", f"{where}: citation")
        section = _text(spec, "section", f"{where}: citation")
        if self.guidance_dir is None:
            return GuidanceCitation(document, document, section, None)
        doc = self._document(document, where)
        headings = {_fold(heading) for s in doc.sections for heading in s.heading_path}
        if _fold(section) not in headings and _fold(self._fill(section)) not in headings:
            raise ScreeningRuleError(
                f"screening rules: {where}: citation: no section {section!r} in {document}"
            )
        return GuidanceCitation(document, doc.title, self._fill(section), doc.url)

    def _document(self, name: str, where: str) -> Document:
        if name not in self._documents:
            file = self.guidance_dir / name  # type: ignore[operator]
            try:
                self._documents[name] = (
                    read_document(file, name, self.placeholders) if file.is_file() else None
                )
            except IndexerError:
                self._documents[name] = None
        doc = self._documents[name]
        if doc is None:
            raise ScreeningRuleError(
                f"screening rules: {where}: citation: no readable guidance document {name!r} "
                f"in {self.guidance_dir}"
            )
        return doc

    def _fill(self, text: str) -> str:
        for key, value in self.placeholders.items():
            text = text.replace("{{ " + key + " }}", value).replace("{{" + key + "}}", value)
        return text


class _RulesParser:
    def __init__(self, data: Any, citations: _CitationResolver) -> None:
        self.data = data
        self.cite = citations.resolve

    def parse(self) -> ScreeningRules:
        data = _mapping(self.data, "the top level")
        known = {
            "version",
            "lists",
            "country_factors",
            "atas_exempt_countries",
            "country_names",
            "area_groups",
            "areas",
            "collaboration_kinds",
            "next_steps",
            "disclaimer",
        }
        _only(data, known, "the top level")
        if data.get("version") != 1:
            raise ScreeningRuleError("screening rules: version: expected 1")
        countries = self._countries(data.get("country_names"))
        lists = self._lists(data.get("lists"))
        factors = tuple(
            self._factor(spec, n, countries) for n, spec in enumerate(_list(data, "country_factors"))
        )
        _unique([f.id for f in factors], "country factor")
        exempt_spec = _mapping(data.get("atas_exempt_countries"), "atas_exempt_countries")
        _only(exempt_spec, {"citation", "countries"}, "atas_exempt_countries")
        exempt = self._codes(exempt_spec.get("countries"), "atas_exempt_countries", countries)
        groups = self._groups(data.get("area_groups"))
        areas = tuple(self._area(spec, n, groups) for n, spec in enumerate(_list(data, "areas")))
        _unique([a.id for a in areas], "area")
        kinds = self._kinds(data.get("collaboration_kinds"))
        steps = self._next_steps(data.get("next_steps"))
        disclaimer = _text(data, "disclaimer", "the top level")
        lookup, in_text = _country_indexes(countries)
        return ScreeningRules(
            lists=lists,
            country_factors=factors,
            countries=countries,
            atas_exempt=exempt,
            atas_exempt_citation=self.cite(exempt_spec.get("citation"), "atas_exempt_countries"),
            area_groups=groups,
            areas=areas,
            kinds=kinds,
            next_steps=steps,
            disclaimer=disclaimer,
            _lookup=lookup,
            _in_text=in_text,
        )

    def _countries(self, spec: Any) -> dict[str, Country]:
        spec = _mapping(spec, "country_names")
        countries: dict[str, Country] = {}
        for code, entry in spec.items():
            where = f"country '{code}'"
            if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{2}", code):
                raise ScreeningRuleError(f"screening rules: {where}: the key must be a two-letter ISO code")
            entry = _mapping(entry, where)
            _only(entry, {"name", "aliases", "adjectives", "places"}, where)
            countries[code] = Country(
                code,
                _text(entry, "name", where),
                _strings(entry.get("aliases"), f"{where}: aliases"),
                _strings(entry.get("adjectives"), f"{where}: adjectives"),
                _strings(entry.get("places"), f"{where}: places"),
            )
        names: dict[str, str] = {}
        for country in countries.values():
            for name in (country.name, *country.aliases, *country.adjectives, *country.places):
                other = names.setdefault(_fold(name), country.code)
                if other != country.code:
                    raise ScreeningRuleError(
                        f"screening rules: country '{country.code}': the name {name!r} is also {other}'s"
                    )
        return countries

    def _codes(self, value: Any, where: str, countries: Mapping[str, Country]) -> frozenset[str]:
        codes = _strings(value, f"{where}: countries")
        unknown = [code for code in codes if code not in countries]
        if unknown:
            raise ScreeningRuleError(
                f"screening rules: {where}: countries: {unknown[0]!r} has no entry in country_names"
            )
        return frozenset(codes)

    def _lists(self, spec: Any) -> dict[str, ListPolicy]:
        spec = _mapping(spec, "lists")
        policies = {}
        for name, entry in spec.items():
            where = f"list '{name}'"
            if name not in LIST_FORMATS:
                raise ScreeningRuleError(
                    f"screening rules: {where}: not a list format (expected {', '.join(LIST_FORMATS)})"
                )
            entry = _mapping(entry, where)
            keys = {
                "label",
                "match",
                "possible",
                "citation",
                "red_list_codes",
                "red_risk_levels",
                "red_reason_phrases",
                "note_risk_levels",
            }
            _only(entry, keys, where)
            policies[name] = ListPolicy(
                format=name,
                label=_text(entry, "label", where),
                match=_level(entry.get("match"), f"{where}: match"),
                possible=_level(entry.get("possible"), f"{where}: possible"),
                citation=self.cite(entry.get("citation"), where),
                red_list_codes=tuple(c.upper() for c in _strings(entry.get("red_list_codes"), where)),
                red_risk_levels=tuple(_fold(x) for x in _strings(entry.get("red_risk_levels"), where)),
                note_risk_levels=tuple(_fold(x) for x in _strings(entry.get("note_risk_levels"), where)),
                red_reason_phrases=_strings(entry.get("red_reason_phrases"), where),
            )
        missing = [name for name in LIST_FORMATS if name not in policies]
        if missing:
            raise ScreeningRuleError(f"screening rules: lists: no policy for the {missing[0]!r} format")
        return policies

    def _factor(self, spec: Any, number: int, countries: Mapping[str, Country]) -> CountryFactor:
        spec = _mapping(spec, f"country factor #{number + 1}")
        factor_id = _text(spec, "id", f"country factor #{number + 1}")
        where = f"country factor '{factor_id}'"
        _only(spec, {"id", "label", "raises", "text", "citation", "countries", "next_step"}, where)
        return CountryFactor(
            id=factor_id,
            label=_text(spec, "label", where),
            raises=_level(spec.get("raises"), f"{where}: raises"),
            text=_text(spec, "text", where),
            citation=self.cite(spec.get("citation"), where),
            countries=self._codes(spec.get("countries"), where, countries),
            next_step=_optional_text(spec, "next_step", where),
        )

    def _groups(self, spec: Any) -> dict[str, AreaGroup]:
        spec = _mapping(spec, "area_groups")
        groups = {}
        for group_id, entry in spec.items():
            where = f"area group '{group_id}'"
            if group_id not in AREA_GROUPS:
                raise ScreeningRuleError(
                    f"screening rules: {where}: expected one of {', '.join(AREA_GROUPS)}"
                )
            entry = _mapping(entry, where)
            _only(entry, {"label", "raises", "text", "citation", "next_step", "by_meaning"}, where)
            by_meaning = entry.get("by_meaning", True)
            if not isinstance(by_meaning, bool):
                raise ScreeningRuleError(f"screening rules: {where}: by_meaning: expected true or false")
            groups[group_id] = AreaGroup(
                id=group_id,
                label=_text(entry, "label", where),
                raises=_level(entry.get("raises"), f"{where}: raises"),
                text=_text(entry, "text", where),
                citation=self.cite(entry.get("citation"), where),
                next_step=_optional_text(entry, "next_step", where),
                by_meaning=by_meaning,
            )
        return groups

    def _area(self, spec: Any, number: int, groups: Mapping[str, AreaGroup]) -> Area:
        spec = _mapping(spec, f"area #{number + 1}")
        area_id = _text(spec, "id", f"area #{number + 1}")
        where = f"area '{area_id}'"
        _only(spec, {"id", "group", "name", "keywords", "description", "citation", "status"}, where)
        group = _text(spec, "group", where)
        if group not in groups:
            raise ScreeningRuleError(f"screening rules: {where}: group: {group!r} is not in area_groups")
        status = spec.get("status", "in_force")
        if status not in ("in_force", "pending"):
            raise ScreeningRuleError(f"screening rules: {where}: status: expected in_force or pending")
        keywords = _strings(spec.get("keywords"), f"{where}: keywords")
        if not keywords:
            raise ScreeningRuleError(f"screening rules: {where}: keywords: at least one is needed")
        return Area(
            id=area_id,
            group=group,
            name=_text(spec, "name", where),
            keywords=keywords,
            description=_text(spec, "description", where),
            citation=self.cite(spec["citation"], where) if "citation" in spec else None,
            status=status,
            patterns=tuple(keyword_pattern(keyword) for keyword in keywords),
        )

    def _kinds(self, spec: Any) -> dict[str, CollaborationKind]:
        spec = _mapping(spec, "collaboration_kinds")
        kinds = {}
        for kind_id, entry in spec.items():
            where = f"collaboration kind '{kind_id}'"
            entry = _mapping(entry, where)
            _only(entry, {"label", "checks"}, where)
            checks = tuple(
                self._check(item, f"{where}, check #{n + 1}") for n, item in enumerate(_list(entry, "checks"))
            )
            kinds[str(kind_id)] = CollaborationKind(str(kind_id), _text(entry, "label", where), checks)
        _unique([check.id for kind in kinds.values() for check in kind.checks], "collaboration check")
        return kinds

    def _check(self, spec: Any, where: str) -> KindCheck:
        spec = _mapping(spec, where)
        where = f"collaboration check '{_text(spec, 'id', where)}'"
        keys = {"id", "raises", "text", "citation", "when_area_group", "unless_country_in", "next_step"}
        _only(spec, keys, where)
        group = _optional_text(spec, "when_area_group", where)
        if group is not None and group not in AREA_GROUPS:
            raise ScreeningRuleError(
                f"screening rules: {where}: when_area_group: {group!r} is not an area group"
            )
        unless = _optional_text(spec, "unless_country_in", where)
        if unless not in (None, "atas_exempt_countries"):
            raise ScreeningRuleError(
                f"screening rules: {where}: unless_country_in: expected atas_exempt_countries"
            )
        return KindCheck(
            id=spec["id"],
            raises=_level(spec.get("raises"), f"{where}: raises"),
            text=_text(spec, "text", where),
            citation=self.cite(spec.get("citation"), where),
            when_area_group=group,
            unless_country_in=unless,
            next_step=_optional_text(spec, "next_step", where),
        )

    def _next_steps(self, spec: Any) -> dict[str, tuple[NextStep, ...]]:
        spec = _mapping(spec, "next_steps")
        _only(spec, set(RATINGS), "next_steps")
        steps = {}
        for rating in RATINGS:
            items = _list(spec, rating)
            if not items:
                raise ScreeningRuleError(
                    f"screening rules: next_steps: {rating}: at least one step is needed"
                )
            parsed = []
            for n, item in enumerate(items):
                where = f"next step {rating} #{n + 1}"
                item = _mapping(item, where)
                _only(item, {"text", "citation"}, where)
                parsed.append(NextStep(_text(item, "text", where), self.cite(item.get("citation"), where)))
            steps[rating] = tuple(parsed)
        return steps


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """A whole-word pattern for a rules keyword: ``*`` at the end matches any ending; a keyword
    in capitals (``AI``, ``GNSS``) matches in capitals only."""
    stem = keyword.strip()
    wildcard = stem.endswith("*")
    stem = stem.rstrip("*").strip()
    body = r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", stem))
    tail = r"[\w-]*" if wildcard else ""
    flags = 0 if stem.isupper() and len(stem) > 1 else re.IGNORECASE
    return re.compile(rf"(?<![\w-]){body}{tail}(?![\w])", flags)


def _country_indexes(
    countries: Mapping[str, Country],
) -> tuple[dict[str, str], tuple[tuple[re.Pattern[str], str], ...]]:
    lookup: dict[str, str] = {}
    names: list[tuple[str, str]] = []
    for country in countries.values():
        lookup[_fold(country.code)] = country.code
        for name in (country.name, *country.aliases):
            lookup[_fold(name)] = country.code
        for name in (country.name, *country.aliases, *country.adjectives, *country.places):
            names.append((name, country.code))
    names.sort(key=lambda pair: -len(pair[0]))
    patterns = []
    for name, code in names:
        flags = 0 if len(name) <= 4 and name.upper() == name else re.IGNORECASE
        body = r"[\s.]*".join(re.escape(part) for part in re.split(r"[\s.]+", name.strip(". ")) if part)
        patterns.append((re.compile(rf"(?<![\w]){body}(?![\w])", flags), code))
    return lookup, tuple(patterns)


# -- research areas --------------------------------------------------------------------------


@dataclass(frozen=True)
class AreaHit:
    """A research area that fired, and how: a keyword found in the text, or closeness in meaning."""

    area: Area
    how: str  # "keyword" or "meaning"
    evidence: str  # the keyword as typed, or the similarity
    similarity: float | None = None


class SupportsEmbed(Protocol):
    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class AreaClassifier:
    """Finds the sensitive research areas a free-text research area belongs to.

    Keywords first (precise, explainable); then, with the loaded sentence model, the areas whose
    prototypes are close in meaning to the text: an area's prototypes are its description and
    each of its keywords, and its similarity is the best of theirs (cosine at least
    ``threshold``). That catches wordings the keywords miss ("superconducting qubits", "swarm
    UAV control"). Groups with ``by_meaning: false`` (ATAS subjects, whose one-word names
    attract any academic subject) fire by keywords only. The model is the answerer's own
    (``answerer.index.embedder``): no second copy is loaded.
    """

    def __init__(
        self,
        areas: Sequence[Area],
        embedder: SupportsEmbed | None = None,
        threshold: float = 0.5,
        meaning_groups: Iterable[str] | None = None,
    ):
        self.areas = tuple(areas)
        self.embedder = embedder
        self.threshold = threshold
        groups = set(AREA_GROUPS if meaning_groups is None else meaning_groups)
        self._meaning = [n for n, area in enumerate(self.areas) if area.group in groups]
        texts, owners = [], []
        for n in self._meaning:
            area = self.areas[n]
            for text in (area.description, *area.keywords):
                texts.append(text.rstrip("*").strip())
                owners.append(n)
        self._owners = np.array(owners, dtype=np.int64)
        self.vectors = embedder.embed_documents(texts) if embedder is not None and texts else None

    def classify(self, text: str | None, extra: str | None = None) -> list[AreaHit]:
        """The areas ``text`` (a research area) is in; ``extra`` (notes) is searched for keywords only."""
        hits: dict[str, AreaHit] = {}
        for source in (text, extra):
            if not source:
                continue
            for area in self.areas:
                if area.id not in hits and (keyword := area.keyword_in(source)):
                    hits[area.id] = AreaHit(area, "keyword", keyword)
        if text and self.vectors is not None:
            for hit in self._by_meaning(text):
                hits.setdefault(hit.area.id, hit)
        return list(hits.values())

    def similarities(self, text: str) -> np.ndarray:
        """Each area's similarity to ``text`` (the best of its prototypes; -1 for keyword-only areas)."""
        assert self.embedder is not None and self.vectors is not None
        scores = self.vectors @ self.embedder.embed_query(text)
        best = np.full(len(self.areas), -1.0, dtype=np.float32)
        np.maximum.at(best, self._owners, scores.astype(np.float32))
        return best

    def _by_meaning(self, text: str) -> list[AreaHit]:
        scores = self.similarities(text)
        per_group: dict[str, int] = {}
        found = []
        for index in np.argsort(-scores):
            score = float(scores[index])
            if score < self.threshold:
                break
            area = self.areas[int(index)]
            if per_group.get(area.group, 0) >= MEANING_AREAS_PER_GROUP:
                continue
            per_group[area.group] = per_group.get(area.group, 0) + 1
            found.append(AreaHit(area, "meaning", f"{score:.2f}", score))
        return found


# -- the screener ----------------------------------------------------------------------------


class SupportsSearch(Protocol):
    """The watchlist matcher (``bot.watchlists.Matcher``)."""

    def search(self, name: str, country: str | None = None, limit: int = 10) -> list[Any]: ...


class Screener:
    """Screens partners against the watchlists and the rules.

    Args:
        matcher: ``bot.watchlists.Matcher`` (anything with ``search(name, country=None, limit=10)``
            returning candidates with entry, list_name, matched_name, score, strength,
            source_url, details, explanation, country).
        rules: From ``load_rules``.
        answerer_or_search: The loaded ``Answerer`` (or its ``SearchIndex``, or an embedder);
            its sentence model classifies research areas by meaning. None: keywords only.
        settings: ``Config.screening``.
        institution: Whom the disclaimer and next steps name.
        list_formats: List name -> import format, for lists the candidates do not say the
            format of (default: the matcher's ``list_formats()``, else the name itself).
        warnings: Returns the warnings every result carries (for example stale lists);
            default: one line per list in the matcher's ``lists`` older than
            ``screening.max_list_age_days`` (``bot.watchlists.list_warnings``).
    """

    def __init__(
        self,
        matcher: SupportsSearch,
        rules: ScreeningRules,
        answerer_or_search: Any = None,
        *,
        settings: ScreeningSettings | None = None,
        institution: InstitutionSettings | None = None,
        list_formats: Mapping[str, str] | None = None,
        warnings: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.matcher = matcher
        self.rules = rules
        self.settings = settings or ScreeningSettings()
        self.institution = institution or InstitutionSettings()
        self.classifier = AreaClassifier(
            rules.areas,
            _embedder_of(answerer_or_search),
            self.settings.area_similarity,
            meaning_groups=[g.id for g in rules.area_groups.values() if g.by_meaning],
        )
        self._list_formats = dict(list_formats or {})
        self._warnings = warnings or self._stale_lists
        self.model_note: str | None = None  # why areas are matched by keywords only, if they are

    # -- the one entry point -------------------------------------------------------------------
    def screen(self, query: PartnerQuery) -> Screening:
        """Screen one partner.

        Raises:
            PartnerQueryError: no organisation, a field too long, or an unknown kind.
        """
        started = time.perf_counter()
        query = self.check_query(query)
        given = self.rules.resolve_country(query.country)
        matches = self._matches(query.organisation, given or query.country)
        reasons = [self._match_reason(match) for match in matches]
        country, country_source = self._country(query, given, matches)
        reasons += self._country_reasons(country, country_source)
        hits = self.classifier.classify(query.area, query.notes)
        reasons += self._area_reasons(hits)
        reasons += self._kind_reasons(query.kind, hits, country)
        rating = rating_of(reasons)
        screening = Screening(
            query=query,
            rating=rating,
            matches=tuple(matches),
            reasons=tuple(reasons),
            next_steps=self._next_steps(rating, reasons, hits, country),
            disclaimer=self._fill(self.rules.disclaimer),
            warnings=tuple(self._warnings()),
            country=country,
        )
        logger.info(
            "screened a partner: rating=%s matches=%d reasons=%d %.0fms",
            rating,
            len(matches),
            len(reasons),
            (time.perf_counter() - started) * 1000,
        )
        return screening

    def check_query(self, query: PartnerQuery) -> PartnerQuery:
        return check_query(query, self.rules)

    def warnings_now(self) -> list[str]:
        """The warnings every result carries now (for example lists older than the age limit)."""
        return list(self._warnings())

    def _stale_lists(self) -> list[str]:
        lists = getattr(self.matcher, "lists", None)
        if not lists:
            return []
        from bot.watchlists import list_warnings

        days = self.settings.max_list_age_days
        return [
            f"Warning: {line[:1].upper()}{line[1:]}; a recent listing may be missing."
            for line in list_warnings(lists, days)
        ]

    # -- matches -------------------------------------------------------------------------------
    def _matches(self, organisation: str, country: str | None) -> list[Match]:
        limit = self.settings.max_matches
        seen: set[tuple[str, str]] = set()
        found: list[Match] = []
        for candidate in self.matcher.search(organisation, country=country, limit=limit * 2):
            strength = getattr(candidate, "strength", None)
            key = (candidate.list_name, candidate.entry)
            if strength not in STRENGTHS or key in seen:
                continue
            seen.add(key)
            found.append(self._match(candidate))
        found.sort(key=lambda m: (m.strength != "match", -m.score))
        return found[:limit]

    def _match(self, candidate: Any) -> Match:
        details = dict(getattr(candidate, "details", None) or {})
        list_format = (
            getattr(candidate, "list_format", None)
            or self._list_format(candidate.list_name)
            or details.get("format")
        )
        return Match(
            entry=candidate.entry,
            list=candidate.list_name,
            matched_name=candidate.matched_name,
            score=float(candidate.score),
            strength=candidate.strength,
            source_url=getattr(candidate, "source_url", None),
            details=details,
            explanation=getattr(candidate, "explanation", "") or "",
            country=getattr(candidate, "country", None) or None,
            list_format=list_format,
            risk_level=getattr(candidate, "risk_level", "") or str(details.get("risk_level") or ""),
            programme=getattr(candidate, "programme", "") or "",
            reason=getattr(candidate, "reason", "") or "",
        )

    def _list_format(self, list_name: str) -> str | None:
        if list_name in self._list_formats:
            return self._list_formats[list_name]
        formats = getattr(self.matcher, "list_formats", None)
        if callable(formats):
            try:
                self._list_formats.update(formats())
            except Exception:  # the rules then fall back to the list's name
                logger.exception("could not read the watchlists' formats")
        return self._list_formats.get(list_name) or (list_name if list_name in LIST_FORMATS else None)

    def _match_reason(self, match: Match) -> Reason:
        policy = self.rules.lists.get(match.list_format or "", self.rules.lists["csv"])
        level, why = list_level(policy, match)
        label = policy.label if policy.format != "csv" else f"{policy.label} '{match.list}'"
        if match.strength == "match":
            lead = f"Listed: '{match.entry}' on the {label}"
        else:
            lead = f"Possible match, check: '{match.entry}' on the {label}"
        named = "" if match.matched_name == match.entry else f" (matched on '{match.matched_name}')"
        text = f"{lead}{named}, score {match.score:.2f}."
        if why:
            text += f" {why}"
        citation = ListCitation(match.list, match.entry, match.source_url)
        return Reason(text, "watchlist", citation, f"watchlist:{policy.format}:{match.strength}", level)

    # -- countries -----------------------------------------------------------------------------
    def _country(
        self, query: PartnerQuery, given: str | None, matches: Sequence[Match]
    ) -> tuple[str | None, str]:
        if given:
            return given, "given"
        if query.country:
            return None, "unknown"  # typed but not recognised: no factor can be applied
        from_name = self.rules.country_in_text(query.organisation)
        if from_name:
            return from_name, "name"
        confirmed = next((m for m in matches if m.strength == "match" and m.country), None)
        code = self.rules.resolve_country(confirmed.country) if confirmed else None
        return (code, "list") if code else (None, "none")

    def _country_reasons(self, country: str | None, source: str) -> list[Reason]:
        if not country:
            return []
        name = self.rules.country_name(country) or country
        how = {
            "name": " (country read from the organisation's name)",
            "list": " (country from the list entry)",
        }.get(source, "")
        reasons = []
        for factor in self.rules.country_factors:
            if country in factor.countries:
                text = self._fill(factor.text.replace("{country}", name))
                if how:
                    text = f"{text.rstrip('.')}{how}."
                reasons.append(Reason(text, "country", factor.citation, factor.id, factor.raises))
        return reasons

    # -- areas and kinds -----------------------------------------------------------------------
    def _area_reasons(self, hits: Sequence[AreaHit]) -> list[Reason]:
        reasons = []
        grouped: dict[tuple[str, GuidanceCitation], list[AreaHit]] = {}
        for hit in hits:
            group = self.rules.area_groups[hit.area.group]
            grouped.setdefault((group.id, hit.area.citation or group.citation), []).append(hit)
        for (group_id, citation), group_hits in grouped.items():
            group = self.rules.area_groups[group_id]
            names = " / ".join(dict.fromkeys(hit.area.name for hit in group_hits))
            text = group.text.replace("{area}", names)
            if any(hit.area.status == "pending" for hit in group_hits):
                text += PENDING_NOTE
            text += " " + _evidence(group_hits)
            ids = ",".join(hit.area.id for hit in group_hits)
            reasons.append(Reason(self._fill(text), "area", citation, ids, group.raises))
        return reasons

    def _kind_reasons(self, kind: str | None, hits: Sequence[AreaHit], country: str | None) -> list[Reason]:
        if not kind:
            return []
        groups = {hit.area.group for hit in hits}
        reasons = []
        for check in self.rules.kinds[kind].checks:
            if check.when_area_group and check.when_area_group not in groups:
                continue
            if check.unless_country_in and country in self.rules.atas_exempt:
                continue
            reasons.append(
                Reason(self._fill(check.text), "collaboration", check.citation, check.id, check.raises)
            )
        return reasons

    # -- next steps ----------------------------------------------------------------------------
    def _next_steps(
        self, rating: str, reasons: Sequence[Reason], hits: Sequence[AreaHit], country: str | None
    ) -> tuple[NextStep, ...]:
        steps = [NextStep(self._fill(step.text), step.citation) for step in self.rules.next_steps[rating]]
        fired = {reason.rule for reason in reasons}
        extra: list[NextStep] = []
        for factor in self.rules.country_factors:
            if factor.id in fired and factor.next_step:
                extra.append(NextStep(self._fill(factor.next_step), factor.citation))
        for group_id in dict.fromkeys(hit.area.group for hit in hits):
            group = self.rules.area_groups[group_id]
            if group.next_step:
                extra.append(NextStep(self._fill(group.next_step), group.citation))
        for kind in self.rules.kinds.values():
            for check in kind.checks:
                if check.id in fired and check.next_step:
                    extra.append(NextStep(self._fill(check.next_step), check.citation))
        seen = set()
        unique = []
        for step in steps + extra:
            if step.text not in seen:
                seen.add(step.text)
                unique.append(step)
        return tuple(unique)

    def _fill(self, text: str) -> str:
        institution = self.institution
        values = {
            "{team}": institution.team_name,
            "{email}": institution.email,
            "{channel}": institution.slack_channel,
            "{institution}": institution.name,
        }
        for key, value in values.items():
            text = text.replace(key, value)
        return text


def check_query(query: PartnerQuery, rules: ScreeningRules) -> PartnerQuery:
    """The query with its text tidied and its kind resolved to an id.

    Raises:
        PartnerQueryError: no organisation, a field too long, or an unknown kind.
    """
    organisation = " ".join((query.organisation or "").split())
    if not organisation:
        raise PartnerQueryError(
            "Please give the organisation's name, for example: prescreen Harbin Institute of Technology"
        )
    if len(organisation) > MAX_ORGANISATION_CHARS:
        raise PartnerQueryError(
            f"That organisation name is {len(organisation)} characters long; please keep it under "
            f"{MAX_ORGANISATION_CHARS} (one organisation at a time)."
        )
    fields = {}
    for name in ("country", "area", "funding", "notes"):
        value = " ".join((getattr(query, name) or "").split()) or None
        if value and len(value) > MAX_FIELD_CHARS:
            raise PartnerQueryError(
                f"The {name} is {len(value)} characters long; please keep it under {MAX_FIELD_CHARS}."
            )
        fields[name] = value
    kind = None
    if query.kind:
        kind = rules.kind_id(query.kind)
        if kind is None:
            labels = ", ".join(k.label for k in rules.kinds.values())
            raise PartnerQueryError(
                f"Unknown kind of collaboration {query.kind!r}: expected one of {labels}."
            )
    return PartnerQuery(organisation, kind=kind, **fields)


def list_level(policy: ListPolicy, match: Match) -> tuple[str, str]:
    """What a match does to the rating under its list's policy, and why (a short sentence)."""
    if match.strength != "match":
        return policy.possible, "A possible match: confirm whether this entry is your partner."
    if policy.format == "us-csl":
        code = csl_list_code(match.details)
        label = str(match.details.get("list") or code)
        if code and code in policy.red_list_codes:
            return "red", f"On the {label}: a legal bar or a US licence requirement for this party."
        return policy.match, f"On the {label}." if label else ""
    if policy.format == "csv":
        risk = _fold(match.risk_level)
        if risk and risk in policy.red_risk_levels:
            return "red", f"Risk level: {risk}."
        phrase = next((p for p in policy.red_reason_phrases if p.lower() in match.reason.lower()), None)
        if phrase:
            recorded = _sentence_with(match.reason, phrase)
            return "red", f"Risk level: {risk or 'not given'}; the entry records: {recorded}"
        if risk and risk in policy.note_risk_levels:
            return "note", f"Risk level: {risk}."
        return policy.match, f"Risk level: {risk}." if risk else ""
    regime = f" Regime: {match.programme}." if match.programme else ""
    return policy.match, regime.strip()


def _sentence_with(text: str, phrase: str, limit: int = 300) -> str:
    """The entry's reason, shortened to ``limit`` characters around ``phrase`` if it is long."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    start = max(0, text.lower().find(phrase.lower()) - limit // 3)
    cut = text[start : start + limit].rsplit(" ", 1)[0]
    return ("…" if start else "") + cut + "…"


def csl_list_code(details: Mapping[str, Any]) -> str:
    """The CSL list an entry is on (EL, SDN...): its ``list_code``, or the code in its list's name."""
    code = str(details.get("list_code") or "")
    if not code:
        found = re.search(r"\(([A-Z-]+)(?: List)?\)", str(details.get("list") or details.get("source") or ""))
        code = found.group(1) if found else ""
    return code.upper()


def rating_of(reasons: Iterable[Reason]) -> str:
    """red if any reason gives red, else amber if any gives amber, else green."""
    levels = {reason.level for reason in reasons}
    if "red" in levels:
        return "red"
    return "amber" if "amber" in levels else "green"


def _evidence(hits: Sequence[AreaHit]) -> str:
    keywords = [f"'{hit.evidence}'" for hit in hits if hit.how == "keyword"]
    meaning = [hit for hit in hits if hit.how == "meaning"]
    parts = []
    if keywords:
        parts.append("matched on " + ", ".join(dict.fromkeys(keywords)))
    if meaning:
        best = max(hit.similarity or 0.0 for hit in meaning)
        parts.append(f"close in meaning to the area's description (similarity {best:.2f})")
    return ("(" + "; ".join(parts) + ")") if parts else ""


def _embedder_of(source: Any) -> SupportsEmbed | None:
    """The sentence model behind an Answerer, a SearchIndex, or an embedder itself."""
    if source is None:
        return None
    index = getattr(source, "index", None)
    if index is not None and hasattr(index, "embedder"):
        return index.embedder
    if hasattr(source, "embedder"):
        return source.embedder
    if hasattr(source, "embed_query") and hasattr(source, "embed_documents"):
        return source
    logger.warning("no sentence model in %s: areas are matched by keywords only", type(source).__name__)
    return None


def open_screener(
    config: Config, answerer: Any = None, *, rules: ScreeningRules | None = None, use_model: bool = True
) -> Screener:
    """Load the rules, the watchlists' matcher (importing the starter list on first use) and the
    sentence model (the answerer's, if one is given; else loaded here, unless ``use_model`` is
    False), and return a ``Screener`` over them.

    If the model cannot be loaded, research areas are matched by keywords alone and
    ``Screener.model_note`` says so.

    Raises:
        ScreeningRuleError: the rules file is malformed.
        WatchlistError: the watchlist database cannot be opened.
    """
    from bot.watchlists import load_matcher

    rules = rules or load_config_rules(config)
    matcher = load_matcher(config)
    model: Any = answerer
    note = None if use_model else "research areas are matched by keywords only (--keywords-only)"
    if model is None and use_model:
        from bot.answer import load_embedder

        model = load_embedder(config)  # loads lazily: a bad model shows when the areas are embedded
    options = {"settings": config.screening, "institution": config.institution}
    try:
        screener = Screener(matcher, rules, model, **options)
    except IndexerError as exc:  # the model cannot be loaded: still screen, by keywords
        screener = Screener(matcher, rules, None, **options)
        note = f"research areas are matched by keywords only ({exc})"
    screener.model_note = note
    return screener


def load_config_rules(config: Config) -> ScreeningRules:
    """``load_rules`` on the configured rules file and guidance folder."""
    from bot.answer import placeholders_from

    return load_rules(
        config.paths.screening_rules, config.paths.guidance_dir, placeholders_from(config.institution)
    )


# -- routing a direct message ----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """What a direct message asks for: ``screen`` (with the query), ``guidance``, or ``unsure``."""

    kind: str
    query: PartnerQuery | None = None
    why: str = ""


class SupportsMentions(Protocol):
    def find_mentions(self, text: str) -> list[Any]: ...


_ORG_WORDS = re.compile(
    r"\b(universit(y|ies)|univ|institut(e|es|o)|inst|academy|college|polytechnic(al)?|school|laborator(y|ies)|"
    r"lab|labs|centre|center|corporation|corp|company|co|ltd|limited|inc|llc|gmbh|group|plc|"
    r"technolog(y|ies)|sciences?|research)\b",
    re.IGNORECASE,
)
_GENERIC = re.compile(
    r"^(a|an|any|some|this|that|these|those|my|our|their|his|her|its|another|other|several|many|foreign|"
    r"overseas|international|chinese|russian|iranian|the\s+(same|other|new))\b",
    re.IGNORECASE,
)
_PLURALS = re.compile(
    r"\b(universities|companies|institutions|partners|organisations|organizations|firms)\b", re.I
)
_NOT_NAMES = re.compile(
    r"^(whether|if|what|how|why|when|where|who|which|me|you|it|them|us|someone|somebody|anyone|"
    r"people|researchers?|students?|colleagues?|visitors?|the\s+(rules?|guidance|lists?|entity\s+list|"
    r"sanctions?\s+list|law|policy))\b",
    re.IGNORECASE,
)
# Requests to screen, with the organisation as the group "org".
_SCREEN_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^\s*(?:please\s+)?(?:pre-?\s?screen|screen)\s*:?\s+(?P<org>.+)$",
        r"^\s*(?:please\s+)?(?:run\s+a\s+)?(?:pre-?\s?screen|screening)\s+(?:of|on|for)\s+(?P<org>.+)$",
        r"\b(?:can|could|would|will)\s+you\s+(?:please\s+)?(?:check|screen|vet|look\s+up|look\s+into)\s+(?P<org>.+)$",
        r"^\s*(?:please\s+)?(?:check|vet|look\s+up)\s+(?P<org>.+)$",
        r"\bis\s+it\s+(?:ok|okay|safe|fine|alright|allowed|a\s+problem|risky)\s+(?:for\s+(?:me|us)\s+)?to\s+"
        r"(?:work|collaborate|partner|team\s+up|do\s+research)\s+with\s+(?P<org>.+)$",
        r"\b(?:can|may|should)\s+(?:i|we)\s+(?:work|collaborate|partner|team\s+up)\s+with\s+(?P<org>.+)$",
        r"\bis\s+(?P<org>.+?)\s+(?:on\s+(?:a|any|the)\s+(?:\w+\s+){0,3}lists?|sanctioned|listed|"
        r"(?:a\s+)?(?:safe|risky|high-risk|ok|okay)\s+(?:partner|to\s+work\s+with|collaborator))\b",
        r"\b(?:any\s+)?(?:concerns?|issues?|problems?|red\s+flags?)\s+(?:about|with)\s+(?:working\s+with\s+)?(?P<org>.+)$",
    )
)
# Where the organisation's name ends, and what follows: the research area or the country.
_AREA_TAIL = re.compile(
    r"\s+(?:for|on|about|in\s+the\s+(?:area|field)\s+of|regarding|re)\s+(?:(?:a|an|the|some|our|my)\s+)?"
    r"(?P<area>.+?)(?:\s+(?:project|collaboration|work|research|grant|study|partnership))?\s*$",
    re.IGNORECASE,
)
_COUNTRY_TAIL = re.compile(r"\s*(?:\(|,\s*|\s+(?:in|from|based\s+in)\s+)(?P<country>[^()?,]+?)\)?\s*$", re.I)
_TRAILING = re.compile(r"[\s?!.,;:]+$")
_POLITE = re.compile(
    r"(?:[\s,]+(?:please|pls|thanks|thank\s+you|for\s+me|for\s+us|asap|urgently))+[\s?!.]*$", re.I
)
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def route_message(
    text: str, *, rules: ScreeningRules | None = None, matcher: SupportsMentions | None = None
) -> Route:
    """Decide what a direct message asks for.

    ``screen``: it asks to check a named organisation ("prescreen HIT", "can you check Skoltech
    for a battery project?", "is it ok to work with BUAA on aerodynamics?"); the query carries
    the organisation, and the area and country when the message names them. ``unsure``: it
    names a listed organisation (``matcher.find_mentions``) or asks to check something that may
    not be an organisation's name; the query is the best guess. ``guidance``: anything else.
    """
    message = " ".join((text or "").translate(_QUOTES).split())
    if not message:
        return Route("guidance", why="empty")
    for pattern in _SCREEN_PATTERNS:
        found = pattern.search(message)
        if not found:
            continue
        query = _query_from(found.group("org"), message, rules)
        if query is None:
            continue
        plausible = _looks_like_name(query.organisation)
        mentioned = _mentions(matcher, message)
        if plausible or mentioned:
            return Route("screen", query, why="asks to check a named organisation")
        return Route("unsure", query, why="asks to check something that may not be an organisation")
    # Naming a listed organisation without asking to check it: only a confirmed match counts
    # ("the Seven Sons of National Defence" is only a possible match for a university's name).
    named = [m for m in _mentions(matcher, message) if getattr(m, "strength", "match") == "match"]
    if named:
        best = max(named, key=lambda m: float(getattr(m, "score", 0.0)))
        name = getattr(best, "query", "") or getattr(best, "matched_name", "") or best.entry
        area = _area_in(message)
        return Route("unsure", PartnerQuery(name, area=area), why="names a listed organisation")
    return Route("guidance", why="no organisation to check")


def _query_from(raw: str, message: str, rules: ScreeningRules | None) -> PartnerQuery | None:
    org = _POLITE.sub("", _TRAILING.sub("", raw.strip().strip("\"'")))
    area = None
    country = None
    tail = _AREA_TAIL.search(org)
    if tail and tail.start() > 0:
        area = _TRAILING.sub("", tail.group("area")).strip() or None
        org = org[: tail.start()]
    country_tail = _COUNTRY_TAIL.search(org)
    if country_tail and rules is not None and rules.resolve_country(country_tail.group("country")):
        country = country_tail.group("country").strip()
        org = org[: country_tail.start()]
    if area and rules is not None and country is None:
        in_area = re.match(r"^(?P<area>.*?)\s+(?:in|from)\s+(?P<country>[^,]+)$", area, re.IGNORECASE)
        if in_area and rules.resolve_country(in_area.group("country")):
            area, country = in_area.group("area").strip() or None, in_area.group("country").strip()
    org = _TRAILING.sub("", org).strip().strip("\"'")
    org = re.sub(r"^(?:the\s+(?=[A-Z]))", "", org)
    if not org or _NOT_NAMES.search(org) or _GENERIC.search(org) or _PLURALS.search(org):
        return None
    if len(org) > MAX_ORGANISATION_CHARS or len(org.split()) > 12:
        return None
    return PartnerQuery(org, country=country, area=area)


def _looks_like_name(organisation: str) -> bool:
    """A proper name: an acronym, capitalised words, or an organisation word ("University")."""
    words = organisation.split()
    if _ORG_WORDS.search(organisation):
        return True
    if any(re.fullmatch(r"[A-Z][A-Z0-9&.-]{1,9}", word) for word in words):
        return True
    capitalised = [word for word in words if word[:1].isupper()]
    return len(capitalised) >= max(1, (len(words) + 1) // 2)


def _mentions(matcher: SupportsMentions | None, message: str) -> list[Any]:
    if matcher is None or not hasattr(matcher, "find_mentions"):
        return []
    try:
        return [m for m in matcher.find_mentions(message) if getattr(m, "strength", "match") in STRENGTHS]
    except Exception:  # routing falls back to patterns alone
        logger.exception("find_mentions failed while routing a message")
        return []


def _area_in(message: str) -> str | None:
    found = re.search(
        r"\b(?:for|on)\s+(?:(?:a|an|the|our|my)\s+)?(?P<area>[\w\s-]+?)\s+(?:project|work|research)\b",
        message,
        re.I,
    )
    return found.group("area").strip() if found else None


# -- helpers ---------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Lower case, no accents, punctuation as spaces, single spaces."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^\w]+", " ", text.replace("'", ""))
    return " ".join(text.split())


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScreeningRuleError(f"screening rules: {where}: expected a mapping")
    return value


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScreeningRuleError(f"screening rules: {key}: expected a list")
    return value


def _only(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in set(data) - known)
    if unknown:
        raise ScreeningRuleError(
            f"screening rules: {where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ScreeningRuleError(f"screening rules: {where}: {key}: expected some text")
    return value.strip()


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    return _text(data, key, where) if data.get(key) is not None else None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str | int | float) for item in value):
        raise ScreeningRuleError(f"screening rules: {where}: expected a list of text")
    return tuple(str(item).strip() for item in value if str(item).strip())


def _level(value: Any, where: str) -> str:
    if value not in LEVELS:
        raise ScreeningRuleError(
            f"screening rules: {where}: expected one of {', '.join(LEVELS)}, got {value!r}"
        )
    return value


def _unique(ids: Sequence[str], what: str) -> None:
    seen = set()
    for rule_id in ids:
        if rule_id in seen:
            raise ScreeningRuleError(f"screening rules: {what} '{rule_id}': the id is used twice")
        seen.add(rule_id)
