"""trbot's indexer: parsing, section-aware chunking, embeddings, SQLite store and hybrid search."""

from indexer.build import IndexReport, build_index
from indexer.chunking import Chunk, ChunkingOptions, chunk_document
from indexer.documents import Document, Section, discover_files, read_document
from indexer.errors import CorruptIndexError, DocumentError, IndexerError, IndexNotFoundError, ModelError
from indexer.search import Hit, RetrievalOptions, SearchIndex

__all__ = [
    "Chunk",
    "ChunkingOptions",
    "CorruptIndexError",
    "Document",
    "DocumentError",
    "Hit",
    "IndexNotFoundError",
    "IndexReport",
    "IndexerError",
    "ModelError",
    "RetrievalOptions",
    "SearchIndex",
    "Section",
    "build_index",
    "chunk_document",
    "discover_files",
    "read_document",
]
