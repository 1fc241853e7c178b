"""The ingest pipeline: files and folders in, chunks and vectors in a knowledge base out.

``ingest_paths`` walks the paths, hashes every file and skips the ones whose bytes, chunking
settings and reader (the loader's version, ``reader_version``) match what the KB holds, without
loading the embedder; the rest are loaded, chunked, embedded in length-sorted batches and written
in transactions of about ``BATCH_CHUNKS`` chunks, each a new KB generation. A document is always
written whole, so a killed ingest leaves every document in its old or its new version, and running
it again continues where it stopped.
One bad file never stops a run: it becomes one line in ``IngestReport.failed``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ingest.chunking import ChunkingSettings, ChunkSpan, chunk_document
from ingest.errors import IngestError
from ingest.limits import IngestLimits
from ingest.loaders import SUPPORTED_EXTENSIONS, ExtractedDocument, load_document, reader_version
from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseWriter
from retrieval.records import Chunk
from retrieval.store import DocumentWrite, StoreFullError

log = logging.getLogger(__name__)

# Chunks embedded and committed together: large enough to sort by length like a bare encode()
# of everything would, small enough that a kill loses under a minute of work.
BATCH_CHUNKS = 1024


@dataclass(frozen=True)
class Failure:
    """A file (or path) that could not be ingested or removed, and why."""

    source: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest or remove did; ``to_dict`` is the ``--json`` summary."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)  # links (and unlistable folders) not followed, and why
    chunks_added: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON-ready dict: the lists, failures as {source, reason}, chunk count and seconds."""
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out

    def summary_line(self) -> str:
        """One human line: counts of each outcome, chunks and time."""
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged",
                 f"{len(self.removed)} removed", f"{len(self.failed)} failed"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return f"{', '.join(parts)}; {self.chunks_added} chunks embedded in {self.seconds:.1f}s"


@dataclass
class _Pending:
    path: Path
    source: str
    sha256: str
    size: int
    update: bool
    settings: dict  # what read and chunked it: stored with the document, compared on the next ingest


@dataclass
class _Prepared:
    pending: _Pending
    doc: ExtractedDocument
    spans: list[ChunkSpan]


def ingest_paths(kb: KnowledgeBase, paths: Iterable[str | os.PathLike], progress: bool = True,
                 settings: ChunkingSettings | None = None, limits: IngestLimits | None = None) -> IngestReport:
    """Add new, replace changed and skip unchanged documents under ``paths`` (files or folders).

    A folder is read recursively (hidden files and folders skipped); documents stored from below
    it whose files have since been deleted are removed, so re-ingesting a folder syncs the KB to it.
    Links inside a folder are followed only when they resolve inside it (``IngestReport.skipped``
    names the others); ``limits`` (config section ``ingest``) refuse oversized and zip-bomb files.
    Raises KBLockedError if another process is writing to the KB; every per-file problem is
    reported in ``IngestReport.failed`` instead of raised.
    """
    started = time.perf_counter()
    settings = settings or ChunkingSettings()
    limits = limits or IngestLimits()
    wanted = {"chunk_tokens": settings.chunk_tokens, "overlap_tokens": settings.overlap_tokens}
    report = IngestReport()
    files, folders = _expand(paths, report)
    with kb.writer() as writer:
        gone = _vanished(writer.sources(), folders, {link.source for link in report.skipped})
        if gone:
            writer.write(removals=gone)
            report.removed += gone
        todo: list[_Pending] = []
        for path, source in files:
            try:
                sha, size = _hash_file(path)
            except OSError as exc:
                report.failed.append(Failure(source, f"cannot read the file ({exc.strerror or exc}); check the path"))
                continue
            state = writer.document_state(source)
            reading = {**wanted, "reader": reader_version(path)}
            if state is not None and state == (sha, reading):
                report.unchanged.append(source)
                continue
            todo.append(_Pending(path, source, sha, size, update=state is not None, settings=reading))
        if todo:
            _load_embed_write(kb, writer, todo, settings, limits, report, progress)
    report.seconds = time.perf_counter() - started
    log.info("ingest into %s: %s", kb.name, report.summary_line())
    return report


def remove_documents(kb: KnowledgeBase, paths: Iterable[str | os.PathLike]) -> IngestReport:
    """Delete documents and their vectors, by source as ``kb list`` shows it or as ingested; a folder removes all below."""
    started = time.perf_counter()
    paths = [str(raw) for raw in paths]
    # "" is a prefix of every source (and abspath("") is the working directory): an empty
    # variable in a script would remove everything. Refuse before touching anything.
    if any(not raw.strip() for raw in paths):
        raise IngestError(repr(next((raw for raw in paths if not raw.strip()), "")),
                          "an empty or blank path would match every document; name the documents or folders "
                          f"to remove (see: ragtune kb list --kb {kb.name})")
    report = IngestReport()
    with kb.writer() as writer:
        stored = writer.sources()
        removals: dict[str, None] = {}
        for raw in paths:
            keys = {raw.rstrip(os.sep) or raw, os.path.abspath(os.path.expanduser(raw))}
            matched = [s for s in stored if s in keys or any(s.startswith(k + os.sep) for k in keys)]
            if not matched:
                report.failed.append(Failure(raw, f"not in knowledge base '{kb.name}'; see: ragtune kb list --kb {kb.name}"))
            removals.update(dict.fromkeys(matched))
        if removals:
            writer.write(removals=list(removals))
            report.removed = list(removals)
    report.seconds = time.perf_counter() - started
    return report


