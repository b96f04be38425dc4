"""Retrieval evaluation: recall@k, MRR and nDCG for BM25-only, dense-only and hybrid, side by side;
and fact-level scoring: does the text shown carry the facts a correct answer must contain?"""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from indexer.documents import as_strings
from indexer.errors import IndexerError
from indexer.search import MODES, SearchIndex

# How a question should be handled. "declined" accepts either kind of decline.
STATUSES = ("answered", "not_covered", "off_topic", "declined", "not_english")
DECLINES = frozenset({"not_covered", "off_topic"})


@dataclass(frozen=True)
class EvalQuestion:
    """A question and the documents that answer it (any one found counts; an empty list = off-topic).

    ``facts`` are what a correct answer must contain, each a tuple of alternatives (any one
    counts); ``context`` is the thread's earlier question for a follow-up; ``status`` the
    expected handling when it is not the default; ``kind`` a label to group results by.
    """

    id: str
    question: str
    expect: tuple[str, ...]
    phrases: tuple[str, ...] = ()
    facts: tuple[tuple[str, ...], ...] = ()
    context: str | None = None
    status: str | None = None
    kind: str = ""

    @property
    def expected_status(self) -> str:
        return self.status or ("answered" if self.expect else "declined")

    def handled(self, status: str) -> bool:
        """Whether an answer with this status is the expected handling."""
        wanted = self.expected_status
        return status == wanted or (wanted == "declined" and status in DECLINES)


