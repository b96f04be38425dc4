"""Hybrid retrieval: BM25 over an inverted index, dense cosine over embeddings, and their fusion."""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.chunking import Chunk
from indexer.embeddings import Embedder
from indexer.errors import IndexNotFoundError, ModelError, StaleIndexError
from indexer.store import DocumentRow, IndexStore, StoredChunk
from indexer.text import tokenize

MODES = ("hybrid", "bm25", "dense")
FUSIONS = ("rrf", "weighted", "zscore", "relative")


@dataclass(frozen=True)
class RetrievalOptions:
    """How the two rankings are combined.

    ``rrf`` (reciprocal-rank fusion) sums ``weight / (rrf_k + rank)`` over the lists a chunk
    appears in, ranks counted from 1; ``rrf_k = 60`` is the value of the original RRF paper.
    ``weighted`` min-max normalises each list's scores over its candidates and sums them
    with the weights; ``zscore`` standardises them instead (mean 0, standard deviation 1 over
    the candidates), so one outlying score does not squash the rest of its list; ``relative``
    keeps the cosine similarity as it is (it is comparable across queries) and adds BM25 as a
    share of the query's best BM25 score, each times its weight. ``relative`` also adds, with
    their own weights, the cosine of the chunk's best sentence (``sentence_weight``) and the
    BM25 of the chunk's whole document as a share of the best document's
    (``document_bm25_weight``): a claim often matches one sentence of a passage, and a
    document's other sections tell what it is about.
    ``bm25_k1`` and ``bm25_b`` are Okapi BM25's term-saturation and length-normalisation.
    """

    fusion: str = "relative"
    rrf_k: int = 60
    bm25_weight: float = 0.3
    dense_weight: float = 1.0
    sentence_weight: float = 0.0
    document_bm25_weight: float = 0.0
    candidates: int = 50
    per_doc: int = 1
    bm25_k1: float = 1.5
    bm25_b: float = 0.75

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion: {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        if self.candidates < 1:
            raise ValueError(f"candidates: must be at least 1, got {self.candidates}")
        if self.per_doc < 1:
            raise ValueError(f"per_doc: must be at least 1, got {self.per_doc}")
        if self.bm25_weight < 0 or self.dense_weight < 0 or self.bm25_weight + self.dense_weight == 0:
            raise ValueError("bm25_weight: the weights must be non-negative and not both zero")
        for name in ("sentence_weight", "document_bm25_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)}")
        if not 0 <= self.bm25_k1 <= 10:
            raise ValueError(f"bm25_k1: must be between 0 and 10, got {self.bm25_k1}")
        if not 0 <= self.bm25_b <= 1:
            raise ValueError(f"bm25_b: must be between 0 and 1, got {self.bm25_b}")


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``dense`` is its cosine similarity to the query (always computed)."""

    chunk: Chunk
    score: float
    bm25: float
    dense: float

    @property
    def doc_id(self) -> str:
        return self.chunk.doc_id


# --- BM25 ----------------------------------------------------------------------------------------


class Bm25Index:
    """Okapi BM25 with the same formula and defaults as ``rank_bm25.BM25Okapi``.

    rank-bm25 scores every document for every query (about 250 ms a query at 100k chunks);
    this keeps postings per term, so a query touches only the chunks that contain its terms.
    Scores are identical (tests/test_search.py checks parity with rank-bm25).
    """

    def __init__(
        self, corpus: Iterable[Sequence[str]], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
    ):
        self._setup(*_postings(corpus), k1, b, epsilon)

    @classmethod
    def merged(cls, index: Bm25Index, group_of: np.ndarray, groups: int) -> Bm25Index:
        """The same corpus with its documents merged into ``groups`` (chunks into whole
        documents): ``group_of[i]`` is document i's group; term frequencies and lengths add up."""
        postings = {}
        for term, (docs, tf) in index.postings.items():
            merged, inverse = np.unique(group_of[docs], return_inverse=True)
            postings[term] = (merged.astype(np.int32), np.bincount(inverse, weights=tf).astype(np.float32))
        lengths = np.bincount(group_of, weights=index.lengths, minlength=groups).astype(np.float32)
        merged_index = cls.__new__(cls)
        merged_index._setup(postings, lengths, index.k1, index.b, index.epsilon)
        return merged_index

    def _setup(
        self,
        postings: dict[str, tuple[np.ndarray, np.ndarray]],
        lengths: np.ndarray,
        k1: float,
        b: float,
        epsilon: float,
    ) -> None:
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.postings, self.lengths = postings, lengths
        self.size = len(self.lengths)
        self.average_length = float(self.lengths.mean()) if self.size else 0.0
        self.idf = _okapi_idf(
            {term: len(docs) for term, (docs, _) in self.postings.items()}, self.size, epsilon
        )
        average = self.average_length or 1.0
        self._norm = (k1 * (1 - b + b * self.lengths / average)).astype(np.float32)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """A score per document; terms repeated in the query count again, as in rank-bm25."""
        scores = np.zeros(self.size, dtype=np.float32)
        for term, repeats in Counter(query_tokens).items():
            if term not in self.postings:
                continue
            docs, tf = self.postings[term]
            gain = self.idf[term] * tf * (self.k1 + 1) / (tf + self._norm[docs])
            scores[docs] += repeats * gain
        return scores


def _postings(corpus: Iterable[Sequence[str]]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Term -> (chunk numbers, term frequencies), and each chunk's length in tokens.

    Built from flat integer arrays rather than per-term Python lists: at 100k chunks this
    is several times faster and keeps no per-token Python objects alive.
    """
    vocabulary: dict[str, int] = {}
    term_ids, lengths = array("i"), array("i")
    for doc in corpus:
        term_ids.extend(vocabulary.setdefault(term, len(vocabulary)) for term in doc)
        lengths.append(len(doc))
    length_array = np.frombuffer(lengths, dtype=np.int32).astype(np.float32)
    if not term_ids:
        return {}, length_array
    doc_ids = np.repeat(np.arange(len(lengths), dtype=np.int64), np.frombuffer(lengths, dtype=np.int32))
    keys = np.frombuffer(term_ids, dtype=np.int32).astype(np.int64) * len(lengths) + doc_ids
    unique, counts = np.unique(keys, return_counts=True)  # sorted by term, then chunk
    terms, docs = np.divmod(unique, len(lengths))
    bounds = np.flatnonzero(np.diff(terms)) + 1
    names = {index: term for term, index in vocabulary.items()}
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(unique)]))
    docs32, tf = docs.astype(np.int32), counts.astype(np.float32)
    postings = {names[int(terms[a])]: (docs32[a:b], tf[a:b]) for a, b in zip(starts, stops, strict=True)}
    return postings, length_array


def _okapi_idf(document_frequency: dict[str, int], size: int, epsilon: float) -> dict[str, float]:
    idf = {term: math.log(size - df + 0.5) - math.log(df + 0.5) for term, df in document_frequency.items()}
    floor = epsilon * (sum(idf.values()) / len(idf)) if idf else 0.0
    return {term: (value if value >= 0 else floor) for term, value in idf.items()}


# --- Fusion (pure) -------------------------------------------------------------------------------


def rrf_fuse(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int = 60) -> dict[int, float]:
    """Reciprocal-rank fusion of ranked lists of ids (best first; ranks count from 1).

    Returns:
        id -> fused score; an id missing from a list gets nothing from that list.
    """
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def weighted_fuse(
    scored: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float]
) -> dict[int, float]:
    """Weighted sum of min-max normalised scores; each list is (id, score) pairs."""
    fused: dict[int, float] = {}
    for pairs, weight in zip(scored, weights, strict=True):
        if not pairs:
            continue
        values = [score for _, score in pairs]
        low, span = min(values), max(values) - min(values)
        for item, score in pairs:
            # all-equal scores (often a single keyword match) count as full agreement, not none
            normalised = (score - low) / span if span else 1.0
            fused[item] = fused.get(item, 0.0) + weight * normalised
    return fused


def zscore_fuse(scored: Sequence[Sequence[tuple[int, float]]], weights: Sequence[float]) -> dict[int, float]:
    """Weighted sum of standardised scores; an id missing from a list gets that list's lowest."""
    fused: dict[int, float] = {}
    floors: list[float] = []
    for pairs, weight in zip(scored, weights, strict=True):
        if not pairs:
            floors.append(0.0)
            continue
        values = np.array([score for _, score in pairs], dtype=np.float64)
        spread = float(values.std()) or 1.0
        standard = (values - values.mean()) / spread
        floors.append(weight * float(standard.min()))
        for (item, _), value in zip(pairs, standard, strict=True):
            fused[item] = fused.get(item, 0.0) + weight * float(value)
    for pairs, floor in zip(scored, floors, strict=True):
        present = {item for item, _ in pairs}
        for item in fused:
            if item not in present:
                fused[item] += floor
    return fused


@dataclass(frozen=True)
class Signals:
    """One query's scores for every chunk: the cosine of the chunk and of its best sentence, and
    the BM25 of the chunk and of its whole document (repeated for each of its chunks)."""

    dense: np.ndarray
    bm25: np.ndarray
    sentence: np.ndarray
    document_bm25: np.ndarray


def relative_fuse(signals: Signals, candidates: Sequence[int], options: RetrievalOptions) -> dict[int, float]:
    """For each candidate: ``dense_weight * cosine + sentence_weight * best sentence's cosine +
    bm25_weight * bm25 / best bm25 + document_bm25_weight * document bm25 / best document's``.
    Every score is known for every chunk, so none is counted as missing from a list."""
    best_bm25 = max((float(signals.bm25[i]) for i in candidates), default=0.0) or 1.0
    best_document = max((float(signals.document_bm25[i]) for i in candidates), default=0.0) or 1.0
    o = options
    return {
        i: o.dense_weight * float(signals.dense[i])
        + o.sentence_weight * float(signals.sentence[i])
        + o.bm25_weight * float(signals.bm25[i]) / best_bm25
        + o.document_bm25_weight * float(signals.document_bm25[i]) / best_document
        for i in candidates
    }


def diversify(ranked: Sequence[int], doc_of: Callable[[int], str], per_doc: int, limit: int) -> list[int]:
    """Keep at most ``per_doc`` items from one document, in order, up to ``limit`` items."""
    kept: list[int] = []
    counts: Counter[str] = Counter()
    if limit <= 0:
        return kept
    for item in ranked:
        doc = doc_of(item)
        if counts[doc] < per_doc:
            kept.append(item)
            counts[doc] += 1
            if len(kept) == limit:
                break
    return kept


# --- The loaded index ----------------------------------------------------------------------------


class SearchIndex:
    """The whole index in memory, ready for queries: chunks, BM25 postings (of chunks and of
    whole documents), the embedding matrix and the sentence embeddings.

    ``sentences`` is (one matrix of every chunk's sentence embeddings, and where chunk i's rows
    start: an array of len(chunks) + 1 offsets); without it each chunk is its one sentence.
    """

    def __init__(
        self,
        chunks: list[Chunk],
        tokens: Iterable[Sequence[str]],
        matrix: np.ndarray | None,
        documents: dict[str, DocumentRow],
        embedder: Embedder,
        options: RetrievalOptions,
        sentences: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.chunks = chunks
        self.documents = documents
        self.embedder = embedder
        self.options = options
        self.bm25 = Bm25Index(tokens, k1=options.bm25_k1, b=options.bm25_b)
        self.matrix = matrix if len(chunks) else np.zeros((0, embedder.dimension), np.float32)
        names = {doc_id: n for n, doc_id in enumerate(dict.fromkeys(c.doc_id for c in chunks))}
        self.document_of = np.array([names[c.doc_id] for c in chunks], dtype=np.int64)
        self.document_bm25: Bm25Index | None = None  # built only for a fusion that weighs it
        if options.document_bm25_weight:
            self.document_bm25 = Bm25Index.merged(self.bm25, self.document_of, len(names))
        if sentences is None:
            sentences = (self.matrix, np.arange(len(chunks) + 1, dtype=np.int64))
        self.sentence_matrix, self.sentence_starts = sentences
        if len(self.sentence_starts) != len(chunks) + 1 or self.sentence_starts[-1] != len(
            self.sentence_matrix
        ):
            raise ValueError("sentences: the offsets do not match the chunks and the sentence matrix")

    @classmethod
    def from_stored(
        cls,
        stored: list[StoredChunk],
        documents: dict[str, DocumentRow],
        embedder: Embedder,
        options: RetrievalOptions,
    ) -> SearchIndex:
        """Build from ``StoredChunk`` records (tests and benchmarks; ``load`` reads the file)."""
        matrix = np.vstack([s.embedding for s in stored]).astype(np.float32, copy=False) if stored else None
        tokens = (s.tokens for s in stored)
        rows = [s.embedding[None, :] if s.sentences is None else s.sentences for s in stored]
        starts = np.concatenate(([0], np.cumsum([len(r) for r in rows]))).astype(np.int64)
        sentences = (np.vstack(rows).astype(np.float32, copy=False), starts) if stored else None
        return cls([s.chunk for s in stored], tokens, matrix, documents, embedder, options, sentences)

    @classmethod
    def load(cls, db_path: Path, embedder: Embedder, options: RetrievalOptions) -> SearchIndex:
        """Read the index file, checking that it was built with the same model. Sentence
        embeddings are read only when ``options.sentence_weight`` uses them.

        Raises:
            IndexNotFoundError, CorruptIndexError: no usable index file.
            ModelError: the index was built with another model.
            StaleIndexError: the fusion weighs sentences and the index has no sentence embeddings.
        """
        store = IndexStore.open(db_path)
        try:
            meta = store.meta()
            if meta is None:
                raise IndexNotFoundError(f"the index at {db_path} is empty: run 'trbot index' first")
            if meta.model != embedder.name or meta.dimension != embedder.dimension:
                raise ModelError(
                    f"the index was built with {meta.model}, but the configured model is {embedder.name}: "
                    "run 'trbot index' to rebuild it"
                )
            if options.sentence_weight and not meta.sentences:
                raise StaleIndexError(
                    f"the index at {db_path} has no sentence embeddings, which retrieval.sentence_weight "
                    "needs: run 'trbot index' to add them"
                )
            loaded = store.load_chunks(meta.dimension, sentences=options.sentence_weight > 0)
            tokens = (text.split() for text in loaded.tokens)
            sentences = (loaded.sentence_matrix, loaded.sentence_starts)
            return cls(loaded.chunks, tokens, loaded.matrix, store.documents(), embedder, options, sentences)
        finally:
            store.close()

    def search(
        self,
        query: str,
        top_k: int = 5,
        mode: str = "hybrid",
        per_doc: int | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The best chunks for a query, best first, at most ``per_doc`` from one document.

        ``query_vector`` is the query's embedding, when the caller already has it.
        """
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if not self.chunks:
            return []
        terms = tokenize(query)
        vector = self.embedder.embed_query(query) if query_vector is None else query_vector
        signals = self._signals(mode, terms, vector)
        scores = self._scores(mode, signals, depth=max(self.options.candidates, 20 * top_k))
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        per_doc = self.options.per_doc if per_doc is None else per_doc
        kept = diversify(ranked, lambda i: self.chunks[i].doc_id, per_doc, top_k)
        return [Hit(self.chunks[i], scores[i], float(signals.bm25[i]), float(signals.dense[i])) for i in kept]

    def _signals(self, mode: str, terms: list[str], vector: np.ndarray) -> Signals:
        """The query's scores; the sentence and document ones only where the fusion uses them."""
        bm25 = self.bm25.scores(terms)
        dense = dense_scores(self.matrix, vector)
        if mode != "hybrid" or self.options.fusion != "relative":
            return Signals(dense, bm25, dense, bm25)
        return Signals(dense, bm25, *self.extra_signals(terms, vector, dense, bm25))

    def extra_signals(
        self, terms: list[str], vector: np.ndarray, dense: np.ndarray, bm25: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each chunk's best-sentence cosine and its document's BM25, each computed only when
        its weight is set (else the chunk's own ``dense`` and ``bm25`` stand in)."""
        sentence, document = dense, bm25
        if self.options.sentence_weight:
            cosines = dense_scores(self.sentence_matrix, vector)
            sentence = np.maximum.reduceat(cosines, self.sentence_starts[:-1])
        if self.document_bm25 is not None:
            document = self.document_bm25.scores(terms)[self.document_of]
        return sentence, document

    def _scores(self, mode: str, signals: Signals, depth: int) -> dict[int, float]:
        bm25, dense = signals.bm25, signals.dense
        if mode == "bm25":
            return {i: float(bm25[i]) for i in _top(bm25, depth, positive_only=True)}
        if mode == "dense":
            return {i: float(dense[i]) for i in _top(dense, depth)}
        n = self.options.candidates
        lexical, semantic = _top(bm25, n, positive_only=True), _top(dense, n)
        weights = (self.options.bm25_weight, self.options.dense_weight)
        if self.options.fusion == "rrf":
            return rrf_fuse([lexical, semantic], weights, self.options.rrf_k)
        scored = [[(i, float(bm25[i])) for i in lexical], [(i, float(dense[i])) for i in semantic]]
        if self.options.fusion == "zscore":
            return zscore_fuse(scored, weights)
        if self.options.fusion == "relative":
            return relative_fuse(signals, self._candidates(signals, lexical + semantic), self.options)
        return weighted_fuse(scored, weights)

    def _candidates(self, signals: Signals, found: list[int]) -> list[int]:
        """The chunks the two rankings found, and the best by sentence and by document where
        those count."""
        n = self.options.candidates
        if self.options.sentence_weight:
            found = found + _top(signals.sentence, n)
        if self.options.document_bm25_weight:
            found = found + _top(signals.document_bm25, n, positive_only=True)
        return list(dict.fromkeys(found))


def dense_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of every chunk to the query (both sides are L2-normalised).

    When torch is loaded (the real model), the product runs in torch's thread pool: numpy's
    BLAS would start threads of its own that fight torch's for the CPU, tripling the query
    encoding time right after it on a 2-core machine.
    """
    torch = sys.modules.get("torch")
    if torch is None or not len(matrix):
        return matrix @ query
    return torch.mv(torch.from_numpy(matrix), torch.from_numpy(query)).numpy()


def _top(scores: np.ndarray, n: int, positive_only: bool = False) -> list[int]:
    """Indexes of the n highest scores, best first (ties by index)."""
    if positive_only:
        candidates = np.flatnonzero(scores > 0)
    else:
        candidates = np.arange(len(scores))
    if len(candidates) > n:
        part = np.argpartition(-scores[candidates], n - 1)[:n]
        candidates = candidates[part]
    order = np.lexsort((candidates, -scores[candidates]))
    return [int(i) for i in candidates[order]]
