"""The index in SQLite (through sqlite-utils): documents, chunks, float32 embeddings, metadata.

Every write of an index run happens in one transaction (``db.atomic()``), after all the
embedding work is done, so a run that fails or is interrupted leaves the previous index
whole: SQLite rolls the transaction back, on the next open at the latest.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from indexer.chunking import Chunk
from indexer.documents import Document
from indexer.embeddings import from_blob, matrix_from_blob, to_blob
from indexer.errors import CorruptIndexError, IndexNotFoundError

SCHEMA_VERSION = 3
migrations = Migrations("trbot-index")


@migrations()
def m001_create_tables(db: Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["documents"].create(
        {
            "doc_id": str,
            "path": str,
            "format": str,
            "title": str,
            "summary": str,
            "sources": str,
            "topics": str,
            "last_reviewed": str,
            "owner": str,
            "content_hash": str,
            "indexed_at": str,
        },
        pk="doc_id",
    )
    db["chunks"].create(
        {
            "chunk_id": str,
            "doc_id": str,
            "ordinal": int,
            "heading_path": str,
            "text": str,
            "embedding": bytes,
        },
        pk="chunk_id",
        foreign_keys=[("doc_id", "documents", "doc_id")],
    )
    db["chunks"].create_index(["doc_id", "ordinal"])


@migrations()
def m002_chunk_tokens_and_text_hash(db: Database) -> None:
    # tokens: the BM25 tokens, so a query process need not re-tokenize the corpus;
    # text_hash: lets a changed document reuse the embeddings of its unchanged chunks.
    db["chunks"].add_column("tokens", str)
    db["chunks"].add_column("text_hash", str)


@migrations()
def m003_sentence_embeddings(db: Database) -> None:
    # Each sentence of the chunk's text (Chunk.sentences), embedded: one float32 vector after
    # another, or null when the index is built without them (meta "sentences" says which).
    db["chunks"].add_column("sentence_embeddings", bytes)


@dataclass(frozen=True)
class IndexMeta:
    """``sentences``: every chunk's sentences are embedded too (for retrieval.sentence_weight)."""

    model: str
    dimension: int
    schema_version: int
    chunking: str
    indexed_at: str | None
    sentences: bool = False


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as written: ``sentences`` holds one embedding per sentence of its text, in order
    (None: the chunk's own embedding stands for its one sentence)."""

    chunk: Chunk
    tokens: list[str]
    text_hash: str
    embedding: np.ndarray
    sentences: np.ndarray | None = None


@dataclass(frozen=True)
class LoadedChunks:
    """What a query process needs of the chunks: records, token strings, one embedding matrix,
    and the sentence embeddings of every chunk in one matrix, chunk ``i``'s rows starting at
    ``sentence_starts[i]``."""

    chunks: list[Chunk]
    tokens: list[str]
    matrix: np.ndarray
    sentence_matrix: np.ndarray
    sentence_starts: np.ndarray


@dataclass(frozen=True)
class DocumentRow:
    doc_id: str
    path: str
    title: str
    summary: str
    sources: tuple[str, ...]
    topics: tuple[str, ...]
    last_reviewed: str | None
    owner: str | None
    content_hash: str

    @property
    def url(self) -> str | None:
        return self.sources[0] if self.sources else None


class IndexStore:
    """One index file. Open with ``IndexStore.create`` (to write) or ``IndexStore.open`` (to read)."""

    def __init__(self, db: Database, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def create(cls, path: Path) -> IndexStore:
        """Open for writing, creating the file and its folder if needed, and migrate."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls._connect(path)

    @classmethod
    def open(cls, path: Path) -> IndexStore:
        """Open an existing index for reading only: nothing is written, not even the journal mode.

        Raises:
            IndexNotFoundError: no file there, or an empty index.
            CorruptIndexError: the file is not a readable trbot index.
        """
        if not path.exists():
            raise IndexNotFoundError(f"no index at {path}: run 'trbot index' first")
        store = cls(_connect_read_only(path), path)
        try:
            _check_schema(store.db, path)
            if store.meta() is None:
                raise IndexNotFoundError(f"the index at {path} is empty: run 'trbot index' first")
        except Exception:
            store.close()
            raise
        return store

    @classmethod
    def _connect(cls, path: Path) -> IndexStore:
        try:
            db = Database(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(
                f"{path} is not a readable trbot index ({exc}); delete it and run 'trbot index'"
            ) from exc
        return cls(db, path)

    def close(self) -> None:
        self.db.close()

    def meta(self) -> IndexMeta | None:
        values = {row["key"]: row["value"] for row in self._rows("select key, value from meta")}
        if "model" not in values:
            return None
        return IndexMeta(
            model=values["model"],
            dimension=int(values["dimension"]),
            schema_version=int(values.get("schema_version", SCHEMA_VERSION)),
            chunking=values.get("chunking", ""),
            indexed_at=values.get("indexed_at"),
            sentences=values.get("sentences") == "1",
        )

    def document_hashes(self) -> dict[str, str]:
        return {
            r["doc_id"]: r["content_hash"] for r in self._rows("select doc_id, content_hash from documents")
        }

    def document_paths(self) -> dict[str, str]:
        """Each stored document's id and the file it was read from."""
        return {r["doc_id"]: r["path"] for r in self._rows("select doc_id, path from documents")}

    def embeddings_by_text_hash(
        self, doc_id: str, dimension: int
    ) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """A document's stored chunk embeddings, and sentence embeddings where it has them, by
        chunk text hash (for reuse)."""
        sql = (
            "select text_hash, embedding, sentence_embeddings from chunks "
            "where doc_id = ? and text_hash is not null"
        )
        return {
            r["text_hash"]: (
                from_blob(r["embedding"], dimension),
                matrix_from_blob(r["sentence_embeddings"], dimension) if r["sentence_embeddings"] else None,
            )
            for r in self._rows(sql, [doc_id])
        }

    def write(
        self,
        meta: IndexMeta,
        documents: Iterable[tuple[Document, list[StoredChunk]]],
        removed: Iterable[str],
        clear: bool = False,
    ) -> None:
        """Apply one index run in a single transaction: replace documents, remove others, set meta."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with self.db.atomic():
                if clear:
                    self.db.execute("delete from chunks")
                    self.db.execute("delete from documents")
                for doc_id in removed:
                    self._delete_document(doc_id)
                for document, chunks in documents:
                    self._replace_document(document, chunks, now)
                self._write_meta(meta, now)
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"could not write the index at {self.path}: {exc}") from exc

    def touch(self) -> None:
        """Record an index run that changed nothing."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.atomic():
            self.db["meta"].upsert({"key": "indexed_at", "value": now}, pk="key")

    def _delete_document(self, doc_id: str) -> None:
        self.db.execute("delete from chunks where doc_id = ?", [doc_id])
        self.db.execute("delete from documents where doc_id = ?", [doc_id])

    def _replace_document(self, document: Document, chunks: list[StoredChunk], now: str) -> None:
        self._delete_document(document.doc_id)
        self.db["documents"].insert(_document_row(document, now))
        self.db["chunks"].insert_all(_chunk_row(stored) for stored in chunks)

    def _write_meta(self, meta: IndexMeta, now: str) -> None:
        values = {
            "model": meta.model,
            "dimension": str(meta.dimension),
            "schema_version": str(SCHEMA_VERSION),
            "chunking": meta.chunking,
            "indexed_at": now,
            "sentences": "1" if meta.sentences else "0",
        }
        self.db["meta"].upsert_all(({"key": k, "value": v} for k, v in values.items()), pk="key")

    def documents(self) -> dict[str, DocumentRow]:
        rows = self._rows("select * from documents order by doc_id")
        return {row["doc_id"]: _document_from_row(row) for row in rows}

    def counts(self) -> tuple[int, int]:
        documents = self.db.execute("select count(*) from documents").fetchone()[0]
        chunks = self.db.execute("select count(*) from chunks").fetchone()[0]
        return documents, chunks

    def load_chunks(self, dimension: int, sentences: bool = True) -> LoadedChunks:
        """Every chunk, its BM25 tokens (space-joined) and the embedding matrix, in document order.

        Rows are read one at a time into preallocated matrices, so a large index is never
        held twice in memory. A chunk without sentence embeddings, or every chunk when
        ``sentences`` is false (the search does not use them), gets its own embedding as its
        one sentence.
        """
        count, sentence_count = self._sizes(dimension) if sentences else (self.counts()[1],) * 2
        matrix = np.zeros((count, dimension), dtype=np.float32)
        sentence_matrix = np.zeros((sentence_count, dimension), dtype=np.float32)
        starts = np.zeros(count + 1, dtype=np.int64)
        chunks: list[Chunk] = []
        tokens: list[str] = []
        sql = (
            "select c.chunk_id, c.doc_id, c.ordinal, c.heading_path, c.text, c.tokens, c.embedding, "
            f"{'c.sentence_embeddings' if sentences else 'null'}, d.title "
            "from chunks c join documents d on d.doc_id = c.doc_id order by c.doc_id, c.ordinal"
        )
        try:
            filled = 0
            for number, row in enumerate(self.db.execute(sql)):
                chunk_id, doc_id, ordinal, heading_path, text, token_text, blob, sentence_blob, title = row
                chunks.append(Chunk(chunk_id, doc_id, ordinal, title, tuple(json.loads(heading_path)), text))
                tokens.append(token_text or "")
                matrix[number] = from_blob(blob, dimension)
                rows = (
                    matrix_from_blob(sentence_blob, dimension)
                    if sentence_blob
                    else matrix[number : number + 1]
                )
                sentence_matrix[filled : filled + len(rows)] = rows
                filled += len(rows)
                starts[number + 1] = filled
        except (ValueError, IndexError, json.JSONDecodeError) as exc:
            raise CorruptIndexError(f"{self.path}: damaged chunk data ({exc}); run 'trbot index'") from exc
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"{self.path} cannot be read ({exc}); run 'trbot index'") from exc
        n = len(chunks)
        return LoadedChunks(chunks, tokens, matrix[:n], sentence_matrix[: starts[n]], starts[: n + 1])

    def _sizes(self, dimension: int) -> tuple[int, int]:
        """How many chunks, and how many sentence vectors they hold (a missing blob counts one)."""
        sql = (
            "select count(*), coalesce(sum(case when sentence_embeddings is null then ? "
            "else length(sentence_embeddings) end), 0) from chunks"
        )
        try:
            count, size = self.db.execute(sql, [4 * dimension]).fetchone()
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"{self.path} cannot be read ({exc}); run 'trbot index'") from exc
        return count, size // (4 * dimension)

    def _rows(self, sql: str, params: list | None = None) -> list[dict]:
        try:
            return list(self.db.query(sql, params or []))
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"{self.path} cannot be read ({exc}); run 'trbot index'") from exc