# -- steps ------------------------------------------------------------------------------------

def _expand(paths: Iterable[str | os.PathLike], report: IngestReport) -> tuple[list[tuple[Path, str]], list[str]]:
    """(file, source) pairs to consider, and the folders given; missing paths become failures."""
    files: dict[str, Path] = {}
    folders: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        source = os.path.abspath(path)
        if path.is_dir():
            folders.append(source)
            found, skipped = _walk(path)
            for link in skipped:
                log.warning("%s: %s", link.source, link.reason)
            report.skipped += skipped
            if not found:
                report.failed.append(Failure(str(raw), "no supported files in this folder (looked for "
                                                       f"{', '.join(sorted(SUPPORTED_EXTENSIONS))})"))
            for file in found:
                files.setdefault(os.path.abspath(file), file)
        elif path.is_file():
            files.setdefault(source, path)
        elif path.exists() or path.is_symlink():
            report.failed.append(Failure(str(raw), "not a regular file or folder (broken link, device or pipe)"))
        else:
            report.failed.append(Failure(str(raw), "no such file or folder; check the path"))
    return [(p, s) for s, p in files.items()], folders


def _walk(folder: Path) -> tuple[list[Path], list[Failure]]:
    """Supported files below ``folder`` (hidden ones skipped), and the links it did not follow.

    One rule for links to files and to folders: follow a link only if it resolves inside
    ``folder``. A link out of it (to /etc/passwd, say) would copy that file into the KB, where
    search and the server hand it to anyone. Real folders are read before linked ones and each
    once, so a file reached both ways keeps its real name and link loops end.
    """
    root = folder.resolve()
    files: dict[Path, Path] = {}  # real path -> the path it is ingested under
    linked_files: list[Path] = []
    linked_folders: list[Path] = []
    skipped: list[Failure] = []
    seen: set[Path] = set()
    stack = [folder]
    while stack or linked_folders:
        current = stack.pop() if stack else linked_folders.pop(0)
        real = current.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Failure(os.path.abspath(current), f"cannot list the folder ({exc.strerror or exc})"))
            continue
        subfolders: list[Path] = []
        for entry in entries:
            if entry.name.startswith((".", "~$")):
                continue
            path = Path(entry.path)
            wanted = os.path.splitext(entry.name)[1].lower() in SUPPORTED_EXTENSIONS
            if entry.is_symlink():
                target = Path(os.path.realpath(path))
                if not target.exists():
                    if wanted:
                        skipped.append(Failure(os.path.abspath(path), f"broken link to {target}; not followed"))
                elif not target.is_relative_to(root):
                    if wanted or target.is_dir():
                        skipped.append(Failure(os.path.abspath(path), f"link to {target}, outside the folder "
                                                                       f"being ingested ({folder}); not followed"))
                elif target.is_dir():
                    linked_folders.append(path)
                elif wanted and target.is_file():
                    linked_files.append(path)
            elif entry.is_dir(follow_symlinks=False):
                subfolders.append(path)
            elif wanted and entry.is_file(follow_symlinks=False):
                files.setdefault(path.resolve(), path)
        stack.extend(reversed(subfolders))
    for path in linked_files:
        files.setdefault(path.resolve(), path)
    return list(files.values()), skipped


def _vanished(stored: list[str], folders: list[str], skipped: set[str]) -> list[str]:
    """Stored documents under an ingested folder whose files no longer exist, or are links no longer followed."""
    return [s for s in stored if any(s.startswith(f + os.sep) for f in folders)
            and (s in skipped or not os.path.exists(s))]


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _load_embed_write(kb: KnowledgeBase, writer: KnowledgeBaseWriter, todo: list[_Pending], settings: ChunkingSettings,
                      limits: IngestLimits, report: IngestReport, progress: bool) -> None:
    tokenizer = None
    batch: list[_Prepared] = []
    done = 0  # items of ``todo`` loaded so far: on a full disk, the rest are reported as not stored
    with _Progress(sum(p.size for p in todo) or 1, len(todo), enabled=progress) as bar:
        try:
            for item in todo:
                done += 1
                doc = _guarded(item, report, bar, lambda: load_document(item.path, item.source, limits))
                if doc is None:
                    continue
                if tokenizer is None:  # first document that loads: only now is the embedder worth loading
                    tokenizer = _tokenizer(kb, settings)
                spans = _guarded(item, report, bar, lambda: _chunks(doc, tokenizer, settings))
                if spans is None:
                    continue
                batch.append(_Prepared(item, doc, spans))
                if sum(len(p.spans) for p in batch) >= BATCH_CHUNKS:
                    _embed_and_write(kb, writer, batch, report, bar)
                    batch = []
            if batch:
                _embed_and_write(kb, writer, batch, report, bar)
        except StoreFullError as exc:
            # The failed transaction rolled back whole and every later one would fail the same way:
            # stop, and name each document that is not in the KB (those stored before stay readable).
            log.info("%s", exc)
            reason = "not stored: the disk is full; free space and run the ingest again (stored documents are intact)"
            for source in [p.pending.source for p in batch] + [p.source for p in todo[done:]]:
                report.failed.append(Failure(source, reason))


