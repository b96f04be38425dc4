"""Escalation triggers: which questions the research-security team must hear about, and why.

The rules live in a YAML file (``paths.triggers``, shipped as ``knowledge/triggers.yml``, whose
comments describe the format). ``load_rules`` validates the whole file at start-up and raises
``TriggerRuleError`` naming the rule and the problem; ``Triager`` applies the rules to one
question and returns a ``Triage``: whether to escalate, the highest severity matched, and for
each matched rule a reason that says what matched.

Condition kinds (a rule has exactly one; ``sets`` name reusable ones):

- ``terms``: words and phrases, matched on word boundaries after the same tokenizer and
  Snowball stemmer as the search index (``indexer.text.tokenize``): "drones" matches "drone",
  "arms" never matches "harms"; stop words are ignored, so use ``regex`` where they matter.
- ``regex``: regular expressions, case-insensitive (``(?-i:...)`` for a case-sensitive part).
- ``organisations``: organisations named in the question that the watchlist matcher finds
  (``Matcher.find_mentions``), filtered by strength, score, list and risk level.
- ``semantic``: cosine similarity of the question to example questions, at or above a threshold,
  using the embedder already loaded (examples are embedded once, when the ``Triager`` is built).
- ``all`` / ``any`` / ``not``: combinations of other conditions or named sets.

A rule's ``unless`` lists conditions any one of which cancels it: the shipped rules use it so
that questions *about* the rules ("what is the Entity List?") do not escalate.

The ``Triager`` needs the embedder if any rule uses ``semantic`` and the matcher if any uses
``organisations``; built without one, it refuses (``TriggerRuleError``) unless told to skip
those rules (``skip_unavailable=True``; ``Triager.skipped`` names them). ``open_triager``
skips ``organisations`` rules only when this build has no watchlist module, and says so in one
warning line. Question text is never logged: only rule ids and counts.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml

from indexer.text import tokenize

if TYPE_CHECKING:
    from bot.config import Config

logger = logging.getLogger(__name__)

SEVERITIES = ("high", "medium")
_SEVERITY_RANK = {"medium": 1, "high": 2}
STRENGTHS = ("match", "possible")
DEFAULT_SEMANTIC_THRESHOLD = 0.55
KINDS = ("terms", "regex", "organisations", "semantic", "all", "any", "not")
RULE_KINDS = ("terms", "regex", "organisations", "semantic", "all", "any")
_RULE_FIELDS = ("id", "severity", "description", "guidance", "unless")
_TOP_LEVEL = ("sets", "rules")
_ORGANISATION_OPTIONS = ("min_strength", "min_score", "lists", "risk_levels")
_SEMANTIC_OPTIONS = ("examples", "threshold")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_SHOWN = 60  # characters of a regex match quoted in a reason


class TriggerError(Exception):
    """Base class of the errors a user can cause here (one line each)."""


class TriggerRuleError(TriggerError):
    """The rules file is missing, unreadable or invalid; the message names the rule and problem."""


class LabelledSetError(TriggerError):
    """A labelled evaluation file is missing or malformed."""


class Embedder(Protocol):
    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


class MentionFinder(Protocol):
    """What ``organisations`` rules need from ``bot.watchlists.Matcher``."""

    def find_mentions(self, text: str) -> list[Any]: ...


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleMatch:
    """One rule that matched a question, with what matched."""

    id: str
    severity: str
    description: str
    reason: str
    guidance: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason}


@dataclass(frozen=True)
class Triage:
    """Whether a question escalates: the rules that matched, highest severity first."""

    escalate: bool
    severity: str | None
    matches: tuple[RuleMatch, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalate": self.escalate,
            "severity": self.severity,
            "rules": [match.to_dict() for match in self.matches],
        }


# --- conditions --------------------------------------------------------------------------------


class _Question:
    """One question, with what the conditions need computed at most once."""

    def __init__(self, text: str, triager: Triager, vector: np.ndarray | None) -> None:
        self.text = text.replace("\u2019", "'").replace("\u2018", "'")  # Slack sends curly apostrophes
        self.tokens = tuple(tokenize(text))
        self.token_set = frozenset(self.tokens)
        self._triager = triager
        self._vector = vector
        self._mentions: list[Any] | None = None

    @property
    def vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = np.asarray(self._triager.embedder.embed_query(self.text), dtype=np.float32)
        return self._vector

    def example_vectors(self, condition: Semantic) -> np.ndarray:
        return self._triager.example_vectors[condition]

    @property
    def mentions(self) -> list[Any]:
        if self._mentions is None:
            self._mentions = list(self._triager.matcher.find_mentions(self.text))
        return self._mentions


# Evidence: ("mention", text) items are joined as "mentions 'a' and 'b'"; ("note", text) as is.
Evidence = list[tuple[str, str]]


@dataclass(frozen=True, eq=False)
class Terms:
    terms: tuple[str, ...]
    stems: tuple[tuple[str, ...], ...]

    needs = frozenset()

    def evaluate(self, question: _Question) -> Evidence | None:
        found = [
            ("mention", term)
            for term, stems in zip(self.terms, self.stems, strict=True)
            if stems[0] in question.token_set and _contains(question.tokens, stems)
        ]
        return found or None


@dataclass(frozen=True, eq=False)
class Regex:
    patterns: tuple[re.Pattern[str], ...]

    needs = frozenset()

    def evaluate(self, question: _Question) -> Evidence | None:
        found = []
        for pattern in self.patterns:
            match = pattern.search(question.text)
            if match:
                shown = " ".join(match.group(0).split())
                found.append(("mention", shown[:_MAX_SHOWN] + ("..." if len(shown) > _MAX_SHOWN else "")))
        return found or None


@dataclass(frozen=True, eq=False)
class Organisations:
    min_strength: str = "match"
    min_score: float = 0.0
    lists: tuple[str, ...] = ()
    risk_levels: tuple[str, ...] = ()

    needs = frozenset({"matcher"})

    def evaluate(self, question: _Question) -> Evidence | None:
        found, seen = [], set()
        for candidate in question.mentions:
            if not self.accepts(candidate) or _attr(candidate, "entry") in seen:
                continue
            seen.add(_attr(candidate, "entry"))
            found.append(("note", _describe_mention(candidate)))
        return found or None

    def accepts(self, candidate: Any) -> bool:
        strength = _attr(candidate, "strength") or "match"
        if self.min_strength == "match" and strength != "match":
            return False
        if float(_attr(candidate, "score") or 0.0) < self.min_score:
            return False
        if self.lists and _attr(candidate, "list_name") not in self.lists:
            return False
        return not self.risk_levels or _normal(_risk_level(candidate)) in {
            _normal(level) for level in self.risk_levels
        }


@dataclass(frozen=True, eq=False)
class Semantic:
    examples: tuple[str, ...]
    threshold: float

    needs = frozenset({"embedder"})

    def evaluate(self, question: _Question) -> Evidence | None:
        vectors = question.example_vectors(self)
        similarities = vectors @ question.vector
        best = int(np.argmax(similarities))
        if float(similarities[best]) < self.threshold:
            return None
        return [("note", f"close to the example '{self.examples[best]}' ({float(similarities[best]):.2f})")]


@dataclass(frozen=True, eq=False)
class All:
    parts: tuple[Any, ...]

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(part.needs for part in self.parts))

    def evaluate(self, question: _Question) -> Evidence | None:
        evidence: Evidence = []
        for part in self.parts:
            found = part.evaluate(question)
            if found is None:
                return None
            evidence.extend(found)
        return evidence


@dataclass(frozen=True, eq=False)
class AnyOf:
    parts: tuple[Any, ...]

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(part.needs for part in self.parts))

    def evaluate(self, question: _Question) -> Evidence | None:
        for part in self.parts:
            found = part.evaluate(question)
            if found is not None:
                return found
        return None


@dataclass(frozen=True, eq=False)
class Not:
    part: Any

    @property
    def needs(self) -> frozenset[str]:
        return self.part.needs

    def evaluate(self, question: _Question) -> Evidence | None:
        return None if self.part.evaluate(question) is not None else []


@dataclass(frozen=True, eq=False)
class Rule:
    """One validated rule from the file."""

    id: str
    severity: str
    description: str
    guidance: str
    kind: str
    condition: Any
    unless: tuple[Any, ...] = ()

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(self.condition.needs, *(part.needs for part in self.unless))

    def evaluate(self, question: _Question) -> RuleMatch | None:
        evidence = self.condition.evaluate(question)
        if evidence is None or any(part.evaluate(question) is not None for part in self.unless):
            return None
        return RuleMatch(
            self.id, self.severity, self.description, _reason(evidence, self.kind), self.guidance
        )


@dataclass(frozen=True)
class RuleSet:
    """The validated rules of one file, in file order."""

    rules: tuple[Rule, ...]
    path: Path | None = None
    sets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(rule.needs for rule in self.rules))

    def ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.rules)


# --- the triager -------------------------------------------------------------------------------


class Triager:
    """Applies a ``RuleSet`` to questions.

    Args:
        rules: From ``load_rules``.
        embedder: Needed by ``semantic`` rules (``embed_documents``/``embed_query``, normalised).
        matcher: Needed by ``organisations`` rules (``find_mentions(text)``).
        skip_unavailable: Skip rules whose embedder or matcher is missing (listed in
            ``skipped``; the caller tells its user) instead of raising ``TriggerRuleError``.
    """

    def __init__(
        self,
        rules: RuleSet,
        embedder: Embedder | None = None,
        matcher: MentionFinder | None = None,
        *,
        skip_unavailable: bool = False,
    ) -> None:
        self.embedder = embedder
        self.matcher = matcher
        available = {"embedder": embedder is not None, "matcher": matcher is not None}
        kept, skipped = [], []
        for rule in rules.rules:
            missing = sorted(need for need in rule.needs if not available[need])
            if not missing:
                kept.append(rule)
            elif skip_unavailable:
                skipped.append(rule.id)
            else:
                what = " and ".join(_NEEDS[need] for need in missing)
                raise TriggerRuleError(f"rule '{rule.id}': needs {what}, and none was given")
        if skipped:  # the caller asked for this, and says so to its user (see open_triager)
            logger.info(
                "triggers: skipped %d rule(s) whose matcher or model is missing: %s",
                len(skipped),
                ", ".join(skipped),
            )
        self.rules = tuple(kept)
        self.skipped = tuple(skipped)
        self.example_vectors = self._embed_examples()

    def _embed_examples(self) -> dict[Semantic, np.ndarray]:
        semantic = _unique(
            condition for rule in self.rules for condition in _walk(rule) if isinstance(condition, Semantic)
        )
        if not semantic:
            return {}
        texts = [example for condition in semantic for example in condition.examples]
        vectors = np.asarray(self.embedder.embed_documents(texts), dtype=np.float32)
        result, start = {}, 0
        for condition in semantic:
            result[condition] = vectors[start : start + len(condition.examples)]
            start += len(condition.examples)
        return result

    def triage(self, question: str, vector: np.ndarray | None = None) -> Triage:
        """Which rules the question matches.

        Args:
            question: The researcher's question.
            vector: The question's normalised embedding if the caller has it already (the
                answer path embeds the question once; pass that vector so it is not embedded
                again). Computed on demand otherwise, and only if a semantic rule needs it.
        """
        state = _Question(question, self, None if vector is None else np.asarray(vector, dtype=np.float32))
        matches = [match for rule in self.rules if (match := rule.evaluate(state)) is not None]
        matches.sort(key=lambda match: -_SEVERITY_RANK[match.severity])  # stable: file order within
        severity = matches[0].severity if matches else None
        logger.debug("triage: %d rule(s) matched: %s", len(matches), ", ".join(m.id for m in matches) or "-")
        return Triage(bool(matches), severity, tuple(matches))


_NEEDS = {
    "embedder": "the embedding model (semantic rule)",
    "matcher": "the watchlist matcher (organisations rule)",
}


def open_triager(
    config: Config,
    *,
    embedder: Embedder | None = None,
    matcher: MentionFinder | None = None,
    warn: Callable[[str], None] | None = None,
) -> Triager:
    """Load the rules from ``paths.triggers`` and build a ``Triager``, loading only what they need.

    The model is loaded (``bot.answer.load_embedder``) only if a rule is ``semantic`` and no
    embedder is given; the matcher (``bot.watchlists.load_matcher``) only if a rule is
    ``organisations`` and none is given. If this build has no watchlist module, those rules
    are skipped and ``warn`` is called with one line saying so.
    """
    rules = load_rules(
        config.paths.triggers,
        config.paths.guidance_dir,
        default_threshold=config.triggers.semantic_threshold,
    )
    if "embedder" in rules.needs and embedder is None:
        from bot.answer import load_embedder

        embedder = load_embedder(config)
    skip = False
    if "matcher" in rules.needs and matcher is None:
        matcher = _load_matcher(config)
        if matcher is None:
            skip = True
            skipped = [rule.id for rule in rules.rules if "matcher" in rule.needs]
            message = f"no watchlist matcher in this build: skipping rule(s) {', '.join(skipped)}"
            (warn or logger.warning)(message)
    return Triager(rules, embedder, matcher, skip_unavailable=skip)


def _load_matcher(config: Config) -> MentionFinder | None:
    try:
        module = importlib.import_module("bot.watchlists")
    except ModuleNotFoundError as exc:
        if exc.name != "bot.watchlists":
            raise
        return None
    loader = getattr(module, "load_matcher", None)
    return loader(config) if loader else None


# --- loading and validating the rules file -----------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors and aliases (no alias bombs, no hidden sharing)."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1
            raise yaml.YAMLError(f"line {line}: anchors and aliases (&name, *name) are not allowed")
        return super().compose_node(parent, index)


def load_rules(
    path: str | Path,
    guidance_dir: str | Path | None = None,
    *,
    default_threshold: float = DEFAULT_SEMANTIC_THRESHOLD,
) -> RuleSet:
    """Read and validate a rules file.

    Args:
        path: The YAML rules file.
        guidance_dir: If given, every rule's ``guidance`` must name a file in it.
        default_threshold: The similarity threshold of ``semantic`` conditions that set none.

    Raises:
        TriggerRuleError: one line naming the file, the rule (or set) and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TriggerRuleError(f"{path}: rules file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TriggerRuleError(f"{path}: cannot read the rules file ({exc})") from exc
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TriggerRuleError(f"{path}: not valid YAML ({_first_line(exc)})") from exc
    try:
        return _parse(data, path, Path(guidance_dir) if guidance_dir else None, default_threshold)
    except _Problem as problem:
        raise TriggerRuleError(f"{path}: {problem}") from None


class _Problem(Exception):
    pass


def _parse(data: Any, path: Path, guidance_dir: Path | None, default_threshold: float) -> RuleSet:
    if not isinstance(data, dict):
        raise _Problem("the top level must be a mapping with 'rules' (and optionally 'sets')")
    unknown = sorted(set(data) - set(_TOP_LEVEL))
    if unknown:
        raise _Problem(f"unknown top-level key '{unknown[0]}' (expected: {', '.join(_TOP_LEVEL)})")
    raw_sets = data.get("sets") or {}
    if not isinstance(raw_sets, dict):
        raise _Problem("'sets' must be a mapping of set name to terms or a condition")
    parser = _Parser(raw_sets, default_threshold)
    sets = {name: parser.resolve(name, f"set '{name}'") for name in raw_sets}
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _Problem("'rules' must be a non-empty list of rules")
    rules, seen = [], set()
    for number, raw in enumerate(raw_rules, start=1):
        rule = _parse_rule(raw, number, parser, guidance_dir)
        if rule.id in seen:
            raise _Problem(f"rule '{rule.id}': the id is used twice")
        seen.add(rule.id)
        rules.append(rule)
    return RuleSet(tuple(rules), path, sets)


def _parse_rule(raw: Any, number: int, parser: _Parser, guidance_dir: Path | None) -> Rule:
    if not isinstance(raw, dict):
        raise _Problem(
            f"rule {number}: expected a mapping with id, severity, description, guidance and a kind"
        )
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _NAME.match(rule_id):
        raise _Problem(f"rule {number}: 'id' must be lower-case letters, digits and _ (got {rule_id!r})")
    where = f"rule '{rule_id}'"
    unknown = sorted(set(raw) - set(_RULE_FIELDS) - set(RULE_KINDS))
    if unknown:
        raise _Problem(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(_RULE_FIELDS + RULE_KINDS)})")
    for name in ("severity", "description", "guidance"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise _Problem(f"{where}: '{name}' is missing or empty")
    if raw["severity"] not in SEVERITIES:
        raise _Problem(f"{where}: severity {raw['severity']!r} is not one of {', '.join(SEVERITIES)}")
    guidance = raw["guidance"].strip()
    if guidance_dir is not None and not (guidance_dir / guidance).is_file():
        raise _Problem(f"{where}: guidance file '{guidance}' not found in {guidance_dir}")
    kinds = [kind for kind in RULE_KINDS if kind in raw]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise _Problem(f"{where}: needs exactly one kind of {', '.join(RULE_KINDS)} (found: {found})")
    kind = kinds[0]
    condition = parser.condition({kind: raw[kind]}, where)
    unless = raw.get("unless") or []
    if not isinstance(unless, list):
        raise _Problem(f"{where}: 'unless' must be a list of set names or conditions")
    exclusions = tuple(parser.condition(item, f"{where} unless") for item in unless)
    return Rule(
        rule_id, raw["severity"], " ".join(raw["description"].split()), guidance, kind, condition, exclusions
    )


class _Parser:
    """Turns the YAML of conditions into condition objects, resolving set names (no cycles)."""

    def __init__(self, raw_sets: dict[str, Any], default_threshold: float) -> None:
        for name in raw_sets:
            if not isinstance(name, str) or not _NAME.match(name):
                raise _Problem(f"set {name!r}: names must be lower-case letters, digits and _")
        self.raw_sets = raw_sets
        self.default_threshold = default_threshold
        self.resolved: dict[str, Any] = {}
        self.resolving: list[str] = []

    def resolve(self, name: str, where: str) -> Any:
        if name in self.resolved:
            return self.resolved[name]
        if name not in self.raw_sets:
            known = ", ".join(sorted(self.raw_sets)) or "none defined"
            raise _Problem(f"{where}: unknown set '{name}' (sets: {known})")
        if name in self.resolving:
            raise _Problem(f"set '{name}': refers to itself ({' -> '.join([*self.resolving, name])})")
        self.resolving.append(name)
        raw = self.raw_sets[name]
        condition = self.condition({"terms": raw} if isinstance(raw, list) else raw, f"set '{name}'")
        self.resolving.pop()
        self.resolved[name] = condition
        return condition

    def condition(self, raw: Any, where: str) -> Any:
        if isinstance(raw, str):
            return self.resolve(raw, where)
        if not isinstance(raw, dict) or len(raw) != 1:
            raise _Problem(f"{where}: a condition is a set name or a mapping with one of {', '.join(KINDS)}")
        ((kind, value),) = raw.items()
        if kind not in KINDS:
            raise _Problem(f"{where}: unknown condition kind '{kind}' (known: {', '.join(KINDS)})")
        return getattr(self, f"_{kind}")(value, where)

    def _terms(self, value: Any, where: str) -> Terms:
        items = _strings(value, "terms", where)
        stems = []
        for term in items:
            tokens = tuple(tokenize(term))
            if not tokens:
                raise _Problem(f"{where}: term {term!r} has only stop words; use a regex for it")
            stems.append(tokens)
        return Terms(tuple(items), tuple(stems))

    def _regex(self, value: Any, where: str) -> Regex:
        items = [value] if isinstance(value, str) else value
        patterns = []
        for pattern in _strings(items, "regex", where):
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise _Problem(f"{where}: regex {pattern!r} does not compile ({exc})") from None
            if compiled.search(""):
                raise _Problem(
                    f"{where}: regex {pattern!r} matches empty text, so it would match every question"
                )
            patterns.append(compiled)
        return Regex(tuple(patterns))

    def _organisations(self, value: Any, where: str) -> Organisations:
        value = value or {}
        if not isinstance(value, dict):
            raise _Problem(
                f"{where}: 'organisations' takes a mapping of options ({', '.join(_ORGANISATION_OPTIONS)})"
            )
        unknown = sorted(set(value) - set(_ORGANISATION_OPTIONS))
        if unknown:
            raise _Problem(
                f"{where}: unknown organisations option '{unknown[0]}' "
                f"(known: {', '.join(_ORGANISATION_OPTIONS)})"
            )
        strength = value.get("min_strength", "match")
        if strength not in STRENGTHS:
            raise _Problem(f"{where}: min_strength {strength!r} is not one of {', '.join(STRENGTHS)}")
        score = _fraction(value.get("min_score", 0.0), "min_score", where)
        lists = tuple(_strings(value["lists"], "lists", where)) if "lists" in value else ()
        levels = tuple(_strings(value["risk_levels"], "risk_levels", where)) if "risk_levels" in value else ()
        return Organisations(strength, score, lists, levels)

    def _semantic(self, value: Any, where: str) -> Semantic:
        if not isinstance(value, dict):
            raise _Problem(
                f"{where}: 'semantic' takes a mapping with 'examples' (and optionally 'threshold')"
            )
        unknown = sorted(set(value) - set(_SEMANTIC_OPTIONS))
        if unknown:
            raise _Problem(
                f"{where}: unknown semantic option '{unknown[0]}' (known: {', '.join(_SEMANTIC_OPTIONS)})"
            )
        if "examples" not in value:
            raise _Problem(f"{where}: a semantic condition needs 'examples'")
        examples = _strings(value["examples"], "examples", where)
        threshold = _fraction(value.get("threshold", self.default_threshold), "threshold", where)
        if threshold <= 0:
            raise _Problem(f"{where}: threshold must be above 0, got {threshold}")
        return Semantic(tuple(" ".join(example.split()) for example in examples), threshold)

    def _all(self, value: Any, where: str) -> All:
        return All(self._parts(value, "all", where))

    def _any(self, value: Any, where: str) -> AnyOf:
        return AnyOf(self._parts(value, "any", where))

    def _not(self, value: Any, where: str) -> Not:
        return Not(self.condition(value, where))

    def _parts(self, value: Any, kind: str, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list) or not value:
            raise _Problem(f"{where}: '{kind}' needs a non-empty list of set names or conditions")
        return tuple(self.condition(item, where) for item in value)


def _strings(value: Any, name: str, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _Problem(f"{where}: '{name}' must be a non-empty list")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Problem(f"{where}: '{name}' has an empty or non-text item ({item!r})")
    return [item.strip() for item in value]


def _fraction(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _Problem(f"{where}: {name} must be a number from 0 to 1, got {value!r}")
    return float(value)


# --- helpers -----------------------------------------------------------------------------------


def _contains(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    size = len(phrase)
    first = phrase[0]
    return any(
        tokens[start] == first and tuple(tokens[start : start + size]) == tuple(phrase)
        for start in range(len(tokens) - size + 1)
    )


def _reason(evidence: Evidence, kind: str) -> str:
    mentions = _unique(text for what, text in evidence if what == "mention")
    notes = _unique(text for what, text in evidence if what == "note")
    parts = [f"mentions {_and_join([_quote(m) for m in mentions])}"] if mentions else []
    parts.extend(notes)
    return "; ".join(parts) or f"matched ({kind})"


def _quote(text: str) -> str:
    return f"'{text}'"


def _and_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _unique(items: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _walk(node: Any) -> Iterable[Any]:
    """Every condition inside a rule (its own and its exclusions), depth first."""
    if isinstance(node, Rule):
        yield from _walk(node.condition)
        for part in node.unless:
            yield from _walk(part)
        return
    yield node
    for part in getattr(node, "parts", ()):
        yield from _walk(part)
    if isinstance(node, Not):
        yield from _walk(node.part)


def _attr(candidate: Any, name: str) -> Any:
    if isinstance(candidate, Mapping):
        return candidate.get(name)
    return getattr(candidate, name, None)


def _risk_level(candidate: Any) -> str | None:
    direct = _attr(candidate, "risk_level")
    if direct:
        return str(direct)
    details = _attr(candidate, "details") or {}
    for key in ("risk_level", "risk level", "risk"):
        if details.get(key):
            return str(details[key])
    return None


def _normal(text: str | None) -> str:
    return " ".join((text or "").lower().replace("-", " ").replace("_", " ").split())


def _describe_mention(candidate: Any) -> str:
    entry = _attr(candidate, "entry")
    matched = _attr(candidate, "matched_name")
    alias = f" as '{matched}'" if matched and _normal(matched) != _normal(entry) else ""
    where = f"{_attr(candidate, 'list_name')} list"
    level = _risk_level(candidate)
    risk = f", {level} risk" if level else ""
    score = float(_attr(candidate, "score") or 0.0)
    strength = "" if (_attr(candidate, "strength") or "match") == "match" else ", possible match"
    return f"names {entry}{alias} ({where}{risk}, score {score:.2f}{strength})"


# --- evaluation on a labelled set ---------------------------------------------------------------


@dataclass(frozen=True)
class LabelledQuestion:
    """One question of a labelled set: should it escalate, and at what severity."""

    id: str
    text: str
    escalate: bool
    severity: str | None = None
    note: str | None = None


def load_labelled(path: str | Path) -> list[LabelledQuestion]:
    """A YAML list of ``{id, text, escalate, severity?, note?}`` (ids unique).

    Raises:
        LabelledSetError: naming the file and the item at fault.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506
    except FileNotFoundError as exc:
        raise LabelledSetError(f"{path}: labelled file not found") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LabelledSetError(f"{path}: cannot read the labelled questions ({_first_line(exc)})") from exc
    if not isinstance(data, list) or not data:
        raise LabelledSetError(f"{path}: expected a non-empty YAML list of {{id, text, escalate}} items")
    items, seen = [], set()
    for number, raw in enumerate(data, start=1):
        item = _labelled_item(raw, number, path)
        if item.id in seen:
            raise LabelledSetError(f"{path}: item {number}: id {item.id!r} is used twice")
        seen.add(item.id)
        items.append(item)
    return items


def _labelled_item(raw: Any, number: int, path: Path) -> LabelledQuestion:
    where = f"{path}: item {number}"
    if not isinstance(raw, dict):
        raise LabelledSetError(f"{where}: expected a mapping with id, text and escalate")
    unknown = sorted(set(raw) - {"id", "text", "escalate", "severity", "note"})
    if unknown:
        raise LabelledSetError(f"{where}: unknown key '{unknown[0]}'")
    if (
        not isinstance(raw.get("id"), str | int)
        or not isinstance(raw.get("text"), str)
        or not raw["text"].strip()
    ):
        raise LabelledSetError(f"{where}: needs an id and a non-empty text")
    if not isinstance(raw.get("escalate"), bool):
        raise LabelledSetError(f"{where}: escalate must be true or false")
    severity = raw.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise LabelledSetError(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    return LabelledQuestion(str(raw["id"]), raw["text"], raw["escalate"], severity, raw.get("note"))


@dataclass(frozen=True)
class TriageScores:
    """How a set of triage results compares with the labels."""

    high_risk: int
    benign: int
    escalated_high_risk: int
    escalated_benign: int
    severity_agreed: int
    severity_labelled: int
    misses: tuple[dict[str, Any], ...]

    @property
    def recall(self) -> float:
        return self.escalated_high_risk / self.high_risk if self.high_risk else 1.0

    @property
    def precision(self) -> float:
        escalated = self.escalated_high_risk + self.escalated_benign
        return self.escalated_high_risk / escalated if escalated else 1.0

    @property
    def benign_escalation_rate(self) -> float:
        return self.escalated_benign / self.benign if self.benign else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.high_risk + self.benign,
            "high_risk": self.high_risk,
            "benign": self.benign,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "benign_escalation_rate": round(self.benign_escalation_rate, 4),
            "severity_agreement": f"{self.severity_agreed}/{self.severity_labelled}",
            "misses": list(self.misses),
        }


def score_triage(items: Sequence[LabelledQuestion], results: Mapping[str, Mapping[str, Any]]) -> TriageScores:
    """Compare triage results (``Triage.to_dict()`` by question id) with the labels.

    A miss is a high-risk question not escalated ("missed") or a benign one escalated
    ("false alarm"); a severity that differs from the label is reported as "severity".
    """
    counts = {"tp": 0, "fp": 0, "agreed": 0, "labelled": 0}
    misses = []
    for item in items:
        result = results[item.id]
        escalated = bool(result["escalate"])
        rules = [rule["id"] for rule in result.get("rules", [])]
        if item.escalate and escalated:
            counts["tp"] += 1
            if item.severity:
                counts["labelled"] += 1
                if result.get("severity") == item.severity:
                    counts["agreed"] += 1
                else:
                    misses.append(_miss(item, "severity", result, rules))
        elif item.escalate:
            misses.append(_miss(item, "missed", result, rules))
        elif escalated:
            counts["fp"] += 1
            misses.append(_miss(item, "false alarm", result, rules))
    positives = sum(item.escalate for item in items)
    return TriageScores(
        positives,
        len(items) - positives,
        counts["tp"],
        counts["fp"],
        counts["agreed"],
        counts["labelled"],
        tuple(misses),
    )


def _miss(item: LabelledQuestion, kind: str, result: Mapping[str, Any], rules: list[str]) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": kind,
        "text": item.text,
        "expected": item.severity if item.escalate else None,
        "got": result.get("severity"),
        "rules": rules,
    }


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
