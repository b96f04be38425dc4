"""Reading guidance files into Documents (indexer/documents.py)."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from indexer.documents import (
    Section,
    discover,
    discover_files,
    fill_placeholders,
    markdown_sections,
    read_document,
)
from indexer.errors import DocumentError, IndexerError

CORPUS = Path(__file__).resolve().parent / "data" / "guidance"
PLACEHOLDERS = {
    "team_name": "Research Security Team",
    "email": "research-security@example.ac.uk",
    "slack_channel": "#research-security-help",
}

FRONT_MATTER_DOC = """\
---
title: Export controls
summary: What counts as an export.
sources:
  - https://www.gov.uk/export-controls
  - https://www.example.ac.uk/exports
topics: [export controls, licences]
last_reviewed: 2026-03-01
owner: "{{ team_name }}"
---

# Export controls

Sending technical data by email to a colleague abroad is an export.
"""


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def make_pdf(text: str) -> bytes:
    """A minimal valid one-page PDF showing ``text`` in Helvetica, with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(pdf)


# --- Markdown front matter and placeholders -------------------------------------------------------


def test_front_matter_fields_become_document_fields(tmp_path):
    path = write(tmp_path, "export-controls.md", FRONT_MATTER_DOC)

    document = read_document(path, "export-controls.md", PLACEHOLDERS)

    assert document.doc_id == "export-controls.md"
    assert document.path == path
    assert document.format == "markdown"
    assert document.title == "Export controls"
    assert document.summary == "What counts as an export."
    assert document.sources == ("https://www.gov.uk/export-controls", "https://www.example.ac.uk/exports")
    assert document.topics == ("export controls", "licences")
    assert document.last_reviewed == "2026-03-01"
    assert document.owner == "Research Security Team"
    assert document.url == "https://www.gov.uk/export-controls"
    assert document.sections == (
        Section(("Export controls",), "Sending technical data by email to a colleague abroad is an export."),
    )


def test_single_string_sources_and_topics_become_one_item_tuples(tmp_path):
    path = write(tmp_path, "a.md", "---\nsources: https://x.example\ntopics: atas\n---\nSome text.\n")

    document = read_document(path, "a.md")

    assert document.sources == ("https://x.example",)
    assert document.topics == ("atas",)


def test_missing_front_matter_fields_take_defaults_and_title_comes_from_first_heading(tmp_path):
    path = write(tmp_path, "atas.md", "Intro line.\n\n## Who needs ATAS\n\nMost postgraduates.\n")

    document = read_document(path, "atas.md")

    assert document.title == "Who needs ATAS"
    assert (document.summary, document.sources, document.topics) == ("", (), ())
    assert document.last_reviewed is None and document.owner is None and document.url is None


def test_title_comes_from_the_file_name_when_there_is_no_heading(tmp_path):
    path = write(tmp_path, "nsi-act_notes.md", "Just a paragraph.\n")

    assert read_document(path, "x").title == "Nsi act notes"


def test_front_matter_is_kept_whole_in_metadata(tmp_path):
    path = write(tmp_path, "a.md", "---\ntitle: T\ncustom: 7\n---\nText.\n")

    assert read_document(path, "a.md").metadata == {"title": "T", "custom": 7}


def test_a_byte_order_mark_does_not_hide_the_front_matter(tmp_path):
    path = write(tmp_path, "a.md", "\ufeff---\ntitle: With BOM\n---\nText.\n".encode())

    assert read_document(path, "a.md").title == "With BOM"


def test_placeholders_are_filled_in_front_matter_and_body(tmp_path):
    text = (
        "---\nowner: '{{ team_name }}'\n---\n"
        "# Contacts\n\nWrite to {{email}} or post in {{ slack_channel }}.\n"
    )
    path = write(tmp_path, "contacts.md", text)

    document = read_document(path, "contacts.md", PLACEHOLDERS)

    assert document.owner == "Research Security Team"
    assert document.sections[0].text == (
        "Write to research-security@example.ac.uk or post in #research-security-help."
    )


