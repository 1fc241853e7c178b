"""DoRA: weight-decomposed LoRA (Liu et al., 2024), through peft's ``use_dora``.

The adapter learns a direction (low-rank, as LoRA) and a per-column magnitude. It tends to
close more of the gap to full fine-tuning at low ranks, at the price of slower steps (the
weight norm is recomputed every forward).
"""

from __future__ import annotations

from finetune.methods.lora import attach_lora

NAME = "dora"
DEFAULT_LR = 2e-4
SAVES_ADAPTER = True
DESCRIPTION = "weight-decomposed low-rank adapters (peft DoRA)"


def prepare_model(base, settings, precision):
    """The base (bf16 when enabled) with trainable DoRA adapters."""
    from finetune.methods.loading import load_causal_lm

    return attach_lora(load_causal_lm(base, precision.compute_dtype), settings, use_dora=True)
