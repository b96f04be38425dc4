"""Index runs: parse, chunk, embed what changed, and write it all in one transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from indexer.chunking import Chunk, ChunkingOptions, chunk_document
from indexer.documents import Discovery, Document, discover, read_document
from indexer.embeddings import Embedder
from indexer.errors import DocumentError, IndexerError
from indexer.store import SCHEMA_VERSION, IndexMeta, IndexStore, StoredChunk
from indexer.text import tokenize

# Chunks are embedded in blocks this size: big enough for the model to sort by length
# and batch well, small enough for the progress bar to move.
EMBED_BLOCK = 256
# Bump when chunking or tokenizing changes what is stored for the same settings.
CHUNKER_VERSION = 2

ProgressFactory = Callable[[int], "Progress"]


class Progress:
    """A progress sink: ``update(n)`` after n chunks are embedded, ``close()`` at the end."""

    def update(self, n: int) -> None:  # pragma: no cover - the no-op default
        pass

    def close(self) -> None:  # pragma: no cover - the no-op default
        pass


@dataclass
class IndexReport:
    """What an index run did; ``skipped`` holds one message per file that could not be read."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    full_rebuild_reason: str | None = None

    @property
    def documents(self) -> int:
        return len(self.added) + len(self.updated) + len(self.unchanged)


def build_index(
    paths: Sequence[Path],
    db_path: Path,
    embedder: Embedder,
    options: ChunkingOptions,
    placeholders: Mapping[str, str] | None = None,
    progress: ProgressFactory | None = None,
    sentences: bool = False,
) -> IndexReport:
    """Bring the index at ``db_path`` in line with the guidance files under ``paths``.

    ``sentences``: embed each chunk's sentences too (a search with retrieval.sentence_weight
    needs them); an index without them is rebuilt when they are wanted.

    Unchanged documents (same content hash, model and chunking) are not re-embedded;
    a changed document re-embeds only the chunks whose text changed; documents no longer
    present leave the index; a file that cannot be read is reported in ``skipped`` and
    its previous version, if any, is kept.

    Raises:
        IndexerError: a path does not exist, or no file could be read at all.
    """
    found = discover(paths)
    files = found.files
    report = IndexReport(skipped=list(found.problems))
    documents = _read_all(files, placeholders or {}, report)
    if not documents and not files:
        raise IndexerError(f"no guidance files (.md, .html, .txt, .pdf) under {', '.join(map(str, paths))}")
    if not documents:
        raise IndexerError("no file could be read: " + "; ".join(report.skipped))
    store = IndexStore.create(db_path)
    try:
        _run(store, documents, _Scope(paths, found), embedder, options, report, progress, sentences)
    finally:
        store.close()
    return report


def _read_all(files: list[tuple[Path, str]], placeholders: Mapping[str, str], report: IndexReport) -> list:
    documents = []
    for file, doc_id in files:
        try:
            documents.append(read_document(file, doc_id, placeholders))
        except DocumentError as exc:
            report.skipped.append(str(exc))
    return documents


def _run(
    store: IndexStore,
    documents: list[Document],
    scope: _Scope,
    embedder: Embedder,
    options: ChunkingOptions,
    report: IndexReport,
    progress: ProgressFactory | None,
    sentences: bool,
) -> None:
    chunking = chunking_signature(options)
    report.full_rebuild_reason = _rebuild_reason(store.meta(), embedder.name, chunking, sentences)
    known = store.document_hashes() if report.full_rebuild_reason is None else {}
    changed = _classify(documents, known, report)
    work = [(doc, chunk_document(doc, options)) for doc in changed]
    report.removed = scope.removed(store.document_paths())
    if report.full_rebuild_reason is None and not work and not report.removed:
        store.touch()  # nothing to embed: the model is never loaded
        return
    reuse = report.full_rebuild_reason is None
    stored = _embed(store, work, embedder, report, progress, reuse, sentences)
    meta = IndexMeta(embedder.name, embedder.dimension, 0, chunking, None, sentences)
    store.write(meta, stored, report.removed, clear=report.full_rebuild_reason is not None)


class _Scope:
    """Which stored documents an index run may remove: those it looked for and did not find.

    A document leaves the index only when it was stored from inside a folder this run walked
    and its file is gone. Naming a file (``trbot index new.md``) adds or updates that file and
    removes nothing; a folder that could not be read keeps its documents.
    """

    def __init__(self, paths: Sequence[Path], found: Discovery) -> None:
        self.folders = [Path(p).resolve() for p in paths if Path(p).is_dir()]
        self.unreadable = found.unreadable
        self.present = {doc_id for _, doc_id in found.files}

    def removed(self, stored: dict[str, str]) -> list[str]:
        return sorted(doc_id for doc_id, path in stored.items() if self._gone(doc_id, Path(path)))

    def _gone(self, doc_id: str, path: Path) -> bool:
        if doc_id in self.present:
            return False
        walked = any(path.is_relative_to(folder) for folder in self.folders)
        hidden = any(path.is_relative_to(folder) for folder in self.unreadable)
        return walked and not hidden


