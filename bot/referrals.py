"""Referrals: questions that belong to another office (data protection, research ethics, research
integrity, health and safety...), named in ``knowledge/referrals.yaml``.

A question that names one of an office's topics ("UK GDPR", "ethics approval") is not answered
from the research-security guidance unless the passages shown name that topic too; the reply
says which office handles it and how to reach it, instead of quoting a passage that only looks
related. Pure functions over the question's words; no model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bot.config import ConfigError, read_data_file
from bot.evidence import has_phrase
from bot.records import Referral
from indexer.text import tokenize


@dataclass(frozen=True)
class ReferralRule:
    """One office, how to reach it, and the topics (phrases) that are its business."""

    office: str
    contact: str
    topics: tuple[str, ...]

    @cached_property
    def stems(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(topic, tuple(tokenize(topic))) for topic in self.topics]

    @cached_property
    def stems_of(self) -> dict[str, tuple[str, ...]]:
        return dict(self.stems)


def referral_for(question: str, shown: Iterable[str], rules: Sequence[ReferralRule]) -> Referral | None:
    """The first office whose topic the question names and the shown texts do not (the longest
    such topic, if one office has several), or None."""
    asked = [tokenize(question)]
    texts: list[list[str]] | None = None  # tokenized only if the question names a topic
    for rule in rules:
        named = [topic for topic, stems in rule.stems if has_phrase(stems, asked)]
        if named and texts is None:
            texts = [tokenize(text) for text in shown]
        named = [topic for topic in named if not has_phrase(rule.stems_of[topic], texts or [])]
        if named:
            return Referral(rule.office, rule.contact, max(named, key=len))
    return None


def load_referrals(path: Path) -> list[ReferralRule]:
    """Read the referrals file: a YAML list of {office, contact, topics} (a missing file means none).

    Raises:
        ConfigError: the file cannot be read or an entry is malformed (the message says which).
    """
    data = read_data_file(path, "referrals")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a YAML list of offices, each with office, contact and topics")
    return [_rule(path, number, item) for number, item in enumerate(data, start=1)]


def _rule(path: Path, number: int, item: object) -> ReferralRule:
    where = f"{path}: entry {number}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected office, contact and topics")
    unknown = set(item) - {"office", "contact", "topics"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    office, contact, topics = item.get("office"), item.get("contact"), item.get("topics")
    for name, value in (("office", office), ("contact", contact)):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: '{name}' must be a non-empty string")
    if (
        not isinstance(topics, list)
        or not topics
        or not all(isinstance(t, str) and t.strip() for t in topics)
    ):
        raise ConfigError(f"{where} ({office}): 'topics' must be a non-empty list of phrases")
    empty = [t for t in topics if not tokenize(t)]
    if empty:
        raise ConfigError(f"{where} ({office}): topic {empty[0]!r} has no words to match (only stop words)")
    return ReferralRule(office.strip(), contact.strip(), tuple(t.strip() for t in topics))
