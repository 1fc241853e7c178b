"""Zip containers (.docx): sizes and compression ratios checked before any parser inflates them.

A 2.5 MB .docx whose document.xml inflates to 1 GB ran python-docx past 240 s and 2.8 GB of
memory. The members' headers are checked first (declared size, ratio), then every member is
inflated once into nothing, counting, because headers can lie: reading stops at the limit.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ingest.errors import IngestError
from ingest.limits import MB, IngestLimits

# Small members (styles, rels) of real files may compress well past any ratio; their size bounds them.
RATIO_FLOOR = MB
_BLOCK = MB


def check_zip(path: Path, source: str, limits: IngestLimits, kind: str) -> None:
    """Raise IngestError unless every member of the zip at ``path`` inflates within ``limits``.

    ``kind`` names the format in messages (".docx"). A file that is not a zip is reported as such.
    """
    budget = limits.max_inflated_mb * MB
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            declared = sum(info.file_size for info in infos)
            if declared > budget:
                raise _too_large(source, kind, f"{declared / MB:.1f} MB", limits)
            for info in infos:
                _check_ratio(source, kind, info, info.file_size, limits)
            total = 0
            for info in infos:
                inflated = 0
                with archive.open(info) as member:
                    while block := member.read(_BLOCK):
                        inflated += len(block)
                        total += len(block)
                        if total > budget:
                            raise _too_large(source, kind, "more than its headers declare", limits)
                        _check_ratio(source, kind, info, inflated, limits)
    except zipfile.BadZipFile as exc:
        raise IngestError(source, f"not a valid {kind} (not a zip archive, or a damaged one: {exc}); check that the "
                                  f"extension matches the content, or re-save it as {kind}") from None
    except (zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise IngestError(source, f"unreadable {kind} archive ({type(exc).__name__}: {exc}); "
                                  f"re-save it as {kind}") from None


def _check_ratio(source: str, kind: str, info: zipfile.ZipInfo, inflated: int, limits: IngestLimits) -> None:
    if inflated <= RATIO_FLOOR:
        return
    ratio = inflated / max(info.compress_size, 1)
    if ratio > limits.max_compression_ratio:
        raise IngestError(source, f"refused: member {info.filename} inflates {ratio:.0f}x (to {inflated / MB:.0f} MB "
                                  f"or more), over the limit of {limits.max_compression_ratio:g}x (setting "
                                  "ingest.max_compression_ratio): a zip bomb? raise the setting in config.yaml only "
                                  "if you trust the file")


def _too_large(source: str, kind: str, size: str, limits: IngestLimits) -> IngestError:
    return IngestError(source, f"refused: the {kind} inflates to {size}, over the limit of {limits.max_inflated_mb:g} MB "
                               "(setting ingest.max_inflated_mb): a zip bomb? raise the setting in config.yaml only if "
                               "you trust the file")
