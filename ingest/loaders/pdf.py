"""PDF files: text per page with pypdf, pages joined by a blank line, one (page, start, end) span each.

The outline (bookmarks), when the PDF has one, gives the heading structure: each entry becomes a
heading at the place its title appears on its target page (or at the page's start).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ingest.errors import IngestError
from ingest.loaders.document import ExtractedDocument, sha256_of
from ingest.loaders.text import read_bytes

log = logging.getLogger(__name__)

PAGE_SEPARATOR = "\n\n"  # between pages; no page span covers it, so no chunk crosses it


def load_pdf(path: Path, source: str) -> ExtractedDocument:
    """A .pdf file: extracted text of every page, page spans, metadata title, outline headings."""
    data = read_bytes(path, source)
    if not data:
        raise IngestError(source, "empty file; nothing to ingest (add content or remove the file)")
    if b"%PDF-" not in data[:1024]:  # the spec allows the header anywhere in the first 1024 bytes
        raise IngestError(source, "not a PDF (no %PDF- header); check that the extension matches the content")
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(source, "encrypted PDF that needs a password: decrypt it first "
                                      "(e.g. qpdf --decrypt --password=... in.pdf out.pdf)")
        page_count = len(reader.pages)
    except IngestError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError) as exc:
        raise IngestError(source, f"corrupt or unreadable PDF ({_reason(exc)}); re-export or repair it "
                                  "(e.g. qpdf in.pdf out.pdf)") from None
    except Exception as exc:  # pypdf raises many internal types on malformed input
        raise IngestError(source, f"corrupt or unreadable PDF ({_reason(exc)}); re-export or repair it") from None
    if page_count == 0:
        raise IngestError(source, "the PDF has no pages; nothing to ingest")

    parts: list[str] = []
    pages: list[tuple[int, int, int]] = []
    failed: list[int] = []
    pos = 0
    for number, page in enumerate(reader.pages, 1):
        try:
            page_text = _clean(page.extract_text() or "")
        except Exception as exc:  # one broken page should not lose the rest of the document
            log.warning("%s: page %d: cannot extract text (%s); skipping the page", source, number, _reason(exc))
            failed.append(number)
            page_text = ""
        if parts:
            pos += len(PAGE_SEPARATOR)
        parts.append(page_text)
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


def _clean(page_text: str) -> str:
    # pypdf can emit NULs and lone surrogates from broken font maps; neither belongs in a text index.
    page_text = page_text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return page_text.encode("utf-8", "replace").decode("utf-8").strip()


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
