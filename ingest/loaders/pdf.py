"""PDF files: text per page with pypdf, pages joined by a blank line, one (page, start, end) span each.

The outline (bookmarks), when the PDF has one, gives the heading structure: each entry becomes a
heading at the place its title appears on its target page (or at the page's start).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ingest.errors import IngestError
from ingest.limits import IngestLimits
from ingest.loaders.document import ExtractedDocument, sha256_of
from ingest.loaders.text import read_bytes

log = logging.getLogger(__name__)

PAGE_SEPARATOR = "\n\n"  # between pages; no page span covers it, so no chunk crosses it


def load_pdf(path: Path, source: str, limits: IngestLimits = IngestLimits()) -> ExtractedDocument:
    """A .pdf file: extracted text of every page, page spans, metadata title, outline headings."""
    data = read_bytes(path, source, limits)
    if not data:
        raise IngestError(source, "empty file; nothing to ingest (add content or remove the file)")
    if b"%PDF-" not in data[:1024]:  # the spec allows the header anywhere in the first 1024 bytes
        raise IngestError(source, "not a PDF (no %PDF- header); check that the extension matches the content")
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(source, "encrypted PDF that needs a password: decrypt it first "
                                      "(e.g. qpdf --decrypt --password=... in.pdf out.pdf)")
        page_count = len(reader.pages)
    except IngestError:
        raise
    except DependencyError:  # AES-encrypted, even with an empty password, needs a crypto backend
        raise IngestError(source, "AES-encrypted PDF: pip install cryptography, or decrypt it first "
                                  "(e.g. qpdf --decrypt in.pdf out.pdf)") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError) as exc:
        raise IngestError(source, f"corrupt or unreadable PDF ({_reason(exc)}); re-export or repair it "
                                  "(e.g. qpdf in.pdf out.pdf)") from None
    except Exception as exc:  # pypdf raises many internal types on malformed input
        raise IngestError(source, f"corrupt or unreadable PDF ({_reason(exc)}); re-export or repair it") from None
    if page_count == 0:
        raise IngestError(source, "the PDF has no pages; nothing to ingest")

    raw_pages: list[str] = []
    failed: list[int] = []
    for number, page in enumerate(reader.pages, 1):
        try:
            raw_pages.append(_page_text(page))
        except Exception as exc:  # one broken page should not lose the rest of the document
            log.warning("%s: page %d: cannot extract text (%s); skipping the page", source, number, _reason(exc))
            failed.append(number)
            raw_pages.append("")
    parts = _drop_running_lines(raw_pages)
    pages: list[tuple[int, int, int]] = []
    pos = 0
    for number, page_text in enumerate(parts, 1):
        if number > 1:
            pos += len(PAGE_SEPARATOR)
        pages.append((number, pos, pos + len(page_text)))
        pos += len(page_text)
    text = PAGE_SEPARATOR.join(parts)
    if not text.strip():
        if len(failed) == page_count:
            raise IngestError(source, "corrupt PDF: text extraction failed on every page; re-export or repair it")
        raise IngestError(source, f"no extractable text in {page_count} page(s): a scanned or image-only PDF? "
                                  "run OCR first (e.g. ocrmypdf in.pdf out.pdf)")
    title = _metadata_title(reader) or path.stem
    headings = _outline_headings(reader, text, pages)
    return ExtractedDocument(source=source, title=title, format="pdf", text=text, pages=tuple(pages),
                             sha256=sha256_of(data), headings=headings)


def _page_text(page) -> str:
    """One page's text: layout mode (table rows stay on one line, paragraphs keep their blank lines)
    unless the page is set in columns, where layout mode would interleave them: then reading order."""
    layout = _tidy_layout(_clean(page.extract_text(extraction_mode="layout") or ""))
    if not _looks_multi_column(layout):
        return pipe_tables(layout)
    return _clean(page.extract_text() or "").strip()


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x80-\x9f]")
_BULLETS = str.maketrans({"\x7f": "•", "\uf0b7": "•", "\uf0a7": "▪", "\uf076": "•"})  # symbol-font bullets
_GAP = re.compile(r" {3,}")


def _clean(page_text: str) -> str:
    # Broken font maps yield control characters, NULs and lone surrogates; none belong in a text index.
    page_text = page_text.replace("\r\n", "\n").replace("\r", "\n").translate(_BULLETS)
    page_text = _CONTROL.sub("", page_text)
    return page_text.encode("utf-8", "replace").decode("utf-8")


def _tidy_layout(page_text: str) -> str:
    """Layout text without its page geometry: no indentation, column gaps as two spaces, one blank line at most."""
    lines = [_GAP.sub("  ", line.strip()) for line in page_text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


_LIST_MARKER = re.compile(r"^(?:[•▪◦*-]|\(?\d{1,2}[.)]|\(?[a-z][.)])$")


def _cells(line: str) -> list[str]:
    """The cells of a layout line that reads as a table row (two or more, short, not a list item:
    "1.  Check in" is a marker and its text), else []."""
    cells = line.split("  ")
    if len(cells) < 2 or (len(cells) == 2 and _LIST_MARKER.match(cells[0])) or max(len(cell) for cell in cells) > 60:
        return []
    return cells


def pipe_tables(layout: str) -> str:
    """Layout text with its tables written as ``a | b | c`` rows, as the HTML and DOCX loaders write
    them, so that search, context focus and the grounding builder read a row with its header instead
    of one long "sentence" of cells. A table is two or more consecutive rows of as many cells (column
    gaps of two spaces); a short line without gaps right above a row is the wrapped start of that row's
    first cell ("MV Gulvane" over "Spirit  2004  180"), as a cell's text sits at its bottom by default.
    """
    lines = layout.split("\n")
    cells = [_cells(line) for line in lines]
    out: list[str] = []
    i = 0
    while i < len(lines):
        width = len(cells[i])
        end = i
        rows: list[list[str]] = []
        while end < len(lines):
            if cells[end] and len(cells[end]) == width:
                rows.append(list(cells[end]))
                end += 1
            elif (width and not cells[end] and lines[end] and len(lines[end]) <= 40 and end + 1 < len(lines)
                  and len(cells[end + 1]) == width and not lines[end].endswith((".", ":", "?", "!"))):
                rows.append([lines[end] + " " + cells[end + 1][0], *cells[end + 1][1:]])
                end += 2
            else:
                break
        if width and len(rows) >= 2:
            out.extend(" | ".join(row) for row in rows)
            i = end
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


def _looks_multi_column(layout: str) -> bool:
    """True when most lines hold two runs of prose side by side (a two-column page), not table cells."""
    lines = [line for line in layout.split("\n") if line]
    if len(lines) < 6:
        return False
    prose_pairs = 0
    for line in lines:
        cells = line.split("  ")
        if sum(len(cell) >= 25 and cell.count(" ") >= 3 for cell in cells) >= 2:
            prose_pairs += 1
    return prose_pairs >= 0.3 * len(lines)


def _drop_running_lines(pages: list[str]) -> list[str]:
    """Remove running headers and footers: first or last lines that recur (digits aside) on most pages."""
    if len(pages) < 2:
        return pages
    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line.strip().lower())

    edges = [[key(line) for line in _edge_lines(page)] for page in pages]
    counts: dict[str, int] = {}
    for page_edges in edges:
        for k in set(page_edges):
            counts[k] = counts.get(k, 0) + 1
    running = {k for k, n in counts.items() if k and n >= max(2, 0.6 * len(pages))}
    if not running:
        return pages
    cleaned = []
    for page in pages:
        lines = page.split("\n")
        edge = set(_edge_indices(lines))
        kept = [line for i, line in enumerate(lines) if not (i in edge and key(line) in running)]
        cleaned.append(_tidy_blank_lines(kept))
    return cleaned


def _edge_indices(lines: list[str]) -> list[int]:
    """The first and last two non-blank lines; fewer on short pages, which are mostly body."""
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    depth = min(2, len(nonblank) // 4)
    return nonblank[:depth] + nonblank[len(nonblank) - depth:] if depth else []


def _edge_lines(page: str) -> list[str]:
    lines = page.split("\n")
    return [lines[i] for i in _edge_indices(lines)]


def _tidy_blank_lines(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1].strip()):
            out.append(line)
    return "\n".join(out).strip()


def _reason(exc: Exception) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}"[:200] if message else type(exc).__name__


def _metadata_title(reader) -> str:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        return ""
    title = " ".join(str(title).split()) if title else ""
    return "" if _PLACEHOLDER_TITLE.match(title) else title


# Titles that producers fill in by default ("untitled", "Microsoft Word - x.docx", "Document1"):
# the file name says more.
_PLACEHOLDER_TITLE = re.compile(
    r"^(untitled.*|\(?anonymous\)?|none|null|title|document\d*|microsoft \w+ - .*|.*\.(docx?|pdf|tex|dvi|rtf|odt))$",
    re.IGNORECASE)


def _outline_headings(reader, text: str, pages: list[tuple[int, int, int]]) -> tuple[tuple[int, int, str], ...]:
    """(offset, level, title) for each outline entry, placed where its title appears on its page."""
    try:
        outline = reader.outline
    except Exception as exc:
        log.debug("unreadable PDF outline (%s); no headings", exc)
        return ()
    headings: list[tuple[int, int, str]] = []

    def visit(entries, level: int):
        for entry in entries:
            if isinstance(entry, list):
                visit(entry, level + 1)
                continue
            try:
                index = reader.get_destination_page_number(entry)
                label = " ".join(str(entry.title).split())
            except Exception:
                continue
            if index is None or not 0 <= index < len(pages) or not label:
                continue
            _, start, end = pages[index]
            found = text.find(label, start, end)
            headings.append((found if found >= 0 else start, min(level, 6), label))

    try:
        visit(outline, 1)
    except RecursionError:
        return ()
    return tuple(sorted(headings))
