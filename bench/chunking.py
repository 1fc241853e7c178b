"""Chunking speed and correctness: ragtune's offset-mapping chunker against LangChain's token splitter.

    .venv/bin/python bench/chunking.py            # prints a table, writes bench/results/chunking.json
    .venv/bin/python bench/chunking.py --memory   # peak memory of load + chunk per file size, as a ratio
                                                  # to the file: bench/results/chunking-memory.json

Baseline, in the same process on the same texts and tokenizer (the embedded MiniLM's):
``RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tok, chunk_size=256, chunk_overlap=32,
add_start_index=True)``. Figures: seconds and the speed-up (baseline / ours); chunks; the largest
chunk in tokens (budget 256); chunks whose reported offset does not point at their text.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.chunking import ChunkingSettings, chunk_document  # noqa: E402
from ingest.loaders import ExtractedDocument  # noqa: E402

BUDGET, OVERLAP = 256, 32


def prose(chars: int, paragraphs: bool, seed: int = 0) -> str:
    """Random English-like sentences; with ``paragraphs`` a blank line every ~6 sentences, else one line."""
    rng = random.Random(seed)
    words = ("the ferry sails from port at dawn and returns in the evening with freight passengers cars "
             "tickets refunds timetable weather harbour crew island booking").split()
    out, size, n = [], 0, 0
    while size < chars:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 18))).capitalize() + "."
        sep = "\n\n" if paragraphs and n and n % 6 == 0 else " "
        out.append((sep if out else "") + sentence)
        size += len(out[-1])
        n += 1
    return "".join(out)[:chars]


def opaque(chars: int, seed: int = 0) -> str:
    """A run without spaces (minified data, base64): the splitter's worst case."""
    rng = random.Random(seed)
    return "".join(rng.choice("abcdef0123456789") for _ in range(chars))


def count(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])


def run_ours(tok, text: str) -> dict:
    doc = ExtractedDocument(source="bench", title="bench", format="txt", text=text)
    began = time.perf_counter()
    spans = chunk_document(doc, tok, ChunkingSettings(BUDGET, OVERLAP))
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "chunks": len(spans), "max_tokens": max(count(tok, s.text) for s in spans),
            "bad_offsets": sum(text[s.start:s.end] != s.text for s in spans)}


def run_langchain(tok, text: str) -> dict:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tok, chunk_size=BUDGET, chunk_overlap=OVERLAP, add_start_index=True)
    began = time.perf_counter()
    docs = splitter.create_documents([text])
    seconds = time.perf_counter() - began
    bad = sum(d.metadata["start_index"] < 0 or text[d.metadata["start_index"]:][:len(d.page_content)] != d.page_content
              for d in docs)
    return {"seconds": seconds, "chunks": len(docs), "max_tokens": max(count(tok, d.page_content) for d in docs),
            "bad_offsets": bad}


def measure_file(path: str) -> dict:
    """In this (fresh) process: peak RSS growth while loading and chunking ``path``, after the tokenizer is loaded.

    ru_maxrss counts the Rust tokenizer's memory too, which tracemalloc would not see.
    """
    import resource

    from transformers import AutoTokenizer

    from ingest.limits import IngestLimits
    from ingest.loaders import load_document
    from retrieval.embedding import resolve_embedder

    tok = AutoTokenizer.from_pretrained(resolve_embedder(None))
    tok("warm up the tokenizer", return_offsets_mapping=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    began = time.perf_counter()
    doc = load_document(Path(path), limits=IngestLimits(max_file_mb=1024))
    spans = chunk_document(doc, tok, ChunkingSettings(BUDGET, OVERLAP))
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"bytes": Path(path).stat().st_size, "chunks": len(spans), "seconds": seconds,
            "peak_growth_bytes": peak - before, "bad_offsets": sum(doc.text[s.start:s.end] != s.text for s in spans)}


def run_memory(sizes_mb: list[float], out: Path) -> int:
    """One subprocess per size (a process's peak RSS only grows): print the table, write JSON."""
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in sizes_mb:
            path = Path(tmp) / f"prose-{mb:g}MB.txt"
            path.write_text(prose(int(mb * 1024 * 1024), True))
            proc = subprocess.run([sys.executable, __file__, "--measure-file", str(path)], capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["ratio"] = row["peak_growth_bytes"] / row["bytes"]
            rows.append(row)
            print(f"done: {mb:g} MB", file=sys.stderr)
    header = f"{'file MB':>8} {'chunks':>8} {'seconds':>8} {'peak growth MB':>15} {'x file':>7} {'bad offsets':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['bytes'] / 2**20:8.1f} {r['chunks']:>8} {r['seconds']:8.1f} {r['peak_growth_bytes'] / 2**20:15.0f} "
              f"{r['ratio']:7.1f} {r['bad_offsets']:>12}")
    print("(load + chunk of prose with paragraphs; peak RSS growth after the tokenizer is loaded, ru_maxrss)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budget": BUDGET, "overlap": OVERLAP, "rows": rows}, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON output (default: bench/results/chunking[-memory].json)")
    parser.add_argument("--quick", action="store_true", help="skip the 3 MB case (the baseline needs about a minute)")
    parser.add_argument("--memory", action="store_true", help="measure peak memory against file size instead")
    parser.add_argument("--sizes", default="5,20,50", help="with --memory: file sizes in MB (default: %(default)s)")
    parser.add_argument("--measure-file", help=argparse.SUPPRESS)  # the --memory child process
    args = parser.parse_args()
    if args.measure_file:
        print(json.dumps(measure_file(args.measure_file)))
        return 0
    results = Path(__file__).parent / "results"
    if args.memory:
        sizes = [float(x) for x in args.sizes.split(",") if x.strip()]
        return run_memory(sizes, Path(args.out or results / "chunking-memory.json"))
    args.out = args.out or str(results / "chunking.json")

    import logging

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from retrieval.embedding import resolve_embedder

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    tok = AutoTokenizer.from_pretrained(resolve_embedder(None))
    cases = [
        ("prose, paragraphs, 30 KB", prose(30_000, True)),
        ("prose, paragraphs, 300 KB", prose(300_000, True)),
        ("prose, one line, 300 KB", prose(300_000, False)),
        ("no spaces, 30 KB", opaque(30_000)),
        ("no spaces, 100 KB", opaque(100_000)),
    ]
    if not args.quick:
        cases.append(("prose, one line, 3 MB", prose(3_000_000, False)))
    rows = []
    for name, text in cases:
        ours, base = run_ours(tok, text), run_langchain(tok, text)
        rows.append({"case": name, "chars": len(text), "ours": ours, "langchain": base,
                     "speedup": base["seconds"] / ours["seconds"]})
        print(f"done: {name}", file=sys.stderr)

    header = (f"{'case':28} {'ours s':>8} {'LC s':>8} {'speed-up':>9} {'chunks':>13} {'max tok':>11} {'bad offsets':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        o, b = r["ours"], r["langchain"]
        print(f"{r['case']:28} {o['seconds']:8.2f} {b['seconds']:8.2f} {r['speedup']:8.1f}x "
              f"{o['chunks']:>6}/{b['chunks']:<6} {o['max_tokens']:>5}/{b['max_tokens']:<5} "
              f"{o['bad_offsets']:>5}/{b['bad_offsets']:<6}")
    print(f"(ours/LangChain; budget {BUDGET} tokens, overlap {OVERLAP}; tokenizer: embedded all-MiniLM-L6-v2)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budget": BUDGET, "overlap": OVERLAP, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