def chunking_signature(options: ChunkingOptions) -> str:
    """Settings and chunker version: a change in either re-chunks and re-embeds everything."""
    return json.dumps(asdict(options) | {"chunker": CHUNKER_VERSION}, sort_keys=True)


def _rebuild_reason(old: IndexMeta | None, model: str, chunking: str, sentences: bool) -> str | None:
    if old is None:
        return "new index"
    if old.model != model:
        return f"model changed from {old.model} to {model}"
    if old.chunking != chunking:
        return "chunking settings changed"
    if old.schema_version < SCHEMA_VERSION:
        return "the index was written by an older trbot"
    if sentences and not old.sentences:
        return "sentence embeddings are wanted (retrieval.sentence_weight) and the index has none"
    return None


def _classify(documents: list[Document], known: dict[str, str], report: IndexReport) -> list[Document]:
    changed = []
    for document in documents:
        previous = known.get(document.doc_id)
        if previous == document.content_hash:
            report.unchanged.append(document.doc_id)
            continue
        (report.updated if previous else report.added).append(document.doc_id)
        changed.append(document)
    return changed


def _embed(
    store: IndexStore,
    work: list[tuple[Document, list[Chunk]]],
    embedder: Embedder,
    report: IndexReport,
    progress: ProgressFactory | None,
    reuse: bool,
    sentences: bool,
) -> list[tuple[Document, list[StoredChunk]]]:
    cached = _reusable_embeddings(store, work, embedder.dimension, sentences) if reuse else {}
    pending = [chunk for _, chunks in work for chunk in chunks if text_hash(chunk) not in cached]
    report.chunks_embedded = len(pending)
    report.chunks_reused = sum(len(chunks) for _, chunks in work) - len(pending)
    fresh = embed_chunks(pending, embedder, progress, sentences)
    vectors = cached | {text_hash(chunk): pair for chunk, pair in zip(pending, fresh, strict=True)}
    return [(doc, [_stored(chunk, *vectors[text_hash(chunk)]) for chunk in chunks]) for doc, chunks in work]


def _reusable_embeddings(
    store: IndexStore, work: list, dimension: int, sentences: bool
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Stored embeddings of the changed documents' chunks, by text hash; without their
    sentences' when those are wanted, a chunk is embedded again."""
    cached: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for document, _ in work:
        stored = store.embeddings_by_text_hash(document.doc_id, dimension)
        cached.update({key: pair for key, pair in stored.items() if pair[1] is not None or not sentences})
    return cached


def embed_chunks(
    chunks: list[Chunk], embedder: Embedder, progress: ProgressFactory | None, sentences: bool = False
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Embed chunks (and, with ``sentences``, each chunk's sentences) in blocks, reporting
    progress after each block.

    Returns:
        For each chunk, its embedding and its sentences' embeddings (one row a sentence; None
        without ``sentences``).
    """
    bar = progress(len(chunks)) if progress and chunks else Progress()
    embedded: list[tuple[np.ndarray, np.ndarray | None]] = []
    try:
        for start in range(0, len(chunks), EMBED_BLOCK):
            block = chunks[start : start + EMBED_BLOCK]
            vectors = embedder.embed_documents([chunk.embedding_text for chunk in block])
            rows = _embed_sentences(block, embedder) if sentences else [None] * len(block)
            embedded.extend(zip(vectors, rows, strict=True))
            bar.update(len(block))
    finally:
        bar.close()
    return embedded


def _embed_sentences(chunks: list[Chunk], embedder: Embedder) -> list[np.ndarray]:
    """Each chunk's sentence embeddings; a sentence repeated (overlap, boilerplate) is embedded once."""
    unique = list(dict.fromkeys(sentence for chunk in chunks for sentence in chunk.sentences))
    rows = dict(zip(unique, embedder.embed_documents(unique), strict=True))
    return [np.vstack([rows[sentence] for sentence in chunk.sentences]) for chunk in chunks]


def text_hash(chunk: Chunk) -> str:
    return hashlib.sha256(chunk.embedding_text.encode("utf-8")).hexdigest()


def _stored(chunk: Chunk, vector: np.ndarray, sentences: np.ndarray | None) -> StoredChunk:
    return StoredChunk(chunk, tokenize(chunk.embedding_text), text_hash(chunk), vector, sentences)
