"""Fine-tuning throughput and memory per method, each against a naive baseline measured in the same run.

    .venv/bin/python bench/finetune.py                 # default model, ~6-9 minutes on 2 CPU cores
    .venv/bin/python bench/finetune.py --examples 24   # quicker, noisier

Every configuration trains one epoch over the same synthetic chat set (short style answers mixed
with grounded prompts carrying 1-3 documents, so lengths vary as in real data), each in its own
subprocess so peak RSS is that configuration's alone. The baseline is what a plain script does:
peft LoRA + transformers Trainer, fp32, random batches padded to their longest example. Tokens/s
counts real (non-padding) tokens over every optimizer step but the first (warm-up), timed by a
callback between step ends; tokens per CPU-second (process time) is printed beside it because it
stays comparable when other work shares the cores. Prints a table and writes bench/results/finetune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (method, TrainSettings overrides); "baseline" is the naive script, not ragtune
CONFIGS = {
    "baseline": ("lora", {}),
    "lora (fp32, packed)": ("lora", {"bf16": "false"}),
    "lora (bf16, length-grouped)": ("lora", {"batching": "group_by_length"}),
    "lora (default: bf16, packed)": ("lora", {}),
    "qlora (4-bit, checkpointing)": ("qlora", {}),
    "dora": ("dora", {}),
    "freeze (top 4 layers)": ("freeze", {"freeze_top": 4}),
    "full": ("full", {}),
}
WORDS = ("harbour ferry ticket refund season office archive council budget river bridge museum festival permit "
         "schedule storm warden lighthouse salt market record tide north quay vessel cargo inspection").split()


def make_dataset(path: Path, n: int, seed: int = 0) -> Path:
    """Synthetic chat examples: 1/3 short answers, 2/3 grounded prompts with 1-3 documents."""
    from retrieval.citations import grounded_messages
    from retrieval.records import Chunk

    rng = random.Random(seed)

    def sentence(k):
        return " ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + "."

    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            question = f"What does record {i} say about the {rng.choice(WORDS)}?"
            answer = " ".join(sentence(rng.randint(6, 14)) for _ in range(rng.randint(1, 3)))
            if i % 3 == 0:
                messages = [{"role": "user", "content": question}]
            else:
                chunks = [Chunk(f"c{i}-{j}", f"doc{j}.md", f"Doc {j}", " ".join(sentence(rng.randint(8, 16))
                          for _ in range(rng.randint(1, 5))), 0, 0, None, None, j) for j in range(rng.randint(1, 3))]
                messages = grounded_messages(question, chunks)
                answer += " [1]"
            fh.write(json.dumps({"messages": messages + [{"role": "assistant", "content": answer}]}) + "\n")
    return path


def weights_mb(model) -> float:
    """Bytes held by the model's parameters and buffers (4-bit weights count as stored), in MB."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def step_timer():
    """A TrainerCallback timing optimizer steps (all but the first) and counting their real tokens."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.last = None
            self.seconds = 0.0
            self.cpu_seconds = 0.0
            self.tokens = 0
            self.steps = 0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.weights_mb = weights_mb(model)

        def on_step_end(self, args, state, control, **kwargs):
            now, cpu, seen = time.perf_counter(), time.process_time(), int(state.num_input_tokens_seen)
            if self.last is not None:
                self.seconds += now - self.last[0]
                self.cpu_seconds += cpu - self.last[1]
                self.tokens += seen - self.last[2]
                self.steps += 1
            self.last = (now, cpu, seen)

    return StepTimer()


def run_baseline(base: str, data: Path, batch_size: int, out: Path) -> dict:
    """The naive script: plain peft LoRA + Trainer, fp32, random padded batches."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from finetune.datasets import load_examples
    from finetune.datasets.encoding import encode_examples

    tokenizer = AutoTokenizer.from_pretrained(base)
    encoded, _ = encode_examples(tokenizer, load_examples(data), 2048)  # same tokens and labels as ragtune's
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    timer = step_timer()
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch_size, num_train_epochs=1,
                             learning_rate=2e-4, use_cpu=True, bf16=False, save_strategy="no", report_to="none",
                             disable_tqdm=True, logging_strategy="no", include_num_input_tokens_seen="non_padding",
                             remove_unused_columns=False, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=[e.as_features() for e in encoded],
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True), callbacks=[timer])
    trainer.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"tokens": timer.tokens, "seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds, "steps": timer.steps,
            "trainable_params": trainable, "weights_mb": timer.weights_mb,
            "precision": "fp32", "batching": "random"}


