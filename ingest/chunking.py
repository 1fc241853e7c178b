"""Token-sized, structure-aware chunks with exact character offsets.

A document is first cut into sections (one per heading, never across a PDF page), then each
section into chunks of at most ``chunk_tokens`` embedder tokens. Cuts prefer, in order, a
paragraph break, a line break, a sentence end, a space, and the next chunk starts up to
``overlap_tokens`` back at a sentence or word start. The same separator hierarchy as
LangChain's ``RecursiveCharacterTextSplitter``, but measured on one tokenization of the
section (the fast tokenizer's offset mapping) instead of re-tokenizing every candidate piece:
linear in the text, exact to the token, so a 3 MB single-line file takes seconds, not minutes.
Every chunk satisfies ``doc.text[span.start:span.end] == span.text``.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from dataclasses import dataclass

from ingest.loaders import ExtractedDocument

log = logging.getLogger(__name__)

# A chunk also ends after this many characters per token of budget: keeps chunks of
# tokenizer-opaque text (a 3 MB run without spaces is one [UNK] to WordPiece) a sane size.
MAX_CHARS_PER_TOKEN = 12
_SENTENCE_END = frozenset(".!?;:")
_WHITESPACE_RUN = re.compile(r"(?<=\S)\s")
_NON_SPACE = re.compile(r"\S")
# Characters of a section tokenized at a time: bounds chunking's memory to a few times the
# file (token offsets cost ~100 bytes per token in Python) instead of ~100 times.
WINDOW_CHARS = 1 << 18
# Chunks whose tokens are re-counted in one tokenizer call (the same bound, for _enforce_budget).
_COUNT_BATCH = 1024


@dataclass(frozen=True)
class ChunkingSettings:
    """How documents are cut into chunks (config.yaml section ``chunking``)."""

    chunk_tokens: int = 256
    """Embedder tokens per chunk, special tokens ([CLS], [SEP]) included, so at most the embedder's
    max_seq_length (256 for MiniLM) and nothing is truncated when embedding.
    Smaller = more precise citations and more vectors; larger = more context per hit, blurrier embeddings."""
    overlap_tokens: int = 32
    """Tokens repeated at the start of the next chunk of a section, so a passage cut at a boundary
    stays findable; costs about overlap/chunk extra vectors."""

    def __post_init__(self):
        if self.chunk_tokens < 8:
            raise ValueError(f"chunk_tokens must be at least 8, got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens <= self.chunk_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be between 0 and chunk_tokens/2 ({self.chunk_tokens // 2}), got {self.overlap_tokens}")


@dataclass(frozen=True)
class ChunkSpan:
    """One chunk of a document and where it came from; ``text == doc.text[start:end]``."""

    text: str
    start: int
    end: int
    page: int | None  # 1-based PDF page, None for other formats
    heading: str  # heading path, "Setup > Install"; "" before the first heading
    tokens: int = 0  # embedder tokens in ``text``, special tokens not counted


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    page: int | None
    heading: str
    opens_with_heading: bool


def chunk_document(doc: ExtractedDocument, tokenizer, settings: ChunkingSettings = ChunkingSettings()) -> list[ChunkSpan]:
    """Cut ``doc`` into chunks that encode to at most ``settings.chunk_tokens`` tokens of ``tokenizer``.

    ``tokenizer`` is the embedder's fast Hugging Face tokenizer (``Embedder(...).tokenizer``); the
    count includes the special tokens it adds, so a chunk is never truncated by the embedder.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("chunk_document needs a fast (Rust-backed) Hugging Face tokenizer for character offsets")
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and settings.chunk_tokens > limit:
        raise ValueError(f"chunk_tokens={settings.chunk_tokens} exceeds the tokenizer's maximum of {limit} tokens")
    # The embedder sees [CLS] chunk [SEP]: the special tokens count against max_seq_length too.
    budget = settings.chunk_tokens - tokenizer.num_special_tokens_to_add(pair=False)
    text = doc.text
    spans: list[ChunkSpan] = []
    for section in _merge_bare_headings(_sections(doc), text):
        for start, end in _split(text, section.start, section.end, tokenizer, budget, settings.overlap_tokens):
            spans.append(ChunkSpan(text=text[start:end], start=start, end=end, page=section.page, heading=section.heading))
    return _enforce_budget(spans, text, tokenizer, budget)