def _connect_read_only(path: Path) -> Database:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
        conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if os.access(path.parent, os.W_OK):
            raise CorruptIndexError(f"{path} cannot be opened ({exc})") from exc
        # A read-only folder: SQLite cannot make the WAL index file, so read the file as it is.
        conn = sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=5, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise CorruptIndexError(
            f"{path} is not a readable trbot index ({exc}); check --db or paths.index_db, or rebuild it "
            "with 'trbot index'"
        ) from exc
    return Database(conn)


_TABLES = {
    "meta": {"key", "value"},
    "documents": {"doc_id", "content_hash"},
    "chunks": {"chunk_id", "tokens", "sentence_embeddings"},
}


def _check_schema(db: Database, path: Path) -> None:
    try:
        columns = {name: set(db[name].columns_dict) for name in _TABLES if db[name].exists()}
    except sqlite3.DatabaseError as exc:
        raise CorruptIndexError(f"{path} cannot be read ({exc}); rebuild it with 'trbot index'") from exc
    missing = [name for name in _TABLES if name not in columns]
    if missing:
        raise CorruptIndexError(
            f"{path} is not a readable trbot index (no {', '.join(missing)} table); "
            "check --db or paths.index_db"
        )
    for name, needed in _TABLES.items():
        if not needed <= columns[name]:
            raise CorruptIndexError(f"{path} was written by an older trbot: run 'trbot index' to rebuild it")