def _guarded(item: _Pending, report: IngestReport, bar: "_Progress", step):
    """Run one per-file step; a failure is recorded (and the file counted done) instead of raised."""
    try:
        return step()
    except IngestError as exc:
        report.failed.append(Failure(item.source, exc.reason))
    except Exception as exc:  # a parser bug on one odd file must not stop the run
        log.debug("unexpected error on %s", item.source, exc_info=True)
        report.failed.append(Failure(item.source, f"could not be read ({type(exc).__name__}: {exc})"))
    bar.advance(item.size, 0, files=1)
    return None


def _chunks(doc: ExtractedDocument, tokenizer, settings: ChunkingSettings) -> list[ChunkSpan]:
    spans = chunk_document(doc, tokenizer, settings)
    if not spans:
        raise IngestError(doc.source, "no text to index: the extracted text is empty")
    return spans


def _tokenizer(kb: KnowledgeBase, settings: ChunkingSettings):
    """The embedder's tokenizer (loads the embedder), after checking chunks fit in its window."""
    limit = kb.embedder.max_tokens
    if settings.chunk_tokens > limit:
        raise IngestError("chunking settings", f"chunk_tokens={settings.chunk_tokens} exceeds the embedder's maximum "
                                               f"of {limit} tokens; set chunking.chunk_tokens to {limit} or less")
    return kb.embedder.tokenizer


def _embed_and_write(kb: KnowledgeBase, writer: KnowledgeBaseWriter, batch: list[_Prepared], report: IngestReport,
                     bar: "_Progress") -> None:
    """Embed a batch's chunks longest first (as SentenceTransformer.encode sorts) and commit it in one transaction."""
    owners = [(n, j) for n, p in enumerate(batch) for j in range(len(p.spans))]
    texts = [kb.passage(batch[n].doc.title, batch[n].spans[j].heading, batch[n].spans[j].text) for n, j in owners]
    weights = np.array([batch[n].pending.size / len(batch[n].spans) for n, _ in owners])
    order = np.argsort([-len(t) for t in texts], kind="stable")
    size = kb.embedder.batch_size
    vectors: np.ndarray | None = None
    for start in range(0, len(order), size):
        picked = order[start:start + size]
        vecs = kb.embedder.embed_documents([texts[i] for i in picked])
        if vectors is None:
            vectors = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
        vectors[picked] = vecs
        bar.advance(float(weights[picked].sum()), len(picked))
    upserts, offset = [], 0
    for prepared in batch:
        item, doc, spans = prepared.pending, prepared.doc, prepared.spans
        sha = doc.sha256 or item.sha256  # the loader hashed the bytes it actually read
        chunks = [Chunk(chunk_id=_chunk_id(item.source, sha, i), source=item.source, title=doc.title, text=s.text,
                        start=s.start, end=s.end, page=s.page, heading=s.heading, position=i)
                  for i, s in enumerate(spans)]
        upserts.append(DocumentWrite(source=item.source, title=doc.title, format=doc.format, sha256=sha, chunks=chunks,
                                     vectors=vectors[offset:offset + len(spans)], pages=len(doc.pages) or None,
                                     bytes=item.size, settings=item.settings))
        offset += len(spans)
    writer.write(upserts=upserts)
    for prepared in batch:
        (report.updated if prepared.pending.update else report.added).append(prepared.pending.source)
    report.chunks_added += len(texts)
    bar.advance(0, 0, files=len(batch))


def _chunk_id(source: str, sha256: str, position: int) -> str:
    """Stable across re-ingests of the same bytes at the same source; unique across sources."""
    return hashlib.sha256(f"{source}\0{sha256}\0{position}".encode()).hexdigest()[:20]


class _Progress:
    """A rich progress bar over the bytes to ingest (so its ETA covers reading and embedding), on stderr."""

    def __init__(self, total_bytes: float, files: int, enabled: bool):
        self.enabled = enabled
        self.files = files
        self._progress = None
        self._task = None
        self._chunks = 0
        self._files_done = 0
        self._total = total_bytes

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(
                TextColumn("ingesting"), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[files]}/{task.fields[total_files]} files, {task.fields[chunks]} chunks"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False)
            self._progress.start()
            self._task = self._progress.add_task("ingest", total=self._total, files=0, total_files=self.files, chunks=0)
        return self

    def advance(self, amount: float, chunks: int, files: int = 0) -> None:
        self._chunks += chunks
        self._files_done += files
        if self._progress is not None:
            self._progress.update(self._task, advance=amount, chunks=self._chunks, files=self._files_done)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
