"""Read guidance files (Markdown with front matter, HTML, plain text, PDF) into ``Document`` records."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

from indexer.errors import DocumentError, IndexerError

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}
SUFFIXES[".pdf"] = "pdf"

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Section:
    """A run of text under one heading; ``heading_path`` runs from the top heading down."""

    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Document:
    doc_id: str
    path: Path
    format: str
    title: str
    sections: tuple[Section, ...]
    content_hash: str
    summary: str = ""
    sources: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    last_reviewed: str | None = None
    owner: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def url(self) -> str | None:
        return self.sources[0] if self.sources else None


def discover_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """List the guidance files under the given files and folders, with each one's id.

    The id is the path relative to the folder named (or the file name, for a file named
    directly), in POSIX form. Hidden files and files starting with ``_`` are skipped.

    Raises:
        IndexerError: a path does not exist, or two files would get the same id.
    """
    found: dict[str, Path] = {}
    for root in paths:
        for file, doc_id in _files_under(Path(root)):
            if doc_id in found and found[doc_id] != file:
                raise IndexerError(f"two files share the id {doc_id}: {found[doc_id]} and {file}")
            found[doc_id] = file
    return [(file, doc_id) for doc_id, file in sorted(found.items())]


def _files_under(root: Path) -> list[tuple[Path, str]]:
    if root.is_file():
        return [(root.resolve(), root.name)]
    if not root.is_dir():
        raise IndexerError(f"no such file or folder: {root}")
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and _is_guidance(p.relative_to(root))]
    return [(p.resolve(), p.relative_to(root).as_posix()) for p in files]


def _is_guidance(relative: Path) -> bool:
    hidden = any(part.startswith((".", "_")) for part in relative.parts)
    return not hidden and relative.suffix.lower() in SUFFIXES


def read_document(path: Path, doc_id: str, placeholders: Mapping[str, str] | None = None) -> Document:
    """Parse one file by its suffix.

    Args:
        path: The file.
        doc_id: Its id in the index (see ``discover_files``).
        placeholders: Values for ``{{ name }}`` placeholders (institution details from app.yml).

    Raises:
        DocumentError: the file cannot be read or parsed; the message names it.
    """
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DocumentError(f"{path}: unsupported file type {path.suffix!r}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    values = dict(placeholders or {})
    digest = hashlib.sha256(raw + json.dumps(values, sort_keys=True).encode()).hexdigest()
    parsed = _PARSERS[kind](raw, path, values)
    return Document(doc_id=doc_id, path=path, format=kind, content_hash=digest, **parsed)


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{{ name }}`` with ``values[name]``; unknown names are left as they are."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


# --- Markdown -----------------------------------------------------------------------------------


def _parse_markdown(raw: bytes, path: Path, values: dict[str, str]) -> dict[str, Any]:
    text = fill_placeholders(_decode(raw, path), values)
    meta, body = split_front_matter(text, path)
    sections = markdown_sections(body)
    title = str(meta.get("title") or _first_heading(sections) or _title_from_name(path))
    return _with_metadata(meta, title, sections, path)


def split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split YAML front matter (between ``---`` lines at the top) from the body."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), None)
    if end is None:
        raise DocumentError(f"{path}: front matter opened with '---' is never closed")
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        raise DocumentError(f"{path}: front matter is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(meta, dict):
        raise DocumentError(f"{path}: front matter must be a mapping of fields")
    return meta, "\n".join(lines[end + 1 :])


def markdown_sections(body: str) -> tuple[Section, ...]:
    """Cut a Markdown body at its ATX and setext headings, keeping each section's heading path."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []
    in_fence = False
    lines = body.split("\n")
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _heading(line, buffer)
        if heading is None:
            buffer.append(line)
            continue
        level, title, setext = heading
        if setext:
            buffer.pop()
        _flush(sections, path, buffer)
        path = [(lvl, name) for lvl, name in path if lvl < level] + [(level, _clean_heading(title))]
    _flush(sections, path, buffer)
    return tuple(sections)


