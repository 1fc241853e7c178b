"""A training run, read top to bottom: settings → data → model → train → save.

    settings = load_train_settings(ws, config="finetune/configs/lora.yaml", overrides={"data": ["qa.jsonl"]})
    info = train_adapter(ws, "style", settings)     # -> AdapterInfo in ws.adapters_dir/style

Every piece of data is read and validated before a model loads. Training goes through the
transformers ``Trainer`` (progress bar with ETA and loss, periodic eval loss, early stopping,
a checkpoint every ``eval_steps`` and at each epoch end, resume after a kill). The run folder
``ws.runs_dir/train-<name>/`` holds the settings, checkpoints and logs; the result lands
atomically in ``ws.adapters_dir/<name>/`` with its manifest, loss curve and report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from finetune.adapters import MANIFEST_NAME, AdapterInfo, read_adapter, write_manifest
from finetune.datasets import Example, load_examples
from finetune.datasets.encoding import IGNORE_INDEX, OVERLONG_RULES, EncodingReport
from finetune.errors import DatasetError, TrainError
from ragtune import compute
from ragtune.workspace import Workspace, WorkspaceError, check_name, fill_settings

log = logging.getLogger(__name__)

BATCHING = ("packing", "group_by_length", "random")
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run depends on. Filled from config.yaml [train], then ``--config`` YAML, then flags."""

    data: list[str] = field(default_factory=list)
    """Training files (alpaca, sharegpt or chat messages; JSON or JSONL)."""
    format: str = "auto"
    """auto (detected per file from its first record), alpaca, sharegpt or messages."""
    val_data: str | None = None
    """A separate validation file; when set, ``val_ratio`` is not used."""
    val_ratio: float = 0.1
    """Share of the training examples held out for eval loss and early stopping (0 disables)."""
    mix: list[str] = field(default_factory=list)
    """General data mixed in to limit forgetting, as FILE:RATIO (share of the final training set)."""
    max_examples: int | None = None
    """Use only the first N examples of the data (quick trials)."""
    base: str | None = None
    """Base model: embedded name, local HF folder or hub id (default: the workspace's generator)."""
    method: str = "lora"
    """lora, qlora, dora, freeze or full."""
    rank: int = 16
    """LoRA/DoRA rank: higher adds capacity and memory."""
    alpha: float = 32.0
    """LoRA scaling numerator (updates are scaled by alpha / rank)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Module names that get adapters (default: every linear layer but the output head)."""
    freeze_top: int = 2
    """freeze: how many of the top decoder layers train."""
    lr: float | None = None
    """Peak learning rate (default: the method's: 2e-4 for LoRA-type, 5e-5 freeze, 2e-5 full)."""
    epochs: float = 2.0
    """Passes over the training set (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    batch_size: int = 8
    """Examples per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum)."""
    warmup_ratio: float = 0.05
    """Share of the steps spent warming the learning rate up linearly."""
    scheduler: str = "cosine"
    """Learning-rate schedule after warmup (any transformers scheduler name: cosine, linear, constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    seed: int = 42
    """Seeds the split, the mix, the shuffling and the adapter initialisation."""
    max_length: int = 1024
    """Longest example in tokens; longer ones follow ``overlong``."""
    overlong: str = "drop"
    """drop: skip examples over max_length; truncate: cut them (dropped if no answer token is left)."""
    bf16: str = "auto"
    """auto (bf16 where the CPU/GPU runs it natively), true or false."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass: less memory, about 30% slower (default: on for
    qlora, whose point is the smallest footprint; off otherwise)."""
    batching: str = "packing"
    """packing (examples share rows up to the batch's longest, position ids restart, no attention
    across examples: little padding), group_by_length (batches of similar length) or random."""
    eval_steps: int | None = None
    """Evaluate (and checkpoint) every N steps (default: five times per run)."""
    early_stopping_patience: int = 3
    """Stop after this many evaluations without a lower eval loss (0 disables)."""
    report_examples: int = 3
    """Held-out examples answered by base and tuned model in the report (0 skips generation)."""
    report_max_new_tokens: int = 64
    """Length cap of those answers."""
    keep_checkpoints: bool = False
    """Keep the run's checkpoints after success (they are deleted by default to save disk)."""

    def __post_init__(self):
        from finetune.methods import METHODS

        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, not {self.method!r}"),
            (self.format in ("auto", "alpaca", "sharegpt", "messages"), f"format {self.format!r} is unknown"),
            (0 <= self.val_ratio < 1, "val_ratio must be at least 0 and below 1"),
            (self.rank > 0 and self.alpha > 0, "rank and alpha must be positive"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.freeze_top > 0, "freeze_top must be positive"),
            (self.lr is None or self.lr > 0, "lr must be positive"),
            (self.epochs > 0, "epochs must be positive"),
            (self.max_steps is None or self.max_steps > 0, "max_steps must be positive"),
            (self.batch_size > 0 and self.grad_accum > 0, "batch_size and grad_accum must be positive"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.max_length >= 16, "max_length must be at least 16 tokens"),
            (self.overlong in OVERLONG_RULES, f"overlong must be {' or '.join(OVERLONG_RULES)}"),
            (str(self.bf16).lower() in ("auto", "true", "false"), "bf16 must be auto, true or false"),
            (self.batching in BATCHING, f"batching must be one of {', '.join(BATCHING)}"),
            (self.eval_steps is None or self.eval_steps > 0, "eval_steps must be positive"),
            (self.max_examples is None or self.max_examples > 0, "max_examples must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        object.__setattr__(self, "bf16", str(self.bf16).lower())

    @property
    def use_gradient_checkpointing(self) -> bool:
        """``gradient_checkpointing``, or the method's default (on for qlora)."""
        return self.gradient_checkpointing if self.gradient_checkpointing is not None else self.method == "qlora"

    @property
    def learning_rate(self) -> float:
        """``lr``, or the method's default."""
        from finetune.methods import get_method

        return self.lr if self.lr is not None else get_method(self.method).DEFAULT_LR

    def to_dict(self) -> dict:
        """JSON-ready settings (what the manifest records)."""
        return dataclasses.asdict(self)


def load_train_settings(ws: Workspace, config: str | Path | None = None, overrides: dict | None = None) -> TrainSettings:
    """Settings from config.yaml's ``train`` section, then the ``--config`` YAML file, then ``overrides`` (flags)."""
    values = dict(ws.config().get("train") or {})
    origin = f"{ws.config_path} [train]"
    if config:
        path = Path(config)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise TrainError(f"{path}: no such config file; see finetune/configs/ for examples") from None
        except yaml.YAMLError as exc:
            raise TrainError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise TrainError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
        origin = str(path)
    try:
        return fill_settings(TrainSettings, values, overrides, origin=origin)
    except WorkspaceError as exc:
        raise TrainError(str(exc)) from None


# --- data --------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """Validated examples, split and mixed, with where they came from."""

    train: list[Example]
    val: list[Example]
    files: list[dict]  # path, sha256, format, examples, role
    mixed: dict

    def counts(self) -> dict:
        """Example counts per split."""
        return {"train": len(self.train), "val": len(self.val), "mixed_in": sum(self.mixed.values())}


def prepare_data(settings: TrainSettings) -> PreparedData:
    """Read and validate every data file, then split and mix; no model is touched."""
    from finetune.datasets.splits import mix_examples, parse_mix, split_examples

    if not settings.data:
        raise DatasetError("no training data: pass DATA.jsonl (alpaca, sharegpt or chat messages) or --from-kb KB")
    files, task = [], []
    for path in settings.data:
        examples = load_examples(path, settings.format)
        files.append(_file_entry(path, examples, "train"))
        task += examples
    if settings.max_examples:
        task = task[: settings.max_examples]
    if settings.val_data:
        val = load_examples(settings.val_data, settings.format)
        files.append(_file_entry(settings.val_data, val, "val"))
        train = list(task)
    else:
        train, val = split_examples(task, settings.val_ratio, settings.seed)
    mixes = []
    for spec in map(parse_mix, settings.mix):
        pool = load_examples(spec.path, "auto")
        files.append(_file_entry(spec.path, pool, f"mix:{spec.ratio}"))
        mixes.append((spec, pool))
    train, mixed = mix_examples(train, mixes, settings.seed) if mixes else (train, {})
    return PreparedData(train, val, files, mixed)


def _file_entry(path, examples: list[Example], role: str) -> dict:
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(Path(path)), "format": examples[0].format,
            "examples": len(examples), "role": role}


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ListDataset:
    """Encoded examples as the map-style dataset the Trainer and its length grouping read."""

    def __init__(self, encoded):
        self.items = [e.as_features() for e in encoded]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@dataclass
class PaddingCollator:
    """Right-pads a batch: pad id for inputs, -100 for labels, an attention mask."""

    pad_id: int

    def __call__(self, features: list[dict]) -> dict:
        """The padded batch as tensors."""
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@dataclass
class PackingCollator:
    """Packs a batch's examples into as few rows as fit the longest one (first-fit decreasing).

    Position ids restart at 0 for every example and no attention mask is passed, so the model
    builds a block-diagonal causal mask: packed examples never attend to each other. Rows are
    capped at the batch's longest example, so attention never costs more than in a padded batch,
    while most padding disappears (a short example rides along beside a long one). The tail of a
    short row is filled with a pad block that is its own sequence and carries no labels.
    """

    pad_id: int

    def __call__(self, features: list[dict]) -> dict:
        """The packed batch as tensors: input_ids, labels, position_ids."""
        import torch

        capacity = max(len(f["input_ids"]) for f in features)
        rows: list[list[dict]] = []
        for f in sorted(features, key=lambda f: len(f["input_ids"]), reverse=True):
            row = next((r for r in rows if sum(len(g["input_ids"]) for g in r) + len(f["input_ids"]) <= capacity), None)
            if row is None:
                rows.append([f])
            else:
                row.append(f)
        ids = torch.full((len(rows), capacity), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), capacity), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), capacity), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for f in row:
                n = len(f["input_ids"])
                ids[r, at:at + n] = torch.tensor(f["input_ids"])
                labels[r, at + 1:at + n] = torch.tensor(f["labels"][1:])  # never learn across a boundary
                positions[r, at:at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(capacity - at)  # the pad block: a sequence of its own
        return {"input_ids": ids, "labels": labels, "position_ids": positions}


def make_collator(batching: str, pad_id: int):
    """The collator for ``batching``: packed rows for ``packing``, padded rows otherwise."""
    return PackingCollator(pad_id) if batching == "packing" else PaddingCollator(pad_id)


# --- the run -----------------------------------------------------------------------------------


def run_dir_for(ws: Workspace, name: str) -> Path:
    """The run folder of adapter ``name`` (settings, checkpoints, logs)."""
    return ws.runs_dir / f"train-{check_name(name, 'adapter')}"


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` in ``folder`` whose trainer state was fully written."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if p.name[11:].isdigit() and _state_is_complete(p)]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def _state_is_complete(checkpoint: Path) -> bool:
    # A kill -9 can land while the Trainer writes trainer_state.json: the file then exists but is
    # empty or cut short, and resuming from it would fail. Such a checkpoint is skipped.
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def resolve_base(ws: Workspace, settings: TrainSettings, progress: bool = True) -> str:
    """The base model folder for ``settings.base`` (default: the workspace's generator)."""
    from finetune.base_model import resolve_generator

    name = settings.base or (ws.config().get("models") or {}).get("generator")
    return str(resolve_generator(name, ws.models_dir, progress=progress))


def train_adapter(ws: Workspace, name: str, settings: TrainSettings, *, resume: bool = False,
                  progress: bool = True, callbacks: tuple = ()) -> AdapterInfo:
    """Train ``settings.method`` on ``settings.data`` and save adapter ``name``; returns its registry entry.

    resume: continue the interrupted run of the same name from its last checkpoint, with the
    settings that run was started with.
    callbacks: extra transformers ``TrainerCallback`` objects (the benchmark times steps with one).
    Training runs on the process's compute thread, like every model (see ragtune/compute.py).
    """
    return compute.run(_train_adapter, ws, name, settings, resume=resume, progress=progress, callbacks=callbacks)


def _train_adapter(ws: Workspace, name: str, settings: TrainSettings, *, resume: bool, progress: bool,
                   callbacks: tuple) -> AdapterInfo:
    started = time.perf_counter()
    adapter_dir = ws.adapters_dir / check_name(name, "adapter")
    run_dir = run_dir_for(ws, name)
    checkpoint = _check_run_state(adapter_dir, run_dir, resume)
    settings = _saved_settings(run_dir) if resume else _with_absolute_paths(settings)

    # 1. data: everything validated before any model loads
    data = prepare_data(settings)
    if resume:
        _check_same_data(run_dir, data)
    import torch  # the heavy stack loads only once the data is known to be good
    from transformers import AutoTokenizer, EarlyStoppingCallback, TrainingArguments

    from finetune.datasets.encoding import check_chat_template, encode_examples
    from finetune.methods import get_method, trainable_parameters
    from finetune.methods.loading import resolve_precision
    from finetune.report import LearningReport, generate_answers
    from finetune.trainer import AnswerOnlyTrainer, install_callbacks

    method = get_method(settings.method)
    base = resolve_base(ws, settings, progress)
    tokenizer = AutoTokenizer.from_pretrained(base)
    check_chat_template(tokenizer, base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_set, train_report = encode_examples(tokenizer, data.train, settings.max_length, settings.overlong)
    val_set, val_report = encode_examples(tokenizer, data.val, settings.max_length, settings.overlong)
    _log_encoding(train_report, val_report, settings)
    if not train_set:
        raise DatasetError(f"no training example fits max_length={settings.max_length} tokens "
                           f"({train_report.dropped_overlong} dropped); raise --max-length or use overlong: truncate")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=2) + "\n", encoding="utf-8")
    (run_dir / "data.json").write_text(json.dumps(data.files, indent=2) + "\n", encoding="utf-8")

    # 2. model
    precision = resolve_precision(settings.bf16)
    torch.manual_seed(settings.seed)
    model = method.prepare_model(base, settings, precision)
    trainable, total = trainable_parameters(model)
    log.info("%s on %s (%s, %s): %s of %s parameters train", settings.method, base, precision.device,
             precision.name, f"{trainable:,}", f"{total:,}")

    # 3. train
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / settings.batch_size) / settings.grad_accum)
    total_steps = settings.max_steps or math.ceil(steps_per_epoch * settings.epochs)
    eval_steps = settings.eval_steps or max(1, math.ceil(total_steps / 5))
    has_val = bool(val_set)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1, learning_rate=settings.learning_rate, lr_scheduler_type=settings.scheduler,
        warmup_steps=settings.warmup_ratio, weight_decay=settings.weight_decay, seed=settings.seed,
        bf16=precision.bf16, use_cpu=precision.device == "cpu",
        activation_checkpointing=settings.use_gradient_checkpointing and settings.method != "qlora",  # qlora: in prepare
        activation_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="group_by_length" if settings.batching == "group_by_length" else "random",
        eval_strategy="steps" if has_val else "no", eval_steps=eval_steps,
        save_strategy="steps", save_steps=eval_steps, save_total_limit=2,
        load_best_model_at_end=has_val, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=max(1, min(10, total_steps // 50)), logging_first_step=True,
        report_to="none", disable_tqdm=not progress, remove_unused_columns=False, label_names=["labels"],
        dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
    )
    trainer = AnswerOnlyTrainer(model=model, args=args, train_dataset=ListDataset(train_set),
                                eval_dataset=ListDataset(val_set) if has_val else None,
                                data_collator=make_collator(settings.batching, tokenizer.pad_token_id),
                                processing_class=tokenizer)
    install_callbacks(trainer, progress)
    for callback in callbacks:
        trainer.add_callback(callback)
    if settings.early_stopping_patience > 0 and has_val:
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))

    report = LearningReport()
    held_out = [e.messages for e in data.val[: settings.report_examples]]
    before = _before_training(run_dir, trainer, model, tokenizer, held_out, settings, precision, has_val)
    report.eval_loss_before = before.get("eval_loss")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if has_val:  # the final step is always evaluated, so the best checkpoint (now loaded) has a measured loss
        report.eval_loss_after = trainer.state.best_metric
    tuned = generate_answers(trainer.model, tokenizer, held_out, settings.report_max_new_tokens, precision.bf16) \
        if held_out and trainer.is_world_process_zero() else []
    report.examples = [{"question": _last_user(m), "reference": m[-1]["content"], "base": b, "tuned": t}
                       for m, b, t in zip(held_out, before.get("answers", []), tuned)]

    # 4. save
    if not trainer.is_world_process_zero():
        return read_adapter(adapter_dir) if (adapter_dir / MANIFEST_NAME).exists() else None
    wall = time.perf_counter() - started
    runtime = result.metrics.get("train_runtime") or wall
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    manifest = {
        "name": name, "method": settings.method, "base": base,
        "base_fingerprint": _fingerprint(base), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": "peft" if method.SAVES_ADAPTER else "transformers",
        "settings": settings.to_dict(), "learning_rate": settings.learning_rate,
        "dataset": data.files, "counts": {**data.counts(), "train_encoding": train_report.to_dict(),
                                          "val_encoding": val_report.to_dict()},
        "metrics": {"train_loss": result.training_loss, "eval_loss_before": report.eval_loss_before,
                    "eval_loss_after": report.eval_loss_after, "learned": report.learned,
                    "steps": trainer.state.global_step, "epochs": trainer.state.epoch, "tokens_seen": tokens,
                    "tokens_per_s": round(tokens / runtime, 1) if runtime else None,
                    "trainable_params": trainable, "total_params": total,
                    "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
                    if trainer.state.best_model_checkpoint else None},
        "report": report.to_dict(), "precision": precision.name, "device": precision.device,
        "wall_time_s": round(wall, 1), "resumed_from": checkpoint.name if checkpoint else None,
        "run_dir": str(run_dir), "versions": _versions(),
    }
    history = [{"step": 0, "eval_loss": report.eval_loss_before}] * has_val + trainer.state.log_history
    info = _save_result(trainer.model, tokenizer, adapter_dir, manifest, report, history)
    (run_dir / "log_history.json").write_text(json.dumps(history, indent=1) + "\n")
    if not settings.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    log.info("%s", report.summary_line())
    return info


def _check_run_state(adapter_dir: Path, run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None for a fresh run), or a ``TrainError`` saying what to do."""
    name = adapter_dir.name
    if (adapter_dir / MANIFEST_NAME).exists():
        raise TrainError(f"an adapter named {name!r} already exists; choose another --name "
                         f"or remove it with: ragtune adapters delete {name}")
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints")
    if resume:
        if checkpoint is None or not (run_dir / SETTINGS_FILE).exists():
            raise TrainError(f"nothing to resume for {name!r}: no checkpoint in {run_dir / 'checkpoints'}; "
                             "start the run without --resume")
        log.info("resuming %s from %s", name, checkpoint)
        return checkpoint
    if checkpoint is not None:
        raise TrainError(f"run {name!r} was interrupted at {checkpoint.name}; continue it with --resume, "
                         f"or start over after deleting {run_dir}")
    # a fresh start: forget an earlier attempt's partial checkpoints and measurements (a generated
    # grounding set in the folder stays: it was just written for this run)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    (run_dir / "before.json").unlink(missing_ok=True)
    return None


def _with_absolute_paths(settings: TrainSettings) -> TrainSettings:
    """Data paths made absolute, so a resumed run finds them from any directory."""
    def absolute(path):
        return str(Path(path).expanduser().resolve())

    def absolute_mix(spec: str) -> str:
        path, _, ratio = spec.rpartition(":")
        return f"{absolute(path)}:{ratio}" if path else spec

    return dataclasses.replace(settings, data=[absolute(p) for p in settings.data],
                               val_data=absolute(settings.val_data) if settings.val_data else None,
                               mix=[absolute_mix(m) for m in settings.mix])


def _check_same_data(run_dir: Path, data: PreparedData) -> None:
    saved = json.loads((run_dir / "data.json").read_text(encoding="utf-8"))
    changed = [f["path"] for f, g in zip(data.files, saved) if f["sha256"] != g["sha256"]]
    if changed or len(saved) != len(data.files):
        raise TrainError(f"cannot resume: the data changed since the run started ({', '.join(changed) or 'files differ'}); "
                         f"restore it, or start over after deleting {run_dir}")


def _saved_settings(run_dir: Path) -> TrainSettings:
    saved = json.loads((run_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
    return fill_settings(TrainSettings, saved, origin=str(run_dir / SETTINGS_FILE))


def _log_encoding(train: EncodingReport, val: EncodingReport, settings: TrainSettings) -> None:
    for split, rep in (("train", train), ("val", val)):
        if rep.dropped_overlong or rep.truncated:
            log.warning("%s split, examples over max_length=%d tokens (overlong: %s): %d dropped, %d truncated; "
                        "dropped: %s", split, settings.max_length, settings.overlong, rep.dropped_overlong,
                        rep.truncated, ", ".join(rep.dropped_where[:3]) or "none")


def _before_training(run_dir: Path, trainer, model, tokenizer, held_out, settings, precision, has_val) -> dict:
    """Eval loss and greedy answers of the untouched model, measured once (kept across a resume)."""
    from finetune.report import generate_answers

    path = run_dir / "before.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    before = {"eval_loss": trainer.evaluate()["eval_loss"] if has_val else None}
    if held_out and trainer.is_world_process_zero():
        before["answers"] = generate_answers(model, tokenizer, held_out, settings.report_max_new_tokens, precision.bf16)
    if trainer.is_world_process_zero():
        path.write_text(json.dumps(before, indent=2) + "\n", encoding="utf-8")
    return before


def _last_user(messages) -> str:
    users = [m["content"] for m in messages[:-1] if m["role"] == "user"]
    return users[-1] if users else ""


def _save_result(model, tokenizer, adapter_dir: Path, manifest: dict, report, log_history) -> AdapterInfo:
    """Write the adapter (or model) folder, manifest, loss curve and report, then move it into place."""
    from finetune.report import plot_loss_curve

    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{adapter_dir.name}-", dir=adapter_dir.parent))
    try:
        model.config.use_cache = True
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        plot_loss_curve(log_history, tmp / "loss_curve.png", f"{manifest['name']} ({manifest['method']})")
        (tmp / "report.md").write_text(report.to_markdown(manifest["name"]) + "\n", encoding="utf-8")
        write_manifest(tmp, manifest)
        os.replace(tmp, adapter_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_adapter(adapter_dir)


def _fingerprint(base: str) -> str:
    from finetune.base_model import model_fingerprint

    return model_fingerprint(base)


def _versions() -> dict:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
