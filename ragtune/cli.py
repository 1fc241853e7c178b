"""The ``ragtune`` command line: parses arguments and calls the packages' functions.

No logic lives only here: every command is one call into ingest/, retrieval/, finetune/,
assistant/ or evaluation/, the same call the UI, the server and the tests make. Heavy
libraries are imported inside the handlers so ``ragtune --help`` stays instant.

Exit status: 0 success, 1 a failure the user can fix (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from ragtune.workspace import DEFAULT_KB, Workspace, WorkspaceError

EXAMPLES = {
    "models": "ragtune models            # list the generator and embedder, converting the embedded ones once",
    "ingest": "ragtune ingest docs/ notes.md --kb team      # add or update; unchanged files are skipped",
    "remove": "ragtune remove docs/old.pdf --kb team",
    "kb": "ragtune kb list --json | ragtune kb stats | ragtune kb check | "
          "ragtune kb create team --store postgres --dsn env:RAGTUNE_PG_DSN | ragtune kb migrate team --to sqlite",
    "search": 'ragtune search "how do refunds work" -k 5 --mode hybrid --json',
    "train": "ragtune train data.jsonl --method lora --name style   |   ragtune train --from-kb default --name grounded",
    "adapt": "ragtune adapt team --exclude our-questions.jsonl   # train team's adapter; kept only if it beats RAG",
    "adapters": "ragtune adapters list --json | ragtune adapters merge style --out merged/",
    "ask": 'ragtune ask "When was the office opened?" --mode hybrid --adapter grounded --json',
    "chat": "ragtune chat --mode hybrid --adapter demo",
    "serve": "ragtune serve --port 8000 --api-key secret",
    "eval": "ragtune eval qa.jsonl --modes prompt,rag,tuned,hybrid --adapter grounded",
    "demo": "ragtune demo --no-ui",
    "ui": "ragtune ui --port 8501",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the user can fix this': printed as one line, exit 1."""
    from assistant.errors import AssistantError
    from evaluation.errors import EvaluationError
    from finetune.base_model import ModelError
    from finetune.errors import DatasetError, TrainError
    from ingest.errors import IngestError
    from retrieval.embedding import EmbedderError
    from retrieval.errors import RetrievalError

    return (WorkspaceError, IngestError, RetrievalError, EmbedderError, ModelError, DatasetError, TrainError,
            AssistantError, EvaluationError, FileNotFoundError, PermissionError)


def _emit(args, payload, human: str | None = None) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    elif human is not None:
        print(human)


def _workspace(args) -> Workspace:
    return Workspace.open(args.home)


# --- models --------------------------------------------------------------------------------

def cmd_models(args) -> int:
    from assistant.models import describe_models

    rows = describe_models(_workspace(args), prepare=not args.no_prepare)
    _emit(args, rows, "\n".join(f"{r['role']:<10} {r['name']:<24} {r['status']:<10} {r['path']}" for r in rows))
    return 0


# --- knowledge base: ingest / remove / kb / search ----------------------------------------

