"""Shared fixtures: a deterministic fake embedder for fast tests, and the real model once per session."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from bot.config import Config, config_from_dict
from indexer.text import tokenize

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SMALL_CORPUS = DATA / "guidance"


class FakeEmbedder:
    """Bag-of-stemmed-words hashed into 64 dimensions, L2-normalised (like llm's EmbedDemo).

    Texts sharing words get similar vectors, so ranking tests are meaningful; it records
    what it embedded so tests can check that unchanged documents are not re-embedded.
    """

    def __init__(self, name: str = "fake-embedder", dimension: int = 64) -> None:
        self.name = name
        self.dimension = dimension
        self.embedded: list[str] = []
        self.calls = 0

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        for token in tokenize(text):
            slot = int(hashlib.md5(token.encode()).hexdigest(), 16) % self.dimension
            vector[slot] += 1.0
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.embedded.extend(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self._vector(text) for text in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Default settings with every file inside the test's own folder."""
    return config_from_dict(
        {
            "paths": {
                "guidance_dir": str(SMALL_CORPUS),
                "index_db": str(tmp_path / "index.db"),
                "state_db": str(tmp_path / "trbot.db"),
            }
        }
    )


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A writable copy of the small test corpus."""
    target = tmp_path / "guidance"
    target.mkdir()
    for file in SMALL_CORPUS.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


@pytest.fixture(scope="session")
def real_embedder():
    """The real packaged model (all-MiniLM-L6-v2), loaded once for the whole session."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from indexer.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("bundled:all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def real_index_path(tmp_path_factory, real_embedder) -> Path:
    """The small test corpus indexed once with the real model."""
    from indexer.build import build_index
    from indexer.chunking import ChunkingOptions

    db = tmp_path_factory.mktemp("real-index") / "index.db"
    build_index([SMALL_CORPUS], db, real_embedder, ChunkingOptions())
    return db


@pytest.fixture(scope="session")
def real_answerer(real_embedder, real_index_path):
    """An ``Answerer`` over the small corpus with the real model (session-scoped)."""
    from bot.answer import Answerer
    from indexer.search import SearchIndex

    config = config_from_dict({"paths": {"index_db": str(real_index_path)}})
    index = SearchIndex.load(real_index_path, real_embedder, config.retrieval)
    return Answerer(index, config.answer, config.institution)


@pytest.fixture
def fake():
    """The local fake Slack Web API (tests.fake_slack), serving while the test runs."""
    from tests.fake_slack import FakeSlack

    with FakeSlack() as fake:
        yield fake
