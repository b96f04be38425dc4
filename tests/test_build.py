"""Index runs on real SQLite files: incremental updates, deletions, failures and interruptions."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.chunking import ChunkingOptions
from indexer.errors import CorruptIndexError, IndexerError, IndexNotFoundError, ModelError, StaleIndexError
from indexer.search import RetrievalOptions, SearchIndex
from indexer.store import IndexStore
from tests.conftest import SMALL_CORPUS, FakeEmbedder

OPTIONS = ChunkingOptions()


def _snapshot(db: Path) -> tuple[dict[str, str], list[tuple]]:
    store = IndexStore.open(db)
    try:
        hashes = store.document_hashes()
        rows = store.db.execute("select chunk_id, text, embedding from chunks order by chunk_id").fetchall()
        return hashes, rows
    finally:
        store.close()


def test_first_run_indexes_every_readable_file(corpus_copy, tmp_path, fake_embedder):
    report = build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS)
    assert report.full_rebuild_reason == "new index"
    assert len(report.added) == len(list(corpus_copy.iterdir()))
    assert report.skipped == []
    hashes, rows = _snapshot(tmp_path / "i.db")
    assert set(hashes) == set(report.added)
    assert len(rows) == report.chunks_embedded > 0


def test_unchanged_run_embeds_nothing(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    before = _snapshot(tmp_path / "i.db")
    second = FakeEmbedder()
    report = build_index([corpus_copy], tmp_path / "i.db", second, OPTIONS)
    assert second.embedded == []
    assert report.chunks_embedded == 0
    assert len(report.unchanged) == len(before[0])
    assert _snapshot(tmp_path / "i.db") == before


def test_changed_document_reembeds_only_its_changed_chunks(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    target = corpus_copy / "atas.md"
    target.write_text(target.read_text() + "\n\n## A new section\n\nATAS applies to a new subject too.\n")
    embedder = FakeEmbedder()
    report = build_index([corpus_copy], tmp_path / "i.db", embedder, OPTIONS)
    assert report.updated == ["atas.md"]
    assert report.chunks_embedded == 1
    assert "ATAS applies to a new subject too." in embedder.embedded[0]
    assert report.chunks_reused >= 1


def test_deleted_file_leaves_the_index(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS)
    (corpus_copy / "sanctions.md").unlink()
    report = build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    assert report.removed == ["sanctions.md"]
    hashes, rows = _snapshot(tmp_path / "i.db")
    assert "sanctions.md" not in hashes
    store = IndexStore.open(tmp_path / "i.db")
    assert store.db.execute("select count(*) from chunks where doc_id = 'sanctions.md'").fetchone()[0] == 0
    store.close()


def test_changed_model_reembeds_everything(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder("model-a"), OPTIONS)
    other = FakeEmbedder("model-b")
    report = build_index([corpus_copy], tmp_path / "i.db", other, OPTIONS)
    assert report.full_rebuild_reason == "model changed from model-a to model-b"
    assert len(report.added) == len(list(corpus_copy.iterdir()))
    assert report.chunks_embedded == len(_snapshot(tmp_path / "i.db")[1])


def test_changed_chunking_reembeds_everything(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    report = build_index(
        [corpus_copy], tmp_path / "i.db", FakeEmbedder(), ChunkingOptions(max_words=60, overlap_words=10)
    )
    assert report.full_rebuild_reason == "chunking settings changed"
    assert report.unchanged == []


def test_corrupt_file_is_reported_and_the_rest_indexed(corpus_copy, tmp_path, fake_embedder):
    (corpus_copy / "broken.md").write_text("---\ntitle: [unclosed\n---\n# Broken\ntext\n")
    (corpus_copy / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    report = build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS)
    assert len(report.skipped) == 2
    assert any("broken.md" in message for message in report.skipped)
    assert any("binary.txt" in message for message in report.skipped)
    assert "atas.md" in report.added


def test_previously_indexed_file_that_turns_corrupt_keeps_its_last_version(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    before = _snapshot(tmp_path / "i.db")
    (corpus_copy / "atas.md").write_bytes(b"\xff\xfe broken now")
    report = build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    assert any("atas.md" in message for message in report.skipped)
    assert report.removed == []
    assert _snapshot(tmp_path / "i.db") == before


class _ExplodingEmbedder(FakeEmbedder):
    def embed_documents(self, texts):
        raise KeyboardInterrupt


def test_interrupted_embedding_leaves_previous_index_whole(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    before = _snapshot(tmp_path / "i.db")
    (corpus_copy / "atas.md").write_text((corpus_copy / "atas.md").read_text() + "\n\nMore words here.\n")
    (corpus_copy / "travel.md").unlink()
    with pytest.raises(KeyboardInterrupt):
        build_index([corpus_copy], tmp_path / "i.db", _ExplodingEmbedder(), OPTIONS)
    assert _snapshot(tmp_path / "i.db") == before


def test_failure_halfway_through_writing_rolls_back(corpus_copy, tmp_path, monkeypatch):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder("model-a"), OPTIONS)
    before = _snapshot(tmp_path / "i.db")
    calls = []
    original = IndexStore._replace_document

    def fail_on_second(self, document, chunks, now):
        calls.append(document.doc_id)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return original(self, document, chunks, now)

    monkeypatch.setattr(IndexStore, "_replace_document", fail_on_second)
    with pytest.raises(CorruptIndexError, match="could not write the index"):
        build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder("model-b"), OPTIONS)
    assert _snapshot(tmp_path / "i.db") == before
    store = IndexStore.open(tmp_path / "i.db")
    assert store.meta().model == "model-a"
    store.close()


def test_missing_path_is_an_error_and_writes_nothing(tmp_path, fake_embedder):
    with pytest.raises(IndexerError, match="no such file or folder"):
        build_index([tmp_path / "nope"], tmp_path / "i.db", fake_embedder, OPTIONS)
    assert not (tmp_path / "i.db").exists()


def test_folder_without_guidance_files_is_an_error(tmp_path, fake_embedder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexerError, match="no guidance files"):
        build_index([tmp_path / "empty"], tmp_path / "i.db", fake_embedder, OPTIONS)


def test_opening_a_missing_or_garbage_index_says_what_to_do(tmp_path):
    with pytest.raises(IndexNotFoundError, match="trbot index"):
        IndexStore.open(tmp_path / "missing.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CorruptIndexError, match="not a readable trbot index"):
        IndexStore.open(garbage)


def test_search_index_refuses_an_index_built_with_another_model(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder("model-a"), OPTIONS)
    with pytest.raises(ModelError, match="rebuild"):
        SearchIndex.load(tmp_path / "i.db", FakeEmbedder("model-b"), RetrievalOptions())


def test_index_is_searchable_after_an_incremental_run(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    (corpus_copy / "sanctions.md").unlink()
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    index = SearchIndex.load(tmp_path / "i.db", FakeEmbedder(), RetrievalOptions())
    hits = index.search("ATAS certificate", top_k=3)
    assert hits and hits[0].doc_id == "atas.md"
    assert all(hit.doc_id != "sanctions.md" for hit in index.search("sanctions list", top_k=10))


class _UnloadableEmbedder(FakeEmbedder):
    """Stands for a model that would take seconds to load: touching it fails the test."""

    @property
    def dimension(self) -> int:
        raise AssertionError("the model was loaded for a run with nothing to embed")

    @dimension.setter
    def dimension(self, value: int) -> None:
        pass


def test_unchanged_run_never_loads_the_model_but_records_the_run(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS)
    store = IndexStore.create(tmp_path / "i.db")
    store.db["meta"].upsert({"key": "indexed_at", "value": "2000-01-01T00:00:00+00:00"}, pk="key")
    store.close()
    report = build_index([corpus_copy], tmp_path / "i.db", _UnloadableEmbedder(), OPTIONS)
    assert report.chunks_embedded == 0 and report.full_rebuild_reason is None
    store = IndexStore.open(tmp_path / "i.db")
    assert store.meta().indexed_at > "2000-01-01T00:00:00+00:00"
    store.close()


def test_indexing_one_named_file_adds_it_and_removes_nothing(corpus_copy, tmp_path, fake_embedder):
    db = tmp_path / "i.db"
    first = build_index([corpus_copy], db, fake_embedder, OPTIONS)
    new = tmp_path / "new.md"
    new.write_text("# New\nA new note on export controls.\n")

    report = build_index([new], db, fake_embedder, OPTIONS)

    assert report.added == ["new.md"] and report.removed == []
    assert set(_snapshot(db)[0]) == set(first.added) | {"new.md"}


def test_a_file_deleted_from_an_indexed_folder_still_leaves_the_index(corpus_copy, tmp_path, fake_embedder):
    db = tmp_path / "i.db"
    build_index([corpus_copy], db, fake_embedder, OPTIONS)
    (corpus_copy / "travel.md").unlink()

    report = build_index([corpus_copy], db, fake_embedder, OPTIONS)

    assert report.removed == ["travel.md"] and "travel.md" not in _snapshot(db)[0]


def test_an_unreadable_sub_folder_keeps_its_documents(corpus_copy, tmp_path, fake_embedder, monkeypatch):
    db = tmp_path / "i.db"
    (corpus_copy / "extra").mkdir()
    (corpus_copy / "extra" / "note.md").write_text("# Note\nVisitors need ATAS.\n")
    build_index([corpus_copy], db, fake_embedder, OPTIONS)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "extra":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = build_index([corpus_copy], db, fake_embedder, OPTIONS)

    assert report.removed == [] and "extra/note.md" in _snapshot(db)[0]
    assert any("extra: folder cannot be read" in line for line in report.skipped)


def test_front_matter_of_the_wrong_type_skips_only_that_file(corpus_copy, tmp_path, fake_embedder):
    (corpus_copy / "odd.md").write_text("---\nsources: 2024\n---\n# Odd\ntext\n")

    report = build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS)

    assert len(report.skipped) == 1 and "front matter 'sources'" in report.skipped[0]
    assert report.documents == len(list(SMALL_CORPUS.iterdir()))


def test_opening_an_index_to_read_writes_nothing(corpus_copy, tmp_path, fake_embedder):
    db = tmp_path / "i.db"
    build_index([corpus_copy], db, fake_embedder, OPTIONS)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    before = db.read_bytes()

    store = IndexStore.open(db)
    store.meta(), store.counts()
    store.close()

    assert db.read_bytes() == before and not Path(f"{db}-wal").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_opening_an_unrelated_database_adds_no_tables_and_says_so(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("create table people (name text)")

    with pytest.raises(CorruptIndexError, match="not a readable trbot index.*check --db"):
        IndexStore.open(other)

    with sqlite3.connect(other) as conn:
        tables = [row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")]
    assert tables == ["people"]


# --- sentence embeddings (schema 3) ----------------------------------------------------------------


WITH_SENTENCES = RetrievalOptions(sentence_weight=0.5)  # loads the sentence embeddings


def _as_version_2(db: Path) -> None:
    """Make a fresh index look like one trbot wrote before sentence embeddings existed."""
    conn = sqlite3.connect(db)
    conn.execute("alter table chunks drop column sentence_embeddings")
    conn.execute("delete from _sqlite_migrations where name = 'm003_sentence_embeddings'")
    conn.execute("update meta set value = '2' where key = 'schema_version'")
    conn.commit()
    conn.close()


def test_every_chunk_stores_one_embedding_per_sentence(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS, sentences=True)
    index = SearchIndex.load(tmp_path / "i.db", fake_embedder, WITH_SENTENCES)
    counts = np.diff(index.sentence_starts)
    assert list(counts) == [len(chunk.sentences) for chunk in index.chunks]
    assert max(counts) > 1
    chunk = max(index.chunks, key=lambda c: len(c.sentences))
    number = index.chunks.index(chunk)
    rows = index.sentence_matrix[index.sentence_starts[number] : index.sentence_starts[number + 1]]
    np.testing.assert_allclose(rows, fake_embedder.embed_documents(chunk.sentences))


def test_a_reused_chunk_keeps_its_sentence_embeddings(corpus_copy, tmp_path):
    build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS, sentences=True)
    before = SearchIndex.load(tmp_path / "i.db", FakeEmbedder(), WITH_SENTENCES)
    target = corpus_copy / "atas.md"
    target.write_text(target.read_text() + "\n\n## A new section\n\nATAS applies to a new subject too.\n")
    embedder = FakeEmbedder()
    report = build_index([corpus_copy], tmp_path / "i.db", embedder, OPTIONS, sentences=True)
    assert report.chunks_reused >= 1
    assert embedder.embedded == [embedder.embedded[0], "ATAS applies to a new subject too."]
    after = SearchIndex.load(tmp_path / "i.db", FakeEmbedder(), WITH_SENTENCES)
    assert len(after.sentence_matrix) == len(before.sentence_matrix) + 1


def test_an_index_from_an_older_trbot_is_refused_with_what_to_do(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS, sentences=True)
    _as_version_2(tmp_path / "i.db")
    with pytest.raises(CorruptIndexError, match="written by an older trbot: run 'trbot index'"):
        SearchIndex.load(tmp_path / "i.db", fake_embedder, WITH_SENTENCES)


def test_indexing_over_an_older_index_rebuilds_it_with_sentences(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS, sentences=True)
    _as_version_2(tmp_path / "i.db")
    report = build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS, sentences=True)
    assert report.full_rebuild_reason == "the index was written by an older trbot"
    index = SearchIndex.load(tmp_path / "i.db", fake_embedder, WITH_SENTENCES)
    assert list(np.diff(index.sentence_starts)) == [len(chunk.sentences) for chunk in index.chunks]


def test_damaged_sentence_embeddings_are_reported_as_a_corrupt_index(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS, sentences=True)
    conn = sqlite3.connect(tmp_path / "i.db")
    conn.execute("update chunks set sentence_embeddings = x'00010203' where rowid = 1")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptIndexError, match="damaged chunk data"):
        SearchIndex.load(tmp_path / "i.db", fake_embedder, WITH_SENTENCES)


def test_a_search_that_does_not_weigh_sentences_does_not_load_them(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS, sentences=True)
    index = SearchIndex.load(tmp_path / "i.db", fake_embedder, RetrievalOptions(sentence_weight=0.0))
    assert len(index.sentence_matrix) == len(index.chunks)
    np.testing.assert_array_equal(index.sentence_matrix, index.matrix)


def test_without_sentences_wanted_only_chunks_are_embedded(corpus_copy, tmp_path, fake_embedder):
    report = build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS)
    assert fake_embedder.calls == 1 and len(fake_embedder.embedded) == report.chunks_embedded
    with pytest.raises(
        StaleIndexError, match="no sentence embeddings, which retrieval.sentence_weight needs"
    ):
        SearchIndex.load(tmp_path / "i.db", fake_embedder, WITH_SENTENCES)


def test_wanting_sentences_rebuilds_an_index_without_them(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS)
    report = build_index([corpus_copy], tmp_path / "i.db", FakeEmbedder(), OPTIONS, sentences=True)
    assert report.full_rebuild_reason.startswith("sentence embeddings are wanted")
    index = SearchIndex.load(tmp_path / "i.db", fake_embedder, WITH_SENTENCES)
    assert list(np.diff(index.sentence_starts)) == [len(chunk.sentences) for chunk in index.chunks]


def test_no_longer_wanting_sentences_rebuilds_nothing(corpus_copy, tmp_path, fake_embedder):
    build_index([corpus_copy], tmp_path / "i.db", fake_embedder, OPTIONS, sentences=True)
    embedder = FakeEmbedder()
    report = build_index([corpus_copy], tmp_path / "i.db", embedder, OPTIONS)
    assert report.full_rebuild_reason is None and embedder.embedded == []
    assert SearchIndex.load(tmp_path / "i.db", fake_embedder, RetrievalOptions()).chunks
