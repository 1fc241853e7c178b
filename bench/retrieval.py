"""Knowledge-base benchmark: ingest throughput, recall@5 by search mode, query latency, incremental cost.

    .venv/bin/python bench/retrieval.py                  # ~8 minutes on 2 idle cores (far longer on busy ones); prints tables, writes bench/results/retrieval.json
    .venv/bin/python bench/retrieval.py --quick          # smaller sizes, for a smoke run
    .venv/bin/python bench/retrieval.py --only latency   # one section; the others keep their last results

The LangChain baseline needs, for this bench only (not CI):  .venv/bin/pip install langchain-community
(``langchain-huggingface`` would downgrade huggingface_hub, so the community ``HuggingFaceEmbeddings`` is used.)

Every figure is a ratio against a baseline measured in the same process:

1. Ingest: ``ingest_paths`` (read, chunk, embed, SQLite + FAISS) against a bare
   ``SentenceTransformer.encode`` of the very chunks it made (same loaded model), and against
   LangChain ``TextLoader`` + ``RecursiveCharacterTextSplitter`` (256/32 tokens) +
   ``FAISS.from_documents(HuggingFaceEmbeddings)`` on the same files. The files are the package
   descriptions (METADATA) of the installed Python packages: real technical prose and Markdown.
   Re-ingesting the unchanged files is compared with the first ingest.
2. Recall@5 and MRR@10 of hybrid, dense and BM25 on ``bench/data/retrieval_queries.jsonl``: 55 queries
   (28 keyword-style, 27 paraphrases that avoid the document's words) over the demo knowledge base
   (``evaluation/demo_data/kb`` plus the 44 unrelated ``general/`` passages as distractors). A query is
   answered when a top-k chunk comes from one of its ``sources`` and contains its ``answer`` span.
3. Query latency p50/p95 at 10k and 100k synthetic chunks (Zipf-distributed words, random unit
   vectors), end to end; and, with the query vectors precomputed, each mode against the bare
   operations it is built from (a plain FAISS ``IndexFlatIP`` search; a raw FTS5 ``MATCH ... ORDER BY
   rank`` query), interleaved query by query so load from other processes hits both alike.
4. Adding one document to the 100k-chunk KB against adding it to an empty KB (target: under 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from ingest.chunking import ChunkingSettings  # noqa: E402
from ingest.pipeline import ingest_paths  # noqa: E402
from retrieval.embedding import DEFAULT_EMBEDDER, Embedder, resolve_embedder  # noqa: E402
from retrieval.knowledge_base import KnowledgeBase  # noqa: E402
from retrieval.records import Chunk  # noqa: E402
from retrieval.search import fts_query  # noqa: E402
from retrieval.store import DocumentWrite  # noqa: E402

DEMO = ROOT / "evaluation" / "demo_data"
QUERIES = ROOT / "bench" / "data" / "retrieval_queries.jsonl"
RESULTS = ROOT / "bench" / "results" / "retrieval.json"


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - began, out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


# -- 1. ingest throughput --------------------------------------------------------------------

def package_descriptions(folder: Path, budget_chars: int) -> list[Path]:
    """Copy the longest-described installed packages' METADATA into ``folder`` as .md files."""
    import importlib.metadata as md

    texts = {}
    for dist in md.distributions():
        name = dist.metadata.get("Name") or ""
        body = dist.read_text("METADATA") or ""
        if name and len(body) > 4000 and name.lower() not in texts:
            texts[name.lower()] = body
    folder.mkdir(parents=True, exist_ok=True)
    paths, total = [], 0
    for name in sorted(texts):
        if total >= budget_chars:
            break
        body = texts[name][:40_000]
        path = folder / f"{name}.md"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
        total += len(body)
    return paths