def run_ragtune(method: str, overrides: dict, base: str, data: Path, batch_size: int, home: Path) -> dict:
    """ragtune's own path: ``train_adapter`` with the method's defaults and ``overrides``."""
    from finetune.training import TrainSettings, train_adapter
    from ragtune.workspace import Workspace

    timer = step_timer()
    settings = TrainSettings(data=[str(data)], base=base, method=method, epochs=1, batch_size=batch_size,
                             val_ratio=0, report_examples=0, max_length=2048, **overrides)
    info = train_adapter(Workspace.open(home), "bench", settings, progress=False, callbacks=(timer,))
    metrics = info.manifest["metrics"]
    return {"tokens": timer.tokens, "seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds, "steps": timer.steps,
            "trainable_params": metrics["trainable_params"], "weights_mb": timer.weights_mb,
            "precision": info.manifest["precision"],
            "batching": settings.batching}


def worker(name: str, base: str, data: Path, batch_size: int) -> None:
    """Run one configuration and print its result as the last stdout line (JSON)."""
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-") as tmp:
        if name == "baseline":
            result = run_baseline(base, data, batch_size, Path(tmp))
        else:
            method, overrides = CONFIGS[name]
            result = run_ragtune(method, overrides, base, data, batch_size, Path(tmp))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["tokens_per_s"] = result["tokens"] / result["seconds"] if result["seconds"] else 0.0
    result["tokens_per_cpu_s"] = result["tokens"] / result["cpu_seconds"] if result["cpu_seconds"] else 0.0
    print(json.dumps(result))


def main() -> int:
    """Run every configuration in a subprocess, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24, help="examples in the epoch each configuration trains")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--base", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--models-dir", default=os.environ.get("RAGTUNE_TEST_MODELS"),
                        help="where the embedded model is converted (default: the workspace's models/)")
    parser.add_argument("--only", help="comma-separated configuration names (the baseline always runs)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "finetune.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        worker(args.worker, args.base, Path(args.data), args.batch_size)
        return 0

    from finetune.base_model import resolve_generator
    from ragtune.workspace import Workspace

    import torch

    models_dir = Path(args.models_dir) if args.models_dir else Workspace.open(None).models_dir
    base = str(resolve_generator(args.base, models_dir))
    names = ["baseline"] + [n for n in CONFIGS if n != "baseline"
                            and (not args.only or any(o.strip() in n for o in args.only.split(",")))]
    names.append("baseline (again)")  # measured first and last: the two runs show the machine's drift
    rows = {}
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-data-") as tmp:
        data = make_dataset(Path(tmp) / "bench.jsonl", args.examples)
        for name in names:
            started = time.perf_counter()
            cmd = [sys.executable, __file__, "--worker", name.replace(" (again)", ""), "--base", base, "--data", str(data),
                   "--batch-size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[name]["wall_s"] = round(time.perf_counter() - started, 1)
            print(f"  {name}: {rows[name]['tokens_per_s']:.0f} tok/s, {rows[name]['peak_rss_mb']:.0f} MB "
                  f"({rows[name]['wall_s']:.0f} s)", file=sys.stderr, flush=True)

    first, last = rows["baseline"], rows.pop("baseline (again)")
    drift = last["tokens_per_s"] / first["tokens_per_s"] - 1
    ref = dict(first, **{k: (first[k] + last[k]) / 2 for k in ("tokens_per_s", "tokens_per_cpu_s", "peak_rss_mb")})
    rows["baseline"] = ref
    for row in rows.values():
        row["speedup_vs_baseline"] = row["tokens_per_s"] / ref["tokens_per_s"]
        row["cpu_speedup_vs_baseline"] = row["tokens_per_cpu_s"] / ref["tokens_per_cpu_s"]
        row["rss_vs_baseline"] = row["peak_rss_mb"] / ref["peak_rss_mb"]
    header = (f"{'configuration':<38} {'prec':<5} {'batching':<16} {'tok/s':>7} {'x base':>7} {'tok/cpu-s':>9} "
              f"{'x base':>7} {'peak RSS MB':>12} {'x base':>7} {'weights MB':>10} {'trainable':>12}")
    print(f"fine-tuning on {Path(base).name}, {args.examples} examples, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(f"{name:<38} {r['precision']:<5} {r['batching']:<16} {r['tokens_per_s']:>7.1f} {r['speedup_vs_baseline']:>6.2f}x "
              f"{r['tokens_per_cpu_s']:>9.1f} {r['cpu_speedup_vs_baseline']:>6.2f}x "
              f"{r['peak_rss_mb']:>12.0f} {r['rss_vs_baseline']:>6.2f}x {r['weights_mb']:>10.0f} {r['trainable_params']:>12,}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"base": base, "examples": args.examples, "batch_size": args.batch_size,
                               "baseline": "plain peft LoRA r16 + Trainer, fp32, random padded batches",
                               "baseline_drift": drift, "results": rows}, indent=2) + "\n")
    print(f"baseline = mean of a first and a last run; they differed by {drift:+.0%} in tok/s. tok/cpu-s (tokens per "
          "second of this process's CPU time) is steadier than wall-clock tok/s when other work shares the cores")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
