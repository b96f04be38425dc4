"""BM25, fusion and the in-memory SearchIndex (indexer/search.py)."""

from __future__ import annotations

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from indexer.build import build_index, text_hash
from indexer.chunking import Chunk, ChunkingOptions
from indexer.errors import IndexNotFoundError, ModelError
from indexer.search import (
    Bm25Index,
    RetrievalOptions,
    SearchIndex,
    Signals,
    diversify,
    relative_fuse,
    rrf_fuse,
    weighted_fuse,
    zscore_fuse,
)
from indexer.store import StoredChunk
from indexer.text import tokenize
from tests.conftest import SMALL_CORPUS, FakeEmbedder

# Nine token lists; "research" is in six of them (idf < 0, floored) and "univers" in five.
CORPUS = [
    "export licenc control research univers".split(),
    "export email technic data abroad export".split(),
    "ata certif postgradu research univers".split(),
    "sanction partner fund research univers".split(),
    "travel laptop confer research".split(),
    "partner due dilig research univers".split(),
    "nsi act invest spin research univers".split(),
    "contact team email".split(),
    "cyber phish password account".split(),
]


# --- BM25 parity with rank-bm25 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        ["export"],
        ["export", "licenc"],
        ["export", "export", "email"],
        ["research"],
        ["univers"],
        ["research", "univers", "export"],
        ["weather"],
        ["weather", "export", "weather"],
        ["partner", "sanction", "research", "email"],
        [],
    ],
)
def test_bm25_scores_equal_rank_bm25(query):
    ours = Bm25Index(CORPUS).scores(query)

    assert np.allclose(ours, BM25Okapi(CORPUS).get_scores(query), rtol=1e-5)


def test_bm25_parity_holds_with_other_parameters():
    query = ["export", "email", "research"]

    ours = Bm25Index(CORPUS, k1=1.2, b=0.5, epsilon=0.1).scores(query)

    assert np.allclose(ours, BM25Okapi(CORPUS, k1=1.2, b=0.5, epsilon=0.1).get_scores(query), rtol=1e-5)


def test_bm25_floors_the_negative_idf_of_very_common_terms_at_a_small_positive_value():
    index = Bm25Index(CORPUS)
    raw = np.log(9 - 6 + 0.5) - np.log(6 + 0.5)

    assert raw < 0
    assert 0 < index.idf["research"] < index.idf["export"]
    assert index.scores(["research"])[7] == 0
    assert (index.scores(["research"])[[0, 2, 3, 4, 5, 6]] > 0).all()


@pytest.mark.parametrize("query", [["export"], ["research", "univers", "export"], ["weather"], []])
def test_merged_bm25_scores_groups_as_if_their_tokens_were_one_document(query):
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4])
    joined = [sum((CORPUS[i] for i in np.flatnonzero(groups == g)), []) for g in range(5)]

    merged = Bm25Index.merged(Bm25Index(CORPUS, k1=1.2, b=0.6), groups, 5)

    assert np.allclose(merged.scores(query), Bm25Index(joined, k1=1.2, b=0.6).scores(query), rtol=1e-5)


def test_bm25_gives_zero_to_unknown_terms_and_an_empty_corpus_no_scores():
    assert not Bm25Index(CORPUS).scores(["weather"]).any()
    assert Bm25Index([]).scores(["export"]).shape == (0,)


# --- Reciprocal-rank fusion -----------------------------------------------------------------------


def test_rrf_sums_weight_over_k_plus_one_based_rank():
    fused = rrf_fuse([[1, 2, 3], [3, 1]], weights=[1.0, 1.0], k=60)

    assert fused == pytest.approx({1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61})


def test_rrf_applies_each_lists_weight():
    fused = rrf_fuse([[1, 2], [2]], weights=[2.0, 0.5], k=60)

    assert fused == pytest.approx({1: 2 / 61, 2: 2 / 62 + 0.5 / 61})


def test_rrf_prefers_an_item_found_in_both_lists():
    fused = rrf_fuse([["a", "b"], ["c", "b"]], weights=[1.0, 1.0])

    assert max(fused, key=fused.get) == "b"


def test_rrf_gives_nothing_for_a_list_an_item_is_missing_from():
    fused = rrf_fuse([[7], [8]], weights=[1.0, 1.0], k=0)

    assert fused == {7: 1.0, 8: 1.0}


