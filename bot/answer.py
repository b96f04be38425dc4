"""The answering core: a question in, an ``Answer`` (cited passages, or an honest "not covered") out.

No Slack imports: the CLI and the Slack app both call ``Answerer.answer``.

How an answer is put together:

1. A question that does not read as English gets ``NOT_ENGLISH`` (the model reads English only).
   Typos are spelt as the guidance spells them before the model reads the question.
2. Candidates: the best ``candidate_passages`` chunks by hybrid retrieval (up to three per
   document), plus the sections next to the best two, so facts spread over neighbouring
   sections can be shown. A thread follow-up is retrieved both on its own and together with
   the thread's question; chunks that carry its own key terms are preferred, and the best
   documents' other sections that carry them are added ("what about China?" under FIRS).
3. Evidence (``bot.evidence.select_excerpts``): sentence windows across the candidates that
   cover the question's key terms, each part of a multi-part question once, within
   ``top_passages`` excerpts and ``max_quoted_chars`` characters.
4. Judgement: off-topic when the question is more like a request the bot does not handle, or
   nothing is near it; not covered when the guidance is not relevant enough, or when the
   excerpts do not carry enough of the question's key terms (``min_coverage``), or do not name a
   law or agreement the question names: a passage on a similar topic that never names what was
   asked about ("GDPR", "plagiarism", "the Human Tissue Act") is no answer. A question naming
   another office's topic (``knowledge/referrals.yaml``) that the passages do not name is
   declined with that office's contact.
"""

from __future__ import annotations

import datetime
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from bot.config import AnswerSettings, Config, ConfigError, InstitutionSettings, read_data_file
from bot.evidence import (
    Candidate,
    Excerpt,
    ExcerptOptions,
    KeyTerm,
    TermWeights,
    coverage,
    has_phrase,
    importance,
    key_terms,
    respell,
    select_excerpts,
    surface_forms,
    term_set,
    titles,
    without_term,
)
from bot.language import reads_as_english
from bot.records import Answer, AnswerStatus, Citation, Confidence, Contact, Passage, Referral
from bot.referrals import ReferralRule, load_referrals, referral_for
from indexer.embeddings import SentenceTransformerEmbedder
from indexer.evaluate import AnswerOutcome, EvalQuestion
from indexer.search import Hit, SearchIndex
from indexer.text import tokenize

# Chunks of one document among the candidates at most.
CANDIDATES_PER_DOCUMENT = 3
# A candidate is kept only if its similarity is within this margin of the best candidate's.
RELEVANCE_MARGIN = 0.15
# Neighbouring sections are added for this many of the best candidates.
NEIGHBOURS_OF = 2
# A follow-up's candidates that carry its own key terms get this much added to their prior.
OWN_TERMS_BONUS = 0.5
# Sentence embeddings kept for highlights and relevance (384 floats each: about 6 MB).
SENTENCE_CACHE_SIZE = 4096


class QuestionError(ValueError):
    """The question cannot be asked as it is (empty, too long); the message is safe to show."""


