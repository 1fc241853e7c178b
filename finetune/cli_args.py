"""``ragtune train`` and ``ragtune adapters``: parsed flags in, one call into finetune/, a summary out."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from finetune.adapters import delete_adapter, get_adapter, list_adapters, merge_adapter
from finetune.errors import TrainError
from ragtune.workspace import Workspace

log = logging.getLogger(__name__)

# flag attribute -> TrainSettings field (flags left unset keep the config's value)
_FLAG_FIELDS = {
    "format": "format", "method": "method", "base": "base", "val_ratio": "val_ratio", "val_data": "val_data",
    "rank": "rank", "alpha": "alpha", "dropout": "dropout", "lr": "lr", "epochs": "epochs", "max_steps": "max_steps",
    "batch_size": "batch_size", "grad_accum": "grad_accum", "warmup_ratio": "warmup_ratio",
    "weight_decay": "weight_decay", "seed": "seed", "max_length": "max_length", "freeze_top": "freeze_top",
    "max_examples": "max_examples", "target_modules": "target_modules", "bf16": "bf16",
    "gradient_checkpointing": "gradient_checkpointing", "eval_steps": "eval_steps", "batching": "batching",
    "overlong": "overlong",
}
DEFAULT_GROUNDING_EXAMPLES = 400


def train_overrides(args) -> dict:
    """The settings the command line sets explicitly."""
    overrides = {field: getattr(args, flag, None) for flag, field in _FLAG_FIELDS.items()}
    if overrides.get("format") == "auto":
        overrides["format"] = None  # the parser's default: let a config file decide
    if getattr(args, "data", None):
        overrides["data"] = list(args.data)
    if getattr(args, "mix", None):
        overrides["mix"] = list(args.mix)
    return overrides


def default_name(data: list[str], from_kb: str | None) -> str:
    """An adapter name from the data file's stem (or ``grounded-<kb>``)."""
    raw = f"grounded-{from_kb}" if from_kb else Path(data[0]).stem if data else "adapter"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:64] or "adapter"


def train_from_args(ws: Workspace, args) -> int:
    """Run ``ragtune train``: settings from --config and flags, data from files or --from-kb, then train."""
    from finetune.training import load_train_settings, run_dir_for, train_adapter

    progress = not (args.quiet or args.json)
    settings = load_train_settings(ws, args.config, train_overrides(args))
    name = args.name or default_name(settings.data, args.from_kb)
    exclude, hold_out = args.exclude, args.hold_out_answers
    if (exclude or hold_out) and not args.from_kb:
        raise TrainError("--exclude and --hold-out-answers shape a grounding set: use them with --from-kb KB")
    if hold_out and not exclude:
        raise TrainError("--hold-out-answers needs the eval set whose answers to hold out: --exclude QA.jsonl")
    if args.from_kb and not args.resume:
        if args.data:
            raise TrainError("pass either DATA files or --from-kb, not both (mix general data in with --mix)")
        import dataclasses

        from evaluation.qa import load_qa

        items = [item for qa in exclude for item in load_qa(qa)]
        path = write_grounding_set(ws, args.from_kb, run_dir_for(ws, name) / "grounding.jsonl",
                                   settings.max_examples or DEFAULT_GROUNDING_EXAMPLES, progress,
                                   exclude=items, hold_out_answers=hold_out)
        settings = dataclasses.replace(settings, data=[str(path)], format="messages")
    info = train_adapter(ws, name, settings, resume=args.resume, progress=progress)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, ensure_ascii=False, default=str))
        return 0
    m = info.manifest
    metrics = m["metrics"]
    print(f"trained {info.method} adapter {info.name!r} on {Path(info.base).name}: "
          f"{metrics['steps']} steps, {m['counts']['train']} train / {m['counts']['val']} val examples, "
          f"{metrics['trainable_params']:,} trainable params, {m['wall_time_s']:.0f} s ({m['precision']}, {m['device']})")
    from finetune.report import LearningReport

    print(LearningReport(metrics["eval_loss_before"], metrics["eval_loss_after"]).summary_line())
    print(f"saved {info.path}  (loss_curve.png, report.md, {Path(info.path / 'ragtune-adapter.json').name})")
    return 0


