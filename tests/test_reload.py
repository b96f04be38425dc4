"""bot.reload: a running bot takes up a new index within seconds, without dropping a question."""

from __future__ import annotations

import threading
import time

from bot.answer import open_answerer
from bot.reload import LiveAnswerer, index_signature
from indexer.build import build_index


def _opener(embedder):
    return lambda config, embedder_=None, **kwargs: open_answerer(config, embedder=embedder)


def _cited(live: LiveAnswerer, question: str) -> set[str]:
    return {hit.doc_id for hit in live.index.search(question, top_k=5)}


def test_a_reindex_without_a_document_leaves_the_answers_within_seconds(config, corpus_copy, fake_embedder):
    build_index([corpus_copy], config.paths.index_db, fake_embedder, config.chunking)
    opener = _opener(fake_embedder)
    live = LiveAnswerer(opener(config), config, open_answerer=opener)
    question = "sanctions asset freeze designated persons"
    assert "sanctions.md" in _cited(live, question)
    first = live.current

    answered, errors, stop = [], [], threading.Event()

    def keep_asking() -> None:  # questions keep coming while the index is swapped
        while not stop.is_set():
            try:
                answered.append(live.answer(question))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    live.watch(every_seconds=0.2)
    try:
        (corpus_copy / "sanctions.md").unlink()
        build_index([corpus_copy], config.paths.index_db, fake_embedder, config.chunking)
        deadline = time.monotonic() + 5
        while "sanctions.md" in _cited(live, question) and time.monotonic() < deadline:
            time.sleep(0.05)
        picked_up = time.monotonic() - (deadline - 5)
    finally:
        live.stop()
        stop.set()
        asker.join()
    assert "sanctions.md" not in _cited(live, question) and picked_up < 5
    assert live.current is not first and live.reloads == 1
    assert errors == [] and answered  # no question failed or was dropped during the swap
    assert all("sanctions.md" not in {c.path for c in a.citations} for a in [live.answer(question)])


def test_no_reload_when_nothing_changed_and_a_broken_index_keeps_the_old_one(
    config, corpus_copy, fake_embedder
):
    build_index([corpus_copy], config.paths.index_db, fake_embedder, config.chunking)
    opener = _opener(fake_embedder)
    live = LiveAnswerer(opener(config), config, open_answerer=opener)
    assert live.reload_if_changed() is False
    before = index_signature(config.paths.index_db)
    assert before is not None and len(before[1]) == len(live.index.documents)
    config.paths.index_db.write_bytes(b"not a database")  # a half-copied file
    assert index_signature(config.paths.index_db) is None
    assert live.reload_if_changed() is False and live.index.documents  # still answering from the old one