def _sections(doc: ExtractedDocument) -> list[_Section]:
    """Cut the text at every heading and page boundary; each piece carries its page and heading path."""
    pages = doc.pages or ((None, 0, len(doc.text)),)
    headings = sorted(doc.headings)
    stack: list[tuple[int, str]] = []  # (level, text) of the open headings
    sections: list[_Section] = []
    h = 0

    def open_heading(level: int, label: str):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, label))

    for page, page_start, page_end in pages:
        while h < len(headings) and headings[h][0] < page_start:  # headings in page separators
            open_heading(headings[h][1], headings[h][2])
            h += 1
        pos, opens = page_start, False
        while h < len(headings) and headings[h][0] < page_end:
            offset, level, label = headings[h]
            if offset > pos:
                sections.append(_Section(pos, offset, page, _path(stack), opens))
            open_heading(level, label)
            pos, opens = offset, True
            h += 1
        if page_end > pos:
            sections.append(_Section(pos, page_end, page, _path(stack), opens))
    return sections


def _path(stack: list[tuple[int, str]]) -> str:
    return " > ".join(label for _, label in stack)


def _merge_bare_headings(sections: list[_Section], text: str) -> list[_Section]:
    """Fold a heading with no body ("# Guide" right before "## Install") into the next section on its page.

    A chunk that is only a heading matches queries by accident and cites nothing; as the first
    line of the next section's first chunk it gives that chunk its context instead.
    """
    merged: list[_Section] = []
    carry: _Section | None = None
    for i, section in enumerate(sections):
        if carry is not None:
            section = _Section(carry.start, section.end, section.page, section.heading, True)
            carry = None
        nxt = sections[i + 1] if i + 1 < len(sections) else None
        if section.opens_with_heading and nxt is not None and nxt.page == section.page and nxt.start == section.end:
            first_line_end = text.find("\n", section.start, section.end)
            body = text[first_line_end:section.end] if first_line_end >= 0 else ""
            if not body.strip(" \t\n=-#"):
                carry = section
                continue
        merged.append(section)
    return merged


