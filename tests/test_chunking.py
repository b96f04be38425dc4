"""Section-aware chunking (indexer/chunking.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from indexer.chunking import Chunk, ChunkingOptions, chunk_document, split_section
from indexer.documents import Document, Section

SMALL = ChunkingOptions(max_words=20, overlap_words=4)


def make_document(*sections: Section, title: str = "Export controls", doc_id: str = "export.md") -> Document:
    return Document(doc_id, Path(doc_id), "markdown", title, tuple(sections), "hash")


def paragraph(name: str, size: int) -> str:
    """``size`` distinct words: p0w0 p0w1 ... so every word's origin is visible."""
    return " ".join(f"{name}w{i}" for i in range(size))


def sentences(count: int, size: int) -> str:
    return " ".join(paragraph(f"s{n}", size) + "." for n in range(count))


def assert_overlaps(pieces: list[str], overlap: int) -> None:
    """Each later piece starts with "…" and the last ``overlap`` words of the piece before."""
    for before, after in zip(pieces, pieces[1:], strict=False):
        prefix = "…" + " ".join(before.split()[-overlap:])
        assert after.startswith(prefix) and after[len(prefix)].isspace(), (before, after)


# --- One chunk per short section ------------------------------------------------------------------


def test_a_short_section_is_one_chunk_with_its_heading_path_and_the_document_title():
    section = Section(("Export controls", "What counts"), "Emailing technical data abroad is an export.")

    [chunk] = chunk_document(make_document(section), ChunkingOptions())

    assert chunk.doc_id == "export.md"
    assert chunk.ordinal == 0
    assert chunk.title == "Export controls"
    assert chunk.heading_path == ("Export controls", "What counts")
    assert chunk.text == "Emailing technical data abroad is an export."


def test_a_section_of_exactly_max_words_is_not_cut():
    text = paragraph("p0", 10) + "\n\n" + paragraph("p1", 10)

    assert split_section(Section((), text), SMALL) == [text]


def test_each_section_gets_its_own_chunks_numbered_through_the_document():
    document = make_document(
        Section(("A",), "First section."),
        Section(("A", "B"), "\n\n".join(paragraph(f"p{i}", 8) for i in range(4))),
        Section(("C",), "Last section."),
    )

    chunks = chunk_document(document, SMALL)

    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.heading_path for chunk in chunks] == [("A",), ("A", "B"), ("A", "B"), ("C",)]


# --- Long sections --------------------------------------------------------------------------------


def test_a_long_section_is_cut_at_paragraph_boundaries_with_overlap():
    paragraphs = [paragraph(f"p{i}", 8) for i in range(5)]

    pieces = split_section(Section(("S",), "\n\n".join(paragraphs)), SMALL)

    # 8 + 8 fit; the third would make 24. The next piece is the 4-word overlap + p2 + p3 (20 words).
    assert pieces == [
        f"{paragraphs[0]}\n\n{paragraphs[1]}",
        f"…p1w4 p1w5 p1w6 p1w7\n\n{paragraphs[2]}\n\n{paragraphs[3]}",
        f"…p3w4 p3w5 p3w6 p3w7\n\n{paragraphs[4]}",
    ]
    assert all(len(piece.split()) <= SMALL.max_words for piece in pieces)
    assert_overlaps(pieces, SMALL.overlap_words)


def test_without_overlap_pieces_are_whole_paragraphs_in_order():
    paragraphs = [paragraph(f"p{i}", 8) for i in range(5)]
    options = ChunkingOptions(max_words=20, overlap_words=0)

    pieces = split_section(Section((), "\n\n".join(paragraphs)), options)

    assert pieces == ["\n\n".join(paragraphs[0:2]), "\n\n".join(paragraphs[2:4]), paragraphs[4]]


def test_no_piece_exceeds_max_words_even_with_overlap():
    text = "\n\n".join(paragraph(f"p{i}", 18) for i in range(4))

    pieces = split_section(Section(("S",), text), SMALL)

    assert len(pieces) > 1
    assert all(len(piece.split()) <= SMALL.max_words for piece in pieces)


def test_a_huge_paragraph_is_cut_at_sentence_ends():
    text = sentences(count=10, size=6)  # 60 words, six per sentence
    options = ChunkingOptions(max_words=20, overlap_words=0)

    pieces = split_section(Section((), text), options)

    assert [len(piece.split()) for piece in pieces] == [18, 18, 18, 6]
    assert all(piece.endswith(".") for piece in pieces)
    assert " ".join(pieces) == text


def test_a_huge_paragraph_cut_at_sentences_keeps_the_overlap():
    text = sentences(count=10, size=6)

    pieces = split_section(Section((), text), SMALL)

    assert len(pieces) > 1
    assert all(len(piece.split()) <= SMALL.max_words for piece in pieces)
    assert_overlaps(pieces, SMALL.overlap_words)
    assert pieces[-1].endswith("s9w5.")


def test_a_huge_sentence_is_cut_at_words():
    text = paragraph("x", 50)
    options = ChunkingOptions(max_words=20, overlap_words=0)

    pieces = split_section(Section((), text), options)

    assert [len(piece.split()) for piece in pieces] == [20, 20, 10]
    assert " ".join(pieces) == text


