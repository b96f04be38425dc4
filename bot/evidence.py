"""Evidence for an answer: which parts of the retrieved passages carry what the question asks,
and whether they carry its key terms at all.

Pure functions over chunks and term weights (no model): ``select_excerpts`` picks sentence
windows across many candidate chunks, covering each part of the question once; ``coverage``
says how much of the question's key-term weight the excerpts (with their headings) carry, so
a passage on a similar topic that never names what was asked about is not taken as an answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.chunking import Chunk
from indexer.text import split_sentences, tokenize

# Words that carry no topic of their own in a question (the tokenizer already drops English
# stop words): asking, wanting, vagueness, chat. A question made only of these has no key terms.
GENERIC = frozenset(
    tokenize(
        """need needs needed want wants wanted know tell get gets got go going use used using like
        ok okay also still really actually just anyone someone somebody anything something thing
        things stuff guy guys bloke folk folks people person way lot bit kind sort mean means
        happen happens happened say says said think thought make made take takes took let lets
        help ask asked asking question questions answer right wrong good bad best sure true
        allowed able may might must shall would could should will can cannot also else
        even ever every much many more most any some next last week month year today tomorrow
        time times long soon quick quickly new old first one two three please thanks thank hi
        hey hello btw lol etc eg ie yes yeah no nope maybe perhaps literally basically anyway
        normal usual fine worry worried wonder wondering count counts
        counted mine myself our us we me my i do does did done doing has have had is are was were
        be been being what which who whom whose when where why how whether if so about around
        exactly generally general basic simple simply already yet soon now then there here
        work working works worked"""
    )
)

# Spelling variants and words researchers use for what the guidance names otherwise; each
# stem maps to stems that count as the same term when checking coverage.
_SYNONYMS = {
    "licens": ("licenc",),
    "defens": ("defenc",),
    "organ": ("organis",),
    "organiz": ("organis",),
    "program": ("programm",),
    "penalti": ("sentenc", "fine", "imprison", "prison", "offenc"),
    "punish": ("penalti", "sentenc", "fine", "imprison", "offenc"),
    "jail": ("imprison", "prison", "sentenc"),
    "spi": ("intellig", "espionag"),
    "spy": ("intellig", "espionag"),
    "laptop": ("devic",),
    "phone": ("devic",),
    "chines": ("china",),
    "russian": ("russia",),
    "iranian": ("iran",),
    "american": ("us",),
    "usa": ("us",),
    "korean": ("korea",),
    "uni": ("univers",),
    "deadlin": ("within", "day"),
    "prc": ("china",),
    "sector": ("area",),  # the NSI Act's "sectors" are "areas" in the regulations
    "dataset": ("data",),
}

_PRONOUN_START = re.compile(
    r"^(?:it|this|these|that|those|they|such|however|but|so|also|then|in that case)\b", re.I
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")
_FACTLIKE = re.compile(
    r"\d|\b[A-Z]{2,}\b|\b(?:must|contact|report|email|apply|register|before|within|until)\b"
)


class TermWeights:
    """How much each term says about a question (its inverse document frequency over the
    chunks; a term in no chunk gets the highest weight), and the guidance's own spelling of a
    misspelt term ("quantam" -> "quantum", "vistor" -> "visitor")."""

    def __init__(self, document_frequency: Mapping[str, int], size: int) -> None:
        self.document_frequency = document_frequency
        self.size = size
        self._deletes: dict[str, str] = {}
        for term in sorted(document_frequency, key=lambda t: -document_frequency[t]):
            if len(term) >= 5:
                for variant in _deletions(term):
                    self._deletes.setdefault(variant, term)

    @classmethod
    def from_postings(cls, postings: Mapping[str, tuple], size: int) -> TermWeights:
        return cls({term: len(docs) for term, (docs, _) in postings.items()}, size)

    def weight(self, term: str) -> float:
        return math.log((self.size + 1) / (self.document_frequency.get(term, 0) + 0.5))

    def known(self, term: str) -> bool:
        return term in self.document_frequency

    def spelling(self, term: str) -> str:
        """A known term one typo away, or the term itself: a letter too many ("honourari"), a
        letter missing ("vistor") or, in a word of six letters or more, a vowel for another
        ("quantam"; but "spill" is no "spell"). Other changes are not guessed at: "consent" is
        not a misspelt "content"."""
        if self.known(term) or len(term) < 5:
            return term
        for variant in sorted(_deletions(term)):
            if self.known(variant):
                return variant
        if term in self._deletes:
            return self._deletes[term]
        if len(term) < 6:
            return term
        for n, letter in enumerate(term):
            if letter in _VOWELS:
                for other in _VOWELS.replace(letter, ""):
                    if self.known(variant := term[:n] + other + term[n + 1 :]):
                        return variant
        return term


_VOWELS = "aeiou"
# Titles of laws and agreements end in one of these ("Human Tissue Act", "Wassenaar Arrangement").
INSTRUMENTS = frozenset(
    """Act Acts Arrangement Agreement Bill Convention Directive Order Protocol Regulation
    Regulations Treaty""".split()
)


def _deletions(term: str) -> set[str]:
    """The term with one letter left out, never the first ("tissu" is no "issu")."""
    return {term[:i] + term[i + 1 :] for i in range(1, len(term))}


@dataclass(frozen=True)
class KeyTerm:
    term: str
    weight: float
    known: bool  # found somewhere in the guidance


def key_terms(question: str, weights: TermWeights) -> list[KeyTerm]:
    """The question's content terms with their weights, generic words and unknown names left out.

    A capitalised word that the guidance never uses (a place, a person, a university's name in
    its own language) is a name, not a topic: the guidance can answer about it in general terms.
    Acronyms (GDPR, DPIA, NHS) are kept: the guidance either names them or does not cover them.
    """
    names = {_stem(w) for w in _names(question)}
    seen: dict[str, KeyTerm] = {}
    for term in tokenize(question):
        if term in GENERIC or term in seen or term.isdigit():
            continue
        if term not in names:
            term = weights.spelling(term)
        known = weights.known(term) or any(weights.known(s) for s in _SYNONYMS.get(term, ()))
        if not known and (term in names or len(term) <= 2):  # a name, or a stray "de", "im"
            continue
        seen[term] = KeyTerm(term, weights.weight(term), known)
    return list(seen.values())


def _names(question: str) -> list[str]:
    """Capitalised words not at the start of a sentence, and not all capitals (acronyms).

    The title of a law or an agreement ("the Wassenaar Arrangement", "the Human Tissue Act") is
    not a name: it is what was asked about, so the guidance either covers it or does not.
    """
    runs = _capitalised_runs(question, first_words=False)
    return [word for run in runs if run[-1] not in INSTRUMENTS for word in run if not word.isupper()]


def titles(question: str) -> list[tuple[str, ...]]:
    """The titles of laws and agreements the question names, as stems ("Human Tissue Act" ->
    ("human", "tissu", "act")); a bare "the Act" is no title."""
    found = []
    for run in _capitalised_runs(question, first_words=True):
        if len(run) >= 2 and run[-1] in INSTRUMENTS:
            stems = tokenize(" ".join(run))  # "Does" and other stop words fall away
            while stems and stems[0] in _JURISDICTIONS:  # "the UK Export Control Act"
                stems.pop(0)
            found.append(tuple(stems))
    return [title for title in found if len(title) >= 2]


def _capitalised_runs(question: str, *, first_words: bool) -> list[list[str]]:
    """Runs of consecutive capitalised words, sentence by sentence; ``first_words``: whether a
    sentence's first word can be part of one."""
    runs = []
    for sentence in re.split(r"(?<=[.!?])\s+", question.strip()):
        run: list[str] = []
        for position, word in enumerate([*re.findall(r"[A-Za-z][\w'-]*", sentence), ""]):
            if word[:1].isupper() and (position or first_words):
                run.append(word)
                continue
            if run:
                runs.append(run)
            run = []
    return runs


