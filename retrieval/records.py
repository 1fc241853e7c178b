"""The records that cross package boundaries: documents, chunks, hits and citations."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage and exactly where it came from."""

    chunk_id: str  # stable: derived from the document's content hash and the chunk's position
    source: str  # the document's path as given to ingest
    title: str
    text: str
    start: int  # character offsets into the document's extracted text
    end: int
    page: int | None = None  # 1-based PDF page, None for other formats
    heading: str = ""  # heading path, "Intro > Setup"
    position: int = 0  # index of the chunk within its document

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a search, with its rank (1-based) and score (higher is better)."""

    chunk: Chunk
    score: float
    rank: int

    def to_dict(self) -> dict:
        """The flat JSON form that ``ragtune search --json`` prints."""
        c = self.chunk
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "source": c.source,
            "title": c.title,
            "page": c.page,
            "heading": c.heading,
            "start": c.start,
            "end": c.end,
            "chunk_id": c.chunk_id,
            "text": c.text,
        }


@dataclass(frozen=True)
class DocumentInfo:
    """A document as the store knows it."""

    source: str
    title: str
    sha256: str
    chunks: int
    pages: int | None
    ingested_at: str  # ISO 8601, UTC
    format: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