def write_grounding_set(ws: Workspace, kb_name: str, path: Path, n_examples: int, progress: bool = True,
                        exclude=(), hold_out_answers: bool = False) -> Path:
    """Build a grounding (RAFT-style) set from knowledge base ``kb_name`` and write it as JSONL at ``path``.

    Each line is ``{"messages": [...], "meta": {...}}``: trainable as chat messages, with the
    provenance (oracle chunk, position, kind) kept for inspection. ``exclude``: evaluation
    ``QAItem``s whose questions stay out (and, with ``hold_out_answers``, the sentences holding
    their answers).
    """
    from finetune import grounding
    from retrieval.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(ws.kb_path(kb_name))
    examples = grounding.build_grounding_set(kb, n_examples, progress=progress, exclude=list(exclude),
                                             hold_out_answers=hold_out_answers)
    if not examples:
        raise TrainError(f"knowledge base {kb_name!r} gave no grounding examples; ingest documents first: "
                         f"ragtune ingest DOCS --kb {kb_name}")
    grounding.write_grounding_set(examples, path, meta=True)
    log.info("wrote %d grounding examples to %s", len(examples), path)
    return path


def adapters_from_args(ws: Workspace, args) -> int:
    """Run ``ragtune adapters list|show|delete|merge``."""
    command = args.adapters_command
    if command == "list":
        adapters = list_adapters(ws)
        if args.json:
            rows = [{k: v for k, v in a.to_dict().items() if k != "manifest"} for a in adapters]
            print(json.dumps(rows, indent=2))
        elif not adapters:
            print("(no adapters; create one with: ragtune train DATA.jsonl --name NAME)")
        else:
            for a in adapters:
                print(f"{a.name:<24} {a.method:<7} {a.created_at[:19]}  base={Path(a.base).name}  {a.path}")
        return 0
    if not args.name:
        raise TrainError(f"'ragtune adapters {command}' needs an adapter NAME; see: ragtune adapters list")
    if command == "show":
        info = get_adapter(ws, args.name)
        if args.json:
            print(json.dumps(info.to_dict(), indent=2, ensure_ascii=False, default=str))
        else:
            print(describe_adapter(info))
        return 0
    if command == "delete":
        info = delete_adapter(ws, args.name)
        print(json.dumps({"deleted": info.name, "path": str(info.path)}) if args.json else f"deleted {info.name} ({info.path})")
        return 0
    if command == "merge":
        if not args.out:
            raise TrainError(f"merge needs --out DIR: ragtune adapters merge {args.name} --out merged/")
        out = merge_adapter(ws, args.name, Path(args.out))
        print(json.dumps({"merged": args.name, "path": str(out)}) if args.json else
              f"merged {args.name} into {out} (a plain transformers model folder)")
        return 0
    raise AssertionError(command)


def describe_adapter(info) -> str:
    """A few readable lines about an adapter: what, on what, how well."""
    m = info.manifest
    metrics = m.get("metrics", {})
    counts = m.get("counts", {})
    settings = m.get("settings", {})
    lines = [
        f"name        {info.name}",
        f"method      {info.method}" + (f" (rank {settings.get('rank')}, alpha {settings.get('alpha')})"
                                        if info.is_peft else ""),
        f"base        {info.base}  (fingerprint {m.get('base_fingerprint')})",
        f"created_at  {info.created_at}",
        f"path        {info.path}",
        f"data        " + ", ".join(f"{Path(d['path']).name} ({d['examples']}, {d['role']})" for d in m.get("dataset", [])),
        f"examples    train {counts.get('train')}, val {counts.get('val')}, mixed in {counts.get('mixed_in')}",
        f"steps       {metrics.get('steps')} ({metrics.get('tokens_per_s')} tok/s, {m.get('wall_time_s')} s, {m.get('precision')})",
        f"eval loss   {metrics.get('eval_loss_before')} -> {metrics.get('eval_loss_after')}",
    ]
    return "\n".join(lines)