_JURISDICTIONS = frozenset(tokenize("UK US EU British American European English Scottish"))


def names_title(title: Sequence[str], texts: Iterable[str]) -> bool:
    """Whether one of the texts names the title: its stems in a row."""
    return has_phrase(title, [tokenize(text) for text in texts])


def has_phrase(stems: Sequence[str], token_lists: Iterable[Sequence[str]]) -> bool:
    """Whether one of the token lists (``tokenize`` of a text) has the stems in a row."""
    wanted, size = tuple(stems), len(stems)
    for tokens in token_lists:
        if wanted[0] in tokens and any(
            tuple(tokens[i : i + size]) == wanted for i in range(len(tokens) - size + 1)
        ):
            return True
    return False


def surface_forms(texts: Iterable[str]) -> dict[str, str]:
    """Each stem of the texts with the word the texts most often spell it as ("quantum")."""
    counts: dict[str, dict[str, int]] = {}
    for word, count in Counter(w for text in texts for w in _WORDS.findall(text.lower())).items():
        stem = _stem(word)
        counts.setdefault(stem, {})[word] = count
    return {stem: max(forms, key=lambda w: (forms[w], -len(w), w)) for stem, forms in counts.items()}


def respell(question: str, weights: TermWeights, surface: Mapping[str, str]) -> str:
    """The question with its typos spelt as the guidance spells them ("quantam computing" ->
    "quantum computing"), so that the model reads the word it knows; names are left alone."""
    names = set(_names(question))

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if word in names or len(word) < 5:
            return word
        stem = _stem(word)
        fixed = stem if weights.known(stem) else weights.spelling(stem)
        return surface.get(fixed, word) if fixed != stem else word

    return _WORDS.sub(fix, question)