class Answerer:
    """Answers questions from a loaded ``SearchIndex``.

    Args:
        index: The loaded index (its embedder is used for the query and the highlights).
        settings: Thresholds and sizes (``Config.answer``).
        institution: Whom to name as the contact (``Config.institution``).
        off_topic: Example requests the bot does not handle (``knowledge/off-topic.yaml``).
        today: What day it is (for flagging documents overdue for review; tests pass their own).
        referrals: Other offices and their topics (``knowledge/referrals.yaml``).
    """

    def __init__(
        self,
        index: SearchIndex,
        settings: AnswerSettings,
        institution: InstitutionSettings,
        off_topic: Sequence[str] = (),
        today: Callable[[], datetime.date] = datetime.date.today,
        referrals: Sequence[ReferralRule] = (),
    ) -> None:
        self.index = index
        self.settings = settings
        self.contact = institution.contact()
        self.off_topic = index.embedder.embed_documents(list(off_topic)) if off_topic else None
        self.today = today
        self.referrals = tuple(referrals)
        self.weights = TermWeights.from_postings(index.bm25.postings, len(index.chunks))
        self.surface = surface_forms(c.text for c in index.chunks)
        self.excerpt_options = ExcerptOptions(
            max_excerpts=settings.top_passages, max_chars=settings.max_quoted_chars
        )
        self._position = {(c.doc_id, c.ordinal): n for n, c in enumerate(index.chunks)}
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._number = {c.chunk_id: n for n, c in enumerate(index.chunks)}
        self._by_document: dict[str, list[int]] = {}
        for n, c in enumerate(index.chunks):
            self._by_document.setdefault(c.doc_id, []).append(n)

    def answer(self, question: str, context: str | None = None) -> Answer:
        """Answer a question; ``context`` is the thread's earlier question, for short follow-ups.

        Raises:
            QuestionError: the question is empty or too long.
        """
        question = self.check_question(question)
        if not reads_as_english(question):
            return self._decline(question, AnswerStatus.NOT_ENGLISH)
        asked = question
        question = respell(question, self.weights, self.surface)  # what the model reads
        words = len(question.split())
        followup = bool(context and context.strip()) and words <= self.settings.followup_max_words
        query = f"{' '.join((context or '').split())} {question}" if followup else question
        vector = self.index.embedder.embed_query(query)
        own = key_terms(question, self.weights)
        terms = _stressed(key_terms(query, self.weights), own) if followup else own
        candidates = self._candidates(query, vector, own if followup else (), question if followup else None)
        if not candidates:
            return self._decline(asked, AnswerStatus.OFF_TOPIC, self._referral(question, ()))
        excerpts = select_excerpts(candidates, terms, self.excerpt_options)
        if not excerpts:
            return self._decline(asked, AnswerStatus.NOT_COVERED, self._referral(question, ()))
        excerpts = sorted(excerpts, key=lambda e: -self._prior(e, candidates))
        sentences, similarities = self._sentence_similarities(vector, excerpts)
        relevance = relevance_of(excerpts, similarities)
        status = self._judge(relevance, vector)
        if status is AnswerStatus.ANSWERED and (
            self._coverage(question, own, excerpts, None if followup else vector) < self.settings.min_coverage
            or not _names_every_title(question, excerpts)
        ):
            status = AnswerStatus.NOT_COVERED
        referral = self._referral(question, excerpts)
        if referral is not None and status is AnswerStatus.ANSWERED:
            status = AnswerStatus.NOT_COVERED  # another office's business, which the passages never name
        if status is not AnswerStatus.ANSWERED:
            return self._decline(asked, status, referral)
        highlights = _pick_per_passage(sentences, similarities, self.settings.highlight_sentences)
        return self._answered(asked, excerpts, highlights, relevance)

    @staticmethod
    def _prior(excerpt: Excerpt, candidates: Sequence[Candidate]) -> float:
        return next((c.prior for c in candidates if c.chunk.chunk_id == excerpt.chunk.chunk_id), 0.0)

    def _candidates(
        self, query: str, vector: np.ndarray, own: Sequence[KeyTerm], alone: str | None
    ) -> list[Candidate]:
        """Retrieved chunks with a 0-1 prior, and the sections next to the best ones."""
        limit = self.settings.candidate_passages
        # a follow-up's own words count three times in the keyword ranking, the thread's once
        keywords = f"{query} {alone} {alone}" if alone is not None else query
        hits = self.index.search(keywords, top_k=limit, per_doc=CANDIDATES_PER_DOCUMENT, query_vector=vector)
        if alone is not None:  # a follow-up: also what it finds on its own
            extra = self.index.search(alone, top_k=limit, per_doc=CANDIDATES_PER_DOCUMENT)
            seen = {hit.chunk.chunk_id for hit in hits}
            hits = hits + [
                Hit(
                    h.chunk,
                    h.score,
                    h.bm25,
                    float(self.index.matrix[self._number[h.chunk.chunk_id]] @ vector),
                )
                for h in extra
                if h.chunk.chunk_id not in seen
            ]
        if not hits:
            return []
        best_dense = max(hit.dense for hit in hits)
        hits = [hit for hit in hits if hit.dense >= best_dense - RELEVANCE_MARGIN]
        top = max(hit.score for hit in hits) or 1.0
        candidates = [Candidate(hit.chunk, max(hit.score, 0.0) / top, hit.dense) for hit in hits]
        candidates += self._neighbours(
            candidates[:NEIGHBOURS_OF], vector, {c.chunk.chunk_id for c in candidates}
        )
        if own:
            wanted = {t.term for t in own if t.known}
            candidates += self._naming(candidates[:NEIGHBOURS_OF], wanted, vector, candidates)
            candidates = [
                Candidate(
                    c.chunk, c.prior + OWN_TERMS_BONUS * bool(wanted & term_set([c.chunk.text])), c.dense
                )
                for c in candidates
            ]
        return candidates

    def _neighbours(self, best: list[Candidate], vector: np.ndarray, seen: set[str]) -> list[Candidate]:
        found = []
        for candidate in best:
            for step in (-1, 1):
                number = self._position.get((candidate.chunk.doc_id, candidate.chunk.ordinal + step))
                if number is None or self.index.chunks[number].chunk_id in seen:
                    continue
                chunk = self.index.chunks[number]
                seen.add(chunk.chunk_id)
                dense = float(self.index.matrix[number] @ vector)
                found.append(Candidate(chunk, candidate.prior * 0.5, dense))
        return found

    def _naming(
        self, best: list[Candidate], wanted: set[str], vector: np.ndarray, have: list[Candidate]
    ) -> list[Candidate]:
        """The other sections of the best documents that name a follow-up's own terms: the thread
        chose the document ("FIRS"), the follow-up asks about something in it ("what about China?")."""
        seen = {c.chunk.chunk_id for c in have}
        found = []
        for doc_id in dict.fromkeys(c.chunk.doc_id for c in best):
            for number in self._by_document.get(doc_id, ()):
                chunk = self.index.chunks[number]
                if chunk.chunk_id in seen or not wanted & term_set([chunk.text]):
                    continue
                seen.add(chunk.chunk_id)
                found.append(Candidate(chunk, 0.5, float(self.index.matrix[number] @ vector)))
        return found

    def _coverage(
        self, question: str, own: Sequence[KeyTerm], excerpts: Sequence[Excerpt], vector: np.ndarray | None
    ) -> float:
        """Share of the question's own key terms, weighted by how much each matters to its
        meaning, that the excerpts (with their titles and sections) carry. ``vector`` is the
        question's embedding (None: embed it here, as for a follow-up read with its thread)."""
        if not own:
            return 1.0
        texts = [without_term(question, t.term) for t in own] + ([question] if vector is None else [])
        vectors = self.index.embedder.embed_documents(texts)
        base = vectors[-1] if vector is None else vector
        weights = importance(base, vectors[: len(own)])
        shown = term_set([text for e in excerpts for text in (e.text, e.chunk.title, e.chunk.section)])
        return coverage(own, shown, weights)

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
        # Invisible format characters (zero-width spaces and joiners, BOM...: category Cf) are no question.
        visible = "".join(c for c in (question or "") if unicodedata.category(c) != "Cf")
        text = " ".join(visible.split())
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

    def _referral(self, question: str, excerpts: Sequence[Excerpt]) -> Referral | None:
        texts = [text for e in excerpts for text in (e.chunk.text, e.chunk.title, e.chunk.section)]
        return referral_for(question, texts, self.referrals)

    def _decline(self, question: str, status: AnswerStatus, referral: Referral | None = None) -> Answer:
        message = decline_message(status, self.contact, referral)
        return Answer(question, status, Confidence.NONE, (), (), self.contact, message, referral)

    def _answered(self, question: str, excerpts: list[Excerpt], highlights: list, relevance: float) -> Answer:
        citations = tuple(self._citation(number, e) for number, e in enumerate(excerpts, start=1))
        passages = tuple(
            Passage(number, e.chunk.chunk_id, e.text, marked, round(e.dense, 4))
            for number, (e, marked) in enumerate(zip(excerpts, highlights, strict=True), start=1)
        )
        confidence = confidence_for(relevance, self.settings)
        message = answer_message(confidence, len(passages))
        return Answer(question, AnswerStatus.ANSWERED, confidence, passages, citations, self.contact, message)

    def _citation(self, number: int, excerpt: Excerpt) -> Citation:
        document = self.index.documents[excerpt.chunk.doc_id]
        return Citation(
            number=number,
            title=document.title,
            section=excerpt.chunk.section,
            url=document.url,
            path=excerpt.chunk.doc_id,
            last_reviewed=document.last_reviewed,
            stale=review_overdue(document.last_reviewed, self.settings.max_review_age_days, self.today()),
        )

    def _sentence_similarities(
        self, vector: np.ndarray, excerpts: list[Excerpt]
    ) -> tuple[list[list[str]], np.ndarray]:
        """Each excerpt's sentences (exact substrings of it), and every sentence's similarity
        to the query (flattened)."""
        sentences = [
            [e.chunk.text[a:b] for a, b in e.sentences if len(e.chunk.text[a:b].split()) >= 4] or [e.text]
            for e in excerpts
        ]
        flat = [sentence for group in sentences for sentence in group]
        return sentences, self._sentence_vectors(flat) @ vector

    def _sentence_vectors(self, sentences: list[str]) -> np.ndarray:
        """Embeddings of guidance sentences; the last ``SENTENCE_CACHE_SIZE`` are kept, since the
        same sections are quoted again and again."""
        with self._lock:
            missing = list(dict.fromkeys(s for s in sentences if s not in self._sentences))
        if missing:
            fresh = self.index.embedder.embed_documents(missing)
            with self._lock:
                for sentence, row in zip(missing, fresh, strict=True):
                    self._sentences[sentence] = row
                while len(self._sentences) > SENTENCE_CACHE_SIZE:
                    self._sentences.popitem(last=False)
        with self._lock:
            rows = []
            for sentence in sentences:
                row = self._sentences.get(sentence)
                if row is None:  # evicted by another thread meanwhile
                    row = self.index.embedder.embed_documents([sentence])[0]
                else:
                    self._sentences.move_to_end(sentence)
                rows.append(row)
        return np.vstack(rows) if rows else np.zeros((0, self.index.embedder.dimension), np.float32)