def _heading(line: str, buffer: list[str]) -> tuple[int, str, bool] | None:
    """Return (level, text, is_setext) when the line is a heading or a setext underline."""
    match = _ATX.match(line)
    if match:
        return len(match.group(1)), match.group(2), False
    underline = line.strip()
    previous = buffer[-1].strip() if buffer else ""
    is_underline = len(underline) >= 3 and set(underline) in ({"="}, {"-"})
    if is_underline and previous and not previous.startswith(("-", "*", ">", "|", "#")):
        return (1 if underline[0] == "=" else 2), previous, True
    return None


def _clean_heading(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def _flush(sections: list[Section], path: list[tuple[int, str]], buffer: list[str]) -> None:
    text = "\n".join(buffer).strip()
    buffer.clear()
    if text:
        sections.append(Section(tuple(name for _, name in path), text))


def _first_heading(sections: tuple[Section, ...]) -> str | None:
    return next((s.heading_path[0] for s in sections if s.heading_path), None)


def _title_from_name(path: Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize()


def _with_metadata(meta: dict[str, Any], title: str, sections: tuple[Section, ...], path: Path) -> dict:
    if not sections:
        raise DocumentError(f"{path}: no text to index")
    return {
        "title": title,
        "sections": sections,
        "summary": str(meta.get("summary") or ""),
        "sources": as_strings(meta.get("sources")),
        "topics": as_strings(meta.get("topics")),
        "last_reviewed": str(meta["last_reviewed"]) if meta.get("last_reviewed") else None,
        "owner": str(meta["owner"]) if meta.get("owner") else None,
        "metadata": meta,
    }


def as_strings(value: Any) -> tuple[str, ...]:
    """A front-matter value as a tuple of strings: a single string is one item."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(item) for item in value)


# --- HTML ---------------------------------------------------------------------------------------


class _HTMLSections(HTMLParser):
    _SKIP = {"script", "style", "nav", "header", "footer", "noscript", "template", "svg"}
    _BLOCK = {"p", "div", "li", "br", "tr", "section", "article", "table", "ul", "ol", "blockquote", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.title = ""
        self.description = ""
        self._skip = 0
        self._in_title = False
        self._heading: int | None = None
        self._current: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "meta" and dict(attrs).get("name", "").lower() == "description":
            self.description = dict(attrs).get("content") or ""
        elif re.fullmatch(r"h[1-6]", tag) and not self._skip:
            self._newline()
            self._heading = int(tag[1])
        elif tag in self._BLOCK:
            self._newline()
            if tag == "li":
                self._current.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag) and self._heading and not self._skip:
            self._current.insert(0, "#" * self._heading + " ")
            self._heading = None
            self._newline()
        elif tag in self._BLOCK:
            self._newline()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self._current.append(re.sub(r"\s+", " ", data))

    def _newline(self) -> None:
        line = "".join(self._current).strip()
        if line and line != "-":
            self.lines.append(line if not line.startswith("#") else "\n" + line + "\n")
        self._current = []


def _parse_html(raw: bytes, path: Path, values: dict[str, str]) -> dict[str, Any]:
    parser = _HTMLSections()
    parser.feed(fill_placeholders(_decode(raw, path), values))
    parser.close()
    parser._newline()
    sections = markdown_sections("\n".join(parser.lines))
    title = parser.title.strip() or _first_heading(sections) or _title_from_name(path)
    return _with_metadata({"summary": parser.description}, title, sections, path)


# --- Plain text and PDF -------------------------------------------------------------------------


def _parse_text(raw: bytes, path: Path, values: dict[str, str]) -> dict[str, Any]:
    text = fill_placeholders(_decode(raw, path), values).strip()
    title = _title_from_name(path)
    return _with_metadata({}, title, (Section((), text),) if text else (), path)


def _parse_pdf(raw: bytes, path: Path, values: dict[str, str]) -> dict[str, Any]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"{path}: not a readable PDF ({exc})") from exc
    sections = tuple(
        Section((f"Page {number}",), fill_placeholders(text.strip(), values))
        for number, text in enumerate(pages, 1)
        if text.strip()
    )
    if not sections:
        raise DocumentError(f"{path}: the PDF has no extractable text (is it a scan?)")
    return _with_metadata({}, str(info_title).strip() or _title_from_name(path), sections, path)


_PARSERS: dict[str, Callable[[bytes, Path, dict[str, str]], dict[str, Any]]] = {
    "markdown": _parse_markdown,
    "html": _parse_html,
    "text": _parse_text,
    "pdf": _parse_pdf,
}