def test_unknown_placeholders_are_left_as_they_are(tmp_path):
    path = write(tmp_path, "a.md", "# T\n\nAsk {{ team_name }} via {{ pager }}.\n")

    document = read_document(path, "a.md", {"team_name": "RST"})

    assert document.sections[0].text == "Ask RST via {{ pager }}."


def test_fill_placeholders_replaces_known_names_only():
    text = "{{ a }}, {{a}}, {{  b  }} and {{ c }}; {{ not a name }}"

    assert fill_placeholders(text, {"a": "1", "b": "2"}) == "1, 1, 2 and {{ c }}; {{ not a name }}"


# --- Markdown headings ----------------------------------------------------------------------------


def test_atx_headings_give_nested_heading_paths_that_reset_going_back_up():
    body = "\n".join(
        [
            "Intro before any heading.",
            "# Top",
            "a",
            "## Sub one",
            "b",
            "### Deep",
            "c",
            "## Sub two",
            "d",
            "# Second top",
            "e",
        ]
    )

    assert markdown_sections(body) == (
        Section((), "Intro before any heading."),
        Section(("Top",), "a"),
        Section(("Top", "Sub one"), "b"),
        Section(("Top", "Sub one", "Deep"), "c"),
        Section(("Top", "Sub two"), "d"),
        Section(("Second top",), "e"),
    )


def test_a_skipped_heading_level_is_dropped_when_a_shallower_heading_follows():
    body = "# A\n\n### C\n\nunder c\n\n## B\n\nunder b\n"

    assert markdown_sections(body) == (
        Section(("A", "C"), "under c"),
        Section(("A", "B"), "under b"),
    )


def test_headings_without_text_under_them_make_no_section():
    assert markdown_sections("# A\n\n## B\n\ntext\n\n## C\n") == (Section(("A", "B"), "text"),)


def test_heading_text_loses_closing_hashes_and_emphasis_marks():
    body = "## **Public** `domain` ##\n\ntext\n"

    assert markdown_sections(body)[0].heading_path == ("Public domain",)


def test_a_hash_without_a_space_is_not_a_heading():
    assert markdown_sections("#hashtag\ntext") == (Section((), "#hashtag\ntext"),)


def test_setext_headings_are_recognised_with_their_levels():
    body = "Export controls\n===============\n\nIntro.\n\nExemptions\n----------\n\nPublic domain.\n"

    assert markdown_sections(body) == (
        Section(("Export controls",), "Intro."),
        Section(("Export controls", "Exemptions"), "Public domain."),
    )


def test_a_dash_rule_after_a_blank_line_or_a_list_item_is_not_a_heading():
    body = "# T\n\nFirst.\n\n---\n\n- item\n---\nLast."

    assert markdown_sections(body) == (Section(("T",), "First.\n\n---\n\n- item\n---\nLast."),)


@pytest.mark.parametrize("fence", ["```", "~~~"])
def test_a_hash_line_inside_a_fenced_code_block_is_not_a_heading(fence):
    body = f"# Real\n\nBefore.\n\n{fence}bash\n# not a heading\nexport X=1\n{fence}\n\nAfter.\n"

    sections = markdown_sections(body)

    assert [section.heading_path for section in sections] == [("Real",)]
    assert "# not a heading" in sections[0].text
    assert sections[0].text.endswith("After.")


# --- HTML, plain text, PDF ------------------------------------------------------------------------


def test_html_gives_title_and_heading_paths_and_ignores_script_nav_and_footer():
    document = read_document(CORPUS / "visitors.html", "visitors.html")

    assert document.format == "html"
    assert document.title == "Hosting overseas visitors"
    assert document.summary.startswith("What to check before hosting")
    assert [section.heading_path for section in document.sections] == [
        ("Hosting overseas visitors",),
        ("Hosting overseas visitors", "Before the visit"),
        ("Hosting overseas visitors", "During the visit"),
        ("Hosting overseas visitors", "Longer placements"),
    ]
    text = "\n".join(section.text for section in document.sections)
    for ignored in ("tracking script", "analytics", "Site menu", "Home", "footer text"):
        assert ignored not in text