def _names_every_title(question: str, excerpts: Sequence[Excerpt]) -> bool:
    """Whether the excerpts' passages name every law or agreement the question names: a passage
    on another Act is no answer about "the Human Tissue Act"."""
    named = titles(question)
    if not named:
        return True
    texts = [tokenize(text) for e in excerpts for text in (e.chunk.text, e.chunk.title, e.chunk.section)]
    return all(has_phrase(title, texts) for title in named)


def _stressed(terms: Sequence[KeyTerm], own: Sequence[KeyTerm]) -> list[KeyTerm]:
    """A follow-up's terms: its own count three times over those it takes from the thread."""
    mine = {t.term for t in own}
    return [KeyTerm(t.term, t.weight * (3 if t.term in mine else 1), t.known) for t in terms]


def review_overdue(last_reviewed: str | None, max_age_days: int, today: datetime.date) -> bool:
    """Whether a document last reviewed on ``last_reviewed`` (YYYY-MM-DD) is older than allowed.

    A document with no review date, or one that cannot be read as a date, is not flagged here
    (``trbot stats`` lists those separately).
    """
    reviewed = parse_review_date(last_reviewed)
    return reviewed is not None and (today - reviewed).days > max_age_days


def reviews_overdue(
    documents: Iterable, max_age_days: int, today: datetime.date
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Documents (with ``doc_id`` and ``last_reviewed``) overdue for review, as (id, date, age in
    days), oldest first; and the ids of those with no readable review date."""
    overdue, undated = [], []
    for document in documents:
        reviewed = parse_review_date(document.last_reviewed)
        if reviewed is None:
            undated.append(document.doc_id)
        elif (today - reviewed).days > max_age_days:
            overdue.append((document.doc_id, reviewed.isoformat(), (today - reviewed).days))
    return sorted(overdue, key=lambda row: (-row[2], row[0])), sorted(undated)


def parse_review_date(value: str | None) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(str(value).strip()[:10]) if value else None
    except ValueError:
        return None


def relevance_of(excerpts: Sequence[Excerpt], sentence_similarities: np.ndarray) -> float:
    """How well the guidance meets the question: the mean of the best passage's and the best
    sentence's similarity. Passages alone under-rate pointed questions answered by one
    sentence of a long section; sentences alone over-rate chance matches of a few words."""
    best_passage = max(e.dense for e in excerpts)
    best_sentence = float(sentence_similarities.max()) if sentence_similarities.size else best_passage
    return (best_passage + best_sentence) / 2


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


def decline_message(status: AnswerStatus, contact: Contact, referral: Referral | None = None) -> str:
    ask = f"please ask the {contact.team_name} ({contact.email}, or {contact.slack_channel} in Slack)."
    if referral is not None and status is not AnswerStatus.NOT_ENGLISH:
        return (
            f"This is a question for {referral.office} ({referral.contact}): our research-security "
            f"guidance doesn't cover “{referral.topic}”, so I won't guess. If there is a "
            f"research-security side to it as well, {ask}"
        )
    if status is AnswerStatus.NOT_ENGLISH:
        return (
            "I can only read questions in English, so I can't tell what our guidance says about this "
            f"one. Please ask it again in English, or {ask}"
        )
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
        ConfigError: the off-topic examples or the referrals file is malformed.
    """
    embedder = embedder or load_embedder(config)
    index = SearchIndex.load(config.paths.index_db, embedder, config.retrieval)
    return Answerer(
        index,
        config.answer,
        config.institution,
        load_off_topic(config.paths.off_topic),
        referrals=load_referrals(config.paths.referrals),
    )


def load_off_topic(path: Path) -> list[str]:
    """The example off-topic requests: a YAML list of strings (a missing file means none)."""
    data = read_data_file(path, "off-topic examples")
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(item, str) and item.strip() for item in data):
        raise ConfigError(f"{path}: expected a YAML list of example requests (one string each)")
    return data


def answer_outcomes(answerer: Answerer, questions: Sequence[EvalQuestion]) -> list[AnswerOutcome]:
    """Ask every question (with its thread context, if any) and record what the answer showed."""
    outcomes = []
    for question in questions:
        answer = answerer.answer(question.question, context=question.context)
        outcomes.append(
            AnswerOutcome(
                str(answer.status),
                str(answer.confidence),
                tuple(passage.text for passage in answer.passages),
                tuple(citation.path for citation in answer.citations),
            )
        )
    return outcomes
