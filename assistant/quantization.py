"""Weight-only quantized linear layers: the local generator's decode speed on a CPU.

Decoding one token multiplies a single activation row by every weight matrix, so it is bound by
how many weight bytes stream from memory. Two formats, both multiplied by bf16 activations
directly with torch's CPU kernels:

- ``Int8Linear``: int8 weights, one scale per output row (``_weight_int8pack_mm``). Half the bytes
  of bf16; greedy output on SmolLM2-135M matched bf16 on every prompt tried.
- ``Int4Linear``: 4-bit weights in groups of 32 with a scale and a minimum per group
  (``_weight_int4pack_mm_for_cpu``). A quarter of the bytes of bf16. It is the grid the embedded
  GGUF models ship in (SmolLM2's Q4_1, Gemma 3's Q4_K: groups of 32, scale and minimum), so their
  weights lose little more than bf16 rounding of the scales. The output layer stays int8: it is
  Q8_0 in those files and 4 bits there change greedy outputs.

bench/assistant.py measures both against plain ``generate``. Prefill (many rows at once) is
compute-bound and these kernels are slow there, so layers dequantize to bf16 for inputs of more
than a few rows. Layers stay ``nn.Linear`` subclasses so peft wraps them with LoRA like any
linear layer; ``weight`` dequantizes on access, and ``W_q`` plus ``dequantize()`` is the hook
peft's ``dequantize_module_weight`` uses (DoRA reads the base weight).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# Above this many rows (tokens) a matmul is compute-bound: dequantize and use the bf16 GEMM instead.
_DECODE_ROWS = 8
INT4_GROUP = 32


class QuantizedLinear(nn.Linear):
    """Shared behaviour: a float ``weight`` view, re-quantizing assignment, the decode/prefill split."""

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)  # not nn.Linear.__init__: that would allocate a float weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._quantize(linear.weight.detach())
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        self.register_buffer("bias_", bias)

    def _quantize(self, weight: torch.Tensor) -> None:
        raise NotImplementedError

    def _decode_matmul(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dequantize(self) -> torch.Tensor:
        """The weight as a bf16 tensor."""
        raise NotImplementedError

    def __setattr__(self, name, value):
        # transformers re-ties lm_head to the input embeddings by assigning ``weight``: re-quantize.
        if name == "weight" and "W_q" in self.__dict__.get("_buffers", {}):
            self._quantize(value.detach())
            return
        super().__setattr__(name, value)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.dequantize()

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        return self.bias_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.bfloat16)
        rows = x.shape[:-1].numel()
        if rows > _DECODE_ROWS:
            y = nn.functional.linear(x, self.dequantize(), self.bias_)
        else:
            y = self._decode_matmul(x.reshape(rows, self.in_features).contiguous())
            y = y.reshape(*x.shape[:-1], self.out_features)
            if self.bias_ is not None:
                y = y + self.bias_
        return y.to(dtype)


class Int8Linear(QuantizedLinear):
    """int8 weights with one scale per output row (symmetric, weight-only)."""

    def _quantize(self, weight: torch.Tensor) -> None:
        w = weight.float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("W_q", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous())
        self.register_buffer("scales", scale.to(torch.bfloat16))

    def _decode_matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(x, self.W_q, self.scales)

    def dequantize(self) -> torch.Tensor:
        return self.W_q.to(torch.bfloat16) * self.scales[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only"


class Int4Linear(QuantizedLinear):
    """4-bit weights in groups of 32 along the input, each with a scale and a minimum (asymmetric)."""

    @staticmethod
    def fits(linear: nn.Linear) -> bool:
        """Whether the CPU int4 kernel takes this layer's shape."""
        return linear.out_features % 16 == 0 and linear.in_features % INT4_GROUP == 0

    def _quantize(self, weight: torch.Tensor) -> None:
        out_f, in_f = weight.shape
        groups = weight.float().reshape(out_f, in_f // INT4_GROUP, INT4_GROUP)
        low, high = groups.amin(dim=-1), groups.amax(dim=-1)
        scale = ((high - low) / 15.0).clamp(min=1e-8)
        q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8).reshape(out_f, in_f)
        # two copies at half a byte per weight each: the kernel's own tiled layout, and plain nibbles to dequantize
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
        self.register_buffer("W_q", (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous())
        # the kernel computes (q - 8) * scale + zero, so zero = minimum + 8 * scale
        self.register_buffer("scales_and_zeros",
                             torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16))
        self.register_buffer("_scale", scale.to(torch.bfloat16)[..., None].contiguous())  # for dequantize: q * scale + low
        self.register_buffer("_low", low.to(torch.bfloat16)[..., None].contiguous())

    def _decode_matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, INT4_GROUP, self.scales_and_zeros)

    def dequantize(self) -> torch.Tensor:
        out_f, in_f = self.out_features, self.in_features
        q = torch.stack([self.W_q & 0xF, self.W_q >> 4], dim=-1).view(out_f, in_f // INT4_GROUP, INT4_GROUP)
        return torch.addcmul(self._low, q.to(torch.bfloat16), self._scale).view(out_f, in_f)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 weight-only (group {INT4_GROUP})"


def int8_supported() -> bool:
    """Whether this torch build has the CPU int8 weight-only matmul kernel."""
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


def int4_supported() -> bool:
    """Whether this torch build has the CPU int4 weight-only matmul kernels."""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(torch.ops.aten,
                                                                               "_convert_weight_to_int4pack_for_cpu")


def quantize_linear_layers(model: nn.Module, bits: int = 8) -> dict[str, int]:
    """Replace every plain ``nn.Linear`` by an ``Int8Linear`` or (``bits=4``) ``Int4Linear``.

    The output layer (``lm_head``) and layers whose shape the int4 kernel does not take stay int8.
    Returns how many layers got each format.
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    counts = {"int4": 0, "int8": 0}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            if bits == 4 and child is not output and Int4Linear.fits(child):
                setattr(parent, name, Int4Linear(child))
                counts["int4"] += 1
            else:
                setattr(parent, name, Int8Linear(child))
                counts["int8"] += 1
    log.info("quantized linear layers (weight-only): %s", counts)
    return counts