def test_rrf_of_empty_lists_is_empty():
    assert rrf_fuse([[], []], weights=[1.0, 1.0]) == {}
    assert rrf_fuse([], weights=[]) == {}
    assert rrf_fuse([[], [4]], weights=[1.0, 1.0], k=60) == pytest.approx({4: 1 / 61})


def test_rrf_needs_one_weight_per_list():
    with pytest.raises(ValueError):
        rrf_fuse([[1], [2]], weights=[1.0])


# --- Weighted fusion ------------------------------------------------------------------------------


def test_weighted_fuse_sums_min_max_normalised_scores_times_weights():
    bm25 = [(0, 4.0), (1, 2.0), (2, 1.0)]  # normalised: 1, 1/3, 0
    dense = [(1, 0.9), (3, 0.5), (0, 0.7)]  # normalised: 1, 0, 0.5

    fused = weighted_fuse([bm25, dense], weights=[1.0, 0.5])

    assert fused == pytest.approx({0: 1 + 0.25, 1: 1 / 3 + 0.5, 2: 0.0, 3: 0.0})


def test_weighted_fuse_skips_an_empty_list():
    assert weighted_fuse([[], [(5, 0.3), (6, 0.1)]], weights=[1.0, 2.0]) == pytest.approx({5: 2.0, 6: 0.0})


def test_weighted_fuse_with_all_scores_equal_gives_tied_items_equal_finite_scores():
    fused = weighted_fuse([[(0, 2.0), (1, 2.0)], [(0, 0.8), (2, 0.4)]], weights=[1.0, 1.0])

    assert all(np.isfinite(value) for value in fused.values())
    assert fused[0] - fused[1] == pytest.approx(1.0)  # the dense list decides between the tied two


def test_weighted_fuse_gives_the_full_weight_to_each_item_of_an_all_tied_list():
    assert weighted_fuse([[(0, 3.5)], [(0, 0.2), (1, 0.9)]], weights=[1.0, 1.0]) == pytest.approx(
        {0: 1.0, 1: 1.0}
    )
    assert weighted_fuse([[(0, 2.0), (1, 2.0)]], weights=[0.5]) == pytest.approx({0: 0.5, 1: 0.5})


# --- diversify ------------------------------------------------------------------------------------

DOCS = {0: "a", 1: "a", 2: "b", 3: "a", 4: "c", 5: "b", 6: "d"}


def test_diversify_keeps_at_most_per_doc_items_per_document_in_order():
    assert diversify(range(7), DOCS.get, per_doc=1, limit=10) == [0, 2, 4, 6]
    assert diversify(range(7), DOCS.get, per_doc=2, limit=10) == [0, 1, 2, 4, 5, 6]


def test_diversify_stops_at_the_limit_without_reading_further():
    seen: list[int] = []

    def doc_of(item: int) -> str:
        seen.append(item)
        return DOCS[item]

    assert diversify(range(7), doc_of, per_doc=1, limit=2) == [0, 2]
    assert seen == [0, 1, 2]


def test_diversify_with_a_zero_limit_keeps_nothing():
    assert diversify(range(7), DOCS.get, per_doc=1, limit=0) == []


# --- SearchIndex ----------------------------------------------------------------------------------

PASSAGES = [
    ("export.md", "Export controls", "Sending technical data by email to a colleague abroad is an export."),
    ("export.md", "Export controls", "A lecture to students abroad can be an export of technology."),
    ("export.md", "Export controls", "Export licences are issued by the Export Control Joint Unit."),
    ("atas.md", "ATAS", "International postgraduate students may need an ATAS certificate."),
    ("sanctions.md", "Sanctions", "Check partners and funders against the UK sanctions list."),
    ("travel.md", "Travel", "Take a clean loan laptop to conferences abroad."),
]


def stored_chunks(embedder: FakeEmbedder) -> list[StoredChunk]:
    chunks = [
        Chunk(f"{doc_id}#{number}", doc_id, number, title, (title,), text)
        for number, (doc_id, title, text) in enumerate(PASSAGES)
    ]
    vectors = embedder.embed_documents([chunk.embedding_text for chunk in chunks])
    return [
        StoredChunk(chunk, tokenize(chunk.embedding_text), text_hash(chunk), vector)
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]


