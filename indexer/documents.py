"""Read guidance files (Markdown with front matter, HTML, plain text, PDF) into ``Document`` records."""

from __future__ import annotations

import codecs
import datetime
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
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
MAX_FRONT_MATTER_CHARS = 20_000
logger = logging.getLogger(__name__)


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


@dataclass
class Discovery:
    """What a walk over the guidance paths found.

    ``files`` are (file, id) pairs; ``problems`` one line per thing that could not be looked at
    (an unreadable folder, a broken link, a link loop); ``unreadable`` the folders (as absolute
    paths) whose contents are unknown, so their documents must not be taken as deleted.
    """

    files: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)


def discover_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """List the guidance files under the given files and folders, with each one's id.

    The id is the path relative to the folder named (or the file name, for a file named
    directly), in POSIX form. Hidden files and files starting with ``_`` are skipped.

    Raises:
        IndexerError: a path does not exist, or two files would get the same id.
    """
    return discover(paths).files


def discover(paths: Iterable[Path]) -> Discovery:
    """Like ``discover_files``, and also report what could not be looked at (see ``Discovery``)."""
    found: dict[str, Path] = {}
    result = Discovery()
    for root in paths:
        for file, doc_id in _files_under(Path(root), result):
            if doc_id in found and found[doc_id] != file:
                raise IndexerError(f"two files share the id {doc_id}: {found[doc_id]} and {file}")
            found[doc_id] = file
    result.files = [(file, doc_id) for doc_id, file in sorted(found.items())]
    return result


