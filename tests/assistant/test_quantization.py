"""Int8 weight-only layers: accuracy against the float layer, and peft wrapping them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from assistant.quantization import Int8Linear, quantize_linear_layers


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(128, 96, bias=True).to(torch.bfloat16)


@pytest.mark.parametrize("rows", [1, 3, 40])  # decode (int8 kernel) and prefill (dequantized GEMM)
def test_int8_linear_matches_the_float_layer(linear, rows):
    x = torch.randn(2, rows, 128, dtype=torch.bfloat16)
    q = Int8Linear(linear)
    want, got = linear(x).float(), q(x).float()
    assert got.shape == want.shape
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.999
    assert (got - want).abs().max() < 0.05 * want.abs().max()


def test_int8_linear_is_a_linear_with_a_dequantized_weight(linear):
    q = Int8Linear(linear)
    assert isinstance(q, nn.Linear) and q.W_q.dtype == torch.int8
    assert q.weight.shape == linear.weight.shape and q.weight.dtype == torch.bfloat16
    assert (q.weight.float() - linear.weight.float()).abs().max() < 0.01 * linear.weight.float().abs().max()


def test_assigning_weight_requantizes(linear):
    q = Int8Linear(linear)
    q.weight = nn.Parameter(torch.zeros_like(linear.weight))  # what transformers' tie_weights does
    assert int(q.W_q.abs().sum()) == 0


def test_quantize_replaces_every_plain_linear(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.bfloat16)
    count = quantize_linear_layers(model)
    assert count == 2 * 7 + 1  # q k v o gate up down per layer, and lm_head
    assert not any(type(m) is nn.Linear for m in model.modules())


def test_peft_lora_wraps_int8_layers_like_linear_ones(linear):
    from peft import LoraConfig, get_peft_model

    class Tiny(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.proj = inner
            self.gain = nn.Parameter(torch.ones(1))  # a model always has some float parameter (embeddings, norms)

        def forward(self, x):
            return self.proj(x)

    torch.manual_seed(1)
    config = LoraConfig(r=4, target_modules=["proj"], init_lora_weights=False)
    float_model = get_peft_model(Tiny(linear), config)
    state = {k: v for k, v in float_model.state_dict().items() if "lora_" in k}
    int8_model = get_peft_model(Tiny(Int8Linear(linear)), config)
    int8_model.load_state_dict(state, strict=False)
    x = torch.randn(1, 1, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        want, got = float_model(x).float(), int8_model(x).float()
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.999
