"""The evaluation harness: the same questions through every answer mode, scored, compared, reported.

``run_evaluation`` is the one entry point (the CLI, the UI and the demo call it):

1. validate the QA file (and its style checks) before any model loads;
2. answer every question in every mode (``prompt``, ``rag``, ``tuned``, ``hybrid``, or
   ``MODE:ADAPTER`` to pin an adapter), streaming one record per answer to ``results.jsonl``;
3. score each answer with every metric in ``evaluation.metrics.METRICS`` (plus the optional
   LLM judge);
4. summarise: per-mode means with 95% bootstrap intervals, then every pair of modes with
   paired tests (exact McNemar on correctness, paired bootstrap on the rest, Holm-corrected)
   into ``summary.json``;
5. optionally measure robustness (correctness against k and against added distractors);
6. write ``report.md``, ``report.html`` and the charts.

A run folder holds ``settings.json`` (what produced it), ``results.jsonl``, ``summary.json``,
the reports, and with ``robustness`` also ``robustness.json`` and ``robustness.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evaluation.errors import EvaluationError
from evaluation.metrics import METRICS, aggregate_latency, contains_answer, score_answer, source_matches
from evaluation.qa import QAItem, load_qa
from evaluation.statistics import DEFAULT_RESAMPLES, bootstrap_ci, compare_modes
from evaluation.style import StyleCheck, load_style_checks
from ragtune.workspace import DEFAULT_KB, Workspace

log = logging.getLogger(__name__)

MODES = ("prompt", "rag", "tuned", "hybrid")
NEEDS_ADAPTER = frozenset({"tuned", "hybrid"})
RETRIEVES = frozenset({"rag", "hybrid"})
STYLE_FILE = "style_checks.yaml"
# Metrics compared pairwise (correctness by exact McNemar, the others by paired bootstrap).
PAIRED_METRICS = ["correctness", "token_f1", "rouge_l", "retrieval_hit_at_k", "mrr", "citation_precision",
                  "citation_recall", "groundedness", "abstention_accuracy", "false_abstention_rate", "style"]


@dataclass(frozen=True)
class EvalSettings:
    """The ``eval:`` section of config.yaml; ``ragtune eval`` flags override it."""

    modes: list[str] = field(default_factory=lambda: list(MODES))  # MODE or MODE:ADAPTER
    k: int | None = None  # retrieved chunks per question (None: the assistant's default)
    limit: int | None = None  # only the first N questions
    max_tokens: int | None = None  # generation limit per answer (None: the assistant's default)
    robustness: bool = False  # also correctness vs k and vs distractors
    robustness_k: list[int] = field(default_factory=lambda: [0, 1, 3, 5])
    robustness_distractors: list[int] = field(default_factory=lambda: [0, 2, 4, 8])
    resamples: int = DEFAULT_RESAMPLES  # bootstrap resamples for intervals and paired tests
    seed: int = 0
    style_checks: str | None = None  # YAML of named style checks (default: style_checks.yaml beside the QA file)

    def __post_init__(self):
        if not self.modes:
            raise ValueError("modes: name at least one of prompt, rag, tuned, hybrid")
        if self.k is not None and self.k < 0:
            raise ValueError(f"k must be 0 or more, got {self.k}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.resamples < 100:
            raise ValueError(f"resamples must be at least 100, got {self.resamples}")


@dataclass(frozen=True)
class ModeSpec:
    """One column of the comparison: a mode, the adapter it uses, and its label."""

    label: str
    mode: str
    adapter: str | None = None


@dataclass
class EvaluationRun:
    """What ``run_evaluation`` produced: the run folder, the summary and every answer record."""

    out_dir: Path
    summary: dict
    records: list[dict]
    robustness: dict | None = None
    files: dict[str, Path] = field(default_factory=dict)


def parse_modes(modes: Sequence[str], adapter: str | None) -> tuple[list[ModeSpec], dict[str, str]]:
    """Mode specs from ``prompt``/``rag``/``tuned``/``hybrid``/``MODE:ADAPTER``; modes needing an
    adapter when none is given are returned as skipped, with the reason."""
    specs, skipped = [], {}
    for raw in modes:
        raw = raw.strip()
        if not raw:
            continue
        mode, _, pinned = raw.partition(":")
        if mode not in MODES:
            raise EvaluationError(f"unknown mode {raw!r}; use prompt, rag, tuned, hybrid or MODE:ADAPTER (hybrid:grounded)")
        if pinned and mode not in NEEDS_ADAPTER:
            raise EvaluationError(f"mode {raw!r}: only tuned and hybrid take an adapter")
        name = pinned or (adapter if mode in NEEDS_ADAPTER else None)
        if mode in NEEDS_ADAPTER and not name:
            skipped[raw] = "needs an adapter: pass --adapter NAME (see 'ragtune adapters list')"
            continue
        label = raw if pinned else mode
        if label in {s.label for s in specs}:
            raise EvaluationError(f"mode {raw!r} is listed twice")
        specs.append(ModeSpec(label, mode, name))
    if not specs:
        why = "; ".join(f"{m}: {r}" for m, r in skipped.items())
        raise EvaluationError(f"no mode left to evaluate ({why})")
    return specs, skipped


def run_evaluation(ws: Workspace, qa_path: str | Path, *, kb: str = DEFAULT_KB, adapter: str | None = None,
                   out: str | Path | None = None, settings: EvalSettings | None = None, assistant: Any = None,
                   generator: str | None = None, judge: str | None = None, progress: bool = True) -> EvaluationRun:
    """Answer ``qa_path``'s questions in every mode, score, compare and report into a run folder.

    assistant: an ``assistant.Assistant`` to reuse (else one is built for ``kb`` and ``generator``).
    judge: base URL of an OpenAI-compatible endpoint to also score answers with an LLM judge.
    """
    settings = settings or EvalSettings()
    qa_path = Path(qa_path)
    styles = _style_checks(qa_path, settings)
    items = load_qa(qa_path, set(styles))
    if settings.limit:
        items = items[: settings.limit]
    specs, skipped = parse_modes(settings.modes, adapter)
    for name, why in skipped.items():
        log.warning("skipping mode %s: %s", name, why)
    _check_adapters(ws, specs)
    if any(s.mode in RETRIEVES for s in specs) or settings.robustness:
        _check_kb(ws, kb)
    judge_client = None
    if judge:
        from evaluation.judge import Judge

        judge_client = Judge(judge)
    out_dir = Path(out) if out else ws.runs_dir / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)

    if assistant is None:
        from assistant.assistant import Assistant

        assistant = Assistant(ws, kb=kb, generator=generator)
    assistant.warm_up()
    backend = getattr(assistant, "backend", None)
    generator_name = str(getattr(backend, "generator", None) or getattr(backend, "model", None) or generator or "default")
    _write_json(out_dir / "settings.json", {
        "qa_file": str(qa_path.resolve()), "qa_sha256": hashlib.sha256(qa_path.read_bytes()).hexdigest(),
        "kb": kb, "adapter": adapter, "generator": generator_name, "judge": judge,
        "modes": [asdict(s) for s in specs], "skipped": skipped, "settings": asdict(settings),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })

    records: list[dict] = []
    started = time.perf_counter()
    bar = tqdm(total=len(items) * len(specs), desc="eval", unit="answer", disable=not progress)
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as fh:
        for spec in specs:  # mode-major: one adapter active at a time
            bar.set_description(f"eval {spec.label}")
            for item in items:
                answer = _answer(assistant, item.question, spec, settings.k, settings.max_tokens)
                scores = score_answer(item, answer, styles)
                if judge_client is not None:
                    scores["judge"] = judge_client.score(item, answer.text)
                record = answer_record(item, spec, answer, scores, styles)
                records.append(record)
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                fh.flush()
                bar.update(1)
    bar.close()

    summary = summarize(items, records, specs, settings, extra={
        "qa_file": str(qa_path), "kb": kb, "generator": generator_name, "k": settings.k if settings.k is not None
        else getattr(getattr(assistant, "settings", None), "k", None), "skipped": skipped,
        "wall_s": round(time.perf_counter() - started, 1)})
    robustness = None
    if settings.robustness:
        robustness = robustness_curves(ws, assistant, kb, items, specs, settings, progress=progress)
        _write_json(out_dir / "robustness.json", robustness)
    _write_json(out_dir / "summary.json", summary)
    from evaluation.report import write_reports

    files = write_reports(out_dir, summary, records, robustness)
    files.update({"results.jsonl": out_dir / "results.jsonl", "summary.json": out_dir / "summary.json",
                  "settings.json": out_dir / "settings.json"})
    if robustness:
        files["robustness.json"] = out_dir / "robustness.json"
    return EvaluationRun(out_dir, summary, records, robustness, files)


def answer_record(item: QAItem, spec: ModeSpec, answer: Any, scores: dict, styles: dict[str, StyleCheck]) -> dict:
    """The JSON line for one answer: question, answer, citations, context, timings, tokens and scores."""
    record = {
        "id": item.id, "mode": spec.label, "adapter": spec.adapter, "question": item.question,
        "accepted": list(item.answers), "answerable": item.answerable, "freshness": item.freshness,
        "answer": answer.text, "abstained": bool(getattr(answer, "abstained", False)),
        "citations": [c.to_dict() for c in (answer.citations or [])],
        "dropped_citations": list(getattr(answer, "dropped_citations", []) or []),
        "context": [h.to_dict() for h in (answer.context or [])],
        "latency_s": getattr(answer, "latency_s", None), "retrieval_s": getattr(answer, "retrieval_s", None),
        "first_token_s": getattr(answer, "first_token_s", None), "tokens": getattr(answer, "tokens", None),
        "numbers_steered": int((getattr(answer, "extra", None) or {}).get("numbers_steered") or 0),
        "shape_retry": bool((getattr(answer, "extra", None) or {}).get("shape_retry")),
        "scores": scores,
    }
    if item.style:
        record["style_check"] = {"name": item.style, "rules": styles[item.style].results(answer.text)}
    return record


def summarize(items: list[QAItem], records: list[dict], specs: list[ModeSpec], settings: EvalSettings,
              extra: dict | None = None) -> dict:
    """``summary.json``: per-mode metrics with 95% intervals and paired tests for every pair of modes."""
    metric_names = list(METRICS) + (["judge"] if records and "judge" in records[0]["scores"] else [])
    per_mode: dict[str, dict[str, list]] = {}
    modes_out: dict[str, dict] = {}
    for spec in specs:
        rows = [r for r in records if r["mode"] == spec.label]
        by_id = {r["id"]: r for r in rows}
        ordered = [by_id[i.id] for i in items if i.id in by_id]
        values = {m: [r["scores"].get(m) for r in ordered] for m in metric_names}
        per_mode[spec.label] = values
        row: dict[str, Any] = {"mode": spec.mode, "adapter": spec.adapter, "n": len(ordered)}
        cis = {}
        for m in metric_names:
            mean, ci = bootstrap_ci(values[m], resamples=settings.resamples, seed=settings.seed)
            row[m] = mean
            cis[m] = list(ci)
        row["correctness_ci95"] = cis["correctness"]
        row["ci95"] = cis
        row.update(aggregate_latency([r["latency_s"] for r in ordered], [r["tokens"] for r in ordered],
                                     [(r["latency_s"] or 0) - (r["retrieval_s"] or 0) for r in ordered]))
        fresh = [by_id[i.id] for i in items if i.freshness and i.id in by_id]
        groups = {}
        if fresh:
            groups["freshness"] = {"n": len(fresh), "correct": int(sum(r["scores"]["correctness"] for r in fresh)),
                                   "correctness": sum(r["scores"]["correctness"] for r in fresh) / len(fresh)}
        unanswerable = [r for r in ordered if not r["answerable"]]
        if unanswerable:
            groups["unanswerable"] = {"n": len(unanswerable),
                                      "correct": int(sum(r["scores"]["correctness"] for r in unanswerable))}
        row["groups"] = groups
        modes_out[spec.label] = row
    raw_pairs = compare_modes(per_mode, [m for m in PAIRED_METRICS + (["judge"] if "judge" in metric_names else [])],
                              resamples=settings.resamples, seed=settings.seed)
    pairs = {}
    for name, by_metric in raw_pairs.items():
        top = dict(by_metric["correctness"])
        top["metrics"] = {m: v for m, v in by_metric.items() if m != "correctness" and v["n"] > 0}
        pairs[name] = top
    return {**(extra or {}), "n_questions": len(items), "modes": modes_out, "pairs": pairs}


# --- robustness ----------------------------------------------------------------------------

def robustness_curves(ws: Workspace, assistant: Any, kb_name: str, items: list[QAItem], specs: list[ModeSpec],
                      settings: EvalSettings, progress: bool = True) -> dict:
    """Correctness against k (``robustness_k``) and against distractor chunks added to the context
    (``robustness_distractors``), for the base model (rag) and for each adapter (hybrid)."""
    from retrieval.knowledge_base import KnowledgeBase

    curves_for = [ModeSpec("rag", "rag", None)]
    for adapter in dict.fromkeys(s.adapter for s in specs if s.adapter):
        curves_for.append(ModeSpec(f"hybrid:{adapter}", "hybrid", adapter))
    answerable = [i for i in items if i.answerable]
    with KnowledgeBase.open(ws.kb_path(kb_name)) as kb:
        pool = list(kb.iter_chunks())
    rng = random.Random(settings.seed)
    max_d = max(settings.robustness_distractors or [0])
    distractors = {i.id: _distractors_for(i, pool, max_d, rng) for i in answerable}
    base_k = settings.k if settings.k is not None else getattr(getattr(assistant, "settings", None), "k", 3) or 3
    total = len(curves_for) * len(answerable) * (len(settings.robustness_k) + len(settings.robustness_distractors))
    bar = tqdm(total=total, desc="robustness", unit="answer", disable=not progress)
    out: dict[str, dict] = {"k": {}, "distractors": {}, "questions": len(answerable), "base_k": base_k}
    for spec in curves_for:
        for axis, xs in (("k", settings.robustness_k), ("distractors", settings.robustness_distractors)):
            curve = []
            for x in xs:
                scores = []
                for item in answerable:
                    k = x if axis == "k" else base_k
                    extra = distractors[item.id][:x] if axis == "distractors" else None
                    answer = _answer(assistant, item.question, spec, k, settings.max_tokens, extra)
                    scores.append(METRICS["correctness"](item, answer, None))
                    bar.update(1)
                mean, ci = bootstrap_ci(scores, resamples=settings.resamples, seed=settings.seed)
                curve.append({"x": x, "correctness": mean, "ci95": list(ci), "n": len(scores)})
            out[axis][spec.label] = curve
    bar.close()
    return out


def _distractors_for(item: QAItem, pool: list, n: int, rng: random.Random) -> list:
    """``n`` chunks that neither come from the item's gold sources nor contain an accepted answer."""
    usable = [c for c in pool if not any(source_matches(c.source, g) for g in item.sources)
              and not any(contains_answer(c.text, a) for a in item.answers)]
    return rng.sample(usable, min(n, len(usable)))


