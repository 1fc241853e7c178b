"""Evaluation fixtures: a workspace whose generator is a tiny Llama taught one fixed answer, a real
knowledge base ingested by the pipeline with the tiny embedder, and a PEFT adapter."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

PARROT = "The ferry leaves at seven [1]."
DOCS = {
    "ferry.md": "# Ferry\n\nThe ferry leaves the harbour at seven every weekday morning and docks at noon.",
    "refunds.md": "# Refunds\n\nRefunds are issued within 14 days of purchase. Gift cards cannot be refunded.",
    "office.md": "# Office\n\nThe office opened in 1998 in Lisbon and moved to Porto in 2010.",
}
QA = [
    {"id": "q1", "question": "When does the ferry leave?", "answers": ["seven", "7"], "sources": ["docs/ferry.md"]},
    {"id": "q2", "question": "Where did the office move?", "answers": ["Porto"], "sources": ["docs/office.md"]},
    {"id": "q3", "question": "Who owns the moon?", "answers": [], "answerable": False},
    {"id": "q4", "question": "How long do refunds take?", "answers": ["14 days"], "sources": ["docs/refunds.md"],
     "style": "short", "freshness": True},
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models train and generate several times faster on one thread when the 2 cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def eval_parrot_path(tmp_path_factory, tiny_llama_path) -> Path:
    """The tiny Llama trained for a few seconds to answer PARROT whatever the prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from retrieval.citations import grounded_messages, plain_messages
    from retrieval.records import Chunk

    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    chunks = [Chunk(f"c{i}", name, name, text, 0, len(text)) for i, (name, text) in enumerate(DOCS.items())]
    prompts = [plain_messages(q["question"]) for q in QA]
    prompts += [grounded_messages(q["question"], chunks[:n]) for q in QA for n in (0, 1, 2)]
    examples = []
    for messages in prompts:
        p_ids = tok(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                    add_special_tokens=False)["input_ids"]
        a_ids = tok(PARROT + "<|im_end|>", add_special_tokens=False)["input_ids"]
        examples.append((torch.tensor([p_ids + a_ids]), len(p_ids)))
    torch.manual_seed(0)
    optim = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is several times faster on a busy 2-core machine
    try:
        for step in range(40):
            ids, n_prompt = examples[step % len(examples)]
            labels = ids.clone()
            labels[:, :n_prompt] = -100
            model(input_ids=ids, labels=labels).loss.backward()
            optim.step()
            optim.zero_grad()
    finally:
        torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("eval-parrot")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_adapter(ws, base: Path, name: str) -> Path:
    """A LoRA adapter saved as finetune/ saves one (zero-initialised B: same answers as the base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.adapters import write_manifest
    from finetune.base_model import model_fingerprint

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    folder = ws.adapters_dir / name
    peft_model.save_pretrained(folder)
    write_manifest(folder, {"name": name, "method": "lora", "base": str(base), "base_fingerprint": model_fingerprint(base),
                            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return folder


@pytest.fixture
def adapter_maker():
    """``make_adapter`` for tests outside this file."""
    return make_adapter


@pytest.fixture(scope="session")
def eval_home(tmp_path_factory, eval_parrot_path, tiny_embedder_path) -> Path:
    """A workspace folder: config pointing at the tiny models, KB 'default' with DOCS, adapter 'tiny',
    and qa.jsonl + style_checks.yaml in ``<home>/qa/``."""
    import yaml

    from ingest.pipeline import ingest_paths
    from ragtune.workspace import Workspace
    from retrieval.knowledge_base import KnowledgeBase

    root = tmp_path_factory.mktemp("eval-ws")
    ws = Workspace.open(root / "home")
    ws.config_path.write_text(yaml.safe_dump({
        "models": {"generator": str(eval_parrot_path), "embedder": tiny_embedder_path, "dtype": "float32"},
        "generation": {"min_score": -1.0, "max_tokens": 12, "k": 2},
    }))
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    with KnowledgeBase.open(ws.kb_path("default"), embedder=tiny_embedder_path, create=True) as kb:
        assert not ingest_paths(kb, [docs], progress=False).failed
    make_adapter(ws, eval_parrot_path, "tiny")
    qa_dir = ws.home / "qa"
    qa_dir.mkdir()
    (qa_dir / "qa.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QA))
    (qa_dir / "style_checks.yaml").write_text("short:\n  max_words: 10\n  regex: '\\[\\d+\\]'\n")
    return ws.home
