"""Cut documents into section-aware chunks that keep their heading path and document title."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from indexer.documents import Document, Section
from indexer.text import split_sentences

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass(frozen=True)
class ChunkingOptions:
    """How big chunks are, in words.

    A section that fits in ``max_words`` is one chunk. A longer one is cut at paragraph
    (then sentence, then word) boundaries into pieces of at most ``max_words``, each
    starting with the last ``overlap_words`` words of the one before.
    """

    max_words: int = 180
    overlap_words: int = 30

    def __post_init__(self) -> None:
        if self.max_words < 20:
            raise ValueError(f"max_words: must be at least 20, got {self.max_words}")
        if not 0 <= self.overlap_words < self.max_words // 2:
            raise ValueError(f"overlap_words: must be between 0 and max_words / 2, got {self.overlap_words}")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    ordinal: int
    title: str
    heading_path: tuple[str, ...]
    text: str

    @property
    def section(self) -> str:
        """The heading path without a leading heading that repeats the title."""
        path = self.heading_path
        if path and path[0].strip().lower() == self.title.strip().lower():
            path = path[1:]
        return " > ".join(path)

    @property
    def embedding_text(self) -> str:
        """What the model sees: title and section give a short passage its context."""
        heading = " > ".join(p for p in (self.title, self.section) if p)
        return f"{heading}\n{self.text}"

    @property
    def sentences(self) -> list[str]:
        """The sentences (and list items) of the text, each embedded on its own for search."""
        return split_sentences(self.text) or [self.text]


def chunk_document(document: Document, options: ChunkingOptions) -> list[Chunk]:
    """Cut a document into chunks, section by section; ids are stable across runs.

    A chunk id depends on the document id, the heading path and the piece's position
    within its section, so an edit to one section leaves other sections' ids unchanged.
    """
    chunks: list[Chunk] = []
    for section in document.sections:
        for piece_number, text in enumerate(split_section(section, options)):
            chunk_id = _chunk_id(document.doc_id, section.heading_path, piece_number)
            chunks.append(
                Chunk(chunk_id, document.doc_id, len(chunks), document.title, section.heading_path, text)
            )
    return _unique_ids(chunks)


def split_section(section: Section, options: ChunkingOptions) -> list[str]:
    """Pieces of at most ``max_words`` words, cut at the largest boundary that fits."""
    pieces: list[list[_Unit]] = []
    current: list[_Unit] = []
    for unit in _units(section.text, options.max_words):
        if current and _count(current) + unit.words > options.max_words:
            pieces.append(current)
            current = _overlap(current, min(options.overlap_words, options.max_words - unit.words))
        current.append(unit)
    if current:
        pieces.append(current)
    return [_join(piece) for piece in pieces]


@dataclass(frozen=True)
class _Unit:
    text: str
    starts_paragraph: bool

    @property
    def words(self) -> int:
        return len(self.text.split())


def _units(text: str, max_words: int) -> list[_Unit]:
    """Paragraphs; a paragraph too long by itself is split into sentences, then words."""
    units: list[_Unit] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        paragraph = paragraph.strip()
        if len(paragraph.split()) <= max_words:
            units.extend([_Unit(paragraph, True)] if paragraph else [])
            continue
        runs = [run for sentence in _SENTENCE.split(paragraph) for run in _word_runs(sentence, max_words)]
        units.extend(_Unit(run, index == 0) for index, run in enumerate(runs))
    return units


def _word_runs(sentence: str, max_words: int) -> list[str]:
    words = sentence.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words)]


def _overlap(units: list[_Unit], overlap_words: int) -> list[_Unit]:
    if overlap_words == 0:
        return []
    tail = " ".join(" ".join(unit.text for unit in units).split()[-overlap_words:])
    return [_Unit("…" + tail, True)]


def _count(units: list[_Unit]) -> int:
    return sum(unit.words for unit in units)


def _join(units: list[_Unit]) -> str:
    text = units[0].text
    for unit in units[1:]:
        text += ("\n\n" if unit.starts_paragraph else " ") + unit.text
    return text


def _chunk_id(doc_id: str, heading_path: tuple[str, ...], piece: int) -> str:
    key = "\x1f".join([doc_id, *heading_path, str(piece)])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _unique_ids(chunks: list[Chunk]) -> list[Chunk]:
    """Two sections with the same heading path (rare) get distinct ids, stably by order."""
    seen: dict[str, int] = {}
    unique = []
    for chunk in chunks:
        count = seen.get(chunk.chunk_id, 0)
        seen[chunk.chunk_id] = count + 1
        if count:
            chunk = Chunk(f"{chunk.chunk_id}-{count}", *_fields_after_id(chunk))
        unique.append(chunk)
    return unique


def _fields_after_id(chunk: Chunk) -> tuple:
    return (chunk.doc_id, chunk.ordinal, chunk.title, chunk.heading_path, chunk.text)
