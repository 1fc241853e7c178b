"""Int8 weight-only linear layers: the local generator's decode speed on a CPU.

Decoding one token multiplies a single activation row by every weight matrix, so it is bound by
how many weight bytes stream from memory. Storing weights as int8 with one bf16 scale per output
row halves the bytes against bf16 and quarters them against fp32; ``torch``'s
``_weight_int8pack_mm`` kernel multiplies bf16 activations by them directly. Measured on this
project's 2-core CPU with SmolLM2-135M (bench/assistant.py): about 3x the tokens/s of a plain fp32
``generate``, with the same greedy output on the prompts tried.

Prefill (many rows at once) is compute-bound and that kernel is slow there, so layers dequantize
to bf16 for inputs of more than a few rows. Layers stay ``nn.Linear`` subclasses so peft wraps
them with LoRA like any linear layer; ``weight`` dequantizes on access, and ``W_q`` plus
``dequantize()`` is the hook peft's ``dequantize_module_weight`` uses (DoRA reads the base weight).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# Above this many rows (tokens) a matmul is compute-bound: dequantize and use the bf16 GEMM instead.
_DECODE_ROWS = 8


class Int8Linear(nn.Linear):
    """A linear layer holding int8 weights with a per-output-row scale (symmetric, weight-only)."""

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)  # not nn.Linear.__init__: that would allocate a float weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._quantize(linear.weight.detach())
        bias = None if linear.bias is None else linear.bias.detach().to(self.scales.dtype)
        self.register_buffer("bias_", bias)

    def _quantize(self, weight: torch.Tensor) -> None:
        w = weight.float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.register_buffer("W_q", q)
        self.register_buffer("scales", scale.to(weight.dtype if weight.dtype.is_floating_point else torch.bfloat16))

    def __setattr__(self, name, value):
        # transformers re-ties lm_head to the input embeddings by assigning ``weight``: re-quantize.
        if name == "weight" and "W_q" in self.__dict__.get("_buffers", {}):
            self._quantize(value.detach())
            return
        super().__setattr__(name, value)

    def dequantize(self) -> torch.Tensor:
        """The weight as a float tensor (scales' dtype)."""
        return self.W_q.to(self.scales.dtype) * self.scales[:, None]

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.dequantize()

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        return self.bias_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.scales.dtype)
        rows = x.shape[:-1].numel()
        if rows > _DECODE_ROWS:
            return nn.functional.linear(x, self.dequantize(), self.bias_)
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(rows, self.in_features).contiguous(), self.W_q, self.scales)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias_ is None else y + self.bias_

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


def int8_supported() -> bool:
    """Whether this torch build has the CPU int8 weight-only matmul kernel."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def quantize_linear_layers(model: nn.Module) -> int:
    """Replace every plain ``nn.Linear`` in ``model`` (lm_head included) by an ``Int8Linear``; returns the count."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child))
                count += 1
    log.info("quantized %d linear layers to int8 (weight-only)", count)
    return count
