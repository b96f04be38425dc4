"""A running bot picks up a new index without a restart: ``LiveAnswerer``.

``trbot index`` writes the index in one transaction, so a reader sees either the old index or the
new one. ``LiveAnswerer`` checks the index file every few seconds (its ``indexed_at`` and each
document's content hash, read-only); when they change it loads the new index in the background,
with the model already in memory, into a new ``Answerer``, and swaps it in with one assignment.
Each question reads that reference once, so it is answered wholly from the old index or wholly
from the new one, and no question waits for, or is dropped by, a reload. A reload that fails
(a half-copied file, a model mismatch) is logged and the old index is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.records import Answer
from indexer.errors import IndexerError
from indexer.store import IndexStore

logger = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 3.0


def index_signature(path: Path) -> tuple[str | None, tuple[tuple[str, str], ...]] | None:
    """What identifies one build of the index: ``indexed_at`` and each document's hash (None: unreadable)."""
    try:
        store = IndexStore.open(path)
    except (IndexerError, OSError):
        return None
    try:
        meta = store.meta()
        return (meta.indexed_at if meta else None, tuple(sorted(store.document_hashes().items())))
    except Exception:  # a file being replaced under us: try again at the next check
        return None
    finally:
        store.close()


class LiveAnswerer:
    """An answerer whose index is replaced in one assignment when ``trbot index`` writes a new one.

    Args:
        answerer: The loaded ``Answerer`` (from ``open_answerer``).
        config: The settings (``paths.index_db``, and what ``open_answerer`` needs).
        open_answerer: Builds a new answerer from the config and the loaded embedder
            (``bot.answer.open_answerer``; tests pass their own).
    """

    def __init__(
        self,
        answerer: Any,
        config: Config,
        open_answerer: Callable[..., Any] | None = None,
    ) -> None:
        self._current = answerer
        self._config = config
        self._open = open_answerer
        self._signature = index_signature(config.paths.index_db)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self.reloads = 0

    @property
    def current(self) -> Any:
        """The answerer in use now."""
        return self._current

    @property
    def index(self) -> Any:
        return self._current.index

    def answer(self, question: str, context: str | None = None) -> Answer:
        answerer = self._current  # read once: the whole answer comes from one index
        return answerer.answer(question, context=context)

    def __getattr__(self, name: str) -> Any:  # check_question, settings, contact...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._current, name)

    def reload_if_changed(self) -> bool:
        """Load and swap in the index if it changed since the last look; True if it was swapped."""
        with self._reload_lock:
            signature = index_signature(self._config.paths.index_db)
            if signature is None or signature == self._signature:
                return False
            try:
                fresh = self._opener()(self._config, embedder=self._current.index.embedder)
            except Exception:  # keep answering from the old index; the next check tries again
                logger.exception(
                    "could not load the new index at %s; keeping the old one", self._config.paths.index_db
                )
                return False
            self._current = fresh  # the swap: one assignment
            self._signature = signature
            self.reloads += 1
            logger.info(
                "loaded the new index (%d documents, indexed at %s)", len(signature[1]), signature[0] or "?"
            )
            return True

    def watch(self, every_seconds: float = CHECK_EVERY_SECONDS) -> threading.Thread:
        """Check for a new index every ``every_seconds`` in a background thread, until ``stop``."""

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.reload_if_changed()
                except Exception:  # never let the watcher die
                    logger.exception("index watcher failed; trying again")

        thread = threading.Thread(target=loop, name="trbot-index-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _opener(self) -> Callable[..., Any]:
        if self._open is None:
            from bot.answer import open_answerer  # the model libraries: imported by now anyway

            self._open = open_answerer
        return self._open