@dataclass
class ModeScores:
    mode: str
    recall: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0
    ndcg: float = 0.0
    phrase_recall: float = 0.0
    misses: list[str] = field(default_factory=list)


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read an evaluation file: a YAML list of ``{id, question, expect, phrases}``.

    Raises:
        IndexerError: the file is missing or malformed (the message says where).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise IndexerError(f"{path}: cannot read the evaluation file ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, list):
        raise IndexerError(f"{path}: expected a YAML list of questions")
    return [_question(item, path, number) for number, item in enumerate(data, start=1)]


def _question(item: object, path: Path, number: int) -> EvalQuestion:
    if not isinstance(item, dict) or not item.get("question"):
        raise IndexerError(f"{path}: item {number} needs at least 'question' and 'expect'")
    where = f"{path}: item {number} ({item.get('id', number)})"
    status = item.get("status")
    if status is not None and status not in STATUSES:
        raise IndexerError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
    context = item.get("context")
    if context is not None and (not isinstance(context, str) or not context.strip()):
        raise IndexerError(f"{where}: context must be the thread's earlier question (text)")
    return EvalQuestion(
        id=str(item.get("id", number)),
        question=str(item["question"]),
        expect=as_strings(item.get("expect")),
        phrases=tuple(p.lower() for p in as_strings(item.get("phrases"))),
        facts=parse_facts(item.get("facts"), where),
        context=context,
        status=status,
        kind=str(item.get("kind") or ""),
    )


def parse_facts(value: object, where: str = "facts") -> tuple[tuple[str, ...], ...]:
    """``facts:`` as tuples of alternatives: each item a phrase, or a list of alternative phrases.

    Raises:
        IndexerError: not a list, or an item that is not a phrase or a list of phrases.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise IndexerError(f"{where}: facts must be a list (of phrases, or of lists of alternatives)")
    facts = []
    for position, item in enumerate(value, start=1):
        alternatives = item if isinstance(item, list) else [item]
        if not alternatives or not all(
            isinstance(a, str | int | float) and str(a).strip() for a in alternatives
        ):
            raise IndexerError(f"{where}: fact {position} must be a phrase or a list of phrases")
        facts.append(tuple(str(a) for a in alternatives))
    return tuple(facts)


# --- Fact matching --------------------------------------------------------------------------------

_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
}
_MONTHS = {
    m[:3]: m
    for m in "january february march april may june july august september october november december".split()
}
_MONTHS["sept"] = "september"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_MAGNITUDE = re.compile(r"(?<=\d)\s*(m|bn|k)\b")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_NON_WORD = re.compile(r"[^\w%.]+|(?<!\d)\.|\.(?!\d)")


def normalise(text: str) -> str:
    """Text for fact matching: lower case, words separated by single spaces, punctuation gone
    (a decimal point and % kept), number words as digits, "1,000" as "1000", "£3m" as
    "3 million", "1st" as "1", month abbreviations spelt out, "per cent" as "%"."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _THOUSANDS.sub("", text)
    text = _MAGNITUDE.sub(
        lambda m: " " + {"m": "million", "bn": "billion", "k": "thousand"}[m.group(1)], text
    )
    text = _ORDINAL.sub(r"\1", text)
    text = re.sub(r"\s*(?:per cent|percent)\b", "%", text)
    words = _NON_WORD.sub(" ", text.replace("'", "")).split()
    words = [_NUMBER_WORDS.get(w) or _MONTHS.get(w) or w for w in words]
    return " ".join(words).replace(" %", "%")


def fact_found(normalised_text: str, alternatives: Sequence[str]) -> bool:
    """Whether any alternative occurs in the (normalised) text as whole words.

    An alternative ending in ``*`` may end inside a word: "disclos*" matches "disclose" and
    "disclosure"; without it, "disclos" matches neither.
    """
    padded = f" {normalised_text} "
    for alternative in alternatives:
        prefix = alternative.rstrip().endswith("*")
        phrase = normalise(alternative.rstrip().rstrip("*"))
        if phrase and (f" {phrase}" if prefix else f" {phrase} ") in padded:
            return True
    return False


def facts_found(text: str, facts: Sequence[Sequence[str]]) -> list[bool]:
    """For each fact, whether the text carries it."""
    normalised = normalise(text)
    return [fact_found(normalised, alternatives) for alternatives in facts]


def reciprocal_rank(ranked: Sequence[str], relevant: set[str]) -> float:
    return next((1 / rank for rank, doc in enumerate(ranked, start=1) if doc in relevant), 0.0)


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """1.0 when any relevant document is in the top k (each question wants one answer)."""
    return 1.0 if relevant & set(ranked[:k]) else 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG@k over distinct documents."""
    gains = sum(1 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return gains / ideal if ideal else 0.0


def evaluate(
    index: SearchIndex, questions: Sequence[EvalQuestion], ks: Sequence[int] = (1, 3, 5), modes=MODES
) -> list[ModeScores]:
    """Score each retrieval mode on the questions that expect documents (off-topic ones are skipped)."""
    answerable = [q for q in questions if q.expect]
    if not answerable:
        raise IndexerError("the evaluation file has no question with expected documents")
    depth = max(ks)
    return [_score_mode(index, answerable, mode, ks, depth) for mode in modes]


def _score_mode(index: SearchIndex, questions, mode: str, ks: Sequence[int], depth: int) -> ModeScores:
    scores = ModeScores(mode, recall={k: 0.0 for k in ks})
    for question in questions:
        query = f"{question.context} {question.question}" if question.context else question.question
        hits = index.search(query, top_k=depth, mode=mode, per_doc=1)
        ranked = [hit.doc_id for hit in hits]
        relevant = set(question.expect)
        for k in ks:
            scores.recall[k] += recall_at(ranked, relevant, k)
        scores.mrr += reciprocal_rank(ranked, relevant)
        scores.ndcg += ndcg_at(ranked, relevant, depth)
        scores.phrase_recall += _phrase_found(hits, question)
        if not recall_at(ranked, relevant, depth):
            scores.misses.append(question.id)
    count = len(questions)
    scores.recall = {k: v / count for k, v in scores.recall.items()}
    scores.mrr, scores.ndcg, scores.phrase_recall = (
        scores.mrr / count,
        scores.ndcg / count,
        scores.phrase_recall / count,
    )
    return scores


def _phrase_found(hits, question: EvalQuestion) -> float:
    if not question.phrases:
        return 1.0
    text = " ".join(hit.chunk.text.lower() for hit in hits if hit.doc_id in question.expect)
    return 1.0 if any(phrase in text for phrase in question.phrases) else 0.0


# --- Fact-level scoring ---------------------------------------------------------------------------


@dataclass
class FactScores:
    """Shares of the expected facts found, over the answerable questions that list facts.

    ``top5``: in the top 5 hybrid hits, one per document; ``top10``: the top 10, three per
    document; ``in_corpus``: in some chunk of the index at all (the ceiling for the others).
    """

    questions: int = 0
    facts: int = 0
    top5: float = 0.0
    top10: float = 0.0
    in_corpus: float = 0.0
    missing_from_corpus: list[str] = field(default_factory=list)


def fact_retrieval(index: SearchIndex, questions: Sequence[EvalQuestion]) -> FactScores:
    """Where the facts are: in the top-k hits, and in the corpus at all (hybrid retrieval)."""
    asked = [q for q in questions if q.facts and q.expected_status == "answered"]
    scores = FactScores(questions=len(asked), facts=sum(len(q.facts) for q in asked))
    if not asked:
        return scores
    corpus = [normalise(chunk.text) for chunk in index.chunks]
    found = {"top5": 0, "top10": 0, "in_corpus": 0}
    for question in asked:
        query = question.question if not question.context else f"{question.context} {question.question}"
        for name, (k, per_doc) in {"top5": (5, 1), "top10": (10, 3)}.items():
            hits = index.search(query, top_k=k, per_doc=per_doc)
            found[name] += sum(facts_found(" ".join(h.chunk.text for h in hits), question.facts))
        for position, alternatives in enumerate(question.facts, start=1):
            present = any(fact_found(text, alternatives) for text in corpus)
            found["in_corpus"] += present
            if not present:
                scores.missing_from_corpus.append(f"{question.id}#{position}")
    scores.top5, scores.top10, scores.in_corpus = (
        found[n] / scores.facts for n in ("top5", "top10", "in_corpus")
    )
    return scores


@dataclass(frozen=True)
class AnswerOutcome:
    """What the answer path did with one question: its status and what it showed.

    ``quoted``: the text of each passage shown; ``cited``: the documents cited, in order.
    """

    status: str
    confidence: str = "none"
    quoted: tuple[str, ...] = ()
    cited: tuple[str, ...] = ()


@dataclass
class AnswerScores:
    """The whole answer path on an evaluation set.

    ``answered``: share of questions expected to be answered that were; ``declined``: share of
    those expected to be declined that were; ``first_cited``/``any_cited``: answerable
    questions whose first (any) citation is an expected document; ``fact_recall``: expected
    facts found in the quoted text of the answer (over questions expected to be answered and
    listing facts); ``complete``: share of those questions with every fact shown;
    ``passages_max``/``passages_mean`` and ``quoted_chars_median``/``quoted_chars_max``: the
    shape of the answers given; ``handling``: per ``kind``, [handled as expected, count];
    ``misses``: ids of questions handled otherwise, with what they got.
    """

    answered: float = 1.0
    declined: float = 1.0
    first_cited: float = 1.0
    any_cited: float = 1.0
    fact_questions: int = 0
    facts: int = 0
    fact_recall: float = 1.0
    complete: float = 1.0
    passages_max: int = 0
    passages_mean: float = 0.0
    quoted_chars_median: float = 0.0
    quoted_chars_max: int = 0
    handling: dict[str, list[int]] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    fact_misses: list[str] = field(default_factory=list)


def score_answers(questions: Sequence[EvalQuestion], outcomes: Sequence[AnswerOutcome]) -> AnswerScores:
    """Score what the answer path did (one outcome per question, in order)."""
    scores = AnswerScores()
    pairs = list(zip(questions, outcomes, strict=True))
    answerable = [(q, o) for q, o in pairs if q.expected_status == "answered"]
    declinable = [(q, o) for q, o in pairs if q.expected_status in DECLINES | {"declined"}]
    scores.answered = _share(sum(o.status == "answered" for _, o in answerable), len(answerable))
    scores.declined = _share(sum(o.status in DECLINES for _, o in declinable), len(declinable))
    cited = [(q, o) for q, o in answerable if q.expect]
    scores.first_cited = _share(sum(bool(o.cited) and o.cited[0] in q.expect for q, o in cited), len(cited))
    scores.any_cited = _share(sum(bool(set(o.cited) & set(q.expect)) for q, o in cited), len(cited))
    with_facts = [(q, o) for q, o in answerable if q.facts]
    found = [facts_found(" ".join(o.quoted), q.facts) for q, o in with_facts]
    scores.fact_questions, scores.facts = len(with_facts), sum(len(q.facts) for q, _ in with_facts)
    scores.fact_recall = _share(sum(sum(f) for f in found), scores.facts)
    scores.complete = _share(sum(all(f) for f in found), len(with_facts))
    scores.fact_misses = [
        f"{q.id}#{n}"
        for (q, _), f in zip(with_facts, found, strict=True)
        for n, ok in enumerate(f, 1)
        if not ok
    ]
    shown = [o for o in outcomes if o.status == "answered"]
    if shown:
        sizes = [sum(len(text) for text in o.quoted) for o in shown]
        scores.passages_max = max(len(o.quoted) for o in shown)
        scores.passages_mean = sum(len(o.quoted) for o in shown) / len(shown)
        scores.quoted_chars_median, scores.quoted_chars_max = statistics.median(sizes), max(sizes)
    for question, outcome in pairs:
        ok = question.handled(outcome.status)
        tally = scores.handling.setdefault(question.kind or "plain", [0, 0])
        tally[0] += ok
        tally[1] += 1
        if not ok:
            scores.misses.append(f"{question.id} ({outcome.status}, {outcome.confidence})")
    return scores


def _share(count: int, total: int) -> float:
    return count / total if total else 1.0