_WORDS = re.compile(r"[A-Za-z]+")


def _stem(word: str) -> str:
    stems = tokenize(word)
    return stems[0] if stems else word.lower()


def term_set(texts: Iterable[str]) -> set[str]:
    """The stems of the texts, with each stem's synonyms (see ``_SYNONYMS``)."""
    terms = {term for text in texts for term in tokenize(text)}
    return terms | {alias for term in terms for alias in _SYNONYMS.get(term, ())}


def covers(term: str, shown: set[str]) -> bool:
    """Whether ``shown`` (a ``term_set``) carries the term: itself, a synonym, or a word of the
    same stem family (one a prefix of the other, five letters at least: "photograph" and
    "photographi", "invest" and "investor")."""
    if term in shown or set(_SYNONYMS.get(term, ())) & shown:
        return True
    return len(term) >= 5 and any(
        len(other) >= 5 and (other.startswith(term) or term.startswith(other)) for other in shown
    )


def coverage(terms: Sequence[KeyTerm], shown: set[str], weights: Sequence[float] | None = None) -> float:
    """Share of the key terms' weight found in ``shown``; 1.0 with no key terms.

    ``weights`` (one per term) replace the terms' own weights, e.g. how much each term matters
    to the question's meaning.
    """
    values = [t.weight for t in terms] if weights is None else list(weights)
    total = sum(values)
    if not total:
        return 1.0
    return sum(w for t, w in zip(terms, values, strict=True) if covers(t.term, shown)) / total


def without_term(question: str, term: str) -> str:
    """The question with the words that stem to ``term`` left out (to see what the term adds)."""
    return " ".join(word for word in question.split() if term not in tokenize(word))


def importance(question_vector: np.ndarray, masked_vectors: np.ndarray) -> list[float]:
    """How much each term matters to the question's meaning: how far the question's embedding
    moves when the term is left out (1 - cosine), one value per row of ``masked_vectors``."""
    if not len(masked_vectors):
        return []
    return [max(1.0 - float(value), 1e-4) for value in masked_vectors @ question_vector]


# --- excerpts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A retrieved chunk offered as evidence: ``prior`` is its retrieval score scaled to 0-1."""

    chunk: Chunk
    prior: float
    dense: float


@dataclass(frozen=True)
class Excerpt:
    """A run of whole sentences of one chunk: ``text == chunk.text[start:end]``."""

    chunk: Chunk
    start: int
    end: int
    dense: float
    sentences: tuple[tuple[int, int], ...]  # the spans of its sentences, within chunk.text

    @property
    def text(self) -> str:
        return self.chunk.text[self.start : self.end]