def _files_under(root: Path, result: Discovery) -> list[tuple[Path, str]]:
    if root.is_file():
        return [(root.resolve(), root.name)]
    if not root.is_dir():
        raise IndexerError(f"no such file or folder: {root}")
    files: list[tuple[Path, str]] = []
    seen: set[str] = set()

    def unreadable(error: OSError) -> None:
        folder = Path(error.filename or root)
        result.unreadable.append(folder.resolve())
        reason = error.strerror or type(error).__name__
        result.problems.append(f"{folder}: folder cannot be read ({reason}); its documents are kept")

    for folder, dirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree: walking on would never end
            result.problems.append(f"{folder}: a link loop (it leads back to {real}); not followed")
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(names):
            path = Path(folder) / name
            relative = path.relative_to(root)
            if not _is_guidance(relative):
                continue
            if not path.exists():
                result.problems.append(f"{path}: a broken link; skipped")
                continue
            files.append((path.resolve(), relative.as_posix()))
    return files


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
    """Text from UTF-8 (with or without a byte-order mark) or UTF-16 with its byte-order mark."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{path}: damaged UTF-16 text (byte {exc.start})") from exc
        if not _mostly_readable(text):
            raise DocumentError(f"{path}: starts like UTF-16 text but is not readable text")
        return text
    if b"\x00" in raw:
        raise DocumentError(f"{path}: contains NUL bytes, so it is not a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        raise DocumentError(
            f"{path}: not UTF-8 text (byte {exc.start} is 0x{byte:02x}; the file may be Latin-1 or "
            "Windows-1252): save it as UTF-8"
        ) from exc


def _mostly_readable(text: str) -> bool:
    # Guidance is English prose: a byte-order mark in front of binary data decodes to CJK noise.
    readable = sum(1 for char in text if char.isascii() and (char.isprintable() or char.isspace()))
    return bool(text.strip()) and readable >= 0.5 * len(text)


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{{ name }}`` with ``values[name]``; unknown names are left as they are."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


# --- Markdown -----------------------------------------------------------------------------------


def _parse_markdown(raw: bytes, path: Path, values: dict[str, str]) -> dict[str, Any]:
    text = fill_placeholders(_decode(raw, path), values)
    meta, body = split_front_matter(text, path)
    sections = markdown_sections(body)
    title = _text_field(meta, "title", path) or _first_heading(sections) or _title_from_name(path)
    return _with_metadata(meta, title, sections, path)


def split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split YAML front matter (between ``---`` lines at the top) from the body."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")), None)
    if end is None:
        raise DocumentError(f"{path}: front matter opened with '---' is never closed")
    block = "\n".join(lines[1:end])
    if len(block) > MAX_FRONT_MATTER_CHARS:
        raise DocumentError(f"{path}: front matter is over {MAX_FRONT_MATTER_CHARS:,} characters")
    try:
        _refuse_aliases(block, path)
        meta = yaml.safe_load(block) or {}
    except yaml.YAMLError as exc:
        raise DocumentError(f"{path}: front matter is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(meta, dict):
        raise DocumentError(f"{path}: front matter must be a mapping of fields")
    return meta, "\n".join(lines[end + 1 :])


def _refuse_aliases(block: str, path: Path) -> None:
    # A few hundred bytes of nested YAML aliases expand to gigabytes; front matter needs none.
    for event in yaml.parse(block, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise DocumentError(f"{path}: front matter uses a YAML alias (*name); write the value out")


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
        "summary": _text_field(meta, "summary", path) or "",
        "sources": _list_field(meta, "sources", path),
        "topics": _list_field(meta, "topics", path),
        "last_reviewed": _text_field(meta, "last_reviewed", path),
        "owner": _text_field(meta, "owner", path),
        "metadata": meta,
    }


def _text_field(meta: dict[str, Any], name: str, path: Path) -> str | None:
    """A front-matter field that is one value (text, or a date such as last_reviewed)."""
    value = meta.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float | datetime.date) and not isinstance(value, bool):
        return str(value)
    raise DocumentError(f"{path}: front matter '{name}' must be text, got {type(value).__name__}")


def _list_field(meta: dict[str, Any], name: str, path: Path) -> tuple[str, ...]:
    """A front-matter field that is a list of text (one text counts as a list of one)."""
    value = meta.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise DocumentError(f"{path}: front matter '{name}' must be a list of text, got {value!r:.60}")


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

    try:
        with _pdf_warnings_named(path):
            reader = PdfReader(io.BytesIO(raw))
            _unlock(reader, path)
            pages = [page.extract_text() or "" for page in reader.pages]
            info_title = (reader.metadata.title if reader.metadata else None) or ""
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files; any of them skips this one file
        raise DocumentError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    sections = tuple(
        Section((f"Page {number}",), fill_placeholders(text.strip(), values))
        for number, text in enumerate(pages, 1)
        if text.strip()
    )
    if not sections:
        raise DocumentError(f"{path}: the PDF has no extractable text (is it a scan?)")
    return _with_metadata({}, str(info_title).strip() or _title_from_name(path), sections, path)


def _unlock(reader: Any, path: Path) -> None:
    """Open an encrypted PDF that needs no password (the common "restrict editing" kind)."""
    if not reader.is_encrypted:
        return
    if not reader.decrypt(""):
        raise DocumentError(f"{path}: the PDF is password-protected")


class _NamedWarnings(logging.Handler):
    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        logger.warning("%s: %s", self.path, record.getMessage())


@contextmanager
def _pdf_warnings_named(path: Path) -> Iterator[None]:
    """pypdf's warnings, logged once each with the file they are about (not bare on stderr)."""
    pdf_logger = logging.getLogger("pypdf")
    handler = _NamedWarnings(path)
    propagate = pdf_logger.propagate
    pdf_logger.addHandler(handler)
    pdf_logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            logger.warning("%s: %s", path, warning.message)
    finally:
        pdf_logger.removeHandler(handler)
        pdf_logger.propagate = propagate


_PARSERS: dict[str, Callable[[bytes, Path, dict[str, str]], dict[str, Any]]] = {
    "markdown": _parse_markdown,
    "html": _parse_html,
    "text": _parse_text,
    "pdf": _parse_pdf,
}
