"""Markdown files: the raw Markdown is the text; ATX and setext headings give the structure."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.errors import IngestError
from ingest.limits import IngestLimits
from ingest.loaders.document import ExtractedDocument, sha256_of
from ingest.loaders.text import decode_text, read_bytes, require_text

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_INLINE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)|[*_`]+")  # links/images keep their label; emphasis marks go


def load_markdown(path: Path, source: str, limits: IngestLimits = IngestLimits()) -> ExtractedDocument:
    """A .md file: raw Markdown text, headings from ``#`` lines and ``===``/``---`` underlines."""
    data = read_bytes(path, source, limits)
    if not data:
        raise IngestError(source, "empty file; nothing to ingest (add content or remove the file)")
    text = require_text(decode_text(data, source), source, "only whitespace")
    body_start, front_title = _front_matter(text)
    headings = parse_headings(text, body_start)
    title = front_title or _first_title(headings) or path.stem
    return ExtractedDocument(source=source, title=title, format="md", text=text, sha256=sha256_of(data),
                             headings=headings)


def parse_headings(text: str, start: int = 0) -> tuple[tuple[int, int, str], ...]:
    """(offset, level, text) for every Markdown heading at or after ``start``, skipping fenced code."""
    headings: list[tuple[int, int, str]] = []
    fence: str | None = None
    candidate: tuple[int, str] | None = None  # a one-line paragraph that a setext underline would make a heading
    after_break = True  # the previous line ended a block (blank, heading, fence, start of body)
    pos = start
    for line in text[start:].split("\n"):
        offset, pos = pos, pos + len(line) + 1
        match = _FENCE.match(line)
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence, after_break = None, True
            continue
        if match:
            fence, candidate = match.group(1), None
            continue
        atx = _ATX.match(line)
        setext = _SETEXT.match(line)
        if atx or (setext and candidate):
            if atx:
                offset, level, label = offset, len(atx.group(1)), clean_heading(atx.group(2) or "")
            else:
                offset, level, label = candidate[0], 1 if setext.group(1)[0] == "=" else 2, clean_heading(candidate[1])
            if label:
                headings.append((offset, level, label))
            candidate, after_break = None, True
        elif not line.strip():
            candidate, after_break = None, True
        else:
            stripped = line.lstrip()
            block = line.startswith(("    ", "\t")) or stripped.startswith(("- ", "* ", "+ ", ">", "|", "<")) \
                or re.match(r"\d+[.)] ", stripped) is not None
            candidate = (offset, line) if after_break and not block else None
            after_break = False
    return tuple(headings)


def clean_heading(raw: str) -> str:
    """Heading text without Markdown emphasis and link syntax."""
    return " ".join(_INLINE.sub(lambda m: m.group(1) or "", raw).split())


def _front_matter(text: str) -> tuple[int, str]:
    """(where the body starts, the front matter's ``title:``) for a leading ``---`` YAML block."""
    if not text.startswith("---\n"):
        return 0, ""
    end = text.find("\n---", 3)
    if end < 0 or text[end + 4:end + 5] not in ("\n", ""):
        return 0, ""
    match = _FRONT_TITLE.search(text, 4, end)
    title = match.group(1).strip("'\"") if match else ""
    return end + 4, title


def _first_title(headings: tuple[tuple[int, int, str], ...]) -> str:
    top = [h for h in headings if h[1] == 1]
    return (top or list(headings) or [(0, 0, "")])[0][2]
