"""Full fine-tuning: every weight trains. The most capacity and the most memory.

Adam keeps two fp32 moments per weight, so memory is about 4x the fp32 model (weights, grads,
two moments). The result is a full model folder. Use a small learning rate.
"""

from __future__ import annotations

NAME = "full"
DEFAULT_LR = 2e-5
SAVES_ADAPTER = False
DESCRIPTION = "train every weight"


def prepare_model(base, settings, precision):
    """The fp32 base with every parameter trainable."""
    import torch

    from finetune.methods.loading import load_causal_lm

    model = load_causal_lm(base, torch.float32)
    model.requires_grad_(True)
    return model
