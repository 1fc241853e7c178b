"""Assistant fixtures: a knowledge base built by the real ingest pipeline, a tiny Llama taught to
give one fixed answer (so citations, stops and streaming can be asserted on real generation),
and PEFT adapters saved the way finetune/ saves them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from assistant.records import GenerationSettings

# The answer the "parrot" model gives to every question: one real citation and one fabricated.
PARROT_ANSWER = "The ferry leaves at seven [1], docks by noon[9]."

DOCS = {
    "ferry.md": "# Ferry\n\nThe ferry leaves the harbour at seven every weekday morning and docks at noon.",
    "refunds.md": "# Refunds\n\nRefunds are issued within 14 days of purchase. Gift cards cannot be refunded.",
    "office.md": "# Office\n\nThe office opened in 1998 in Lisbon and moved to Porto in 2010.",
}


@pytest.fixture(scope="session")
def parrot_llama_path(tmp_path_factory, smollm_tokenizer_path) -> Path:
    """A 2-layer Llama whose weights are set so that greedy decoding answers PARROT_ANSWER to any chat prompt.

    Attention and MLP outputs are zeroed, so each position's hidden state is its token's embedding;
    the chain of tokens "\\n" (the end of the assistant header) -> The -> ferry -> ... -> <|im_end|>
    gets orthogonal embeddings and an untied output layer that maps each to its successor. A real
    model and real decoding, with an answer the tests can assert on.
    """
    return build_parrot(smollm_tokenizer_path, PARROT_ANSWER, tmp_path_factory.mktemp("parrot-llama"))


def build_parrot(tokenizer_path: Path, answer: str, out: Path, loop: bool = False) -> Path:
    """The parrot's construction for any ``answer``; with ``loop``, the answer's last token leads back to
    its first instead of to <|im_end|>, so greedy decoding repeats the answer until max_tokens."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    header = tok(tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False),
                 add_special_tokens=False)["input_ids"][-1]
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    chain = [header, *ids, ids[0] if loop else tok.convert_tokens_to_ids("<|im_end|>")]
    assert len(set(chain[:-1])) == len(chain) - 1, "each token needs one successor"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for i, (token, successor) in enumerate(zip(chain, chain[1:])):
            model.model.embed_tokens.weight[token, i] = 1.0
            model.lm_head.weight[successor, i] = 1.0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def fill_docs_kb(ws, embedder_path: str, folder: Path, docs: dict[str, str] = DOCS):
    """Write ``docs`` ({file name: text}) into ``folder`` and ingest them into ``ws``'s 'default' KB
    with the real pipeline; returns the open KB."""
    from ingest.pipeline import ingest_paths
    from retrieval.knowledge_base import KnowledgeBase

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase.open(ws.kb_path("default"), embedder=embedder_path, create=True)
    report = ingest_paths(kb, [folder], progress=False)
    assert not report.failed
    return kb


@pytest.fixture
def docs_kb(workspace, tiny_embedder_path, tmp_path):
    """The workspace's 'default' knowledge base holding DOCS."""
    kb = fill_docs_kb(workspace, tiny_embedder_path, tmp_path / "docs")
    yield kb
    kb.close()


@pytest.fixture(scope="module")
def shared_parrot(tmp_path_factory, tiny_embedder_path, parrot_llama_path):
    """One parrot assistant (its own workspace and DOCS KB) for a module's read-only tests: loads once."""
    from assistant.assistant import Assistant
    from ragtune.workspace import Workspace

    root = tmp_path_factory.mktemp("shared-parrot")
    ws = Workspace.open(root / "home")
    fill_docs_kb(ws, tiny_embedder_path, root / "docs").close()
    assistant = Assistant(ws, generator=str(parrot_llama_path), settings=GenerationSettings(max_tokens=24, min_score=-1.0))
    assistant.warm_up()
    yield assistant
    assistant.close()


@pytest.fixture
def parrot_answer() -> str:
    """What the parrot model answers."""
    return PARROT_ANSWER


@pytest.fixture(scope="session")
def make_adapter():
    """``make_adapter(ws, base, name, method="lora", seed=1, targets=...)`` saves an adapter as finetune/ does."""
    return _make_adapter


def _make_adapter(ws, base: Path, name: str, method: str = "lora", seed: int = 1, targets=("q_proj", "v_proj")) -> Path:
    """A PEFT adapter with random (non-zero) weights, saved in ``ws.adapters_dir/name`` with its manifest."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finetune.adapters import write_manifest
    from finetune.base_model import model_fingerprint

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), use_dora=method == "dora",
                        init_lora_weights=False)  # random B: the adapter visibly changes the output
    peft_model = get_peft_model(model, config)
    folder = ws.adapters_dir / name
    peft_model.save_pretrained(folder)
    write_manifest(folder, {"name": name, "method": method, "base": str(base), "base_fingerprint": model_fingerprint(base),
                            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return folder


@pytest.fixture
def fast_settings() -> GenerationSettings:
    """Short answers and no no-evidence check (the tiny embedder's similarities mean nothing)."""
    return GenerationSettings(max_tokens=24, min_score=-1.0)