def make_index(embedder: FakeEmbedder, **options) -> SearchIndex:
    return SearchIndex.from_stored(stored_chunks(embedder), {}, embedder, RetrievalOptions(**options))


def assert_best_first(hits) -> None:
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("fusion", ["rrf", "weighted", "zscore", "relative"])
@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_every_mode_finds_the_matching_passage_first(fake_embedder, mode, fusion):
    index = make_index(fake_embedder, fusion=fusion)

    hits = index.search("Do international students need an ATAS certificate?", top_k=3, mode=mode)

    assert hits[0].doc_id == "atas.md"
    assert hits[0].chunk.text.startswith("International postgraduate students")
    assert_best_first(hits)


def test_bm25_and_dense_hits_score_with_their_own_measure(fake_embedder):
    index = make_index(fake_embedder)
    query = "emailing technical data abroad"

    for hit in index.search(query, top_k=3, mode="bm25"):
        assert hit.score == pytest.approx(hit.bm25) and hit.score > 0
    for hit in index.search(query, top_k=3, mode="dense"):
        expected = float(
            fake_embedder.embed_query(query) @ fake_embedder.embed_query(hit.chunk.embedding_text)
        )
        assert hit.score == pytest.approx(hit.dense) == pytest.approx(expected, abs=1e-6)


def test_rrf_hybrid_scores_are_fused_ranks(fake_embedder):
    index = make_index(fake_embedder, fusion="rrf", rrf_k=60, bm25_weight=1.0)

    hits = index.search("export licences", top_k=3, mode="hybrid", per_doc=3)

    assert hits[0].score == pytest.approx(2 / 61)  # first in both rankings
    assert all(hit.score <= 2 / 61 for hit in hits)


def test_a_zero_bm25_weight_makes_hybrid_rank_like_dense(fake_embedder):
    index = make_index(fake_embedder, fusion="rrf", bm25_weight=0.0)

    hybrid = index.search("laptop abroad", top_k=6, mode="hybrid", per_doc=6)
    dense = index.search("laptop abroad", top_k=6, mode="dense", per_doc=6)

    assert [hit.chunk.chunk_id for hit in hybrid] == [hit.chunk.chunk_id for hit in dense]


def test_per_doc_limits_hits_from_one_document(fake_embedder):
    index = make_index(fake_embedder, per_doc=1)
    query = "email, lectures or licences"  # one word from each export.md passage

    one_each = index.search(query, top_k=6, mode="bm25")
    two_each = index.search(query, top_k=6, mode="bm25", per_doc=2)

    assert [hit.doc_id for hit in one_each] == ["export.md"]
    assert [hit.doc_id for hit in two_each].count("export.md") == 2


def test_top_k_limits_the_number_of_hits(fake_embedder):
    index = make_index(fake_embedder)

    assert len(index.search("export", top_k=2, mode="dense", per_doc=3)) == 2


def test_bm25_mode_returns_nothing_when_no_word_matches(fake_embedder):
    assert make_index(fake_embedder).search("weather tomorrow", mode="bm25") == []


def test_an_unknown_mode_raises_value_error_naming_the_modes(fake_embedder):
    with pytest.raises(ValueError, match="'fuzzy' is not one of hybrid, bm25, dense"):
        make_index(fake_embedder).search("export", mode="fuzzy")


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_an_empty_index_returns_no_hits(fake_embedder, mode):
    index = SearchIndex.from_stored([], {}, fake_embedder, RetrievalOptions())

    assert index.search("export", mode=mode) == []
    assert index.matrix.shape == (0, fake_embedder.dimension)


def test_a_built_index_loads_and_answers_queries(tmp_path, fake_embedder):
    db = tmp_path / "index.db"
    report = build_index([SMALL_CORPUS], db, fake_embedder, ChunkingOptions())

    index = SearchIndex.load(db, fake_embedder, RetrievalOptions(fusion="rrf"))

    assert len(index.chunks) == report.chunks_embedded
    assert set(index.documents) == set(report.added)
    hits = index.search("Is emailing technical data abroad an export?", top_k=3)
    assert hits[0].doc_id == "export-controls.md"
    assert_best_first(hits)


