"""Scale benchmark: SQLite + FAISS against PostgreSQL + pgvector at 100k and 1M chunks.

    .venv/bin/python bench/scale.py --sizes 100000                    # both stores: build, then measure
    .venv/bin/python bench/scale.py --sizes 1000000 --phase build --stores postgres --budget-s 450   # resumable
    .venv/bin/python bench/scale.py --sizes 1000000 --phase measure   # after the builds finished

Prints a table and writes bench/results/scale.json (merged with earlier runs, keyed by store and size).
Work files (the KBs, the PostgreSQL data folder, the vectors as .npy) stay in --work so a build can
be split into pieces (``--budget-s``: stop after that many seconds; the next run goes on from there).

Data: synthetic chunks of 60 words drawn Zipf-wise from the demo knowledge base's vocabulary (real
words, so the text index does real work) and random unit vectors of --dim dimensions, 50 chunks a
document, written through ``KnowledgeBase.writer()`` 10k chunks a transaction, as ingest writes.
The index is the approximate one (SQLite: FAISS IVF; PostgreSQL: HNSW, kept up insert by insert).

Measured per store and size:
- ingest rate: chunks per second of the writes, index upkeep included;
- hybrid search p50/p95: ``KnowledgeBase.search(mode="hybrid", k=10)`` with the query vector
  precomputed (the embedder is not what scales), two or three mid-frequency words as the text;
- recall@10 of the approximate dense search against the exact one (NumPy over the stored vectors),
  for two query kinds: "near" (a stored vector plus noise, cosine ~0.8, like a question with an
  answer in the KB) and "random" (a random unit vector, the hardest case for any ANN index);
- exact dense p50 (PostgreSQL's exact scan; where the store bypasses HNSW below EXACT_BELOW);
- size on disk, and the time to add one 10-chunk document to the big KB (median of 3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings  # noqa: E402
from retrieval.records import Chunk  # noqa: E402
from retrieval.store import DocumentWrite  # noqa: E402

DEMO = ROOT / "evaluation" / "demo_data"
RESULTS = ROOT / "bench" / "results" / "scale.json"
PER_DOC, PER_WRITE, WORDS = 50, 10_000, 60


def vocabulary() -> tuple[list[str], np.ndarray]:
    vocab = sorted({w.strip(".,;:()\"'").lower() for p in (DEMO / "kb").glob("*.md") for w in p.read_text().split()} - {""})
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    return vocab, weights / weights.sum()


def open_kb(work: Path, store: str, n: int, dim: int, dsn: str | None) -> KnowledgeBase:
    path = work / f"{store}-{n}"
    if store == "sqlite":
        settings = KnowledgeBaseSettings(index="ivf")
    else:
        settings = KnowledgeBaseSettings(store="postgres", index="hnsw", dsn=dsn, pg_schema=f"scale_{n}")
    return KnowledgeBase.open(path, embedder=f"synthetic-{dim}", create=True, settings=settings)


def vectors_file(work: Path, n: int, dim: int) -> np.ndarray:
    """All ``n`` vectors, made once from a fixed seed and shared by both stores."""
    path = work / f"vectors-{n}-{dim}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
        for start in range(0, n, 100_000):
            block = rng.standard_normal((min(100_000, n - start), dim)).astype(np.float32)
            out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        out.flush()
    return np.load(path, mmap_mode="r")


def documents(start_doc: int, end_doc: int, vectors: np.ndarray, vocab, weights, tag: str = "") -> list[DocumentWrite]:
    rng = np.random.default_rng(start_doc + 1)
    docs = []
    for d in range(start_doc, end_doc):
        words = rng.choice(len(vocab), size=(PER_DOC, WORDS), p=weights)
        source = f"/synthetic/{tag}doc{d:07d}.txt"
        chunks = [Chunk(chunk_id=f"{tag}s{d}-{i}", source=source, title=f"doc {d}", text=" ".join(vocab[w] for w in row),
                        start=0, end=0, position=i) for i, row in enumerate(words)]
        docs.append(DocumentWrite(source=source, title=f"doc {d}", format="txt", sha256=f"{tag}{d}", chunks=chunks,
                                  vectors=np.asarray(vectors[d * PER_DOC:(d + 1) * PER_DOC])))
    return docs


def build(work: Path, store: str, n: int, dim: int, dsn: str | None, budget_s: float) -> dict:
    """Write the KB up to ``n`` chunks (resuming), within ``budget_s`` seconds; returns the progress."""
    vectors = vectors_file(work, n, dim)
    vocab, weights = vocabulary()
    kb = open_kb(work, store, n, dim, dsn)
    state_path = work / f"{store}-{n}.build.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"chunks": 0, "seconds": 0.0}
    started = time.perf_counter()
    with kb.writer() as writer:
        while state["chunks"] < n and time.perf_counter() - started < budget_s:
            first = state["chunks"] // PER_DOC
            docs = documents(first, min(n, state["chunks"] + PER_WRITE) // PER_DOC, vectors, vocab, weights)
            t = time.perf_counter()
            writer.write(upserts=docs)
            state["seconds"] += time.perf_counter() - t
            state["chunks"] += sum(len(d.chunks) for d in docs)
            state_path.write_text(json.dumps(state))
            print(f"  {store} {n}: {state['chunks']} chunks written, {state['chunks'] / state['seconds']:.0f}/s",
                  flush=True)
    kb.close()
    return state


def measure(work: Path, store: str, n: int, dim: int, dsn: str | None, queries: int) -> dict:
    state = json.loads((work / f"{store}-{n}.build.json").read_text())
    if state["chunks"] < n:
        raise SystemExit(f"{store} {n}: only {state['chunks']} chunks built; run --phase build again")
    vectors = vectors_file(work, n, dim)
    vocab, weights = vocabulary()
    kb = open_kb(work, store, n, dim, dsn)
    rng = np.random.default_rng(7)
    near = vectors[rng.choice(n, queries, replace=False)] + rng.standard_normal((queries, dim)).astype(np.float32) * 0.75 / np.sqrt(dim)
    rand = rng.standard_normal((queries, dim)).astype(np.float32)
    qsets = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in {"near": near, "random": rand}.items()}
    mid = vocab[len(vocab) // 20: len(vocab) // 4]  # neither stopword-frequent nor unseen
    texts = [" ".join(rng.choice(mid, size=2 + i % 2)) for i in range(queries)]
    truth = {k: exact_top(vectors, q, 10) for k, q in qsets.items()}

    def search(text: str, qvec: np.ndarray, mode: str = "hybrid"):
        kb._embed_query = lambda _q, v=qvec: v  # the embedder is not what scales
        return kb.search(text, k=10, mode=mode)

    search(texts[0], qsets["near"][0])  # warm: FAISS snapshot load, connection, caches
    latencies = []
    for text, q in zip(texts, qsets["near"]):
        t = time.perf_counter()
        search(text, q)
        latencies.append(time.perf_counter() - t)
    recall = {}
    for kind, qs in qsets.items():
        got = [[int(h.chunk.chunk_id[1:].split("-")[0]) * PER_DOC + int(h.chunk.chunk_id.split("-")[1])
                for h in search("x", q, mode="dense")] for q in qs]
        recall[kind] = float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth[kind])]))
    sweep = {}
    if store == "postgres":  # the recall/latency trade-off of hnsw.ef_search (kb.ef_search)
        default = kb.settings
        for ef in (40, 100, 200, 400):
            kb.settings = replace(default, ef_search=ef)
            t = time.perf_counter()
            got = [[int(h.chunk.chunk_id[1:].split("-")[0]) * PER_DOC + int(h.chunk.chunk_id.split("-")[1])
                    for h in search("x", q, mode="dense")] for q in qsets["random"]]
            per_query = (time.perf_counter() - t) / len(got)
            sweep[ef] = {"recall@10_random": round(float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth["random"])])), 3),
                         "dense_mean_ms": round(1000 * per_query, 2)}
        kb.settings = default
    exact_ms = None
    if store == "postgres":
        times = []
        for q in qsets["near"][:10]:
            with kb._read() as reader:
                t = time.perf_counter()
                reader.dense(q, 50, [], approximate=False, ef_search=0)
                times.append(time.perf_counter() - t)
        exact_ms = 1000 * statistics.median(times)
    add = []
    for r in range(3):
        source = f"/added/{time.time_ns()}.txt"
        one = DocumentWrite(source=source, title="added", format="txt", sha256=source, vectors=qsets["random"][:10],
                            chunks=[Chunk(chunk_id=f"{source}#{i}", source=source, title="added", text=texts[i], start=0,
                                          end=0, position=i) for i in range(10)])
        t = time.perf_counter()
        with kb.writer() as writer:
            writer.write(upserts=[one])
        add.append(time.perf_counter() - t)
        with kb.writer() as writer:
            writer.write(removals=[one.source])
    stats = kb.stats()
    kb.close()
    lat = sorted(latencies)
    return {"store": store, "chunks": n, "dim": dim, "ingest_chunks_per_s": round(state["chunks"] / state["seconds"], 1),
            "hybrid_p50_ms": round(1000 * lat[len(lat) // 2], 2), "hybrid_p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 2),
            "recall@10_near": round(recall["near"], 3), "recall@10_random": round(recall["random"], 3),
            "exact_dense_p50_ms": round(exact_ms, 2) if exact_ms else None, "size_bytes": stats["size_bytes"],
            "size": stats["size_on_disk"], "add_one_doc_s": round(statistics.median(add), 3), "index": stats["index"],
            "queries": queries, "ef_search_sweep": sweep}


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), 200_000):
        block = np.asarray(vectors[start:start + 200_000]) @ queries.T  # (block, q)
        top = np.argpartition(-block, k, axis=0)[:k].T  # (q, k)
        cand_s = np.concatenate([scores, np.take_along_axis(block.T, top, axis=1)], axis=1)
        cand_i = np.concatenate([ids, top + start], axis=1)
        best = np.argsort(-cand_s, axis=1)[:, :k]
        scores, ids = np.take_along_axis(cand_s, best, axis=1), np.take_along_axis(cand_i, best, axis=1)
    return ids.tolist()


def compare_recall(work: Path, dsn: str) -> dict:
    """bench/retrieval.py's labelled recall@5 on the demo KB, once per store, and whether dense hits agree exactly."""
    import shutil

    from bench.retrieval import QUERIES, bench_recall
    from retrieval.embedding import DEFAULT_EMBEDDER

    queries = [json.loads(line)["query"] for line in QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    out, dense = {}, {}
    for store in ("sqlite", "postgres"):
        folder = work / f"recall-{store}"
        shutil.rmtree(folder, ignore_errors=True)
        if store == "postgres":  # bench_recall opens kb-demo with create=True: the pointer makes it postgres
            KnowledgeBase.open(folder / "kb-demo", embedder=DEFAULT_EMBEDDER, create=True, settings=KnowledgeBaseSettings(
                store="postgres", dsn=dsn, pg_schema=f"recall_{time.time_ns()}")).close()
        out[store] = {mode: row["all"]["recall@5"] for mode, row in bench_recall(folder, DEFAULT_EMBEDDER)["modes"].items()}
        kb = KnowledgeBase.open(folder / "kb-demo")
        dense[store] = [[h.chunk.chunk_id for h in kb.search(q, k=10, mode="dense")] for q in queries]
    out["dense_top10_identical"] = sum(a == b for a, b in zip(dense["sqlite"], dense["postgres"]))
    out["queries"] = len(queries)
    return out


def pg_server(work: Path) -> str:
    import pgserver

    return pgserver.get_server(work / "pgdata", cleanup_mode="stop").get_uri()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated chunk counts")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--phase", choices=["build", "measure", "all", "recall"], default="all",
                        help="recall: bench/retrieval.py's labelled recall@5 on the demo KB in both stores (real embedder)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="build: stop after this many seconds")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ragtune-scale")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    stores = args.stores.split(",")
    dsn = None
    if "postgres" in stores:
        os.environ["RAGTUNE_SCALE_DSN"] = pg_server(args.work)
        dsn = "env:RAGTUNE_SCALE_DSN"
    if args.phase == "recall":
        os.environ.setdefault("RAGTUNE_SCALE_DSN", pg_server(args.work))
        row = compare_recall(args.work, "env:RAGTUNE_SCALE_DSN")
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results["recall-demo"] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(row, indent=2))
        return 0
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for store in stores:
            if args.phase in ("build", "all"):
                build(args.work, store, n, args.dim, dsn, args.budget_s)
            if args.phase in ("measure", "all"):
                rows.append(measure(args.work, store, n, args.dim, dsn, args.queries))
    if rows:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results.update({f"{r['store']}-{r['chunks']}": r for r in rows})
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        cols = ["store", "chunks", "ingest_chunks_per_s", "hybrid_p50_ms", "hybrid_p95_ms", "recall@10_near",
                "recall@10_random", "exact_dense_p50_ms", "size", "add_one_doc_s"]
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in sorted(results.values(), key=lambda r: (r["chunks"], r["store"])):
            print("| " + " | ".join(str(r.get(c)) for c in cols) + " |")
        for r in rows:
            if r.get("ef_search_sweep"):
                print(f"{r['store']} {r['chunks']} ef_search sweep (random queries): {json.dumps(r['ef_search_sweep'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
