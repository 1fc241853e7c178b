"""Weight-only int8 and int4 layers: accuracy against the float layer, and peft wrapping them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from assistant.quantization import Int4Linear, Int8Linear, quantize_linear_layers

LAYERS = [Int8Linear, Int4Linear]


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(128, 96, bias=True).to(torch.bfloat16)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("rows", [1, 3, 40])  # decode (the int kernels) and prefill (dequantized GEMM)
def test_quantized_linear_matches_the_float_layer(linear, layer, rows):
    x = torch.randn(2, rows, 128, dtype=torch.bfloat16)
    q = layer(linear)
    want, got = linear(x).float(), q(x).float()
    assert got.shape == want.shape and q(x).dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > (0.999 if layer is Int8Linear else 0.99)


@pytest.mark.parametrize("layer", LAYERS)
def test_decode_kernel_and_dequantized_weight_agree(linear, layer):
    q = layer(linear)
    x = torch.randn(1, 128, dtype=torch.bfloat16)
    via_kernel = q(x).float()
    via_weight = (x.float() @ q.weight.float().t() + linear.bias.float())
    assert torch.allclose(via_kernel, via_weight, atol=0.02, rtol=0.02)


@pytest.mark.parametrize("layer", LAYERS)
def test_quantized_linear_is_a_linear_with_a_float_weight(linear, layer):
    q = layer(linear)
    assert isinstance(q, nn.Linear) and q.W_q.dtype in (torch.int8, torch.uint8)
    assert q.weight.shape == linear.weight.shape and q.weight.dtype == torch.bfloat16
    tolerance = 0.01 if layer is Int8Linear else 0.1
    assert (q.weight.float() - linear.weight.float()).abs().max() < tolerance * linear.weight.float().abs().max()


@pytest.mark.parametrize("layer", LAYERS)
def test_assigning_weight_requantizes(linear, layer):
    q = layer(linear)
    q.weight = nn.Parameter(torch.zeros_like(linear.weight))  # what transformers' tie_weights does
    assert float(q.weight.abs().sum()) == 0.0


def test_int4_keeps_the_output_layer_int8(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    counts = quantize_linear_layers(model, bits=4)
    assert counts == {"int4": 2 * 7, "int8": 1}  # q k v o gate up down per layer; lm_head int8
    assert isinstance(model.lm_head, Int8Linear)
    assert not any(type(m) is nn.Linear for m in model.modules())


@pytest.mark.parametrize("layer", LAYERS)
def test_peft_lora_wraps_quantized_layers_like_linear_ones(linear, layer):
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
    quantized = get_peft_model(Tiny(layer(linear)), config)
    quantized.load_state_dict(state, strict=False)
    x = torch.randn(1, 1, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        want, got = float_model(x).float(), quantized(x).float()
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.99