def test_loading_with_another_model_raises_model_error(tmp_path, fake_embedder):
    db = tmp_path / "index.db"
    build_index([SMALL_CORPUS / "atas.md"], db, fake_embedder, ChunkingOptions())

    with pytest.raises(ModelError, match="fake-embedder"):
        SearchIndex.load(db, FakeEmbedder(name="another-model"), RetrievalOptions())
    with pytest.raises(ModelError):
        SearchIndex.load(db, FakeEmbedder(dimension=32), RetrievalOptions())


def test_loading_a_missing_index_raises_index_not_found(tmp_path, fake_embedder):
    with pytest.raises(IndexNotFoundError):
        SearchIndex.load(tmp_path / "none.db", fake_embedder, RetrievalOptions())


# --- RetrievalOptions -----------------------------------------------------------------------------


def test_retrieval_options_reject_an_unknown_fusion_naming_the_choices():
    with pytest.raises(ValueError, match=r"^fusion: 'rff' is not one of rrf, weighted, zscore, relative$"):
        RetrievalOptions(fusion="rff")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"candidates": 0}, "candidates"),
        ({"per_doc": 0}, "per_doc"),
        ({"bm25_weight": -1.0}, "bm25_weight"),
        ({"dense_weight": -0.5}, "bm25_weight"),
        ({"bm25_weight": 0.0, "dense_weight": 0.0}, "bm25_weight"),
    ],
)
def test_retrieval_options_reject_bad_values_naming_the_field(values, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        RetrievalOptions(**values)


# --- z-score and relative fusion, BM25 settings (issue 8) -----------------------------------------


def test_zscore_fuse_standardises_each_list_and_gives_a_missing_item_the_lists_lowest():
    fused = zscore_fuse([[(1, 3.0), (2, 1.0)], [(2, 0.9), (3, 0.5)]], [1.0, 1.0])
    # list 1: mean 2, sd 1 -> 1: +1, 2: -1; list 2: mean 0.7, sd 0.2 -> 2: +1, 3: -1
    assert fused == pytest.approx({1: 1.0 + -1.0, 2: -1.0 + 1.0, 3: -1.0 + -1.0})


def test_zscore_fuse_of_a_single_item_list_counts_it_as_average():
    assert zscore_fuse([[(1, 5.0)], []], [1.0, 1.0]) == {1: 0.0}


def signals(dense, bm25, sentence=None, document=None) -> Signals:
    dense, bm25 = np.array(dense), np.array(bm25)
    sentence = dense if sentence is None else np.array(sentence)
    return Signals(dense, bm25, sentence, bm25 if document is None else np.array(document))


def test_relative_fuse_adds_bm25_as_a_share_of_the_best_to_the_cosine():
    options = RetrievalOptions(bm25_weight=0.5, dense_weight=1.0)
    fused = relative_fuse(signals([0.1, 0.6, 0.5], [4.0, 2.0, 0.0]), [0, 1, 2], options)
    assert fused == pytest.approx({0: 0.1 + 0.5, 1: 0.6 + 0.25, 2: 0.5})
    no_match = relative_fuse(signals([0.1, 0.6], [0.0, 0.0]), [0, 1], options)
    assert no_match == pytest.approx({0: 0.1, 1: 0.6})


def test_relative_fuse_adds_the_best_sentence_and_the_document_share_with_their_weights():
    options = RetrievalOptions(
        bm25_weight=0.2, dense_weight=1.0, sentence_weight=0.5, document_bm25_weight=0.4
    )
    fused = relative_fuse(
        signals([0.3, 0.5], [2.0, 1.0], sentence=[0.8, 0.4], document=[3.0, 6.0]), [0, 1], options
    )
    assert fused == pytest.approx({0: 0.3 + 0.4 + 0.2 + 0.2, 1: 0.5 + 0.2 + 0.1 + 0.4})


def test_relative_fuse_counts_the_best_among_the_candidates_only():
    options = RetrievalOptions(bm25_weight=1.0, dense_weight=1.0)
    fused = relative_fuse(signals([0.1, 0.2, 0.3], [9.0, 2.0, 1.0]), [1, 2], options)
    assert fused == pytest.approx({1: 0.2 + 1.0, 2: 0.3 + 0.5})


def test_relative_hybrid_scores_every_candidate_with_both_measures(fake_embedder):
    index = make_index(fake_embedder, fusion="relative", bm25_weight=0.3)
    hits = index.search("export licences", top_k=6, mode="hybrid", per_doc=6)
    best = max(hit.bm25 for hit in hits)
    for hit in hits:
        assert hit.score == pytest.approx(hit.dense + 0.3 * hit.bm25 / best)


def sentence_index(embedder: FakeEmbedder, **options) -> SearchIndex:
    """Two passages of four sentences; only the second has a sentence on laptops."""
    texts = [
        "Export licences cover goods. Licences take weeks. Apply early. Ask the unit.",
        "Travel abroad needs planning. Book early. Take a clean loan laptop. Ask the unit.",
    ]
    chunks = [Chunk(f"d{n}.md#0", f"d{n}.md", 0, f"Doc {n}", (), text) for n, text in enumerate(texts)]
    stored = [
        StoredChunk(
            chunk,
            tokenize(chunk.embedding_text),
            text_hash(chunk),
            embedder.embed_documents([chunk.embedding_text])[0],
            embedder.embed_documents(chunk.sentences),
        )
        for chunk in chunks
    ]
    return SearchIndex.from_stored(stored, {}, embedder, RetrievalOptions(**options))


def test_the_sentence_weight_adds_the_best_sentences_cosine(fake_embedder):
    index = sentence_index(fake_embedder, bm25_weight=0.0, dense_weight=1.0, sentence_weight=0.5)
    query = "clean loan laptop"
    vector = fake_embedder.embed_query(query)
    hits = index.search(query, top_k=2)
    best_sentence = float(fake_embedder.embed_query("Take a clean loan laptop.") @ vector)
    assert hits[0].doc_id == "d1.md"
    assert hits[0].score == pytest.approx(hits[0].dense + 0.5 * best_sentence)


def test_without_sentence_embeddings_a_chunk_is_its_own_sentence(fake_embedder):
    index = make_index(fake_embedder, bm25_weight=0.0, sentence_weight=1.0)
    assert len(index.sentence_matrix) == len(index.chunks)
    for hit in index.search("export licences", top_k=3, per_doc=3):
        assert hit.score == pytest.approx(2 * hit.dense)


def test_the_document_bm25_weight_credits_every_chunk_of_a_matching_document(fake_embedder):
    chunks = [
        Chunk("a.md#0", "a.md", 0, "A", (), "Sanctions apply to partners."),
        Chunk("a.md#1", "a.md", 1, "A", (), "Check the list before signing."),
        Chunk("b.md#0", "b.md", 0, "B", (), "Check your laptop before travel."),
        Chunk("c.md#0", "c.md", 0, "C", (), "ATAS certificates for students."),
        Chunk("d.md#0", "d.md", 0, "D", (), "Export licences for goods."),
    ]
    vectors = fake_embedder.embed_documents([c.embedding_text for c in chunks])
    stored = [
        StoredChunk(c, tokenize(c.embedding_text), text_hash(c), v)
        for c, v in zip(chunks, vectors, strict=True)
    ]
    options = RetrievalOptions(bm25_weight=0.0, dense_weight=1.0, document_bm25_weight=1.0)
    index = SearchIndex.from_stored(stored, {}, fake_embedder, options)
    hits = {hit.chunk.chunk_id: hit for hit in index.search("check sanctions list", top_k=3, per_doc=3)}
    # a.md carries both words across its chunks; b.md only "check": a.md's chunks get the full share
    assert hits["a.md#1"].score == pytest.approx(hits["a.md#1"].dense + 1.0)
    assert hits["b.md#0"].score < hits["b.md#0"].dense + 1.0


def test_bm25_settings_reach_the_index(fake_embedder):
    index = make_index(fake_embedder, bm25_k1=0.9, bm25_b=0.4)
    assert (index.bm25.k1, index.bm25.b) == (0.9, 0.4)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"bm25_k1": -1.0}, "bm25_k1"),
        ({"bm25_b": 1.5}, "bm25_b"),
        ({"fusion": "mean"}, "fusion"),
        ({"sentence_weight": -0.1}, "sentence_weight"),
        ({"document_bm25_weight": -1.0}, "document_bm25_weight"),
    ],
)
def test_retrieval_options_refuse_bad_bm25_settings(options, problem):
    with pytest.raises(ValueError, match=problem):
        RetrievalOptions(**options)