def bench_ingest(work: Path, embedder_name: str, budget_chars: int) -> dict:
    corpus = work / "corpus"
    files = package_descriptions(corpus, budget_chars)
    embedder = Embedder(embedder_name)
    model = embedder.warm_up()
    model.encode(["warm up the kernels"] * 8)
    out: dict = {"files": len(files), "characters": sum(p.stat().st_size for p in files), "dtype": str(model.dtype)}

    def ours(name: str, dtype: str = "auto") -> tuple[float, KnowledgeBase]:
        kb = KnowledgeBase.open(work / name, embedder=embedder_name, create=True)
        kb._embedder = Embedder(embedder_name, dtype=dtype)  # the same cached model object for "auto"
        kb._embedder.warm_up()
        seconds, report = timed(ingest_paths, kb, [corpus], progress=False)
        assert not report.failed, report.failed
        return seconds, kb

    # every pipeline runs twice, interleaved, and keeps its best time: other processes share these cores
    langchain = langchain_pipeline(files, embedder_name)
    runs, bare, fp32, lc_runs = [], [], [], []
    for attempt in range(2):
        seconds, kb = ours(f"kb-ingest-{attempt}")
        runs.append(seconds)
        texts = [c.text for c in kb.iter_chunks()]
        bare.append(timed(model.encode, texts, batch_size=embedder.batch_size, normalize_embeddings=True)[0])
        fp32.append(ours(f"kb-ingest-fp32-{attempt}", dtype="float32")[0])
        if langchain:
            seconds, lc_texts = timed(langchain)
            lc_runs.append(seconds)
    chunks = len(texts)
    tokens = count_tokens(model.tokenizer, texts)
    unchanged, report = timed(ingest_paths, kb, [corpus], progress=False)
    assert len(report.unchanged) == len(files)
    out["ours"] = {"seconds": min(runs), "chunks": chunks, "chunks_per_s": chunks / min(runs), "tokens": tokens,
                   "tokens_per_s": tokens / min(runs)}
    out["bare_encode"] = {"seconds": min(bare), "chunks_per_s": chunks / min(bare), "tokens_per_s": tokens / min(bare)}
    out["overhead_vs_bare_encode"] = min(runs) / min(bare) - 1
    out["reingest_unchanged"] = {"seconds": unchanged, "fraction_of_first_ingest": unchanged / min(runs)}
    out["ours_fp32"] = {"seconds": min(fp32), "chunks_per_s": chunks / min(fp32), "tokens_per_s": tokens / min(fp32)}
    out["langchain"] = None
    if langchain:
        lc_tokens = count_tokens(model.tokenizer, lc_texts)
        lc = out["langchain"] = {"seconds": min(lc_runs), "chunks": len(lc_texts), "chunks_per_s": len(lc_texts) / min(lc_runs),
                                 "tokens": lc_tokens, "tokens_per_s": lc_tokens / min(lc_runs), "dtype": "float32"}
        # the two chunkers cut the same files differently, so compare work done per second too
        out["vs_langchain"] = {
            "files_speedup": lc["seconds"] / min(runs), "files_speedup_same_dtype": lc["seconds"] / min(fp32),
            "chunks_per_s_ratio": out["ours"]["chunks_per_s"] / lc["chunks_per_s"],
            "tokens_per_s_ratio_same_dtype": out["ours_fp32"]["tokens_per_s"] / lc["tokens_per_s"]}
    return out


def count_tokens(tokenizer, texts: list[str]) -> int:
    """Tokens the embedder processes for ``texts`` (with its special tokens, truncated to its window)."""
    return sum(min(len(ids), 256) for ids in tokenizer(texts, verbose=False)["input_ids"])


def langchain_pipeline(files: list[Path], embedder_name: str):
    """LangChain's ingest of ``files`` as a callable returning the chunk texts, or None if not installed."""
    try:
        from langchain_community.document_loaders import TextLoader
        from langchain_community.embeddings import HuggingFaceEmbeddings
        from langchain_community.vectorstores import FAISS
        from langchain_text_splitters import RecursiveCharacterTextSplitter
        from transformers import AutoTokenizer
    except ImportError:
        print("langchain-community not installed: skipping the LangChain baseline "
              "(.venv/bin/pip install langchain-community)", file=sys.stderr)
        return None
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()  # the splitter tokenizes whole files: "longer than 512" is expected
    path = resolve_embedder(embedder_name)
    embeddings = HuggingFaceEmbeddings(model_name=path, model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True, "batch_size": 32})
    embeddings.embed_documents(["warm up the kernels"] * 8)
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(AutoTokenizer.from_pretrained(path),
                                                                         chunk_size=256, chunk_overlap=32)

    def run() -> list[str]:
        docs = [d for p in files for d in TextLoader(str(p), encoding="utf-8").load()]
        chunks = splitter.split_documents(docs)
        FAISS.from_documents(chunks, embeddings)
        return [c.page_content for c in chunks]

    return run


# -- 2. recall -----------------------------------------------------------------------------------

