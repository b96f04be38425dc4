"""The answering core: a question in, an ``Answer`` (cited passages, or an honest "not covered") out.

No Slack imports: the CLI and the Slack app both call ``Answerer.answer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from bot.config import AnswerSettings, Config, ConfigError, InstitutionSettings
from bot.records import Answer, AnswerStatus, Citation, Confidence, Contact, Passage
from indexer.embeddings import SentenceTransformerEmbedder
from indexer.evaluate import EvalQuestion
from indexer.search import Hit, SearchIndex
from indexer.text import split_sentences

# Passages from one document shown at most; a second passage from the same document is
# shown only when it is nearly as relevant as the best one.
PASSAGES_PER_DOCUMENT = 2
# A passage is shown only if its similarity is within this margin of the best passage's.
RELEVANCE_MARGIN = 0.12


class QuestionError(ValueError):
    """The question cannot be asked as it is (empty, too long); the message is safe to show."""


class Answerer:
    """Answers questions from a loaded ``SearchIndex``.

    Args:
        index: The loaded index (its embedder is used for the query and the highlights).
        settings: Thresholds and sizes (``Config.answer``).
        institution: Whom to name as the contact (``Config.institution``).
        off_topic: Example requests the bot does not handle (``knowledge/off-topic.yaml``).
    """

    def __init__(
        self,
        index: SearchIndex,
        settings: AnswerSettings,
        institution: InstitutionSettings,
        off_topic: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.settings = settings
        self.contact = institution.contact()
        self.off_topic = index.embedder.embed_documents(list(off_topic)) if off_topic else None

    def answer(self, question: str, context: str | None = None) -> Answer:
        """Answer a question; ``context`` is the thread's earlier question, for short follow-ups.

        Raises:
            QuestionError: the question is empty or too long.
        """
        question = self.check_question(question)
        query = self._query(question, context)
        vector = self.index.embedder.embed_query(query)
        limit = self.settings.top_passages
        hits = self.index.search(query, top_k=limit * 2, per_doc=PASSAGES_PER_DOCUMENT, query_vector=vector)
        if not hits:
            return self._decline(question, AnswerStatus.OFF_TOPIC)
        shown = select_passages(hits, limit)
        sentences, similarities = self._sentence_similarities(vector, shown)
        relevance = relevance_of(shown, similarities)
        status = self._judge(relevance, vector)
        if status is not AnswerStatus.ANSWERED:
            return self._decline(question, status)
        highlights = _pick_per_passage(sentences, similarities, self.settings.highlight_sentences)
        return self._answered(question, shown, highlights, relevance)

    def _judge(self, relevance: float, vector: np.ndarray) -> AnswerStatus:
        """Answer only when the guidance is relevant enough and the question is not more like
        a request the bot does not handle (IT, HR, bookings...) than like the guidance."""
        nearest_off_topic = float((self.off_topic @ vector).max()) if self.off_topic is not None else -1.0
        if nearest_off_topic > relevance + self.settings.off_topic_margin:
            return AnswerStatus.OFF_TOPIC
        if relevance < self.settings.min_similarity / 2:
            return AnswerStatus.OFF_TOPIC  # nothing in the guidance is even near the question
        if relevance < self.settings.min_similarity:
            return AnswerStatus.NOT_COVERED
        return AnswerStatus.ANSWERED

    def check_question(self, question: str) -> str:
        text = " ".join((question or "").split())
        if not text:
            raise QuestionError(
                "Please ask a question, for example: do I need an export licence to share data?"
            )
        limit = self.settings.max_question_chars
        if len(text) > limit:
            raise QuestionError(
                f"That question is {len(text)} characters long; please keep it under {limit} "
                "(one question at a time works best)."
            )
        return text

    def _query(self, question: str, context: str | None) -> str:
        if context and len(question.split()) <= self.settings.followup_max_words:
            return f"{' '.join(context.split())} {question}"
        return question

    def _decline(self, question: str, status: AnswerStatus) -> Answer:
        return Answer(
            question, status, Confidence.NONE, (), (), self.contact, decline_message(status, self.contact)
        )

    def _answered(self, question: str, hits: list[Hit], highlights: list, relevance: float) -> Answer:
        citations = tuple(self._citation(number, hit) for number, hit in enumerate(hits, start=1))
        passages = tuple(
            Passage(number, hit.chunk.chunk_id, hit.chunk.text, marked, round(hit.dense, 4))
            for number, (hit, marked) in enumerate(zip(hits, highlights, strict=True), start=1)
        )
        confidence = confidence_for(relevance, self.settings)
        message = answer_message(confidence, len(passages))
        return Answer(question, AnswerStatus.ANSWERED, confidence, passages, citations, self.contact, message)

    def _citation(self, number: int, hit: Hit) -> Citation:
        document = self.index.documents[hit.doc_id]
        return Citation(
            number=number,
            title=document.title,
            section=hit.chunk.section,
            url=document.url,
            path=hit.doc_id,
            last_reviewed=document.last_reviewed,
        )

    def _sentence_similarities(
        self, vector: np.ndarray, hits: list[Hit]
    ) -> tuple[list[list[str]], np.ndarray]:
        """Each passage's sentences, and every sentence's similarity to the query (flattened)."""
        sentences = [[s for s in split_sentences(hit.chunk.text) if len(s.split()) >= 4] for hit in hits]
        flat = [sentence for group in sentences for sentence in group]
        if not flat:
            return sentences, np.zeros(0, dtype=np.float32)
        return sentences, self.index.embedder.embed_documents(flat) @ vector


def relevance_of(hits: list[Hit], sentence_similarities: np.ndarray) -> float:
    """How well the guidance meets the question: the mean of the best passage's and the best
    sentence's similarity. Passages alone under-rate pointed questions answered by one
    sentence of a long section; sentences alone over-rate chance matches of a few words."""
    best_passage = max(hit.dense for hit in hits)
    best_sentence = float(sentence_similarities.max()) if sentence_similarities.size else best_passage
    return (best_passage + best_sentence) / 2


def select_passages(hits: list[Hit], limit: int) -> list[Hit]:
    """The best passages by the fused rank, dropping any much less similar than the best."""
    best = max(hit.dense for hit in hits)
    relevant = [hit for hit in hits if hit.dense >= best - RELEVANCE_MARGIN]
    return relevant[:limit]


def _pick_per_passage(groups: list[list[str]], similarities: np.ndarray, count: int) -> list[tuple[str, ...]]:
    """The ``count`` sentences of each passage closest to the question, in text order."""
    picked: list[tuple[str, ...]] = []
    offset = 0
    for group in groups:
        scores = similarities[offset : offset + len(group)]
        offset += len(group)
        best = sorted(np.argsort(-scores)[:count].tolist())
        picked.append(tuple(group[i] for i in best))
    return picked


def confidence_for(similarity: float, settings: AnswerSettings) -> Confidence:
    if similarity >= settings.high_confidence:
        return Confidence.HIGH
    if similarity >= (settings.high_confidence + settings.min_similarity) / 2:
        return Confidence.MEDIUM
    return Confidence.LOW


def answer_message(confidence: Confidence, count: int) -> str:
    lead = "Here is what our guidance says" if count > 1 else "Here is the part of our guidance that applies"
    if confidence is Confidence.LOW:
        return f"{lead}, though it may only partly answer your question."
    return f"{lead}."


def decline_message(status: AnswerStatus, contact: Contact) -> str:
    ask = f"please ask the {contact.team_name} ({contact.email}, or {contact.slack_channel} in Slack)."
    if status is AnswerStatus.OFF_TOPIC:
        return (
            f"I can only answer research-security (Trusted Research) questions from {contact.institution}'s "
            f"guidance, and this doesn't look like one. For research-security matters, {ask}"
        )
    return f"Our research-security guidance doesn't cover this, so I won't guess. For an answer, {ask}"


def placeholders_from(institution: InstitutionSettings) -> dict[str, str]:
    """Values for the ``{{ name }}`` placeholders in the guidance files."""
    return {
        "institution": institution.name,
        "team_name": institution.team_name,
        "email": institution.email,
        "slack_channel": institution.slack_channel,
        "url": institution.url,
    }


def load_embedder(config: Config) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(config.embedding.model, config.embedding.batch_size)


def open_answerer(config: Config, embedder: SentenceTransformerEmbedder | None = None) -> Answerer:
    """Load the model and the index once, and return an ``Answerer`` over them.

    Raises:
        IndexerError: no usable index, or the model cannot be loaded or does not match.
        ConfigError: the off-topic examples file is malformed.
    """
    embedder = embedder or load_embedder(config)
    index = SearchIndex.load(config.paths.index_db, embedder, config.retrieval)
    return Answerer(index, config.answer, config.institution, load_off_topic(config.paths.off_topic))


def load_off_topic(path: Path) -> list[str]:
    """The example off-topic requests: a YAML list of strings (a missing file means none)."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the off-topic examples ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, list) or not all(isinstance(item, str) and item.strip() for item in data):
        raise ConfigError(f"{path}: expected a YAML list of example requests (one string each)")
    return data


def answer_quality(answerer: Answerer, questions: Sequence[EvalQuestion]) -> dict[str, float]:
    """How the whole answer path does on an evaluation set.

    Returns shares of: answerable questions answered; off-topic ones (empty ``expect``)
    declined; answerable questions whose first citation, or any citation, is an expected
    document.
    """
    answerable = [q for q in questions if q.expect]
    off_topic = [q for q in questions if not q.expect]
    answered = first = anywhere = 0
    for question in answerable:
        answer = answerer.answer(question.question)
        cited = [citation.path for citation in answer.citations]
        answered += answer.status is AnswerStatus.ANSWERED
        first += bool(cited) and cited[0] in question.expect
        anywhere += bool(set(cited) & set(question.expect))
    declined = sum(answerer.answer(q.question).status is not AnswerStatus.ANSWERED for q in off_topic)
    total = len(answerable)
    return {
        "answered": _share(answered, total),
        "declined": _share(declined, len(off_topic)),
        "first_cited": _share(first, total),
        "any_cited": _share(anywhere, total),
    }


def _share(count: int, total: int) -> float:
    return count / total if total else 1.0
