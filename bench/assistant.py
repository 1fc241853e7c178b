"""Assistant benchmark: decode speed against plain ``generate``, the four modes, adapter switching.

    .venv/bin/python bench/assistant.py            # ~4 minutes on 2 cores; prints tables, writes bench/results/assistant.json
    .venv/bin/python bench/assistant.py --quick    # fewer questions and tokens, for a smoke run

Every figure is compared with a baseline measured in the same process, on the default generator
(embedded SmolLM2-135M-Instruct) and embedder (all-MiniLM-L6-v2):

1. Decode speed for 128 new tokens, greedy, same prompt: ``LocalBackend`` (bf16 activations,
   int4 weight-only matmuls for this 4-bit GGUF model, a plain loop over the KV cache; and with
   ``quantize=int8``) against a plain fp32 ``model.generate`` and a bf16 ``model.generate``.
   Target: at least 2x the fp32 generate.
   The three alternate for ``--rounds`` rounds, so each meets the same load on a shared machine;
   the best round of each counts (and the median per-round ratio is reported beside it).
   The plain ``generate`` runs on ragtune's compute thread too (ragtune/compute.py), as all of
   ragtune's model work does: a second thread computing with torch halves decode speed on 2 cores.
   Also: how many of the first 32 greedy tokens agree with the bf16 model's.
2. The four modes on a knowledge base of the demo documents (``evaluation/demo_data/kb``, Markdown
   files): time to first token, decode tokens/s, and the share of latency spent retrieving.
   tuned/hybrid use a LoRA r=16 adapter on all linear layers (untrained: same cost as a trained one).
3. Adapter switching against loading the base model: loading the model (``warm_up`` of a fresh
   backend), loading an adapter into the resident model the first time, and switching between
   two loaded adapters (``set_adapter`` on the compute thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from assistant.assistant import Assistant  # noqa: E402
from assistant.generation import LocalBackend  # noqa: E402
from assistant.records import MODES, GenerationSettings  # noqa: E402
from finetune.adapters import write_manifest  # noqa: E402
from finetune.base_model import model_fingerprint, resolve_generator  # noqa: E402
from ingest.pipeline import ingest_paths  # noqa: E402
from ragtune import compute  # noqa: E402
from ragtune.workspace import Workspace  # noqa: E402
from retrieval.knowledge_base import KnowledgeBase  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "assistant.json"
DEMO_KB = ROOT / "evaluation" / "demo_data" / "kb"
DECODE_PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
                 {"role": "user", "content": "Write a long, detailed essay about the history of ferries and ships."}]
QUESTIONS = ["Who is the chief executive of the Saltreach Ferry Cooperative?",
             "How much do I pay to bring my dog on the ferry?",
             "What happens to my ticket if a sailing is cancelled because of the weather?",
             "Where is lost property kept?"]


def plain_generate(path: Path, dtype, tokenizer, new_tokens: int):
    """A function timing one plain ``model.generate`` (greedy, exactly ``new_tokens``): (tokens/s, first 32 ids)."""
    from transformers import AutoModelForCausalLM

    model = compute.run(AutoModelForCausalLM.from_pretrained, str(path), dtype=dtype).eval()
    ids = tokenizer.apply_chat_template(DECODE_PROMPT, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]

    def generate(max_new_tokens: int):
        with torch.inference_mode():
            return model.generate(ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False)

    compute.run(generate, 8)  # warm-up

    def run() -> tuple[float, list[int]]:
        started = time.perf_counter()
        out = compute.run(generate, new_tokens)
        elapsed = time.perf_counter() - started
        return new_tokens / elapsed, out[0, ids.shape[1]:ids.shape[1] + 32].tolist()

    return run


def local_generate(backend: LocalBackend, new_tokens: int):
    """A function timing one ``LocalBackend`` answer: (tokens/s, decode-only tokens/s, tokens, first 32 ids)."""
    list(backend.stream(DECODE_PROMPT, GenerationSettings(max_tokens=8)))  # warm-up

    def run() -> tuple[float, float, int, list[int]]:
        started = time.perf_counter()
        *deltas, result = backend.stream(DECODE_PROMPT, GenerationSettings(max_tokens=new_tokens))
        elapsed = time.perf_counter() - started
        ids = backend.tokenizer("".join(deltas), add_special_tokens=False)["input_ids"][:32]
        return result.tokens / elapsed, (result.tokens - 1) / result.decode_s, result.tokens, ids

    return run


def make_lora(ws: Workspace, base: Path, name: str, seed: int) -> None:
    """An r=16 LoRA on all linear layers, saved into the workspace like a trained one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    folder = ws.adapters_dir / name
    peft_model.save_pretrained(folder)
    write_manifest(folder, {"name": name, "method": "lora", "base": str(base), "base_fingerprint": model_fingerprint(base),
                            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def bench_modes(assistant: Assistant, questions: list[str], max_tokens: int) -> list[dict]:
    rows = []
    for mode in MODES:
        adapter = "bench-a" if mode in ("tuned", "hybrid") else None
        assistant.answer(questions[0], mode=mode, adapter=adapter, max_tokens=4)  # warm-up (adapter load)
        answers = [assistant.answer(q, mode=mode, adapter=adapter, max_tokens=max_tokens) for q in questions]
        rates = [a.tokens_per_s for a in answers if a.tokens_per_s]
        rows.append({
            "mode": mode,
            "ttft_s": statistics.mean(a.first_token_s for a in answers),
            "tokens_per_s": statistics.mean(rates) if rates else None,
            "latency_s": statistics.mean(a.latency_s for a in answers),
            "retrieval_share": statistics.mean(a.retrieval_s / a.latency_s for a in answers),
            "prompt_tokens": statistics.mean(a.prompt_tokens for a in answers),
            "tokens": statistics.mean(a.tokens for a in answers),
        })
    return rows


def bench_switching(ws: Workspace, repeats: int) -> dict:
    fresh = LocalBackend(ws)
    started = time.perf_counter()
    fresh.warm_up()
    model_load = time.perf_counter() - started
    first_load = fresh.use_adapter("bench-a")
    second_load = fresh.use_adapter("bench-b")
    switches = []
    for i in range(repeats):
        name = "bench-a" if i % 2 else "bench-b"
        started = time.perf_counter()
        compute.run(fresh.peft_model.set_adapter, name, inference_mode=True)
        switches.append(time.perf_counter() - started)
    fresh.close()
    assert fresh.loads == 1
    return {"model_load_s": model_load, "adapter_first_load_s": (first_load + second_load) / 2,
            "adapter_switch_s": statistics.median(switches)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer questions and tokens")
    parser.add_argument("--home", help="workspace to use (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=3, help="decode-speed rounds (the best counts; default: 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        compute.set_threads(args.threads)
    new_tokens = 32 if args.quick else 128
    questions = QUESTIONS[:2] if args.quick else QUESTIONS
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="ragtune-bench-"))
    ws = Workspace.open(home)
    models_dir = Path(os.environ.get("RAGTUNE_BENCH_MODELS", ws.models_dir))
    path = Path(resolve_generator(None, models_dir))
    ws.config_path.write_text(f"models:\n  generator: {path}\n")

    # 1. decode speed: rounds alternate the contenders so each meets the same machine load; best round counts
    backend = LocalBackend(ws, str(path))  # the default: int4 for this model (see quantization.py)
    backend.warm_up()
    int8_backend = LocalBackend(ws, str(path), quantize="int8")
    int8_backend.warm_up()
    fp32 = plain_generate(path, torch.float32, backend.tokenizer, new_tokens)
    bf16 = plain_generate(path, torch.bfloat16, backend.tokenizer, new_tokens)
    ours = local_generate(backend, new_tokens)
    ours_int8 = local_generate(int8_backend, new_tokens)
    runs = {"fp32": [], "bf16": [], "ours": [], "int8": []}
    for _ in range(args.rounds):
        runs["fp32"].append(fp32())
        runs["bf16"].append(bf16())
        runs["ours"].append(ours())
        runs["int8"].append(ours_int8())
    fp32_rate = max(r[0] for r in runs["fp32"])
    bf16_rate, bf16_ids = max(runs["bf16"])
    ours_rate, ours_decode, ours_tokens, ours_ids = max(runs["ours"])
    int8_rate = max(r[0] for r in runs["int8"])
    agree = next((i for i, (a, b) in enumerate(zip(ours_ids, bf16_ids)) if a != b), min(len(ours_ids), len(bf16_ids)))
    backend.close()
    int8_backend.close()
    del fp32, bf16, ours, ours_int8
    decode = {"new_tokens": new_tokens, "rounds": args.rounds, "plain_fp32_generate_tok_s": fp32_rate,
              "plain_bf16_generate_tok_s": bf16_rate, "ragtune_local_tok_s": ours_rate,
              "ragtune_local_decode_only_tok_s": ours_decode, "ragtune_local_tokens": ours_tokens,
              "ragtune_local_int8_tok_s": int8_rate,
              "speedup_vs_fp32_generate": ours_rate / fp32_rate, "speedup_vs_bf16_generate": ours_rate / bf16_rate,
              "median_speedup_vs_fp32_generate": statistics.median(o[0] / f[0] for o, f in zip(runs["ours"], runs["fp32"])),
              "greedy_tokens_agreeing_with_bf16": agree,
              "dtype": str(backend._dtype()).replace("torch.", ""), "weight_bits": backend.quantize_bits(backend._dtype())}

    # 2. the four modes
    kb = KnowledgeBase.open(ws.kb_path("default"), create=True)
    docs = sorted(DEMO_KB.glob("*.md"))
    report = ingest_paths(kb, docs, progress=False)
    kb.close()
    compute.run(make_lora, ws, path, "bench-a", 1)  # on the compute thread, as every model here
    compute.run(make_lora, ws, path, "bench-b", 2)
    assistant = Assistant(ws)
    assistant.warm_up()
    modes = bench_modes(assistant, questions, max_tokens=48 if not args.quick else 16)
    assistant.close()

    # 3. adapter switching
    switching = bench_switching(ws, repeats=20)
    switching["adapter_first_load_vs_model_load"] = switching["adapter_first_load_s"] / switching["model_load_s"]
    switching["adapter_switch_vs_model_load"] = switching["adapter_switch_s"] / switching["model_load_s"]

    print(f"\nDecode, {new_tokens} new tokens, greedy (SmolLM2-135M-Instruct, {compute.run(torch.get_num_threads)} threads)")
    print(f"  {'':34}{'tokens/s':>10}{'vs fp32':>9}")
    print(f"  {'plain fp32 model.generate':34}{fp32_rate:>10.1f}{1.0:>8.2f}x")
    print(f"  {'plain bf16 model.generate':34}{bf16_rate:>10.1f}{bf16_rate / fp32_rate:>8.2f}x")
    bits = decode["weight_bits"]
    print(f"  {f'ragtune local (default: int{bits})':34}{ours_rate:>10.1f}{ours_rate / fp32_rate:>8.2f}x")
    print(f"  {'  decode only (after 1st token)':34}{ours_decode:>10.1f}{ours_decode / fp32_rate:>8.2f}x")
    print(f"  {'ragtune local, quantize=int8':34}{int8_rate:>10.1f}{int8_rate / fp32_rate:>8.2f}x")
    print(f"  first {agree} of 32 greedy tokens identical to the bf16 model's; best of {args.rounds} alternating rounds, "
          f"median ratio {decode['median_speedup_vs_fp32_generate']:.2f}x")
    print(f"\nModes ({len(questions)} questions, KB of {len(docs)} demo documents, {report.chunks_added} chunks)")
    print(f"  {'mode':8}{'TTFT s':>8}{'tok/s':>8}{'latency s':>11}{'retrieval':>11}{'prompt tok':>12}")
    for r in modes:
        rate = f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "-"
        print(f"  {r['mode']:8}{r['ttft_s']:>8.2f}{rate:>8}{r['latency_s']:>11.2f}{r['retrieval_share']:>10.0%}"
              f"{r['prompt_tokens']:>12.0f}")
    print("\nAdapters (LoRA r=16, all linear layers)")
    print(f"  load the base model          {switching['model_load_s'] * 1000:>9.1f} ms  1.00x")
    print(f"  load an adapter (first use)  {switching['adapter_first_load_s'] * 1000:>9.1f} ms  "
          f"{switching['adapter_first_load_vs_model_load']:.3f}x")
    print(f"  switch adapters              {switching['adapter_switch_s'] * 1000:>9.2f} ms  "
          f"{switching['adapter_switch_vs_model_load']:.4f}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"decode": decode, "modes": modes, "switching": switching, "quick": args.quick,
                                   "threads": torch.get_num_threads(),
                                   "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                                  indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
