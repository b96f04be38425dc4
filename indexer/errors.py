"""Named errors of the indexer; the adapters (CLI, Slack) turn them into one clear line."""

from __future__ import annotations


class IndexerError(Exception):
    """Base of every error the indexer raises on purpose."""


class DocumentError(IndexerError):
    """A file cannot be read or parsed; the message names the file."""


class IndexNotFoundError(IndexerError):
    """There is no index at the given path yet."""


class CorruptIndexError(IndexerError):
    """The index file exists but is not a readable trbot index."""


class ModelError(IndexerError):
    """The embedding model cannot be loaded, or does not match the index."""


class StaleIndexError(IndexerError):
    """The index lacks what the settings need (sentence embeddings): 'trbot index' adds it."""
