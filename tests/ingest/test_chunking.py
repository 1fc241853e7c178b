"""Chunking: exact offsets, token budget, overlap, heading paths, page provenance, and speed on huge lines."""

from __future__ import annotations

import random
import time

import pytest

from ingest.chunking import ChunkingSettings, ChunkSpan, chunk_document
from ingest.loaders import ExtractedDocument, load_document
from ragtune.workspace import WorkspaceError, fill_settings

SMALL = ChunkingSettings(chunk_tokens=48, overlap_tokens=12)


def _prose(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = "retrieval index vector query answer model token chunk page citation adapter server".split()
    sentences = []
    for i in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(5, 14)))
        sentences.append(f"Sentence {i} says {body}.")
    return " ".join(sentences)


def _doc(text: str, **kwargs) -> ExtractedDocument:
    return ExtractedDocument(source="mem.txt", title="mem", format=kwargs.pop("format", "txt"), text=text, **kwargs)


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _assert_exact(doc: ExtractedDocument, spans: list[ChunkSpan]):
    for span in spans:
        assert doc.text[span.start:span.end] == span.text


# --- offsets, budget, overlap -------------------------------------------------------------------

def test_every_chunk_is_the_exact_slice_of_the_document_text(minilm_tokenizer):
    doc = _doc("\n\n".join(_prose(12, seed) for seed in range(6)))
    spans = chunk_document(doc, minilm_tokenizer, SMALL)
    assert len(spans) > 10
    _assert_exact(doc, spans)


def test_no_chunk_exceeds_chunk_tokens_special_tokens_included(minilm_tokenizer):
    doc = _doc(_prose(200))
    spans = chunk_document(doc, minilm_tokenizer, SMALL)
    encoded = [len(minilm_tokenizer(s.text)["input_ids"]) for s in spans]  # with [CLS] and [SEP], as embedded
    assert max(encoded) == SMALL.chunk_tokens
    counts = [_tokens(minilm_tokenizer, s.text) for s in spans]
    assert [s.tokens for s in spans] == counts
    assert min(counts[:-1]) >= SMALL.chunk_tokens // 2  # cuts prefer boundaries, but never make tiny chunks


def test_consecutive_chunks_overlap_by_at_most_overlap_tokens(minilm_tokenizer):
    doc = _doc(_prose(120))
    spans = chunk_document(doc, minilm_tokenizer, SMALL)
    for a, b in zip(spans, spans[1:]):
        assert a.start < b.start < a.end, "the next chunk starts inside the previous one"
        shared = doc.text[b.start:a.end]
        assert 0 < _tokens(minilm_tokenizer, shared) <= SMALL.overlap_tokens


def test_zero_overlap_chunks_are_disjoint_and_cover_every_word(minilm_tokenizer):
    doc = _doc(_prose(120))
    spans = chunk_document(doc, minilm_tokenizer, ChunkingSettings(chunk_tokens=48, overlap_tokens=0))
    for a, b in zip(spans, spans[1:]):
        assert a.end <= b.start
        assert not doc.text[a.end:b.start].strip()
    assert spans[0].start == 0 and spans[-1].end == len(doc.text)


def test_chunks_end_at_sentence_ends_when_one_fits(minilm_tokenizer):
    doc = _doc(_prose(120))
    spans = chunk_document(doc, minilm_tokenizer, SMALL)
    assert all(s.text.endswith(".") for s in spans)


def test_overlap_starts_at_a_sentence_or_word_start(minilm_tokenizer):
    doc = _doc(_prose(120))
    for span in chunk_document(doc, minilm_tokenizer, SMALL)[1:]:
        assert doc.text[span.start - 1] == " " and span.text[0].isalnum()


def test_paragraph_break_is_preferred_over_a_later_sentence_end(minilm_tokenizer):
    first, second = _prose(2, seed=1), _prose(6, seed=2)
    doc = _doc(f"{first}\n\n{second}")
    assert _tokens(minilm_tokenizer, first) > SMALL.chunk_tokens // 2
    spans = chunk_document(doc, minilm_tokenizer, ChunkingSettings(chunk_tokens=48, overlap_tokens=0))
    assert spans[0].text == first


def test_short_document_is_one_chunk_without_surrounding_whitespace(minilm_tokenizer):
    doc = _doc("\n\n   A short note.  \n")
    assert [(s.text, s.start, s.page, s.heading) for s in chunk_document(doc, minilm_tokenizer)] == \
        [("A short note.", 5, None, "")]


def test_whitespace_only_text_yields_no_chunks(minilm_tokenizer):
    assert chunk_document(_doc(" \n\n\t"), minilm_tokenizer) == []


# --- structure: headings and pages --------------------------------------------------------------

