"""The real sentence-transformers embedder: offline loading and the query cache."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import embeddings


@pytest.mark.model
def test_a_repeated_query_is_embedded_once_and_a_changed_copy_leaves_the_cache_alone(
    real_embedder, monkeypatch
):
    first = real_embedder.embed_query("Do I need an export licence for a drone?")
    calls = []
    encode = real_embedder.model.encode
    monkeypatch.setattr(real_embedder.model, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))

    again = real_embedder.embed_query("Do I need an export licence for a drone?")
    other = real_embedder.embed_query("Does ATAS apply to visitors?")

    assert np.array_equal(again, first) and len(calls) == 1
    assert np.isclose(np.linalg.norm(first), 1.0, atol=1e-4) and not np.allclose(first, other)
    again[:] = 0.0
    assert np.array_equal(real_embedder.embed_query("Do I need an export licence for a drone?"), first)


@pytest.mark.model
def test_the_query_cache_keeps_only_the_most_recent_queries(real_embedder, monkeypatch):
    monkeypatch.setattr(embeddings, "QUERY_CACHE_SIZE", 2)
    for text in ("one question", "two questions", "three questions"):
        real_embedder.embed_query(text)

    assert list(real_embedder._queries)[-2:] == ["two questions", "three questions"]
    assert len(real_embedder._queries) <= 2