def _split(text: str, start: int, end: int, tokenizer, budget: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) character spans of the chunks of ``text[start:end]``, each at most ``budget`` tokens.

    A long section is read in windows of about ``WINDOW_CHARS``: each window's tokens give its
    chunks up to the last one the window's end could cut short, and the next window starts where
    that chunk starts. Memory stays bounded by the window (tokenizing 50 MB at once took 5 GB),
    and the chunks are those one pass over the whole section would give, up to how the tokenizer
    reads the first word of a window.
    """
    if _NON_SPACE.search(text, start, end) is None:
        return []
    window_chars = max(WINDOW_CHARS, 4 * budget * MAX_CHARS_PER_TOKEN)  # always room for whole chunks
    chunks: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        stop = end
        if end - pos > window_chars:  # end the window where a whitespace run starts: no token is cut
            match = _WHITESPACE_RUN.search(text, pos + window_chars, min(end, pos + 2 * window_chars))
            stop = match.start() if match else pos + window_chars
        found, resume = _split_window(text, pos, stop, tokenizer, budget, overlap, last=stop >= end)
        chunks.extend(found)
        if resume is None:
            break
        pos = max(resume, pos + 1)  # always forward, whatever the tokenizer's offsets
    return chunks


def _split_window(text: str, start: int, end: int, tokenizer, budget: int, overlap: int,
                  last: bool) -> tuple[list[tuple[int, int]], int | None]:
    """The chunks of ``text[start:end]`` and where the next window starts (None when ``last``).

    Unless ``last``, the chunk that reaches the window's end is not emitted: the text after the
    window could extend it, so the next window starts at its start instead.
    """
    segment = text[start:end]
    max_chars = budget * MAX_CHARS_PER_TOKEN
    units: list[tuple[int, int]] = []
    for s, e in _token_offsets(segment, tokenizer):
        if e <= s:
            continue  # zero-width tokens (some tokenizers emit them for stripped characters)
        while e - s > max_chars:  # an opaque run longer than a whole chunk: cut it by characters
            units.append((s, s + max_chars))
            s += max_chars
        units.append((s, e))
    if not units:
        return [], None
    ends = [e for _, e in units]
    chunks: list[tuple[int, int]] = []
    i, n = 0, len(units)
    while i < n:
        j = min(i + budget, n)
        j = max(i + 1, bisect_right(ends, units[i][0] + max_chars, i, j))
        if j == n and not last and i > 0:
            return chunks, start + units[i][0]
        if j == n:
            k = n
        else:
            lowest = i + max(1, (j - i) // 2)
            k = max(range(lowest, j + 1), key=lambda m: (_boundary(segment, units, m), m))
        chunks.append((start + units[i][0], start + units[k - 1][1]))
        if k >= n:  # the window's last chunk; before the section's end only if no chunk fits in it whole
            return chunks, None if last else start + units[-1][1]
        window = range(max(i + 1, k - overlap), k)
        if window:  # overlap: start at the earliest sentence start in the window, else word start
            best = max(window, key=lambda m: (min(_boundary(segment, units, m), 2), -m))
            i = best if _boundary(segment, units, best) else window.start
        else:
            i = k
    raise AssertionError("unreachable: the loop returns at its window's last chunk")


def _token_offsets(segment: str, tokenizer, piece_chars: int = 32_768) -> list[tuple[int, int]]:
    """Character offsets of every token of ``segment``.

    A long segment is tokenized as pieces cut where a whitespace run starts (where pre-tokenizers
    split anyway), in one batch call: the Rust tokenizer encodes a batch in parallel.
    """
    if len(segment) <= 2 * piece_chars:
        return tokenizer(segment, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    cuts, pos = [0], 0
    while pos + piece_chars < len(segment):
        match = _WHITESPACE_RUN.search(segment, pos + piece_chars, pos + 2 * piece_chars)
        pos = match.start() if match else pos + piece_chars  # no space at all: cut anyway (budget is re-checked)
        cuts.append(pos)
    cuts.append(len(segment))
    pieces = [segment[a:b] for a, b in zip(cuts, cuts[1:])]
    enc = tokenizer(pieces, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [(s + base, e + base) for base, offsets in zip(cuts, enc["offset_mapping"]) for s, e in offsets]


def _boundary(segment: str, units: list[tuple[int, int]], k: int) -> int:
    """How good a cut before unit ``k`` is: 4 paragraph, 3 line, 2 sentence, 1 space, 0 inside a word."""
    if k <= 0 or k >= len(units):
        return 4
    prev_end, nxt_start = units[k - 1][1], units[k][0]
    if nxt_start <= prev_end:
        return 0
    gap = segment[prev_end:nxt_start]
    newlines = gap.count("\n")
    if newlines >= 2:
        return 4
    if newlines:
        return 3
    if gap.isspace():
        return 2 if segment[prev_end - 1] in _SENTENCE_END else 1
    return 0


def _enforce_budget(spans: list[ChunkSpan], text: str, tokenizer, budget: int) -> list[ChunkSpan]:
    """Count every chunk's tokens on its own text and re-cut the rare one over budget.

    Re-tokenizing a piece can differ from the section's tokenization at its edges (BPE merges
    across a cut, a cut opaque run), so the budget is checked, never assumed.
    """
    if not spans:
        return spans
    counts: list[int] = []
    for first in range(0, len(spans), _COUNT_BATCH):
        batch = [s.text for s in spans[first:first + _COUNT_BATCH]]
        counts += [len(ids) for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]]
    out: list[ChunkSpan] = []
    for span, count in zip(spans, counts):
        if count <= budget:
            out.append(ChunkSpan(span.text, span.start, span.end, span.page, span.heading, count))
            continue
        smaller = max(1, budget - (count - budget) - 1)
        log.debug("chunk %d-%d has %d tokens > %d; re-cutting with a budget of %d", span.start, span.end, count, budget, smaller)
        pieces = _split(text, span.start, span.end, tokenizer, smaller, 0)
        if len(pieces) <= 1:  # cannot cut by tokens: halve by characters
            mid = (span.start + span.end) // 2
            pieces = [(span.start, mid), (mid, span.end)]
        sub = [ChunkSpan(text[s:e], s, e, span.page, span.heading) for s, e in pieces if text[s:e].strip()]
        out.extend(_enforce_budget(sub, text, tokenizer, budget))
    return out
