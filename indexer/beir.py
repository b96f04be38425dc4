"""Retrieval on a public benchmark in BEIR format (corpus.jsonl, queries-<split>.jsonl, qrels-<split>.tsv).

The corpus is chunked, tokenized and embedded exactly as guidance is (title + text per
document), so the figures measure ``SearchIndex.search`` itself. Embeddings are cached in a
folder keyed by the model, the chunking and the texts, so a re-run (another fusion, another
BM25 setting) skips the slow part.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.chunking import Chunk, ChunkingOptions, chunk_document
from indexer.documents import Document, Section
from indexer.embeddings import Embedder
from indexer.errors import IndexerError
from indexer.search import RetrievalOptions, SearchIndex
from indexer.store import StoredChunk
from indexer.text import tokenize


@dataclass(frozen=True)
class BeirSet:
    """A BEIR data set: documents (id -> (title, text)), queries (id -> text), judgements."""

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass
class BeirScores:
    mode: str
    ndcg: float = 0.0
    recall: float = 0.0
    queries: int = 0
    per_query: dict[str, float] = field(default_factory=dict)


def load_beir(folder: Path, split: str = "train") -> BeirSet:
    """Read a BEIR folder; only queries with at least one positive judgement are kept.

    Raises:
        IndexerError: a file is missing or a line is malformed (the message says which).
    """
    corpus = {
        str(item["_id"]): (str(item.get("title") or ""), str(item.get("text") or ""))
        for item in _jsonl(folder / "corpus.jsonl")
    }
    queries = {
        str(item.get("_id", item.get("id"))): str(item["text"]) for item in _jsonl(_queries(folder, split))
    }
    qrels = _qrels(_qrels_path(folder, split))
    judged = {
        qid: docs for qid, docs in qrels.items() if qid in queries and any(v > 0 for v in docs.values())
    }
    return BeirSet(corpus, {qid: queries[qid] for qid in judged}, judged)


def _queries(folder: Path, split: str) -> Path:
    for name in (f"queries-{split}.jsonl", "queries.jsonl"):
        if (folder / name).exists():
            return folder / name
    raise IndexerError(f"{folder}: no queries-{split}.jsonl or queries.jsonl")


def _qrels_path(folder: Path, split: str) -> Path:
    for path in (folder / f"qrels-{split}.tsv", folder / "qrels" / f"{split}.tsv"):
        if path.exists():
            return path
    raise IndexerError(f"{folder}: no qrels-{split}.tsv or qrels/{split}.tsv")


def _jsonl(path: Path) -> Iterable[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise IndexerError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IndexerError(f"{path} line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict) or "text" not in item or not ({"_id", "id"} & set(item)):
            raise IndexerError(f"{path} line {number}: needs an id and a text")
        yield item


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue  # blank line, or the header
            if len(row) < 3:
                raise IndexerError(f"{path} line {number}: expected query-id, corpus-id and score")
            qrels.setdefault(row[0], {})[row[1]] = int(row[-1])
    return qrels


def split_queries(ids: Iterable[str], held_out: float = 0.3) -> tuple[list[str], list[str]]:
    """A fixed split by id (a hash, so the same on every machine): (tuning, held out)."""
    tune, held = [], []
    for qid in sorted(ids):
        bucket = int(hashlib.sha1(qid.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if bucket < held_out else tune).append(qid)
    return tune, held


def corpus_chunks(data: BeirSet, options: ChunkingOptions) -> list[Chunk]:
    """Each document as guidance would be: its title, and its text as one untitled section."""
    chunks: list[Chunk] = []
    for doc_id, (title, text) in data.corpus.items():
        document = Document(doc_id, Path(doc_id), "text", title, (Section((), text),), "")
        chunks.extend(chunk_document(document, options))
    return chunks


def cached_embeddings(texts: Sequence[str], embedder: Embedder, cache: Path, kind: str) -> np.ndarray:
    """Embed ``texts`` (documents or queries), or read them from ``cache`` if done before."""
    key = hashlib.sha1("\x1e".join([embedder.name, kind, *texts]).encode("utf-8")).hexdigest()[:20]
    path = cache / f"{kind}-{key}.npy"
    if path.exists():
        return np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    if kind == "queries":
        vectors = np.vstack([embedder.embed_query(text) for text in texts])
    else:
        vectors = embedder.embed_documents(list(texts))
    np.save(path.with_suffix(".tmp.npy"), vectors.astype(np.float32))
    path.with_suffix(".tmp.npy").replace(path)
    return vectors


def beir_index(
    data: BeirSet, embedder: Embedder, options: RetrievalOptions, chunking: ChunkingOptions, cache: Path
) -> SearchIndex:
    """The corpus as a ``SearchIndex``; sentences are embedded only when the fusion weighs them."""
    chunks = corpus_chunks(data, chunking)
    matrix = cached_embeddings([c.embedding_text for c in chunks], embedder, cache, "corpus")
    sentences = _sentence_rows(chunks, embedder, cache) if options.sentence_weight else [None] * len(chunks)
    stored = [
        StoredChunk(chunk, tokenize(chunk.embedding_text), "", vector, rows)
        for chunk, vector, rows in zip(chunks, matrix, sentences, strict=True)
    ]
    return SearchIndex.from_stored(stored, {}, embedder, options)


def _sentence_rows(chunks: Sequence[Chunk], embedder: Embedder, cache: Path) -> list[np.ndarray]:
    """Each chunk's sentence embeddings; every distinct sentence is embedded (and cached) once."""
    unique = sorted({sentence for chunk in chunks for sentence in chunk.sentences})
    vectors = cached_embeddings(unique, embedder, cache, "sentences")
    row = {sentence: number for number, sentence in enumerate(unique)}
    return [vectors[[row[sentence] for sentence in chunk.sentences]] for chunk in chunks]


def graded_ndcg(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains (as pytrec_eval, which BEIR uses: gain = relevance, log2 discount)."""
    gains = sum(judged.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1))
    ideal_gains = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal_gains, start=1))
    return gains / ideal if ideal else 0.0


def recall_of(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """Share of the relevant documents in the top k."""
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def score_beir(
    index: SearchIndex,
    data: BeirSet,
    query_ids: Sequence[str],
    query_vectors: Mapping[str, np.ndarray],
    mode: str,
    k: int = 10,
) -> BeirScores:
    """nDCG@k and Recall@k of one retrieval mode over the given queries (documents ranked once each)."""
    scores = BeirScores(mode)
    for qid in query_ids:
        hits = index.search(data.queries[qid], top_k=k, mode=mode, per_doc=1, query_vector=query_vectors[qid])
        ranked = [hit.doc_id for hit in hits]
        scores.per_query[qid] = graded_ndcg(ranked, data.qrels[qid], k)
        scores.ndcg += scores.per_query[qid]
        scores.recall += recall_of(ranked, data.qrels[qid], k)
    scores.queries = len(query_ids)
    if query_ids:
        scores.ndcg /= len(query_ids)
        scores.recall /= len(query_ids)
    return scores