def test_html_list_items_become_dash_lines_and_entities_are_decoded(tmp_path):
    html = "<title>V</title><h1>V</h1><ul><li>Escort &amp; sign in</li><li>Guest Wi-Fi</li></ul>"
    path = write(tmp_path, "v.html", html)

    assert read_document(path, "v.html").sections == (Section(("V",), "- Escort & sign in\n- Guest Wi-Fi"),)


def test_html_without_a_title_tag_takes_its_first_heading(tmp_path):
    path = write(tmp_path, "v.htm", "<h2>Visitors</h2><p>Plan every visit.</p>")

    document = read_document(path, "v.htm")

    assert document.title == "Visitors"
    assert document.sections == (Section(("Visitors",), "Plan every visit."),)


def test_html_headings_inside_header_and_footer_leave_no_trace(tmp_path):
    html = (
        "<title>Visitors</title><header><h1>Example University</h1></header>"
        "<h1>Visitors</h1><p>Plan every visit.</p><footer><h2>Contact us</h2></footer>"
    )
    path = write(tmp_path, "v.html", html)

    assert read_document(path, "v.html").sections == (Section(("Visitors",), "Plan every visit."),)


def test_plain_text_is_one_section_titled_from_the_file_name():
    document = read_document(CORPUS / "cyber.txt", "cyber.txt")

    assert document.format == "text"
    assert document.title == "Cyber"
    assert len(document.sections) == 1
    assert document.sections[0].heading_path == ()
    assert document.sections[0].text == (CORPUS / "cyber.txt").read_text(encoding="utf-8").strip()


def test_plain_text_placeholders_are_filled(tmp_path):
    path = write(tmp_path, "help.txt", "Ask {{ team_name }}.\n")

    assert read_document(path, "help.txt", PLACEHOLDERS).sections[0].text == "Ask Research Security Team."


def test_pdf_text_is_extracted_page_by_page(tmp_path):
    path = write(tmp_path, "export-note.pdf", make_pdf("Export controls apply to email."))

    document = read_document(path, "export-note.pdf")

    assert document.format == "pdf"
    assert document.title == "Export note"
    assert document.sections == (Section(("Page 1",), "Export controls apply to email."),)


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("unclosed.md", "---\ntitle: x\n# Body\n\ntext\n", "never closed"),
        ("list.md", "---\n- a\n- b\n---\n# T\n\ntext\n", "must be a mapping"),
        ("scalar.md", "---\njust words\n---\n# T\n\ntext\n", "must be a mapping"),
        ("bad-yaml.md", "---\ntitle: [unclosed\n---\n# T\n\ntext\n", "not valid YAML"),
        ("latin1.md", "# Caf\xe9\n\nlicence\n".encode("latin-1"), "not UTF-8"),
        ("latin1.txt", b"caf\xe9", "not UTF-8"),
        ("garbage.pdf", b"this is not a pdf", "not a readable PDF"),
        ("truncated.pdf", make_pdf("Export controls apply to email.")[:200], "not a readable PDF"),
        ("empty.pdf", b"", "not a readable PDF"),
        ("blank.pdf", make_pdf(""), "no extractable text"),
        ("front-matter-only.md", "---\ntitle: Nothing\n---\n\n", "no text"),
        ("headings-only.md", "# A\n\n## B\n", "no text"),
        ("empty.txt", " \n\n ", "no text"),
        ("script-only.html", "<title>T</title><script>var x = 1;</script>", "no text"),
        ("notes.docx", b"PK\x03\x04", "unsupported file type"),
    ],
)
def test_unreadable_files_raise_document_error_naming_the_file(tmp_path, name, content, problem):
    path = write(tmp_path, name, content)

    with pytest.raises(DocumentError, match=problem) as raised:
        read_document(path, name)

    assert str(path) in str(raised.value)


def test_a_missing_file_raises_document_error_naming_it(tmp_path):
    path = tmp_path / "gone.md"

    with pytest.raises(DocumentError, match="cannot be read") as raised:
        read_document(path, "gone.md")

    assert str(path) in str(raised.value)


def test_document_error_is_an_indexer_error():
    assert issubclass(DocumentError, IndexerError)


