"""Document loaders, one module per format, registered by file extension.

``load_document(path)`` picks the loader from the extension and returns an ``ExtractedDocument``;
every problem a user can cause (missing file, unsupported type, empty, binary, corrupt, encrypted)
comes back as one ``IngestError`` naming the file, the reason and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ingest.errors import IngestError
from ingest.limits import IngestLimits
from ingest.loaders.docx import load_docx
from ingest.loaders.document import ExtractedDocument
from ingest.loaders.html import load_html
from ingest.loaders.markdown import load_markdown
from ingest.loaders.pdf import load_pdf
from ingest.loaders.text import load_text

__all__ = ["ExtractedDocument", "LOADERS", "SUPPORTED_EXTENSIONS", "load_document", "reader_version"]

LOADERS: dict[str, Callable[[Path, str, IngestLimits], ExtractedDocument]] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(LOADERS)

# Bump a loader's version whenever what it extracts from the same bytes changes (PDF tables read as
# rows, say): a knowledge base re-reads the documents that an older version extracted, so their
# chunks match what a fresh ingest would give, though the files are unchanged.
READER_VERSIONS: dict[Callable[[Path, str, IngestLimits], ExtractedDocument], int] = {
    load_text: 1,
    load_markdown: 1,
    load_html: 2,  # 2: lists nested past 8 levels share one indent (and no longer overflow the stack)
    load_pdf: 1,
    load_docx: 1,
}


def reader_version(path: Path) -> str:
    """The loader and its version that read ``path`` ("pdf-1"), stored with the document's chunks."""
    loader = LOADERS.get(Path(path).suffix.lower())
    if loader is None:
        return ""
    return f"{loader.__name__.removeprefix('load_')}-{READER_VERSIONS[loader]}"


def load_document(path: Path, source: str | None = None, limits: IngestLimits | None = None) -> ExtractedDocument:
    """Load one file with the loader for its extension; ``source`` (default: ``str(path)``) names it.

    ``limits`` (default: ``IngestLimits()``) bound what one file may cost: its size, and for
    zip-based formats what its members inflate to; a file over them is an IngestError naming the setting.
    """
    path = Path(path)
    source = source if source is not None else str(path)
    if not path.exists():
        raise IngestError(source, "no such file; check the path")
    if not path.is_file():
        raise IngestError(source, "not a regular file; pass files, or a folder to the ingest command")
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        kind = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise IngestError(source, f"unsupported file type ({kind}); supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))}")
    return loader(path, source, limits or IngestLimits())