@dataclass(frozen=True)
class ExcerptOptions:
    """How excerpts are chosen (defaults chosen on eval/facts.yaml; see ``trbot eval``)."""

    max_excerpts: int = 5
    max_chars: int = 1700
    min_window_chars: int = 180
    max_window_chars: int = 650
    prior_weight: float = 0.8
    heading_weight: float = 0.35
    factlike_bonus: float = 0.15
    min_gain: float = 0.35  # a later excerpt must score this share of the first one's
    seed_first: bool = True  # the first excerpt comes from the best-ranked candidate


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or list item of ``text``, as ``split_sentences`` cuts them."""
    flat = text.replace("\n", " ")  # split_sentences keeps offsets: it only turns breaks into spaces
    spans: list[tuple[int, int]] = []
    position = 0
    for sentence in split_sentences(text):
        start = flat.find(sentence, position)
        if start < 0:
            continue
        spans.append((start, start + len(sentence)))
        position = start + len(sentence)
    return spans


@dataclass
class _Sentence:
    candidate: Candidate
    index: int
    spans: list[tuple[int, int]]
    hits: frozenset[str]  # the key terms the sentence carries
    heading_hits: frozenset[str]  # the key terms its chunk's title and section carry
    factlike: bool


def select_excerpts(
    candidates: Sequence[Candidate], terms: Sequence[KeyTerm], options: ExcerptOptions = ExcerptOptions()
) -> list[Excerpt]:
    """Sentence windows that together cover the question's key terms, best first.

    Each round scores every unused sentence by the weight of the key terms it (and, less, its
    headings) carries that no chosen excerpt carries yet, plus its chunk's retrieval prior and a
    small bonus for fact-like sentences (numbers, dates, acronyms, "must", "contact"...). The best
    one is widened to whole context (a list's lead-in, the sentence a pronoun refers to, a
    minimum length) and kept; a window next to one already kept from the same chunk joins it.
    Stops at ``max_excerpts``, ``max_chars``, or when the best gain falls under ``min_gain`` of
    the first.
    """
    pool = [s for c in candidates for s in _sentences(c, terms)]
    if not pool:
        return []
    weights = {t.term: t.weight for t in terms}
    total = sum(weights.values()) or 1.0
    chosen: list[Excerpt] = []
    covered: set[str] = set()
    used: set[tuple[str, int]] = set()
    first_gain = None
    while pool and len(chosen) < options.max_excerpts:
        scored = [(_gain(s, weights, covered, total, options), n, s) for n, s in enumerate(pool)]
        scored = [x for x in scored if (x[2].candidate.chunk.chunk_id, x[2].index) not in used]
        if not scored:
            break
        if not chosen and options.seed_first:  # the best-ranked chunk always gives the first excerpt
            top = candidates[0].chunk.chunk_id
            scored = [x for x in scored if x[2].candidate.chunk.chunk_id == top] or scored
        gain, _, best = max(scored, key=lambda x: (x[0], -x[1]))
        if first_gain is None:
            first_gain = gain
        elif gain < options.min_gain * first_gain:
            break
        excerpt = _widen(best, options)
        merged = _merge(chosen, excerpt, options)
        size = sum(len(e.text) for e in merged)
        if size > options.max_chars and chosen:
            excerpt = _trim(excerpt, best, options.max_chars - sum(len(e.text) for e in chosen))
            merged = _merge(chosen, excerpt, options) if excerpt else chosen
            if not excerpt or sum(len(e.text) for e in merged) > options.max_chars:
                used.add((best.candidate.chunk.chunk_id, best.index))
                continue
        chosen = merged
        holder = next(
            e for e in chosen if e.chunk.chunk_id == best.candidate.chunk.chunk_id and _inside(best, e)
        )
        for s in pool:
            if s.candidate.chunk.chunk_id == holder.chunk.chunk_id and _inside(s, holder):
                used.add((s.candidate.chunk.chunk_id, s.index))
                covered |= s.hits
    return chosen


def _sentences(candidate: Candidate, terms: Sequence[KeyTerm]) -> list[_Sentence]:
    text = candidate.chunk.text
    spans = sentence_spans(text)
    heading = term_set([candidate.chunk.title, candidate.chunk.section])
    heading_hits = frozenset(t.term for t in terms if covers(t.term, heading))
    result = []
    for index, (start, end) in enumerate(spans):
        piece = text[start:end]
        if len(piece.split()) < 3 and not _LIST_ITEM.match(piece):
            continue
        found = term_set([piece])
        hits = frozenset(t.term for t in terms if covers(t.term, found))
        factlike = bool(_FACTLIKE.search(piece.lstrip("…")))
        result.append(_Sentence(candidate, index, spans, hits, heading_hits, factlike))
    return result


def _gain(
    s: _Sentence, weights: Mapping[str, float], covered: set[str], total: float, options: ExcerptOptions
) -> float:
    own = sum(weights[t] for t in s.hits - covered)
    heading = sum(weights[t] for t in s.heading_hits - s.hits - covered)
    lexical = (own + options.heading_weight * heading) / total
    return lexical + options.prior_weight * s.candidate.prior + options.factlike_bonus * s.factlike


def _widen(s: _Sentence, options: ExcerptOptions) -> Excerpt:
    text, spans = s.candidate.chunk.text, s.spans
    first = last = s.index
    piece = text[spans[first][0] : spans[first][1]]
    if _PRONOUN_START.match(piece.lstrip("…*_ ")) and first > 0:
        first -= 1
    if _LIST_ITEM.match(piece):  # a list item: back to its lead-in, if close enough
        lead = first
        while lead > 0 and _LIST_ITEM.match(text[spans[lead][0] : spans[lead][1]]):
            lead -= 1
        if spans[s.index][1] - spans[lead][0] <= options.max_window_chars:
            first = lead
    if text[spans[last][0] : spans[last][1]].rstrip().endswith(":"):  # a lead-in: its list
        while last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= options.max_window_chars:
            last += 1
            if not _LIST_ITEM.match(text[spans[last][0] : spans[last][1]]):
                break
    while spans[last][1] - spans[first][0] < options.min_window_chars:
        if last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= options.max_window_chars:
            last += 1
        elif first > 0 and spans[last][1] - spans[first - 1][0] <= options.max_window_chars:
            first -= 1
        else:
            break
    return _excerpt(s.candidate, spans, first, last)


def _excerpt(candidate: Candidate, spans: list[tuple[int, int]], first: int, last: int) -> Excerpt:
    return Excerpt(
        candidate.chunk, spans[first][0], spans[last][1], candidate.dense, tuple(spans[first : last + 1])
    )


def _trim(excerpt: Excerpt, s: _Sentence, room: int) -> Excerpt | None:
    """The excerpt cut down to fit ``room`` characters, keeping the chosen sentence."""
    start, end = s.spans[s.index]
    if end - start > room:
        return None
    spans = [span for span in excerpt.sentences if span[0] >= start and span[1] <= end]
    return Excerpt(excerpt.chunk, start, end, excerpt.dense, tuple(spans)) if spans else None


def _merge(chosen: list[Excerpt], new: Excerpt, options: ExcerptOptions) -> list[Excerpt]:
    """``chosen`` plus ``new``; joined to an excerpt of the same chunk it touches or overlaps."""
    for position, old in enumerate(chosen):
        if old.chunk.chunk_id != new.chunk.chunk_id:
            continue
        gap = max(new.start - old.end, old.start - new.end)
        if gap <= 2 or (
            gap < 200 and max(old.end, new.end) - min(old.start, new.start) <= options.max_window_chars
        ):
            spans = sentence_spans(old.chunk.text)
            start, end = min(old.start, new.start), max(old.end, new.end)
            inside = tuple(span for span in spans if span[0] >= start and span[1] <= end)
            joined = Excerpt(old.chunk, start, end, old.dense, inside)
            return [*chosen[:position], joined, *chosen[position + 1 :]]
    return [*chosen, new]


def _inside(s: _Sentence, excerpt: Excerpt) -> bool:
    start, end = s.spans[s.index]
    return start >= excerpt.start and end <= excerpt.end