def test_markdown_headings_become_heading_paths(tmp_path, minilm_tokenizer):
    path = tmp_path / "guide.md"
    path.write_text("Preamble text.\n\n# Guide\n\nOverview.\n\n## Install\n\nRun pip.\n\n## Usage\n\nAsk.\n\n"
                    "# Reference\n\nFlags.\n")
    doc = load_document(path)
    spans = chunk_document(doc, minilm_tokenizer)
    _assert_exact(doc, spans)
    assert [(s.heading, s.text) for s in spans] == [
        ("", "Preamble text."),
        ("Guide", "# Guide\n\nOverview."),
        ("Guide > Install", "## Install\n\nRun pip."),
        ("Guide > Usage", "## Usage\n\nAsk."),
        ("Reference", "# Reference\n\nFlags."),
    ]


def test_a_heading_with_no_body_opens_the_next_sections_first_chunk(tmp_path, minilm_tokenizer):
    path = tmp_path / "a.md"
    path.write_text("# Manual\n\n## Setup\n\nInstall it.\n")
    spans = chunk_document(load_document(path), minilm_tokenizer)
    assert [(s.heading, s.text) for s in spans] == [("Manual > Setup", "# Manual\n\n## Setup\n\nInstall it.")]


def test_long_section_chunks_all_carry_its_heading(tmp_path, minilm_tokenizer):
    path = tmp_path / "a.md"
    path.write_text(f"# Top\n\n## Deep\n\n{_prose(60)}\n\n## Next\n\nEnd.\n")
    doc = load_document(path)
    spans = chunk_document(doc, minilm_tokenizer, SMALL)
    _assert_exact(doc, spans)
    assert {s.heading for s in spans[:-1]} == {"Top > Deep"} and spans[-1].heading == "Top > Next"
    assert len(spans) > 5


def test_html_headings_become_heading_paths(tmp_path, minilm_tokenizer):
    path = tmp_path / "a.html"
    path.write_text("<h1>API</h1><p>Intro.</p><h2>Auth</h2><p>Use a token.</p><h3>Scopes</h3><p>read, write</p>"
                    "<h2>Limits</h2><p>100 per minute.</p>")
    doc = load_document(path)
    spans = chunk_document(doc, minilm_tokenizer)
    _assert_exact(doc, spans)
    assert [s.heading for s in spans] == ["API", "API > Auth", "API > Auth > Scopes", "API > Limits"]


def test_docx_heading_styles_become_heading_paths(tmp_path, minilm_tokenizer, build_docx):
    path = build_docx(tmp_path / "a.docx", [("h1", "Handbook"), ("p", "Welcome."), ("h2", "Leave"),
                                            ("table", [["Type", "Days"], ["annual", "25"]]), ("h2", "Pay"), ("p", "Monthly.")])
    doc = load_document(path)
    spans = chunk_document(doc, minilm_tokenizer)
    _assert_exact(doc, spans)
    assert [(s.heading, s.text) for s in spans] == [
        ("Handbook", "Handbook\n\nWelcome."),
        ("Handbook > Leave", "Leave\n\nType | Days\nannual | 25"),
        ("Handbook > Pay", "Pay\n\nMonthly."),
    ]


def test_pdf_chunks_carry_their_page_and_never_cross_a_page(tmp_path, minilm_tokenizer, build_pdf):
    rng = random.Random(3)
    words = "alpha beta gamma delta epsilon zeta theta kappa".split()
    pages = [[" ".join(rng.choice(words) for _ in range(10)) + "." for _ in range(30)] for _ in range(3)]
    doc = load_document(build_pdf(tmp_path / "long.pdf", pages, title="Long"))
    spans = chunk_document(doc, minilm_tokenizer, SMALL)
    _assert_exact(doc, spans)
    assert {s.page for s in spans} == {1, 2, 3}
    bounds = {n: (start, end) for n, start, end in doc.pages}
    for span in spans:
        start, end = bounds[span.page]
        assert start <= span.start < span.end <= end
        assert _tokens(minilm_tokenizer, span.text) <= SMALL.chunk_tokens


def test_short_pdf_pages_are_never_merged(tmp_path, minilm_tokenizer, build_pdf):
    doc = load_document(build_pdf(tmp_path / "a.pdf", [["One."], ["Two."], ["Three."]]))
    spans = chunk_document(doc, minilm_tokenizer)
    assert [(s.page, s.text) for s in spans] == [(1, "One."), (2, "Two."), (3, "Three.")]


def test_pdf_outline_heading_carries_over_to_following_pages(tmp_path, minilm_tokenizer, build_pdf):
    doc = load_document(build_pdf(tmp_path / "a.pdf", [["Intro", "Hello."], ["Methods", "We measured."], ["More data."]],
                                  outline={0: "Intro", 1: "Methods"}))
    spans = chunk_document(doc, minilm_tokenizer)
    assert [(s.page, s.heading) for s in spans] == [(1, "Intro"), (2, "Methods"), (3, "Methods")]


# --- huge and odd input -------------------------------------------------------------------------

