"""Freeze tuning: only the top ``freeze_top`` decoder layers train; everything below stays as it was.

No adapter: the result is a full model folder. Cheaper than full tuning in optimizer memory
(Adam state only for the top layers) and, since lower layers hold most general knowledge,
a common way to limit forgetting. Weights stay fp32 (autocast does the bf16 compute).
"""

from __future__ import annotations

from finetune.errors import TrainError

NAME = "freeze"
DEFAULT_LR = 5e-5
SAVES_ADAPTER = False
DESCRIPTION = "train only the top N decoder layers"


def prepare_model(base, settings, precision):
    """The fp32 base with every parameter frozen except those of the top ``freeze_top`` decoder layers."""
    import torch

    from finetune.methods.loading import decoder_layers, load_causal_lm

    model = load_causal_lm(base, torch.float32)
    layers = decoder_layers(model)
    if not 1 <= settings.freeze_top <= len(layers):
        raise TrainError(f"freeze_top {settings.freeze_top}: the model has {len(layers)} decoder layers; "
                         f"choose 1..{len(layers)}")
    model.requires_grad_(False)
    for layer in layers[-settings.freeze_top:]:
        layer.requires_grad_(True)
    return model
