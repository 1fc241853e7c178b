"""LoRA: low-rank adapters on the linear layers of a frozen base (Hu et al., 2021), through peft.

The base is frozen and, with bf16, stored in bf16; the adapter weights (rank ``rank`` A and B
matrices, scaled by ``alpha / rank``) stay fp32. Default targets: every linear layer but the
output head, which is what QLoRA's authors found necessary to match full fine-tuning.
"""

from __future__ import annotations

NAME = "lora"
DEFAULT_LR = 2e-4
SAVES_ADAPTER = True
DESCRIPTION = "low-rank adapters on a frozen base (peft LoRA)"


def lora_config(settings, use_dora: bool = False):
    """The peft ``LoraConfig`` for ``settings`` (rank, alpha, dropout, target modules)."""
    from peft import LoraConfig

    targets = list(settings.target_modules) if settings.target_modules else "all-linear"
    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=targets, use_dora=use_dora, bias="none", task_type="CAUSAL_LM")


def attach_lora(model, settings, use_dora: bool = False):
    """Wrap ``model`` in a peft model with fresh LoRA (or DoRA) adapters; only they train."""
    from peft import get_peft_model

    from finetune.errors import TrainError
    from finetune.methods.loading import quiet_peft_deprecations

    try:
        with quiet_peft_deprecations():
            return get_peft_model(model, lora_config(settings, use_dora))
    except ValueError as exc:  # e.g. target modules that are not in the model
        raise TrainError(f"cannot attach adapters: {exc}") from None


def prepare_model(base, settings, precision):
    """The base (bf16 when enabled) with trainable LoRA adapters."""
    from finetune.methods.loading import load_causal_lm

    return attach_lora(load_causal_lm(base, precision.compute_dtype), settings)
