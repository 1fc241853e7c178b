"""Plain-text files, and the encoding detection every text-based format (md, html) shares."""

from __future__ import annotations

import codecs
from pathlib import Path

from ingest.errors import IngestError
from ingest.limits import MB, IngestLimits, check_file_size
from ingest.loaders.document import ExtractedDocument, sha256_of

# Longest BOMs first: the UTF-32-LE BOM begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control characters that never occur in real text (tab, newlines, form feed and ESC excluded).
_BINARY_CONTROLS = frozenset(range(0x00, 0x09)) | {0x0B, 0x0E, 0x0F} | frozenset(range(0x10, 0x1B)) | {0x1C, 0x1D, 0x1E, 0x1F}


def read_bytes(path: Path, source: str, limits: IngestLimits = IngestLimits()) -> bytes:
    """The file's bytes, or an IngestError that says why they cannot be read (or that they are over ``limits``)."""
    try:
        check_file_size(path, source, limits)
        with open(path, "rb") as fh:
            data = fh.read(int(limits.max_file_mb * MB) + 1)  # a file that grew since the check is still capped
        check_file_size(path, source, limits, len(data))
        return data
    except IsADirectoryError:
        raise IngestError(source, "is a directory; pass files, or a folder to the ingest command") from None
    except PermissionError:
        raise IngestError(source, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise IngestError(source, f"cannot read the file ({exc.strerror or exc}); check the path") from None


def decode_text(data: bytes, source: str, declared: str | None = None) -> str:
    """Decode text bytes: BOM, then a declared charset, then strict UTF-8, then charset-normalizer.

    Newlines are normalized to ``\\n``. Raises IngestError for binary data or an undetectable encoding.
    """
    text = None
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(encoding)
            except UnicodeDecodeError:
                raise IngestError(source, f"starts with a {encoding} byte-order mark but is not valid {encoding}; "
                                          "re-save it as UTF-8") from None
            break
    if text is None:
        sample = data[:65536]
        if b"\x00" in sample or sum(b in _BINARY_CONTROLS for b in sample) > len(sample) // 100 + 1:
            raise IngestError(source, "looks like a binary file (NUL or control bytes), not text; "
                                      "check that the extension matches the content")
        text = _decode_without_bom(data, declared)
        if text is None:
            raise IngestError(source, "cannot detect the text encoding; re-save the file as UTF-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode_without_bom(data: bytes, declared: str | None) -> str | None:
    if declared:
        try:
            return data.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong <meta charset> is common: fall through to detection
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    western = _as_western(data)
    if western is not None:
        return western
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return None if best is None else str(best)


# Non-letters that Western (Latin-1 / Windows-1252) prose commonly carries above ASCII.
_WESTERN_SYMBOLS = frozenset("\u00a0€‚„…†‡‰‹›‘’“”•–—™°±²³´µ¶·¸¹º»¼½¾¿×÷«¬®§©¡¢£¥¦¨¯")


def _as_western(data: bytes) -> str | None:
    """The Windows-1252 reading (a superset of Latin-1) if it looks like Western text, else None.

    Statistical detectors misread short Western text (charset-normalizer calls "café" UTF-16 and
    "très" cp1250 "trčs"), so this common case is decided first: mostly ASCII letters with
    isolated accented letters. Whole words of high bytes (Cyrillic, Greek, ...) are left to
    the detector.
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    high = [c for c in text if ord(c) > 127]
    if not all(c.isalpha() or c in _WESTERN_SYMBOLS for c in high):
        return None
    high_letters = sum(c.isalpha() for c in high)
    ascii_letters = sum(c.isascii() and c.isalpha() for c in text)
    return text if high_letters <= 0.3 * (high_letters + ascii_letters) else None


def require_text(text: str, source: str, what: str = "no text") -> str:
    """Return ``text`` unless it is empty or whitespace only."""
    if not text.strip():
        raise IngestError(source, f"{what}; nothing to ingest (add content or remove the file)")
    return text


def load_text(path: Path, source: str, limits: IngestLimits = IngestLimits()) -> ExtractedDocument:
    """A .txt file: its decoded text, titled by the file stem."""
    data = read_bytes(path, source, limits)
    if not data:
        raise IngestError(source, "empty file; nothing to ingest (add content or remove the file)")
    text = require_text(decode_text(data, source), source, "only whitespace")
    return ExtractedDocument(source=source, title=path.stem, format="txt", text=text, sha256=sha256_of(data))