def test_paragraphs_after_a_huge_one_still_start_on_a_new_paragraph():
    text = sentences(count=5, size=6) + "\n\n" + paragraph("tail", 3)
    options = ChunkingOptions(max_words=20, overlap_words=0)

    pieces = split_section(Section((), text), options)

    assert pieces[-1].endswith("s4w5.\n\ntailw0 tailw1 tailw2")


# --- Stable ids -----------------------------------------------------------------------------------


def long_document(middle: str) -> Document:
    return make_document(
        Section(("Export controls",), "Controls restrict transfers."),
        Section(("Export controls", "What counts"), middle),
        Section(("Export controls", "Exemptions"), "\n\n".join(paragraph(f"e{i}", 8) for i in range(4))),
    )


def ids_by_section(chunks: list[Chunk]) -> dict[tuple[str, ...], list[str]]:
    grouped: dict[tuple[str, ...], list[str]] = {}
    for chunk in chunks:
        grouped.setdefault(chunk.heading_path, []).append(chunk.chunk_id)
    return grouped


def test_chunk_ids_are_the_same_across_runs_and_unique():
    document = long_document("Email is an export.")

    first = chunk_document(document, SMALL)
    second = chunk_document(document, SMALL)

    assert [c.chunk_id for c in first] == [c.chunk_id for c in second]
    assert len({c.chunk_id for c in first}) == len(first) == 4
    assert all(len(c.chunk_id) == 16 for c in first)


def test_editing_one_section_leaves_the_other_sections_chunk_ids_unchanged():
    before = ids_by_section(chunk_document(long_document("Email is an export."), SMALL))
    longer = "\n\n".join(paragraph(f"m{i}", 8) for i in range(5))
    after = ids_by_section(chunk_document(long_document(longer), SMALL))

    assert after[("Export controls",)] == before[("Export controls",)]
    assert after[("Export controls", "Exemptions")] == before[("Export controls", "Exemptions")]
    assert after[("Export controls", "What counts")][0] == before[("Export controls", "What counts")][0]
    assert len(after[("Export controls", "What counts")]) == 3


def test_inserting_a_section_does_not_change_other_sections_chunk_ids():
    document = long_document("Email is an export.")
    extra = Section(("Export controls", "New"), "A new section.")
    edited = dataclasses.replace(document, sections=(document.sections[0], extra, *document.sections[1:]))

    before, after = chunk_document(document, SMALL), chunk_document(edited, SMALL)

    assert {c.chunk_id for c in before} < {c.chunk_id for c in after}


def test_chunk_ids_depend_on_the_document_id():
    section = Section(("A",), "Text.")

    [one] = chunk_document(make_document(section, doc_id="one.md"), SMALL)
    [two] = chunk_document(make_document(section, doc_id="two.md"), SMALL)

    assert one.chunk_id != two.chunk_id


def test_sections_with_the_same_heading_path_get_distinct_ids():
    document = make_document(Section(("FAQ",), "First."), Section(("FAQ",), "Second."))

    first, second = chunk_document(document, SMALL)

    assert second.chunk_id == first.chunk_id + "-1"
    assert (second.ordinal, second.text) == (1, "Second.")


# --- Chunk properties -----------------------------------------------------------------------------


def test_section_drops_a_leading_heading_equal_to_the_title():
    chunk = Chunk("id", "d", 0, "Export controls", ("export CONTROLS ", "Exemptions", "Public domain"), "t")

    assert chunk.section == "Exemptions > Public domain"


def test_section_keeps_a_leading_heading_that_differs_from_the_title():
    chunk = Chunk("id", "d", 0, "Export controls", ("Overview", "Exemptions"), "t")

    assert chunk.section == "Overview > Exemptions"


def test_section_is_empty_when_the_only_heading_is_the_title_or_there_is_none():
    assert Chunk("id", "d", 0, "ATAS", ("ATAS",), "t").section == ""
    assert Chunk("id", "d", 0, "ATAS", (), "t").section == ""


def test_embedding_text_puts_title_and_section_above_the_text():
    chunk = Chunk("id", "d", 0, "Export controls", ("Export controls", "Exemptions"), "Public domain.")

    assert chunk.embedding_text == "Export controls > Exemptions\nPublic domain."
    assert Chunk("id", "d", 0, "ATAS", ("ATAS",), "Apply.").embedding_text == "ATAS\nApply."


# --- Options --------------------------------------------------------------------------------------


def test_default_options_are_valid():
    assert ChunkingOptions() == ChunkingOptions(max_words=180, overlap_words=30)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max_words": 19}, "max_words"),
        ({"max_words": 0}, "max_words"),
        ({"max_words": 20, "overlap_words": -1}, "overlap_words"),
        ({"max_words": 20, "overlap_words": 10}, "overlap_words"),
        ({"max_words": 21, "overlap_words": 10}, "overlap_words"),
    ],
)
def test_options_reject_bad_values_naming_the_field(values, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        ChunkingOptions(**values)


def test_options_accept_the_boundary_values():
    assert ChunkingOptions(max_words=20, overlap_words=9).overlap_words == 9
    assert ChunkingOptions(max_words=20, overlap_words=0).overlap_words == 0