# --- discover_files -------------------------------------------------------------------------------


def test_discover_files_lists_guidance_with_ids_relative_to_the_folder(tmp_path):
    root = tmp_path / "guidance"
    for name in [
        "a.md",
        "UPPER.MD",
        "sub/b.html",
        "sub/deeper/c.txt",
        "d.pdf",
        ".hidden.md",
        "_draft.md",
        "_drafts/e.md",
        ".git/f.md",
        "sub/_partial.html",
        "notes.docx",
        "image.png",
        "README",
    ]:
        write(root, name, "text")

    found = discover_files([root])

    assert [doc_id for _, doc_id in found] == ["UPPER.MD", "a.md", "d.pdf", "sub/b.html", "sub/deeper/c.txt"]
    assert [path for path, _ in found] == [
        (root / name).resolve() for name in ["UPPER.MD", "a.md", "d.pdf", "sub/b.html", "sub/deeper/c.txt"]
    ]


def test_discover_files_gives_a_file_named_directly_its_file_name_as_id(tmp_path):
    path = write(tmp_path / "deep" / "folder", "atas.md", "text")

    assert discover_files([path]) == [(path.resolve(), "atas.md")]


def test_discover_files_raises_indexer_error_for_a_missing_path(tmp_path):
    with pytest.raises(IndexerError, match="no such file or folder") as raised:
        discover_files([tmp_path / "nowhere"])

    assert "nowhere" in str(raised.value)


def test_discover_files_rejects_two_files_with_the_same_id(tmp_path):
    write(tmp_path / "one", "atas.md", "text")
    write(tmp_path / "two", "atas.md", "text")

    with pytest.raises(IndexerError, match="two files share the id atas.md"):
        discover_files([tmp_path / "one", tmp_path / "two"])


def test_discover_files_accepts_the_same_file_named_twice(tmp_path):
    path = write(tmp_path, "atas.md", "text")

    assert discover_files([tmp_path, path]) == [(path.resolve(), "atas.md")]


def test_discover_files_of_an_empty_folder_is_empty(tmp_path):
    assert discover_files([tmp_path]) == []


# --- content_hash ---------------------------------------------------------------------------------


def test_content_hash_is_the_same_for_the_same_text_and_placeholders(tmp_path):
    first = write(tmp_path / "one", "a.md", FRONT_MATTER_DOC)
    second = write(tmp_path / "two", "b.md", FRONT_MATTER_DOC)

    hashes = {
        read_document(first, "a.md", PLACEHOLDERS).content_hash,
        read_document(first, "a.md", dict(reversed(list(PLACEHOLDERS.items())))).content_hash,
        read_document(second, "other-id.md", PLACEHOLDERS).content_hash,
    }

    assert len(hashes) == 1


def test_content_hash_changes_when_the_text_changes(tmp_path):
    path = write(tmp_path, "a.md", FRONT_MATTER_DOC)
    before = read_document(path, "a.md", PLACEHOLDERS).content_hash

    path.write_text(FRONT_MATTER_DOC.replace("by email", "by e-mail"), encoding="utf-8")

    assert read_document(path, "a.md", PLACEHOLDERS).content_hash != before


def test_content_hash_changes_when_a_placeholder_value_changes(tmp_path):
    path = write(tmp_path, "a.md", FRONT_MATTER_DOC)

    before = read_document(path, "a.md", PLACEHOLDERS).content_hash
    after = read_document(path, "a.md", PLACEHOLDERS | {"team_name": "Security Office"}).content_hash

    assert after != before


# --- The fixture corpus itself --------------------------------------------------------------------


def test_every_fixture_document_parses_and_markdown_ones_have_full_front_matter():
    files = discover_files([CORPUS])

    documents = [read_document(path, doc_id, PLACEHOLDERS) for path, doc_id in files]

    assert len(documents) == 9
    for document in documents:
        assert document.sections, document.doc_id
        if document.format == "markdown":
            assert document.title and document.summary and document.sources and document.topics
            assert document.owner == "Research Security Team"
            assert len(document.last_reviewed or "") == 10
        text = " ".join(section.text for section in document.sections)
        assert "{{" not in text, document.doc_id
        assert 100 <= len(text.split()) <= 300, document.doc_id