def cmd_ingest(args) -> int:
    from assistant.models import model_settings
    from ingest.chunking import ChunkingSettings
    from ingest.limits import IngestLimits
    from ingest.pipeline import ingest_paths
    from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings

    ws = _workspace(args)
    path = ws.kb_path(args.kb)
    # config.yaml's embedder and kb settings only shape a new KB; an existing one keeps its own
    embedder = args.embedder or (None if KnowledgeBase.exists(path) else model_settings(ws).embedder)
    kb = KnowledgeBase.open(path, embedder=embedder, create=True, settings=ws.settings(KnowledgeBaseSettings, "kb"))
    report = ingest_paths(kb, args.paths, progress=not (args.quiet or args.json),
                          settings=ws.settings(ChunkingSettings, "chunking"),
                          limits=ws.settings(IngestLimits, "ingest"))
    _emit(args, report.to_dict(), report.summary_line())
    for failure in report.failed:
        print(f"error: {failure.source}: {failure.reason}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_remove(args) -> int:
    from ingest.pipeline import remove_documents
    from retrieval.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(_workspace(args).kb_path(args.kb))
    report = remove_documents(kb, args.paths)
    _emit(args, report.to_dict(), report.summary_line())
    for failure in report.failed:
        print(f"error: {failure.source}: {failure.reason}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_kb(args) -> int:
    from retrieval.knowledge_base import KnowledgeBase

    ws = _workspace(args)
    if args.kb_command == "names":
        _emit(args, ws.kb_names(), "\n".join(ws.kb_names()) or "(no knowledge bases)")
        return 0
    if args.kb_command in ("create", "migrate"):
        return _kb_create_or_migrate(args, ws)
    kb = KnowledgeBase.open(ws.kb_path(args.name or args.kb))
    if args.kb_command == "list":
        docs = [d.to_dict() for d in kb.list_documents()]
        lines = [f"{d['chunks']:>5} chunks  {d['ingested_at'][:19]}  {d['source']}  ({d['title']})" for d in docs]
        _emit(args, docs, "\n".join(lines) or "(empty knowledge base)")
        return 0
    if args.kb_command == "stats":
        stats = kb.stats()
        _emit(args, stats, "\n".join(f"{k:<16} {v}" for k, v in stats.items()))
        return 0
    if args.kb_command == "check":
        problems = kb.check()
        _emit(args, {"ok": not problems, "problems": problems},
              "ok: every chunk has its vector and no orphan vector remains" if not problems else "\n".join(problems))
        return 0 if not problems else 1
    raise AssertionError(args.kb_command)


def _kb_create_or_migrate(args, ws) -> int:
    from assistant.models import model_settings
    from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings
    from retrieval.migrate import migrate_kb

    path = ws.kb_path(args.name or args.kb)
    store = args.store if args.kb_command == "create" else args.to
    if args.kb_command == "migrate" and not store:
        raise WorkspaceError("kb migrate needs --to postgres or --to sqlite")
    overrides = {"store": store, "dsn": args.dsn, "pg_schema": args.schema, "index": args.index}
    if store == "sqlite":  # the target's own settings, not config.yaml's postgres ones
        overrides |= {"dsn": "", "pg_schema": ""}
    settings = ws.settings(KnowledgeBaseSettings, "kb", overrides)
    if args.kb_command == "migrate":
        report = migrate_kb(path, settings)
        _emit(args, report.to_dict(), report.summary_line())
        return 0
    embedder = args.embedder or (None if KnowledgeBase.exists(path) else model_settings(ws).embedder)
    kb = KnowledgeBase.open(path, embedder=embedder, create=True, settings=settings)
    stats = kb.stats()
    _emit(args, stats, f"knowledge base '{stats['name']}': {stats.get('store', 'sqlite')}, {stats['documents']} "
                       f"documents, {stats['chunks']} chunks, embedder {stats['embedder']}")
    return 0


def cmd_search(args) -> int:
    from retrieval.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(_workspace(args).kb_path(args.kb))
    hits = kb.search(args.query, k=args.k, mode=args.mode, source_prefix=args.source, mmr=args.mmr)
    rows = [h.to_dict() for h in hits]
    human = "\n\n".join(
        f"[{r['rank']}] {r['score']:.4f}  {r['source']}"
        + (f" p.{r['page']}" if r["page"] else "")
        + (f"  § {r['heading']}" if r["heading"] else "")
        + f"\n    {r['text'][:240].replace(chr(10), ' ')}"
        for r in rows
    )
    _emit(args, rows, human or "(no results)")
    return 0


# --- fine-tuning ---------------------------------------------------------------------------

def cmd_train(args) -> int:
    from finetune.cli_args import train_from_args

    return train_from_args(_workspace(args), args)


def cmd_adapt(args) -> int:
    from evaluation.cli_args import adapt_from_args

    return adapt_from_args(_workspace(args), args)


def cmd_adapters(args) -> int:
    from finetune.cli_args import adapters_from_args

    return adapters_from_args(_workspace(args), args)


# --- assistant -----------------------------------------------------------------------------

def cmd_ask(args) -> int:
    from assistant.cli_args import ask_from_args

    return ask_from_args(_workspace(args), args)


def cmd_chat(args) -> int:
    from assistant.cli_args import chat_from_args

    return chat_from_args(_workspace(args), args)


def cmd_serve(args) -> int:
    from assistant.cli_args import serve_from_args

    return serve_from_args(_workspace(args), args)


# --- evaluation and demo -------------------------------------------------------------------

def cmd_eval(args) -> int:
    from evaluation.cli_args import eval_from_args

    return eval_from_args(_workspace(args), args)


def cmd_demo(args) -> int:
    from evaluation.cli_args import demo_from_args

    return demo_from_args(_workspace(args), args)


# --- ui ------------------------------------------------------------------------------------

def cmd_ui(args) -> int:
    import signal
    import subprocess

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.allow_remote:
        print(f"error: the UI has no login: on {args.host} anyone who can reach it can read, change and delete "
              f"your knowledge bases and adapters. Keep the default --host 127.0.0.1, or add --allow-remote "
              f"if that network is yours alone", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving the UI on {args.host} without a login: anyone who can reach it can use it",
              file=sys.stderr)
    app = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    env = dict(os.environ, RAGTUNE_HOME=str(_workspace(args).home))
    # Streamlit itself runs headless: otherwise its first run stops at an e-mail prompt on stdin
    # (and fails without a terminal). We open the browser ourselves unless --headless.
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
           "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           "--server.fileWatcherType", "none"]  # a local tool: no "Deploy" button, no source watching
    url = f"http://{args.host}:{args.port}"
    print(f"ragtune UI on {url}  (Ctrl-C to stop)")
    if not args.headless:
        import threading
        import webbrowser

        threading.Timer(3.0, lambda: webbrowser.open(url)).start()  # no browser (a server): nothing happens
    child = subprocess.Popen(cmd, env=env)

    def forward(signum, frame):  # a service manager's SIGTERM must stop Streamlit too, not orphan it on the port
        child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, forward)
    return child.wait()


# --- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="workspace directory (default: $RAGTUNE_HOME or ~/.ragtune)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    kbopt = argparse.ArgumentParser(add_help=False)
    kbopt.add_argument("--kb", default=DEFAULT_KB, help="knowledge base name (default: %(default)s)")

    parser = argparse.ArgumentParser(
        prog="ragtune", description="Cited answers from your documents, in your style: RAG + LoRA on a laptop.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, help, parents=(common,)):
        p = sub.add_parser(name, help=help, description=help, parents=list(parents),
                           epilog=f"example:\n  {EXAMPLES[name]}", formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=globals()[f"cmd_{name}"])
        return p

    p = add("models", "list the generator and embedder models, preparing the embedded ones")
    p.add_argument("--no-prepare", action="store_true", help="only list; do not convert embedded models")

    p = add("ingest", "add or update documents (files or folders; txt md html pdf docx)", (common, kbopt))
    p.add_argument("paths", nargs="+", help="files or folders (recursive)")
    p.add_argument("--embedder", help="embedder for a new KB: local sentence-transformers folder or hub id")

    p = add("remove", "remove documents and their vectors", (common, kbopt))
    p.add_argument("paths", nargs="+", help="document sources as listed by 'ragtune kb list' (folders remove all below)")

    p = add("kb", "inspect a knowledge base: list, stats, check, names", (common, kbopt))
    p.add_argument("kb_command", choices=["list", "stats", "check", "names", "create", "migrate"])
    p.add_argument("name", nargs="?", help="the knowledge base (instead of --kb)")
    p.add_argument("--store", choices=["sqlite", "postgres"], help="create: where the KB lives (default: config.yaml kb.store, else sqlite)")
    p.add_argument("--to", choices=["sqlite", "postgres"], help="migrate: the store to copy the KB into")
    p.add_argument("--dsn", help="postgres: env:VARIABLE (recommended) or a postgresql:// URI without a password")
    p.add_argument("--schema", help="postgres: the schema holding the KB (default ragtune_<name>)")
    p.add_argument("--index", choices=["flat", "ivf", "hnsw"], help="create/migrate: flat (exact), ivf (sqlite) or hnsw (postgres)")
    p.add_argument("--embedder", help="create: the embedder a new KB is fixed to (default: config.yaml models.embedder)")

    p = add("search", "ranked, citable chunks for a query", (common, kbopt))
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="number of hits (default: %(default)s)")
    p.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="hybrid")
    p.add_argument("--source", help="only documents whose source starts with this prefix")
    p.add_argument("--mmr", type=float, default=None, metavar="LAMBDA",
                   help="diversify with maximal marginal relevance (1.0 = relevance only)")

    p = add("train", "train an adapter (lora, qlora, dora, freeze, full)", (common, kbopt))
    p.add_argument("data", nargs="*", help="alpaca, sharegpt or chat-messages JSON/JSONL")
    p.add_argument("--from-kb", metavar="KB", help="build a grounding (RAFT-style) set from this knowledge base")
    p.add_argument("--exclude", action="append", default=[], metavar="QA.jsonl",
                   help="with --from-kb: an eval set whose questions never enter the training set (repeatable)")
    p.add_argument("--hold-out-answers", action="store_true",
                   help="with --exclude: also leave out the sentences that answer its questions, so the eval "
                        "scores reading alone")
    p.add_argument("--name", help="adapter name (default: derived from the data file)")
    p.add_argument("--config", help="YAML file with training settings; flags override it")
    p.add_argument("--format", choices=["auto", "alpaca", "sharegpt", "messages"], default="auto")
    p.add_argument("--method", choices=["lora", "qlora", "dora", "freeze", "full"])
    p.add_argument("--base", help="base model: embedded name, local HF folder or hub id")
    p.add_argument("--val-ratio", type=float)
    p.add_argument("--val-data", help="separate validation file")
    p.add_argument("--mix", action="append", default=[], metavar="FILE:RATIO", help="mix in general data")
    for flag, typ in [("--rank", int), ("--alpha", float), ("--dropout", float), ("--lr", float), ("--epochs", float),
                      ("--max-steps", int), ("--batch-size", int), ("--grad-accum", int), ("--warmup-ratio", float),
                      ("--weight-decay", float), ("--seed", int), ("--max-length", int), ("--freeze-top", int),
                      ("--max-examples", int), ("--eval-steps", int)]:
        p.add_argument(flag, type=typ)
    p.add_argument("--target-modules", help="comma-separated module names (default: all linear layers)")
    p.add_argument("--resume", action="store_true", help="continue the run with this name after a kill")
    p.add_argument("--bf16", choices=["auto", "true", "false"])
    p.add_argument("--gradient-checkpointing", choices=["true", "false"])
    p.add_argument("--batching", choices=["group_by_length", "packing", "random"])
    p.add_argument("--overlong", choices=["drop", "truncate"], help="examples over --max-length (default: drop)")

    p = add("adapt", "train a knowledge base's own adapter and make it its default only if it beats RAG-only")
    p.add_argument("kb_name", metavar="KB", help="the knowledge base to adapt to")
    p.add_argument("--name", help="adapter name (default: the KB's name)")
    p.add_argument("--exclude", action="append", default=[], metavar="QA.jsonl",
                   help="an eval set whose questions and answering sentences never enter training (repeatable)")
    p.add_argument("--examples", type=int, help="grounding examples to train on (default: 300)")
    p.add_argument("--check-questions", type=int, help="held-out self-check questions (default: 50)")
    p.add_argument("--tune-retrieval", action="store_true",
                   help="also fit a query-side adapter on synthetic questions (experimental: no gain measured on real ones)")
    p.add_argument("--retrieval-only", action="store_true", help="only tune retrieval (seconds); no adapter is trained")

    p = add("adapters", "list, show, delete or merge adapters")
    p.add_argument("adapters_command", choices=["list", "show", "delete", "merge"])
    p.add_argument("name", nargs="?")
    p.add_argument("--out", help="output folder for merge")

    gen = argparse.ArgumentParser(add_help=False)
    gen.add_argument("--mode", choices=["prompt", "rag", "tuned", "hybrid"], default=None,
                     help="prompt (model alone), rag, tuned (adapter), hybrid (adapter + rag); default: hybrid with --adapter "
                          "or the KB's default adapter (ragtune adapt), else rag")
    gen.add_argument("--adapter", help="adapter name (see 'ragtune adapters list')")
    gen.add_argument("-k", type=int, default=None, help="retrieved chunks")
    gen.add_argument("--max-tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--backend", help="OpenAI-compatible base URL to generate with instead of the local model")

    p = add("ask", "answer one question with citations", (common, kbopt, gen))
    p.add_argument("question")
    p.add_argument("--no-stream", action="store_true")

    add("chat", "a conversation in the terminal, streamed, with citations", (common, kbopt, gen))

    p = add("serve", "OpenAI-compatible HTTP API (FastAPI)", (common, kbopt))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("RAGTUNE_API_KEY"))
    p.add_argument("--backend", help="OpenAI-compatible base URL to generate with")

    p = add("eval", "run questions through the four modes and report with confidence intervals", (common, kbopt))
    p.add_argument("qa", help="QA JSONL: id, question, answers, optional sources, answerable, style")
    p.add_argument("--modes", default="prompt,rag,tuned,hybrid")
    p.add_argument("--adapter")
    p.add_argument("--out", help="output folder (default: workspace runs/eval-<time>)")
    p.add_argument("-k", type=int, default=None)
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--max-tokens", type=int, default=None, help="generation limit per answer")
    p.add_argument("--robustness", action="store_true", help="also correctness vs k and vs distractors")
    p.add_argument("--judge", help="OpenAI-compatible base URL of an LLM judge (off by default)")

    p = add("demo", "build the sample KB, train or reuse its adapters, evaluate, open the UI")
    p.add_argument("--no-ui", action="store_true")
    p.add_argument("--port", type=int, default=8501)

    p = add("ui", "the Streamlit app on loopback")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than loopback (the UI has no login: anyone who reaches it can use it)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        # Library chatter is not ours to show: weight-loading bars for sub-second loads, and
        # bitsandbytes announcing optional CPU kernels it falls back from. Its import asks the
        # `kernels` package for one (on CPUs with AVX512-BF16), which offline warns that it skips a
        # "publisher trust check" for a kernel we never run: on every command that loads a model.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        for name in ("bitsandbytes", "kernels"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ragtune search ... | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # user errors become one line; programming errors stay tracebacks
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
