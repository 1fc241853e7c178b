"""Fixtures for loader and chunking tests: the real MiniLM tokenizer and real PDF/DOCX files built here."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The embedded MiniLM's fast tokenizer (the one chunks are sized in); no model weights are loaded."""
    from transformers import AutoTokenizer

    from retrieval.embedding import resolve_embedder

    return AutoTokenizer.from_pretrained(resolve_embedder(None))


def _build_pdf(path: Path, pages: list[list[str]], title: str | None = None, outline: dict[int, str] | None = None,
              encrypt=None) -> Path:
    """Write a real PDF with reportlab: one list of text lines per page, optional metadata title,
    outline entries {page_index: title} and an ``encrypt`` (reportlab StandardEncryption)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, encrypt=encrypt)
    if title:
        c.setTitle(title)
    for index, lines in enumerate(pages):
        if outline and index in outline:
            key = f"p{index}"
            c.bookmarkPage(key)
            c.addOutlineEntry(outline[index], key, level=0)
        y = 800
        for line in lines:
            c.drawString(72, y, line)
            y -= 16
        c.showPage()
    c.save()
    return path


def _build_docx(path: Path, blocks: list[tuple[str, object]], title: str | None = None) -> Path:
    """Write a real .docx with python-docx. Blocks: ("title", text), ("h1".."h3", text), ("p", text), ("bullet", text),
    ("table", [[cell, ...], ...])."""
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    for kind, value in blocks:
        if kind == "title":
            document.add_heading(value, level=0)  # the Title style
        elif kind.startswith("h"):
            document.add_heading(value, level=int(kind[1:]))
        elif kind == "p":
            document.add_paragraph(value)
        elif kind == "bullet":
            document.add_paragraph(value, style="List Bullet")
        elif kind == "table":
            table = document.add_table(rows=len(value), cols=len(value[0]))
            for r, row in enumerate(value):
                for k, cell in enumerate(row):
                    table.cell(r, k).text = cell
        else:
            raise ValueError(kind)
    document.save(str(path))
    return path


@pytest.fixture
def build_pdf():
    """The PDF builder: ``build_pdf(path, pages, title=None, outline=None, encrypt=None) -> path``."""
    return _build_pdf


@pytest.fixture
def build_docx():
    """The DOCX builder: ``build_docx(path, blocks, title=None) -> path``."""
    return _build_docx