# --- hostile or unusual files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("front", "field"),
    [("sources: 2024", "sources"), ("topics: true", "topics"), ("title: [a, b]", "title")],
)
def test_front_matter_of_the_wrong_type_is_a_document_error_naming_the_field(tmp_path, front, field):
    path = write(tmp_path, "odd.md", f"---\n{front}\n---\n# Odd\nSome text.\n")

    with pytest.raises(DocumentError, match=rf"front matter '{field}'"):
        read_document(path, "odd.md")


def test_a_yaml_alias_bomb_in_front_matter_is_refused_at_once(tmp_path):
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    rows += [
        f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    path = write(tmp_path, "bomb.md", "---\n" + "\n".join(rows) + "\n---\n# Bomb\nText.\n")

    with pytest.raises(DocumentError, match="YAML alias"):
        read_document(path, "bomb.md")


def test_utf16_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "wide.md"
    path.write_bytes("# Wide\nExport controls apply to email.\n".encode("utf-16"))

    assert "Export controls" in read_document(path, "wide.md").sections[0].text


def test_latin1_text_is_refused_with_a_hint_about_the_encoding(tmp_path):
    path = tmp_path / "latin.md"
    path.write_bytes("# Café\nRésumé of the rules.\n".encode("latin-1"))

    with pytest.raises(DocumentError, match="Latin-1.*save it as UTF-8"):
        read_document(path, "latin.md")


def test_a_file_of_nul_bytes_is_not_a_document(tmp_path):
    path = tmp_path / "nul.md"
    path.write_bytes(b"\x00" * 64)

    with pytest.raises(DocumentError, match="NUL bytes"):
        read_document(path, "nul.md")


def test_an_aes_encrypted_pdf_with_an_empty_password_is_read(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf("Export controls apply to email."))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    path = write(tmp_path, "locked.pdf", out.getvalue())

    assert "Export controls apply" in read_document(path, "locked.pdf").sections[0].text


def test_a_pdf_that_needs_a_password_is_a_document_error(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf("Secret."))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    path = write(tmp_path, "secret.pdf", out.getvalue())

    with pytest.raises(DocumentError, match="password-protected"):
        read_document(path, "secret.pdf")


def test_pdf_warnings_are_logged_with_the_file_name_not_bare(tmp_path, caplog, capsys):
    raw = make_pdf("Export controls apply to email.").replace(b"startxref\n", b"startxref\n1")
    path = write(tmp_path, "warns.pdf", raw)

    with caplog.at_level(logging.WARNING, logger="indexer.documents"):
        read_document(path, "warns.pdf")

    assert caplog.records and all(str(path) in record.getMessage() for record in caplog.records)
    assert "warns.pdf" not in capsys.readouterr().err


def test_a_link_loop_is_reported_and_not_followed(tmp_path):
    root = tmp_path / "guidance"
    (root / "sub").mkdir(parents=True)
    write(root / "sub", "a.md", "# A\ntext\n")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)

    found = discover([root])

    assert [doc_id for _, doc_id in found.files] == ["sub/a.md"]
    assert any("link loop" in problem for problem in found.problems)


def test_a_broken_link_is_reported(tmp_path):
    write(tmp_path, "a.md", "# A\ntext\n")
    (tmp_path / "gone.md").symlink_to(tmp_path / "missing.md")

    found = discover([tmp_path])

    assert [doc_id for _, doc_id in found.files] == ["a.md"]
    assert any("gone.md: a broken link" in problem for problem in found.problems)


def test_an_unreadable_folder_is_reported_as_unreadable_not_as_empty(tmp_path, monkeypatch):
    write(tmp_path / "open", "a.md", "# A\ntext\n")
    write(tmp_path / "locked", "b.md", "# B\ntext\n")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover([tmp_path])

    assert [doc_id for _, doc_id in found.files] == ["open/a.md"]
    assert found.unreadable == [(tmp_path / "locked").resolve()]
    assert any("folder cannot be read (Permission denied)" in problem for problem in found.problems)
