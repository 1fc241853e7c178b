"""How much a single input may cost: the limits that keep one hostile or oversized file from
taking the machine down (config.yaml section ``ingest``; see docs/ingest-limits.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest.errors import IngestError

MB = 1024 * 1024


@dataclass(frozen=True)
class IngestLimits:
    """Per-file limits checked before a file is parsed (config.yaml section ``ingest``)."""

    max_file_mb: float = 100.0
    """Largest file read, in MiB. Chunking holds a few copies of the text, so memory grows with
    this; split larger files (or raise it on a machine with the memory)."""
    max_inflated_mb: float = 256.0
    """Most bytes, in MiB, that the members of a zip-based file (.docx) may inflate to, together:
    a 2.5 MB .docx can hold a 1 GB document.xml."""
    max_compression_ratio: float = 100.0
    """Largest inflated/compressed ratio of one zip member over 1 MiB. Office XML compresses
    5-20x, a zip bomb's run of zeros about 1000x."""

    def __post_init__(self):
        for name in ("max_file_mb", "max_inflated_mb", "max_compression_ratio"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def check_file_size(path: Path, source: str, limits: IngestLimits, size: int | None = None) -> int:
    """The file's size in bytes (``size`` if given, else its stat); an IngestError naming
    ``ingest.max_file_mb`` if it is over the limit. OSError from stat propagates."""
    if size is None:
        size = Path(path).stat().st_size
    if size > limits.max_file_mb * MB:
        raise IngestError(source, f"the file is {size / MB:.1f} MB, over the limit of {limits.max_file_mb:g} MB "
                                  "(setting ingest.max_file_mb); split it, or raise ingest.max_file_mb in config.yaml")
    return size
