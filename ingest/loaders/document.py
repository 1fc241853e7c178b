"""The record every loader returns: a document's faithful text plus the structure chunking needs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractedDocument:
    """A loaded document; chunk offsets, page spans and heading offsets all index into ``text``."""

    source: str  # the path as given by the user
    title: str  # first heading / <title> / PDF metadata title / docx core title, else the file stem
    format: str  # "txt" | "md" | "html" | "pdf" | "docx"
    text: str  # the faithfully extracted text
    pages: tuple[tuple[int, int, int], ...] = ()  # (page_number 1-based, start, end) spans into text; PDF only
    sha256: str = ""  # of the raw file bytes: the pipeline's change detector
    # (offset, level 1-6, heading text): where each heading's line starts in ``text``. Chunking turns
    # these into heading paths ("Setup > Install"); the heading text itself stays in ``text``.
    headings: tuple[tuple[int, int, str], ...] = ()


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of raw file bytes."""
    return hashlib.sha256(data).hexdigest()