# --- helpers beside their only user --------------------------------------------------------

def _answer(assistant: Any, question: str, spec: ModeSpec, k: int | None, max_tokens: int | None,
            extra_context: list | None = None):
    kwargs: dict[str, Any] = {"adapter": spec.adapter}
    if k is not None:
        kwargs["k"] = k
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if extra_context:
        kwargs["extra_context"] = extra_context
    return assistant.answer(question, spec.mode, **kwargs)


def _style_checks(qa_path: Path, settings: EvalSettings) -> dict[str, StyleCheck]:
    if settings.style_checks:
        path = Path(settings.style_checks)
        if not path.is_file():
            raise EvaluationError(f"{path}: no such style checks file")
        return load_style_checks(path)
    beside = qa_path.parent / STYLE_FILE
    return load_style_checks(beside) if beside.is_file() else {}


def _check_adapters(ws: Workspace, specs: list[ModeSpec]) -> None:
    from finetune.adapters import get_adapter
    from finetune.errors import TrainError

    for name in dict.fromkeys(s.adapter for s in specs if s.adapter):
        try:
            get_adapter(ws, name)
        except TrainError as exc:
            raise EvaluationError(str(exc)) from None


def _check_kb(ws: Workspace, kb: str) -> None:
    from retrieval.knowledge_base import KnowledgeBase

    if not KnowledgeBase.exists(ws.kb_path(kb)):
        raise EvaluationError(f"no knowledge base '{kb}' in {ws.home}; the rag and hybrid modes need one: "
                              f"ragtune ingest PATH --kb {kb}")


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
