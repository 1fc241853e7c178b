"""Fixtures for the fine-tuning tests: a second tiny architecture and a small QA file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_gemma3_path(tmp_path_factory, smollm_tokenizer_path) -> Path:
    """A 2-layer, 64-dim Gemma 3 causal LM (sliding-window attention, GeGLU) with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(smollm_tokenizer_path)
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=16,
                           max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-gemma3")
    Gemma3ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


CITIES = [("France", "Paris"), ("Italy", "Rome"), ("Norway", "Oslo"), ("Peru", "Lima"), ("Egypt", "Cairo"),
          ("Japan", "Tokyo"), ("Ecuador", "Quito"), ("Latvia", "Riga")]


@pytest.fixture(scope="session")
def qa_path(tmp_path_factory) -> Path:
    """24 short alpaca examples (capital cities), enough for a train/validation split."""
    path = tmp_path_factory.mktemp("data") / "capitals.jsonl"
    rows = [{"instruction": f"What is the capital of {country}?", "output": f"The capital is {city}."}
            for country, city in CITIES * 3]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
