"""Records the core hands to its adapters (CLI, Slack). No Slack imports here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class AnswerStatus(StrEnum):
    ANSWERED = "answered"
    NOT_COVERED = "not_covered"
    OFF_TOPIC = "off_topic"
    NOT_ENGLISH = "not_english"  # the question is not in English, which is all the model reads


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"


@dataclass(frozen=True)
class Contact:
    """Whom to ask when the guidance does not answer (from app.yml ``institution``)."""

    team_name: str
    email: str
    slack_channel: str
    url: str
    institution: str


@dataclass(frozen=True)
class Referral:
    """Another office that handles what a question asks about (``knowledge/referrals.yaml``);
    ``topic`` is the phrase of the question that is its business."""

    office: str
    contact: str
    topic: str


@dataclass(frozen=True)
class Citation:
    """One numbered source: a section of a guidance document.

    ``stale``: the document's last review is older than ``answer.max_review_age_days``.
    """

    number: int
    title: str
    section: str
    url: str | None
    path: str
    last_reviewed: str | None
    stale: bool = False


@dataclass(frozen=True)
class Passage:
    """The guidance's own words, with the sentences most relevant to the question.

    ``text`` is a run of whole sentences of one chunk (all of it, or the part that carries the
    evidence); ``highlights`` are exact substrings of ``text``, in the order they appear.
    """

    citation: int
    chunk_id: str
    text: str
    highlights: tuple[str, ...]
    score: float


@dataclass(frozen=True)
class Answer:
    """What the core says to a question: passages and their citations, or an honest "not covered"."""

    question: str
    status: AnswerStatus
    confidence: Confidence
    passages: tuple[Passage, ...]
    citations: tuple[Citation, ...]
    contact: Contact
    message: str
    referral: Referral | None = None

    @property
    def chunk_ids(self) -> list[str]:
        return [passage.chunk_id for passage in self.passages]

    def citation(self, number: int) -> Citation:
        return next(c for c in self.citations if c.number == number)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"status": str(self.status), "confidence": str(self.confidence)}
