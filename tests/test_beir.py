"""The BEIR benchmark loader and scorer (indexer/beir.py), on a tiny made-up data set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from indexer.beir import (
    beir_index,
    cached_embeddings,
    graded_ndcg,
    load_beir,
    recall_of,
    score_beir,
    split_queries,
)
from indexer.chunking import ChunkingOptions
from indexer.errors import IndexerError
from indexer.search import RetrievalOptions

CORPUS = [
    {
        "_id": "d1",
        "title": "Export controls",
        "text": "Emailing technical data abroad is an export of technology.",
    },
    {
        "_id": "d2",
        "title": "ATAS",
        "text": "Postgraduate students in sensitive subjects may need an ATAS certificate.",
    },
    {
        "_id": "d3",
        "title": "Sanctions",
        "text": "Check every partner against the UK sanctions list before signing.",
    },
    {
        "_id": "d4",
        "title": "Travel",
        "text": "Take a clean loan laptop to conferences in high-risk countries.",
    },
    {"_id": "d5", "title": "", "text": "Record keeping for licences lasts at least four years."},
]
QUERIES = [
    {"_id": "q1", "text": "is emailing technical data abroad an export"},
    {"_id": "q2", "text": "do students need an ATAS certificate"},
    {"_id": "q3", "text": "a query nobody judged"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td5\t0\n"


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in CORPUS) + "\n", encoding="utf-8")
    (tmp_path / "queries-train.jsonl").write_text("\n".join(json.dumps(q) for q in QUERIES), encoding="utf-8")
    (tmp_path / "qrels-train.tsv").write_text(QRELS, encoding="utf-8")
    return tmp_path


def test_load_beir_reads_the_three_files_and_keeps_judged_queries(folder):
    data = load_beir(folder)
    assert data.corpus["d1"] == ("Export controls", CORPUS[0]["text"]) and len(data.corpus) == 5
    assert set(data.queries) == {"q1", "q2"}  # q3 has no judgement
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d5": 0}}


def test_load_beir_names_the_bad_line(folder):
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(IndexerError, match="corpus.jsonl line 2: not JSON"):
        load_beir(folder)


def test_load_beir_needs_the_split_files(folder):
    with pytest.raises(IndexerError, match="no queries-test.jsonl"):
        load_beir(folder, "test")


def test_graded_ndcg_and_recall_by_hand():
    judged = {"a": 2, "b": 1, "z": 0}
    # DCG = 1/log2(2) [b at rank 1] + 2/log2(4) [a at rank 3]; ideal = 2/log2(2) + 1/log2(3)
    expected = (1 + 2 / 2) / (2 + 1 / math.log2(3))
    assert graded_ndcg(["b", "x", "a"], judged, k=10) == pytest.approx(expected)
    assert graded_ndcg(["a", "b"], judged) == pytest.approx(1.0)
    assert graded_ndcg(["x"], {"x": 0}) == 0.0
    assert recall_of(["b", "x"], judged) == 0.5 and recall_of(["a", "b"], judged, k=1) == 0.5


def test_split_queries_is_fixed_and_disjoint():
    ids = [str(n) for n in range(1000)]
    tune, held = split_queries(ids, 0.3)
    assert set(tune) | set(held) == set(ids) and not set(tune) & set(held)
    assert 250 < len(held) < 350
    assert split_queries(reversed(ids), 0.3) == (tune, held)


def test_the_index_finds_the_judged_documents_and_the_cache_is_reused(folder, tmp_path, fake_embedder):
    data = load_beir(folder)
    cache = tmp_path / "cache"
    index = beir_index(data, fake_embedder, RetrievalOptions(), ChunkingOptions(), cache)
    assert {chunk.doc_id for chunk in index.chunks} == set(data.corpus)
    vectors = dict(
        zip(
            data.queries,
            cached_embeddings(list(data.queries.values()), fake_embedder, cache, "queries"),
            strict=True,
        )
    )
    scores = score_beir(index, data, ["q1", "q2"], vectors, "bm25")
    assert scores.queries == 2 and scores.ndcg == pytest.approx(1.0) and scores.recall == pytest.approx(1.0)
    calls = fake_embedder.calls
    beir_index(data, fake_embedder, RetrievalOptions(), ChunkingOptions(), cache)  # embeddings from the cache
    assert fake_embedder.calls == calls and len(list(cache.glob("corpus-*.npy"))) == 1


def test_sentences_are_embedded_once_cached_and_only_when_weighed(folder, tmp_path, fake_embedder):
    data = load_beir(folder)
    cache = tmp_path / "cache"
    beir_index(data, fake_embedder, RetrievalOptions(), ChunkingOptions(), cache)
    assert not list(cache.glob("sentences-*.npy"))
    options = RetrievalOptions(sentence_weight=0.5, document_bm25_weight=0.3)
    index = beir_index(data, fake_embedder, options, ChunkingOptions(), cache)
    assert len(list(cache.glob("sentences-*.npy"))) == 1
    assert list(np.diff(index.sentence_starts)) == [len(chunk.sentences) for chunk in index.chunks]
    first = index.chunks[0]
    np.testing.assert_allclose(
        index.sentence_matrix[: len(first.sentences)], fake_embedder.embed_documents(first.sentences)
    )
    calls = fake_embedder.calls
    beir_index(data, fake_embedder, options, ChunkingOptions(), cache)
    assert fake_embedder.calls == calls