def bench_recall(work: Path, embedder_name: str) -> dict:
    kb = KnowledgeBase.open(work / "kb-demo", embedder=embedder_name, create=True)
    report = ingest_paths(kb, [DEMO / "kb", DEMO / "general"], progress=False)
    assert not report.failed, report.failed
    queries = [json.loads(line) for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_source: dict[str, list[str]] = {}
    for chunk in kb.iter_chunks():
        by_source.setdefault(Path(chunk.source).name, []).append(chunk.text.lower())
    reachable = [q for q in queries if any(q["answer"].lower() in t for s in q["sources"] for t in by_source.get(s, []))]
    unreachable = [q["id"] for q in queries if q not in reachable]
    if unreachable:
        print(f"warning: answers not found in any chunk of their sources (label stale?): {unreachable}", file=sys.stderr)

    def first_relevant(q, hits) -> int | None:
        for hit in hits:
            if Path(hit.chunk.source).name in q["sources"] and q["answer"].lower() in hit.chunk.text.lower():
                return hit.rank
        return None

    out: dict = {"queries": len(reachable), "unreachable": unreachable, "chunks": kb.stats()["chunks"], "modes": {}}
    for mode in ("hybrid", "dense", "bm25"):
        ranks = {q["id"]: first_relevant(q, kb.search(q["query"], k=10, mode=mode)) for q in reachable}
        row = {}
        for kind in ("all", "keyword", "paraphrase"):
            subset = [q["id"] for q in reachable if kind == "all" or q["kind"] == kind]
            row[kind] = {"recall@5": sum(1 for i in subset if ranks[i] and ranks[i] <= 5) / len(subset),
                         "mrr@10": sum(1 / ranks[i] for i in subset if ranks[i]) / len(subset)}
        row["missed@5"] = sorted(i for i in ranks if not ranks[i] or ranks[i] > 5)
        out["modes"][mode] = row
    return out


# -- 3. latency ----------------------------------------------------------------------------------

def synthetic_kb(path: Path, n_chunks: int, dimension: int, embedder_name: str, seed: int = 0) -> KnowledgeBase:
    """A KB of ``n_chunks`` synthetic chunks (Zipf words, random unit vectors), written in a few transactions."""
    rng = np.random.default_rng(seed)
    vocab = sorted({w.strip(".,;:()").lower() for p in (DEMO / "kb").glob("*.md") for w in p.read_text().split()} - {""})
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    kb = KnowledgeBase.open(path, embedder=embedder_name, create=True)
    per_doc, per_write = 50, 25_000
    with kb.writer() as writer:
        for start in range(0, n_chunks, per_write):
            docs = []
            for d in range(start // per_doc, min(n_chunks, start + per_write) // per_doc):
                words = rng.choice(len(vocab), size=(per_doc, 120), p=weights)
                vecs = rng.standard_normal((per_doc, dimension)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                source = f"/synthetic/doc{d:06d}.txt"
                chunks = [Chunk(chunk_id=f"s{d}-{i}", source=source, title=f"doc {d}", text=" ".join(vocab[w] for w in row),
                                start=0, end=0, position=i) for i, row in enumerate(words)]
                docs.append(DocumentWrite(source=source, title=f"doc {d}", format="txt", sha256=f"{seed}-{d}",
                                          chunks=chunks, vectors=vecs))
            writer.write(upserts=docs)
    return kb


def bench_latency(work: Path, embedder_name: str, sizes: list[int], queries: list[str]) -> tuple[dict, dict]:
    """End-to-end latency per mode, and the overhead over bare FAISS/FTS5 with the query vectors precomputed."""
    import faiss

    embedder = Embedder(embedder_name)
    dimension = embedder.dimension
    out, kbs = {}, {}
    for n in sizes:
        build, kb = timed(synthetic_kb, work / f"kb-synthetic-{n}", n, dimension, embedder_name)
        kb._embedder = embedder
        reader = KnowledgeBase.open(kb.path)
        reader._embedder = embedder
        first, _ = timed(reader.search, queries[0], k=5, mode="dense")  # loads the FAISS snapshot
        row: dict = {"build_seconds": build, "open_and_first_dense_search_ms": 1000 * first}
        conn = sqlite3.connect(kb.path / "kb.sqlite")
        blob = b"".join(r[0] for r in conn.execute("SELECT vector FROM vectors ORDER BY id"))
        plain = faiss.IndexFlatIP(dimension)
        plain.add(np.frombuffer(blob, dtype=np.float32).reshape(-1, dimension))
        vectors = {q: embedder.embed_query(q) for q in queries}

        def bare_faiss(q):
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)  # as the KB searches; two threads are ~5x slower on busy cores
            try:
                return plain.search(vectors[q].reshape(1, -1), 5)
            finally:
                faiss.omp_set_num_threads(threads)

        def bare_fts(q):
            return conn.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT 5",
                                (fts_query(q),)).fetchall()

        end_to_end = {m: [] for m in ("dense", "bm25", "hybrid", "embed_query")}
        ours = {m: [] for m in ("dense", "bm25", "hybrid")}
        bare = {m: [] for m in ("dense", "bm25", "hybrid")}
        cached = KnowledgeBase.open(kb.path)  # same KB, query vectors precomputed: what search adds to FAISS/FTS5
        cached._embed_query = lambda q: vectors[q]
        for _ in range(2):
            for q in queries:  # interleaved, so load from other processes hits ours and the baselines alike
                end_to_end["embed_query"].append(timed(embedder.embed_query, q)[0])
                f, t = timed(bare_faiss, q)[0], timed(bare_fts, q)[0]
                bare["dense"].append(f)
                bare["bm25"].append(t)
                bare["hybrid"].append(f + t)
                for mode in ("dense", "bm25", "hybrid"):
                    end_to_end[mode].append(timed(reader.search, q, k=5, mode=mode)[0])
                    ours[mode].append(timed(cached.search, q, k=5, mode=mode)[0])
        conn.close()
        for mode in ("dense", "bm25", "hybrid"):
            row[mode] = {"p50_ms": 1000 * percentile(end_to_end[mode], 50), "p95_ms": 1000 * percentile(end_to_end[mode], 95),
                         "search_only_p50_ms": 1000 * percentile(ours[mode], 50),
                         "baseline_p50_ms": 1000 * percentile(bare[mode], 50),
                         "overhead_ratio_p50": percentile(ours[mode], 50) / percentile(bare[mode], 50)}
        row["embed_query_p50_ms"] = 1000 * percentile(end_to_end["embed_query"], 50)
        out[str(n)] = row
        kbs[n] = kb
    return out, kbs


# -- 4. adding one document ------------------------------------------------------------------------

def bench_add_one(work: Path, embedder_name: str, big: KnowledgeBase, repeats: int) -> dict:
    empty = KnowledgeBase.open(work / "kb-empty", embedder=embedder_name, create=True)
    embedder = Embedder(embedder_name)
    for kb in (empty, big):
        kb._embedder = embedder
    doc = work / "added" / "refunds.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = (DEMO / "kb" / "refunds-and-cancellations.md").read_text()
    times: dict[str, list[float]] = {"empty": [], "big": []}
    chunks = 0
    for n in range(repeats + 1):  # the first round warms caches and is not counted
        for name, kb in (("empty", empty), ("big", big)):
            doc.write_text(text + f"\n\nRevision {n} for {name}.\n")
            seconds, report = timed(ingest_paths, kb, [doc], progress=False)
            assert (report.added or report.updated) and not report.failed
            chunks = report.chunks_added
            if n:
                times[name].append(seconds)
    visible = big.search(f"Revision {repeats} for big", k=1, mode="bm25")[0].chunk.source == str(doc)
    return {"chunks_in_document": chunks, "big_kb_chunks": big.stats()["chunks"],
            "empty_median_s": statistics.median(times["empty"]), "big_median_s": statistics.median(times["big"]),
            "ratio": statistics.median(times["big"]) / statistics.median(times["empty"]), "visible_to_search": visible}


# -- report ----------------------------------------------------------------------------------------

def print_tables(results: dict) -> None:
    if "ingest" in results:
        print_ingest(results["ingest"])
    if "recall" in results:
        print_recall(results["recall"])
    if "latency" in results:
        print_latency(results["latency"], results["add_one"])


def print_ingest(ing: dict) -> None:
    print(f"\nIngest: {ing['files']} files, {ing['characters'] / 1e6:.2f} MB, {ing['ours']['chunks']} chunks "
          f"(embedder dtype {ing['dtype']})")
    print(f"{'pipeline':<44}{'seconds':>9}{'chunks/s':>10}{'time ratio':>11}")
    rows = [("bare SentenceTransformer.encode (baseline)", ing["bare_encode"]["seconds"], ing["bare_encode"]["chunks_per_s"], 1.0),
            ("ragtune ingest_paths", ing["ours"]["seconds"], ing["ours"]["chunks_per_s"], 1 + ing["overhead_vs_bare_encode"])]
    if ing.get("langchain"):
        lc = ing["langchain"]
        rows.append(("LangChain FAISS.from_documents, fp32", lc["seconds"], lc["chunks_per_s"], lc["seconds"] / ing["bare_encode"]["seconds"]))
    rows.append(("ragtune ingest_paths, fp32 embedder", ing["ours_fp32"]["seconds"], ing["ours_fp32"]["chunks_per_s"],
                 ing["ours_fp32"]["seconds"] / ing["bare_encode"]["seconds"]))
    rows.append(("ragtune re-ingest, all unchanged", ing["reingest_unchanged"]["seconds"], float("nan"),
                 ing["reingest_unchanged"]["seconds"] / ing["bare_encode"]["seconds"]))
    for name, s, cps, ratio in rows:
        print(f"{name:<44}{s:>9.2f}{cps:>10.1f}{ratio:>9.2f}x")
    print(f"pipeline overhead vs bare encode: {100 * ing['overhead_vs_bare_encode']:+.1f}% (target < 15%)")
    if ing.get("vs_langchain"):
        vs = ing["vs_langchain"]
        print(f"vs LangChain ({ing['langchain']['chunks']} chunks from the same files): {vs['files_speedup']:.2f}x faster "
              f"on the files, {vs['chunks_per_s_ratio']:.2f}x the chunks/s (target >= 1); both fp32: "
              f"{vs['files_speedup_same_dtype']:.2f}x on the files, {vs['tokens_per_s_ratio_same_dtype']:.2f}x the tokens/s")
    print(f"re-ingest of unchanged files: {100 * ing['reingest_unchanged']['fraction_of_first_ingest']:.1f}% of the first ingest")


def print_recall(rec: dict) -> None:
    print(f"\nRecall on {rec['queries']} labelled queries over {rec['chunks']} chunks")
    print(f"{'mode':<8}{'recall@5':>10}{'keyword':>10}{'paraphr.':>10}{'MRR@10':>9}{'vs dense':>10}{'vs bm25':>9}")
    for mode, row in rec["modes"].items():
        r = row["all"]["recall@5"]
        print(f"{mode:<8}{r:>10.3f}{row['keyword']['recall@5']:>10.3f}{row['paraphrase']['recall@5']:>10.3f}"
              f"{row['all']['mrr@10']:>9.3f}{r / rec['modes']['dense']['all']['recall@5']:>9.2f}x"
              f"{r / rec['modes']['bm25']['all']['recall@5']:>8.2f}x")


def print_latency(latency: dict, add: dict) -> None:
    print("\nQuery latency, k=5. End to end (query embedding included), then the search alone against its")
    print("baseline with the query vector precomputed: plain FAISS IndexFlatIP (1 thread); raw FTS5 MATCH ... ORDER BY rank")
    print(f"{'chunks':>8} {'mode':<8}{'p50 ms':>9}{'p95 ms':>9}{'search p50':>12}{'baseline p50':>14}{'ratio':>8}")
    for n, row in latency.items():
        for mode in ("dense", "bm25", "hybrid"):
            m = row[mode]
            print(f"{int(n):>8} {mode:<8}{m['p50_ms']:>9.1f}{m['p95_ms']:>9.1f}{m['search_only_p50_ms']:>12.2f}"
                  f"{m['baseline_p50_ms']:>14.2f}{m['overhead_ratio_p50']:>7.2f}x")
        print(f"{int(n):>8} embed_query p50 {row['embed_query_p50_ms']:.1f} ms; open + first dense search "
              f"{row['open_and_first_dense_search_ms']:.0f} ms")
    print(f"\nAdding one document ({add['chunks_in_document']} chunks): empty KB {1000 * add['empty_median_s']:.0f} ms, "
          f"{add['big_kb_chunks']:,}-chunk KB {1000 * add['big_median_s']:.0f} ms -> {add['ratio']:.2f}x (target < 2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--keep", action="store_true", help="keep the temporary knowledge bases")
    parser.add_argument("--only", choices=["ingest", "recall", "latency"],
                        help="run one section (latency includes adding one document); others keep their last results")
    args = parser.parse_args()
    sizes = [2_000, 10_000] if args.quick else [10_000, 100_000]
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-"))
    random.seed(0)
    queries = [json.loads(line)["query"] for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    results: dict = json.loads(RESULTS.read_text()) if args.only and RESULTS.exists() else {}
    results.update({"embedder": args.embedder, "cpu_count": os.cpu_count(), "quick": args.quick})
    try:
        if args.only in (None, "ingest"):
            print("ingest throughput ...", file=sys.stderr)
            results["ingest"] = bench_ingest(work, args.embedder, 60_000 if args.quick else 300_000)
        if args.only in (None, "recall"):
            print("recall ...", file=sys.stderr)
            results["recall"] = bench_recall(work, args.embedder)
        if args.only in (None, "latency"):
            print("latency ...", file=sys.stderr)
            results["latency"], kbs = bench_latency(work, args.embedder, sizes, queries)
            print("add one document ...", file=sys.stderr)
            results["add_one"] = bench_add_one(work, args.embedder, kbs[sizes[-1]], 3 if args.quick else 5)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_tables(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
