"""``ragtune adapt KB``: a knowledge base's own adapter, kept only when it beats RAG-only on that KB.

1. Self-check questions: ``check_questions`` facts of the KB, drawn at random and spread over its
   chunks, become questions with known answers (``finetune.grounding.check_questions``).
   With ``tune_retrieval`` (``--tune-retrieval``), retrieval is tuned to the KB on questions about its
   other sentences: a query-side linear adapter (``retrieval/query_adapter.py``), kept only if it ranks
   the right chunk first more often on synthetic questions held out of its fit. Off by default: on
   real questions it did not help (docs/lab/2026-12-05-kb-adaptation.md). ``--retrieval-only`` stops here.
2. A grounding set from the rest of the KB (``build_grounding_set``): the self-check questions and
   the sentences that answer them stay out, and so do the questions of every ``--exclude`` file.
3. The adapter is trained (LoRA; the settings below).
4. The self-check is answered RAG-only and in hybrid with the new adapter; the harness pairs them
   (exact McNemar, bootstrap CI of the difference).
5. The adapter becomes the KB's default (``finetune.adapters.set_kb_default``) only when the lower
   end of that CI is above zero. Otherwise the KB keeps answering RAG-only, and the report says why.

The check is synthetic: its questions are made the way the training questions are, from sentences
the adapter never read. It tells whether the adapter helps on *this* KB's documents; it is no
substitute for questions a team writes itself (pass those to ``ragtune eval``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from evaluation.errors import EvaluationError
from evaluation.harness import EvalSettings, run_evaluation
from evaluation.qa import load_qa
from finetune.adapters import MANIFEST_NAME, kb_default_adapter, set_kb_default
from finetune.grounding import (GroundingSettings, build_grounding_set, check_questions, retrieval_questions,
                                write_grounding_set)
from finetune.training import TrainSettings, run_dir_for, train_adapter
from ragtune.workspace import Workspace, check_name
from retrieval.errors import RetrievalError
from retrieval.knowledge_base import KnowledgeBase
from retrieval.query_adapter import QueryAdapterReport, QueryAdapterSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptSettings:
    """The ``adapt:`` section of config.yaml: how ``ragtune adapt`` builds, trains and checks."""

    examples: int = 300
    """Grounding examples built from the KB (about 1 s of training each on 2 CPU cores)."""
    check_questions: int = 50
    """Held-out questions of the self-check. Fewer make it faster but a real gain harder to prove."""
    k: int = 3
    """Most documents per training prompt (the oracle and its distractors)."""
    k_min: int = 1
    """Fewest documents per training prompt: a mix of 1..k keeps examples short and the adapter robust to k."""
    max_words: int = 32
    """Longest sentence a question is made from."""
    abstain_share: float = 0.15
    """Examples whose documents lack the answer (answered NO_ANSWER); more makes the adapter shy."""
    rank: int = 16
    alpha: float = 32.0
    lr: float = 3e-4
    epochs: float = 1.0
    batch_size: int = 4
    max_length: int = 1024
    base: str | None = None
    """Base model (None: the workspace's generator)."""
    eval_k: int = 3
    """Chunks retrieved per self-check question."""
    max_tokens: int = 64
    """Generation limit per self-check answer."""
    seed: int = 0

    def __post_init__(self):
        if self.examples < 10:
            raise ValueError(f"examples must be at least 10, got {self.examples}")
        if self.check_questions < 10:
            raise ValueError(f"check_questions must be at least 10 (fewer can never prove a gain), got {self.check_questions}")


@dataclass(frozen=True)
class SelfCheck:
    """RAG-only against hybrid with the new adapter on the held-out self-check questions."""

    questions: int
    rag: float
    hybrid: float
    delta: float
    ci95: tuple[float, float]
    p_value: float  # exact McNemar
    hybrid_better: int
    rag_better: int
    false_abstention: dict  # mode -> share of answerable questions answered NO_ANSWER
    eval_dir: str = ""

    @property
    def wins(self) -> bool:
        """The gate: the 95% CI of the gain lies above zero."""
        return self.ci95[0] is not None and self.ci95[0] > 0


@dataclass(frozen=True)
class AdaptReport:
    """What ``adapt_kb`` did and why the adapter was, or was not, made the KB's default."""

    kb: str
    retrieval: QueryAdapterReport | None = None  # None unless retrieval was tuned
    adapter: str | None = None  # None with --retrieval-only
    adapter_path: str | None = None
    examples: int = 0
    check: SelfCheck | None = None
    default_adapter: str | None = None
    """The KB's default adapter after this run (None: RAG-only)."""
    reason: str = ""
    wall_s: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.check is not None and self.check.wins

    def to_dict(self) -> dict:
        return {**asdict(self), "accepted": self.accepted}

    def summary_lines(self) -> list[str]:
        lines = [self.retrieval.summary_line()] if self.retrieval else []
        if self.check:
            c = self.check
            lines.append(f"self-check on {c.questions} held-out questions of {self.kb!r}: rag {c.rag:.2f}, "
                         f"hybrid:{self.adapter} {c.hybrid:.2f}, difference {c.delta:+.2f} "
                         f"[{c.ci95[0]:+.2f}, {c.ci95[1]:+.2f}] (McNemar p={c.p_value:.3g}, "
                         f"{c.hybrid_better} better / {c.rag_better} worse)")
        return lines + ([self.reason] if self.reason else [])


def adapt_kb(ws: Workspace, kb_name: str, name: str | None = None, exclude: list[str | Path] = (),
             settings: AdaptSettings | None = None, progress: bool = True, tune_retrieval: bool = False,
             retrieval_only: bool = False) -> AdaptReport:
    """Tune ``kb_name``'s retrieval, build its grounding set, train its adapter, self-check it against
    RAG-only, and make it the KB's default only if it wins (see the module docstring)."""
    settings = settings or ws.settings(AdaptSettings, "adapt")
    name = check_name(name or kb_name, "adapter")
    started = time.perf_counter()
    run_dir = run_dir_for(ws, name)
    items = [item for qa in exclude for item in load_qa(qa)]
    grounding = GroundingSettings(k=settings.k, k_min=settings.k_min, max_words=settings.max_words,
                                  abstain_share=settings.abstain_share, seed=settings.seed)
    if not KnowledgeBase.exists(ws.kb_path(kb_name)):
        raise EvaluationError(f"no knowledge base named {kb_name!r}; create it with: ragtune ingest DOCS --kb {kb_name}")
    if not retrieval_only and (ws.adapters_dir / name / MANIFEST_NAME).exists():
        raise EvaluationError(f"an adapter named {name!r} already exists; choose another --name or remove it with: "
                              f"ragtune adapters delete {name}")
    with KnowledgeBase.open(ws.kb_path(kb_name)) as kb:
        checks = check_questions(kb, settings.check_questions, settings=grounding, exclude=items)
        if len(checks) < 10:
            raise EvaluationError(f"knowledge base {kb_name!r} has {len(checks)} sentences to ask about; the self-check "
                                  "needs at least 10: ingest more documents")
        tuned = None
        if tune_retrieval or retrieval_only:
            pairs = retrieval_questions(kb, settings=grounding, exclude=items + checks)
            try:
                tuned = kb.fit_query_adapter(pairs, QueryAdapterSettings(seed=settings.seed))
            except RetrievalError as exc:
                raise EvaluationError(str(exc)) from None
        if retrieval_only:
            return AdaptReport(kb=kb_name, retrieval=tuned, default_adapter=kb_default_adapter(ws, kb_name),
                               wall_s=round(time.perf_counter() - started, 1))
        examples = build_grounding_set(kb, settings.examples, settings=grounding, exclude=items + checks,
                                       hold_out_answers=True, progress=progress)
    if not examples:
        raise EvaluationError(f"knowledge base {kb_name!r} gave no grounding examples; ingest more documents")
    run_dir.mkdir(parents=True, exist_ok=True)
    check_path = run_dir / "selfcheck.jsonl"
    check_path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in checks), encoding="utf-8")
    data = write_grounding_set(examples, run_dir / "grounding.jsonl", meta=True)
    log.info("adapt %s: %d grounding examples, %d self-check questions", kb_name, len(examples), len(checks))

    info = train_adapter(ws, name, _train_settings(settings, data), progress=progress)
    run = run_evaluation(ws, check_path, kb=kb_name, adapter=name, out=run_dir / "selfcheck",
                         settings=EvalSettings(modes=["rag", "hybrid"], k=settings.eval_k,
                                               max_tokens=settings.max_tokens, seed=settings.seed),
                         progress=progress)
    check = dataclasses.replace(self_check(run.summary), eval_dir=str(run.out_dir))
    reason = _decide(ws, kb_name, name, check)
    report = AdaptReport(kb=kb_name, retrieval=tuned, adapter=name, adapter_path=str(info.path),
                         examples=len(examples), check=check, default_adapter=kb_default_adapter(ws, kb_name),
                         reason=reason, wall_s=round(time.perf_counter() - started, 1))
    (run_dir / "adapt.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def _train_settings(settings: AdaptSettings, data: Path) -> TrainSettings:
    return TrainSettings(data=[str(data)], format="messages", method="lora", base=settings.base, rank=settings.rank,
                         alpha=settings.alpha, lr=settings.lr, epochs=settings.epochs, batch_size=settings.batch_size,
                         max_length=settings.max_length, overlong="drop", val_ratio=0.05, seed=settings.seed,
                         report_examples=0, early_stopping_patience=0)


def self_check(summary: dict) -> SelfCheck:
    """The rag-vs-hybrid comparison of an evaluation summary (``run_evaluation``'s)."""
    pair = summary["pairs"]["hybrid-vs-rag"]
    modes = summary["modes"]
    return SelfCheck(questions=pair["n"], rag=modes["rag"]["correctness"], hybrid=modes["hybrid"]["correctness"],
                     delta=pair["delta"], ci95=tuple(pair["ci95"]), p_value=pair["p_raw"],
                     hybrid_better=pair.get("b_better", 0), rag_better=pair.get("a_better", 0),
                     false_abstention={m: modes[m].get("false_abstention_rate") for m in ("rag", "hybrid")})


def _decide(ws: Workspace, kb_name: str, name: str, check: SelfCheck) -> str:
    """The gate: ``name`` becomes the KB's default only if it won the self-check; returns why or why not."""
    previous = kb_default_adapter(ws, kb_name)
    if check.wins:
        set_kb_default(ws, kb_name, name, {k: v for k, v in asdict(check).items() if k != "eval_dir"})
        return f"kept: {name!r} is now the default adapter of {kb_name!r} (hybrid beats RAG-only, CI above zero)"
    return (f"not kept: {name!r} did not beat RAG-only with a CI above zero; {kb_name!r} keeps answering "
            + (f"with {previous!r}" if previous else "RAG-only") + f" (use it anyway: --adapter {name})")
