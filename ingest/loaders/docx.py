"""Word .docx files: body paragraphs and tables in document order; Heading styles give the structure."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ingest.errors import IngestError
from ingest.limits import IngestLimits
from ingest.loaders.archive import check_zip
from ingest.loaders.document import ExtractedDocument, sha256_of
from ingest.loaders.text import read_bytes

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy binary .doc (and encrypted .docx)


def load_docx(path: Path, source: str, limits: IngestLimits = IngestLimits()) -> ExtractedDocument:
    """A .docx file: paragraphs (headings as their own lines), lists as "- item", tables as "cell | cell" rows."""
    data = read_bytes(path, source, limits)
    if not data:
        raise IngestError(source, "empty file; nothing to ingest (add content or remove the file)")
    if data.startswith(_OLE_MAGIC):
        raise IngestError(source, "a legacy binary Word .doc or a password-protected .docx, not an Office Open XML "
                                  "document; open it in Word or LibreOffice and save it as an unprotected .docx")
    check_zip(path, source, limits, ".docx")  # before python-docx inflates every part into memory
    try:
        with zipfile.ZipFile(path) as archive:
            if "word/document.xml" not in archive.namelist():
                raise IngestError(source, "not a Word document (the zip has no word/document.xml); "
                                          "check that the extension matches the content")
    except zipfile.BadZipFile:
        raise IngestError(source, "not a valid .docx (not a zip archive); check that the extension matches the "
                                  "content, or re-save it as .docx") from None
    try:
        import docx

        document = docx.Document(str(path))
        blocks, levels, title_style = _blocks(document)
        core_title = (document.core_properties.title or "").strip()
    except IngestError:
        raise
    except Exception as exc:  # python-docx / lxml raise many types on damaged packages
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise IngestError(source, f"corrupt or unreadable .docx ({type(exc).__name__}: {message}); "
                                  "open and re-save it in Word or LibreOffice") from None
    text, headings = _join(blocks, levels)
    if not text.strip():
        raise IngestError(source, "no text in the document body (images only?); nothing to ingest")
    first_heading = next((label for _, level, label in headings if level == 1), headings[0][2] if headings else "")
    title = " ".join(core_title.split()) or title_style or first_heading or path.stem
    return ExtractedDocument(source=source, title=title, format="docx", text=text, sha256=sha256_of(data),
                             headings=headings)


def _blocks(document) -> tuple[list[str], list[int], str]:
    """Text blocks in body order, each with its heading level (0 body, -1 list item, -2 table), and the Title text."""
    from docx.table import Table

    blocks: list[str] = []
    levels: list[int] = []
    title = ""
    title_blocks: set[int] = set()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = _table_rows(item)
            if rows:
                blocks.append("\n".join(rows))
                levels.append(-2)
            continue
        label = item.text.replace("\r", "").strip()
        if not label:
            continue
        level, is_list, is_title = _paragraph_kind(item)
        if is_title:
            title = title or " ".join(label.split())
            title_blocks.add(len(blocks))
        if level:
            label = " ".join(label.split())  # a heading is one line: the heading path repeats it
        blocks.append(f"- {label}" if is_list and not level else label)
        levels.append(level or (-1 if is_list else 0))
    if title_blocks:  # a Title paragraph sits above Heading 1: "Charter services > Booking"
        levels = [min(lvl + 1, 6) if lvl > 0 and i not in title_blocks else lvl for i, lvl in enumerate(levels)]
    return blocks, levels, title


def _paragraph_kind(paragraph) -> tuple[int, bool, bool]:
    """(heading level or 0, is a list item, is the Title style) from the style name or its outline level."""
    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    style_id = (style.style_id or "") if style is not None else ""
    is_title = name.lower() == "title" or style_id.lower() == "title"
    match = _HEADING_STYLE.match(name) or _HEADING_STYLE.match(style_id)
    level = int(match.group(1)) if match else (1 if is_title else _outline_level(paragraph, style))
    ppr = paragraph._p.pPr
    is_list = name.lower().startswith("list") or (ppr is not None and ppr.numPr is not None)
    return min(level, 6), is_list, is_title


def _outline_level(paragraph, style) -> int:
    """Heading level from an explicit w:outlineLvl (custom or localized heading styles), else 0."""
    from docx.oxml.ns import qn

    properties = [paragraph._p.pPr, style.element.pPr if style is not None else None]
    for element in properties:
        outline = element.find(qn("w:outlineLvl")) if element is not None else None
        if outline is not None:
            value = outline.get(qn("w:val"))
            if value is not None and value.isdigit() and int(value) < 9:
                return int(value) + 1
    return 0


def _table_rows(table) -> list[str]:
    """One "cell | cell" line per row; a merged cell appears once."""
    rows = []
    for row in table.rows:
        cells, seen = [], []
        for cell in row.cells:
            if any(cell._tc is tc for tc in seen):  # a horizontally merged cell repeats in row.cells
                continue
            seen.append(cell._tc)
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def _join(blocks: list[str], levels: list[int]) -> tuple[str, tuple[tuple[int, int, str], ...]]:
    """Blocks joined by blank lines (consecutive list items by one newline), with heading offsets."""
    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    pos = 0
    for i, (block, level) in enumerate(zip(blocks, levels)):
        if i:
            sep = "\n" if level == -1 and levels[i - 1] == -1 else "\n\n"
            parts.append(sep)
            pos += len(sep)
        if level > 0:
            headings.append((pos, level, block))
        parts.append(block)
        pos += len(block)
    return "".join(parts), tuple(headings)