def test_three_megabyte_single_line_file_ingests_and_chunks_without_quadratic_splitting(tmp_path, minilm_tokenizer):
    path = tmp_path / "one-line.txt"
    path.write_text(_prose(40_000, seed=7)[:3_000_000])
    assert path.stat().st_size >= 3_000_000 and b"\n" not in path.read_bytes()
    began = time.perf_counter()
    doc = load_document(path)
    spans = chunk_document(doc, minilm_tokenizer)
    elapsed = time.perf_counter() - began
    # ~3 s on an idle machine, 38 s beside a training run; a quadratic splitter (LangChain's on one
    # line) takes many minutes: the bound catches that, not a slow machine (bench/ measures speed)
    assert elapsed < 180, f"chunking 3 MB took {elapsed:.1f}s"
    assert max(s.tokens for s in spans) <= 256 - 2
    assert spans[0].start == 0 and spans[-1].end == len(doc.text)
    sample = spans[:: max(1, len(spans) // 50)]
    _assert_exact(doc, sample)


def test_megabytes_without_any_space_still_chunk_to_bounded_sizes(minilm_tokenizer):
    rng = random.Random(0)
    doc = _doc("".join(rng.choice("abcdef0123456789") for _ in range(1_000_000)))
    began = time.perf_counter()
    spans = chunk_document(doc, minilm_tokenizer)
    assert time.perf_counter() - began < 20
    assert max(len(s.text) for s in spans) <= 256 * 12
    assert max(s.tokens for s in spans) <= 256 - 2
    assert "".join(s.text for s in spans) == doc.text


def test_a_long_section_read_in_windows_gives_the_chunks_of_one_pass(minilm_tokenizer, monkeypatch):
    import ingest.chunking as chunking

    doc = _doc(_prose(3000, seed=3))
    whole = chunk_document(doc, minilm_tokenizer, SMALL)
    monkeypatch.setattr(chunking, "WINDOW_CHARS", 4000)  # ~50 windows instead of one
    windowed = chunk_document(doc, minilm_tokenizer, SMALL)
    assert len(doc.text) > 40 * 4000
    assert [(s.start, s.end) for s in windowed] == [(s.start, s.end) for s in whole]


MEASURE = """
import json, resource, sys
from pathlib import Path
from transformers import AutoTokenizer
from ingest.chunking import chunk_document
from ingest.loaders import load_document
from retrieval.embedding import resolve_embedder

tok = AutoTokenizer.from_pretrained(resolve_embedder(None))
tok("warm up", return_offsets_mapping=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
doc = load_document(Path(sys.argv[1]))
spans = chunk_document(doc, tok)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"growth": growth, "chunks": len(spans), "exact": all(doc.text[s.start:s.end] == s.text for s in spans)}))
"""


def test_chunking_a_large_text_holds_a_small_multiple_of_it_in_memory(tmp_path):
    # A fresh process: its peak RSS (which counts the Rust tokenizer, unlike tracemalloc) grows
    # only with this file. Before chunking in windows, 50 MB peaked at 5.3 GB (~100x the file).
    import json
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "big.txt"
    path.write_text("\n\n".join(_prose(400, seed) for seed in range(90)))
    size = path.stat().st_size
    assert size > 2_500_000
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["exact"] and row["chunks"] > 1000
    # ~16x here (tens of MB are fixed: the tokenizer's pools, one window); 55x before the fix
    assert row["growth"] < 30 * size, f"peak memory grew {row['growth'] / size:.0f}x the file"


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A small byte-level BPE tokenizer trained here: merges across cut points, unlike WordPiece."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([_prose(300, seed) for seed in range(5)],
                            trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_bpe_tokenizer_chunks_stay_within_budget_and_exact(bpe_tokenizer):
    doc = _doc(_prose(150, seed=9) + " Ünïcödé ✓ 日本語のテキスト " * 20)
    settings = ChunkingSettings(chunk_tokens=40, overlap_tokens=8)
    spans = chunk_document(doc, bpe_tokenizer, settings)
    _assert_exact(doc, spans)
    assert max(len(bpe_tokenizer(s.text)["input_ids"]) for s in spans) <= 40


# --- settings -----------------------------------------------------------------------------------

def test_settings_come_from_the_chunking_config_section():
    settings = fill_settings(ChunkingSettings, {"chunk_tokens": 128}, {"overlap_tokens": 16})
    assert settings == ChunkingSettings(chunk_tokens=128, overlap_tokens=16)


@pytest.mark.parametrize("values", [{"chunk_tokens": 4}, {"chunk_tokens": 64, "overlap_tokens": 40},
                                    {"overlap_tokens": -1}])
def test_impossible_settings_are_rejected_naming_the_field(values):
    with pytest.raises(WorkspaceError) as info:
        fill_settings(ChunkingSettings, values, origin="config.yaml [chunking]")
    assert "config.yaml [chunking]" in str(info.value)
    assert any(name in str(info.value) for name in values)


def test_chunk_tokens_above_the_tokenizer_maximum_is_rejected(minilm_tokenizer):
    with pytest.raises(ValueError, match="exceeds"):
        chunk_document(_doc("text"), minilm_tokenizer, ChunkingSettings(chunk_tokens=10_000, overlap_tokens=0))
