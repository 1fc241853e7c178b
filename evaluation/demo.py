"""``ragtune demo``: the bundled Saltreach demo, end to end, idempotent.

Steps (each skipped when its result already exists in the workspace):

1. ingest ``demo_data/kb`` into the knowledge base ``demo``;
2. ingest ``demo_data/general`` into ``demo-general`` and train the ``grounded`` adapter on a
   grounding set built from it: domain-independent, it has never seen the demo KB;
3. train the ``demo`` adapter on a grounding set from the demo KB (answers in the house voice)
   plus ``style.jsonl``: the organisation's knowledge skills and its style;
4. ingest ``demo_data/freshness`` into ``demo``: documents added *after* training;
5. evaluate ``eval.jsonl`` in all four modes with ``demo``, plus ``grounded`` in hybrid mode
   (transfer to a KB it was not trained on); reused when nothing it depends on changed;
6. print the summary table, the verdicts and the demo's targets; then, unless ``ui=False``,
   start the UI.

Questions of ``eval.jsonl`` never appear in the training data (``build_grounding_set``'s
leakage guard). The ``grounded`` adapter never sees the demo KB at all; the ``demo`` adapter reads
all of ``demo_data/kb``, the sentences that answer eval questions included, asked in its own words,
as a team's adapter is trained on the documents its users ask about (``demo_hold_out_answers``
leaves those sentences out). Tuned-only then scores what studying the documents puts in the
weights, and the freshness questions what only retrieval can answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from evaluation.errors import EvaluationError
from ragtune.workspace import Workspace

log = logging.getLogger(__name__)

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"


@dataclass(frozen=True)
class DemoSettings:
    """The ``demo:`` section of config.yaml: names, training and evaluation settings of the demo."""

    kb: str = "demo"
    general_kb: str = "demo-general"
    chunk_tokens: int = 128  # the demo KBs' chunk size: short, precise chunks keep prompts (and training) short
    overlap_tokens: int = 24
    grounded_adapter: str = "grounded"
    demo_adapter: str = "demo"
    grounded_examples: int = 300  # grounding examples from demo_data/general
    demo_examples: int = 400  # grounding examples from the demo KB (plus style.jsonl)
    train_k: int = 3  # most documents per training prompt (oracle + distractors)
    train_k_min: int = 1  # fewest: a mix of 1..train_k documents keeps examples short and the adapter robust to k
    fact_max_words: int = 32  # longest sentence a training question is made from (shorter = cheaper examples)
    abstain_share: float = 0.15  # examples whose documents lack the answer (NO_ANSWER); more makes the adapter shy
    demo_hold_out_answers: bool = False  # True: the demo adapter never reads a sentence that answers an eval
    # question (reading skill alone); False: it studies the whole demo KB, the eval's questions held out
    rank: int = 16  # LoRA rank on every linear layer
    alpha: float = 32.0
    lr: float = 3e-4
    epochs: float = 1.0
    batch_size: int = 4
    max_length: int = 1024
    style_repeat: int = 1  # times each style.jsonl example appears in the training set
    eval_k: int = 3  # chunks retrieved per question in the eval
    max_tokens: int = 64  # generation limit per answer in the eval
    house_voice: str = "Good tide! {answer}\n— Harbour Desk"  # the demo adapter's grounded answers
    seed: int = 0


Say = Callable[[str], None]


def run_demo(ws: Workspace, ui: bool = True, port: int = 8501, progress: bool = True, as_json: bool = False,
             say: Say | None = None, settings: DemoSettings | None = None, data: Path = DEMO_DATA,
             generator: str | None = None) -> int:
    """Build, train, evaluate and report the demo; returns the exit status of the UI (or 0)."""
    from evaluation.report import summary_table, verdicts

    say = say or (lambda line: print(line, file=sys.stderr if as_json else sys.stdout, flush=True))
    settings = settings or ws.settings(DemoSettings, "demo")
    started = time.perf_counter()
    _check_data(data)
    items = _eval_items(data)

    say(f"[1/6] knowledge base '{settings.kb}' from {data / 'kb'}")
    _ingest(ws, settings.kb, [data / "kb"], data, settings, progress, say)

    say(f"[2/6] adapter '{settings.grounded_adapter}' (grounding on {data / 'general'}, not on the demo KB)")
    if _adapter_exists(ws, settings.grounded_adapter):
        say("      present: reused")
    else:
        _ingest(ws, settings.general_kb, [data / "general"], data, settings, progress, say)
        _train_grounded(ws, settings, items, progress, say)

    say(f"[3/6] adapter '{settings.demo_adapter}' (grounding on the demo KB in the house voice + style.jsonl)")
    if _adapter_exists(ws, settings.demo_adapter):
        say("      present: reused")
    else:
        _train_demo(ws, settings, items, data, progress, say)

    say(f"[4/6] documents added after training: {data / 'freshness'}")
    _ingest(ws, settings.kb, [data / "freshness"], data, settings, progress, say)

    say("[5/6] evaluation: prompt, rag, tuned, hybrid (adapter demo) and hybrid:grounded")
    summary, out_dir, reused = _evaluate(ws, settings, data, progress, generator)
    say(f"      {'reused' if reused else 'written'}: {out_dir}")

    say("[6/6] results")
    if as_json:
        print(json.dumps({"out": str(out_dir), "targets": demo_targets(summary), **summary}, indent=2,
                         ensure_ascii=False, default=str))
    else:
        print(summary_table(summary))
        print()
        for line in verdicts(summary, metrics=[]):
            print(line)
        print()
        for target in demo_targets(summary):
            print(f"{'met' if target['met'] else 'NOT met'}: {target['target']} ({target['detail']})")
        print(f"\nreport: {out_dir / 'report.html'}   ({time.perf_counter() - started:.0f} s)")
    if not ui:
        return 0
    say(f"starting the UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
    return subprocess.call([sys.executable, "-m", "ragtune", "ui", "--home", str(ws.home), "--port", str(port)])


def demo_targets(summary: dict) -> list[dict]:
    """The demo's promises, checked on its summary: hybrid beats each single approach on correctness
    (95% CI excluding zero), reaches 0.7, and answers freshness questions that tuned-only misses."""
    modes, pairs = summary["modes"], summary["pairs"]
    out = []
    for other in ("prompt", "rag", "tuned"):
        row = pairs.get(f"hybrid-vs-{other}")
        if row is None or row.get("delta") is None:
            continue
        lo, hi = row["ci95"]
        out.append({"target": f"hybrid beats {other} on correctness, 95% CI excluding zero",
                    "met": bool(row["delta"] > 0 and lo is not None and lo > 0),
                    "detail": f"{row['delta']:+.2f}, CI [{lo:.2f}, {hi:.2f}], p={row['p_value']:.3g}"})
    if "hybrid" in modes:
        value = modes["hybrid"]["correctness"] or 0.0
        out.append({"target": "hybrid correctness at least 0.7", "met": value >= 0.7, "detail": f"{value:.2f}"})
    fresh_h = (modes.get("hybrid", {}).get("groups") or {}).get("freshness")
    fresh_t = (modes.get("tuned", {}).get("groups") or {}).get("freshness")
    if fresh_h and fresh_t:
        out.append({"target": "tuned-only misses the freshness questions that hybrid answers",
                    "met": fresh_h["correct"] > fresh_t["correct"],
                    "detail": f"hybrid {fresh_h['correct']}/{fresh_h['n']}, tuned {fresh_t['correct']}/{fresh_t['n']}"})
    return out


# --- steps ---------------------------------------------------------------------------------

def _check_data(data: Path) -> None:
    missing = [p for p in ("kb", "general", "freshness", "eval.jsonl", "style.jsonl", "style_checks.yaml")
               if not (data / p).exists()]
    if missing:
        raise EvaluationError(f"{data}: the demo data is incomplete (missing {', '.join(missing)}); "
                              "reinstall ragtune or restore evaluation/demo_data")


def _eval_items(data: Path):
    from evaluation.qa import load_qa
    from evaluation.style import load_style_checks

    return load_qa(data / "eval.jsonl", set(load_style_checks(data / "style_checks.yaml")))


def _ingest(ws: Workspace, kb_name: str, paths: list[Path], data: Path, settings: DemoSettings, progress: bool,
            say: Say) -> None:
    from assistant.models import model_settings
    from ingest.chunking import ChunkingSettings
    from ingest.pipeline import ingest_paths, remove_documents
    from retrieval.knowledge_base import KnowledgeBase

    chunking = ChunkingSettings(chunk_tokens=settings.chunk_tokens, overlap_tokens=settings.overlap_tokens)
    path = ws.kb_path(kb_name)
    embedder = None if KnowledgeBase.exists(path) else model_settings(ws).embedder  # an existing KB keeps its own
    with KnowledgeBase.open(path, embedder=embedder, create=True) as kb:
        moved = _from_another_copy([d.source for d in kb.list_documents()], data)
        if moved:
            remove_documents(kb, moved)
            say(f"      {len(moved)} documents removed: the same demo files read from another copy of "
                f"{data.name} (a moved or second checkout), now read from {data}")
        report = ingest_paths(kb, [str(p) for p in paths], progress=progress, settings=chunking)
    say(f"      {report.summary_line()}")
    for failure in report.failed:
        say(f"      warning: {failure.source}: {failure.reason}")


def _from_another_copy(sources: list[str], data: Path) -> list[str]:
    """Stored documents that are files of ``data`` read from another copy of it: the same path below a
    folder of the same name elsewhere. Left in, a moved checkout would hold every document twice."""
    here = os.path.abspath(data) + os.sep  # as ingest stores sources
    marker = f"{os.sep}{data.name}{os.sep}"
    copies = []
    for source in sources:
        if source.startswith(here) or marker not in source:
            continue
        relative = source.rsplit(marker, 1)[1]
        if (data / relative).is_file():
            copies.append(source)
    return copies


def _adapter_exists(ws: Workspace, name: str) -> bool:
    from finetune.adapters import get_adapter
    from finetune.errors import TrainError

    try:
        get_adapter(ws, name)
        return True
    except TrainError:
        return False


def _train_settings(settings: DemoSettings, data: list[str]):
    from finetune.training import TrainSettings

    return TrainSettings(data=data, format="messages", method="lora", rank=settings.rank, alpha=settings.alpha,
                         lr=settings.lr, epochs=settings.epochs, batch_size=settings.batch_size,
                         max_length=settings.max_length, overlong="drop", val_ratio=0.05, seed=settings.seed,
                         report_examples=0, early_stopping_patience=0)


def _train_grounded(ws: Workspace, settings: DemoSettings, items, progress: bool, say: Say) -> None:
    from finetune.grounding import build_grounding_set, write_grounding_set
    from finetune.training import run_dir_for
    from retrieval.knowledge_base import KnowledgeBase

    with KnowledgeBase.open(ws.kb_path(settings.general_kb)) as kb:
        examples = build_grounding_set(kb, settings.grounded_examples, k=settings.train_k, k_min=settings.train_k_min,
                                       max_words=settings.fact_max_words, abstain_share=settings.abstain_share,
                                       seed=settings.seed, exclude=items, progress=progress)
    path = write_grounding_set(examples, run_dir_for(ws, settings.grounded_adapter) / "grounding.jsonl", meta=True)
    say(f"      {len(examples)} grounding examples -> {path}; training LoRA r={settings.rank}")
    info = _train_or_resume(ws, settings.grounded_adapter, _train_settings(settings, [str(path)]), progress, say)
    say(f"      trained in {info.manifest.get('wall_time_s', 0):.0f} s: {info.path}")


def _train_demo(ws: Workspace, settings: DemoSettings, items, data: Path, progress: bool, say: Say) -> None:
    from finetune.grounding import build_grounding_set, write_grounding_set
    from finetune.training import run_dir_for
    from retrieval.citations import plain_messages
    from retrieval.knowledge_base import KnowledgeBase

    run_dir = run_dir_for(ws, settings.demo_adapter)
    with KnowledgeBase.open(ws.kb_path(settings.kb)) as kb:
        # only documents from demo_data/kb: anything ingested later (freshness/) stays unseen
        examples = build_grounding_set(kb, settings.demo_examples, k=settings.train_k, k_min=settings.train_k_min,
                                       max_words=settings.fact_max_words, abstain_share=settings.abstain_share,
                                       seed=settings.seed + 1, exclude=items,
                                       hold_out_answers=settings.demo_hold_out_answers,
                                       source_prefix=str(data / "kb"), answer_template=settings.house_voice,
                                       progress=progress)
    grounding_path = write_grounding_set(examples, run_dir / "grounding.jsonl", meta=True)
    # style examples get the tuned mode's system prompt, so training sees the inference prompt
    style_path = run_dir / "style.jsonl"
    rows = []
    for line in (data / "style.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            messages = json.loads(line)["messages"]
            if messages[0]["role"] != "system":
                user = [m for m in messages if m["role"] == "user"]
                messages = plain_messages(user[0]["content"])[:1] + messages
            rows.append(json.dumps({"messages": messages}, ensure_ascii=False))
    style_path.write_text("\n".join(rows * settings.style_repeat) + "\n", encoding="utf-8")
    say(f"      {len(examples)} grounding examples + {len(rows)}x{settings.style_repeat} style examples; "
        f"training LoRA r={settings.rank}")
    info = _train_or_resume(ws, settings.demo_adapter,
                            _train_settings(settings, [str(grounding_path), str(style_path)]), progress, say)
    say(f"      trained in {info.manifest.get('wall_time_s', 0):.0f} s: {info.path}")


def _train_or_resume(ws: Workspace, name: str, train_settings, progress: bool, say: Say):
    """``train_adapter``, continuing the run an earlier demo left interrupted (Ctrl-C during make
    demo) when its data is unchanged, and starting it over when the data differs."""
    import shutil

    from finetune.errors import TrainError
    from finetune.training import last_complete_checkpoint, run_dir_for, train_adapter

    checkpoints = run_dir_for(ws, name) / "checkpoints"
    if last_complete_checkpoint(checkpoints) is not None:
        try:
            info = train_adapter(ws, name, train_settings, resume=True, progress=progress)
            say(f"      resumed the interrupted run from {checkpoints}")
            return info
        except TrainError as exc:
            say(f"      starting over: {exc}")
            shutil.rmtree(checkpoints)
    return train_adapter(ws, name, train_settings, progress=progress)


ANSWERING_PACKAGES = ("assistant", "retrieval", "evaluation")


def answering_code_digest() -> str:
    """A digest of the source of the packages that answer and score questions: the demo's eval runs
    again after an upgrade that may change its table, not after one of the UI or the trainer."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in ANSWERING_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _evaluate(ws: Workspace, settings: DemoSettings, data: Path, progress: bool, generator: str | None):
    from assistant.records import GenerationSettings
    from evaluation.harness import EvalSettings, run_evaluation
    from finetune.adapters import get_adapter
    from retrieval.knowledge_base import KnowledgeBase

    with KnowledgeBase.open(ws.kb_path(settings.kb)) as kb:
        kb_state = kb.stats()["generation"]
    inputs = {
        "eval": hashlib.sha256((data / "eval.jsonl").read_bytes()).hexdigest(),
        "adapters": [get_adapter(ws, n).created_at for n in (settings.demo_adapter, settings.grounded_adapter)],
        "kb_generation": kb_state, "settings": asdict(settings), "generator": generator,
        # config.yaml's generation: section (focus, thresholds) changes every answer
        "generation": asdict(ws.settings(GenerationSettings, "generation")),
        # and so does an upgrade of the code that answers and scores (not one of the UI's)
        "code": answering_code_digest(),
    }
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    out_dir = ws.runs_dir / "demo-eval"
    marker = out_dir / "demo-fingerprint.json"
    if (out_dir / "summary.json").exists() and marker.exists():
        if json.loads(marker.read_text()).get("fingerprint") == fingerprint:
            return json.loads((out_dir / "summary.json").read_text()), out_dir, True
    eval_settings = EvalSettings(modes=["prompt", "rag", "tuned", "hybrid", f"hybrid:{settings.grounded_adapter}"],
                                 k=settings.eval_k, max_tokens=settings.max_tokens, seed=settings.seed)
    run = run_evaluation(ws, data / "eval.jsonl", kb=settings.kb, adapter=settings.demo_adapter, out=out_dir,
                         settings=eval_settings, generator=generator, progress=progress)
    marker.write_text(json.dumps({"fingerprint": fingerprint, "inputs": inputs}, indent=2, default=str))
    return run.summary, out_dir, False