def _document_row(document: Document, now: str) -> dict:
    return {
        "doc_id": document.doc_id,
        "path": str(document.path),
        "format": document.format,
        "title": document.title,
        "summary": document.summary,
        "sources": json.dumps(list(document.sources)),
        "topics": json.dumps(list(document.topics)),
        "last_reviewed": document.last_reviewed,
        "owner": document.owner,
        "content_hash": document.content_hash,
        "indexed_at": now,
    }


def _chunk_row(stored: StoredChunk) -> dict:
    chunk = stored.chunk
    return {
        "chunk_id": chunk.chunk_id,
        "doc_id": chunk.doc_id,
        "ordinal": chunk.ordinal,
        "heading_path": json.dumps(list(chunk.heading_path)),
        "text": chunk.text,
        "embedding": to_blob(stored.embedding),
        "tokens": " ".join(stored.tokens),
        "text_hash": stored.text_hash,
        "sentence_embeddings": None if stored.sentences is None else to_blob(stored.sentences),
    }


def _document_from_row(row: dict) -> DocumentRow:
    return DocumentRow(
        doc_id=row["doc_id"],
        path=row["path"],
        title=row["title"],
        summary=row["summary"] or "",
        sources=tuple(json.loads(row["sources"] or "[]")),
        topics=tuple(json.loads(row["topics"] or "[]")),
        last_reviewed=row["last_reviewed"],
        owner=row["owner"],
        content_hash=row["content_hash"],
    )
