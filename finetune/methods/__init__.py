"""The five tuning methods, registered by name, each a small module with the same shape.

Every method module defines::

    NAME: str              # the --method value
    DEFAULT_LR: float      # learning rate when none is given
    SAVES_ADAPTER: bool    # True: a PEFT adapter folder; False: a full model folder
    DESCRIPTION: str
    def prepare_model(base, settings, precision) -> torch.nn.Module   # trainable params set

``precision`` is a ``loading.Precision`` (compute dtype, whether to autocast, device).
"""

from __future__ import annotations

from types import ModuleType

from finetune.errors import TrainError
from finetune.methods import dora, freeze, full, lora, qlora

METHODS: dict[str, ModuleType] = {m.NAME: m for m in (lora, qlora, dora, freeze, full)}


def get_method(name: str) -> ModuleType:
    """The method module called ``name``; a ``TrainError`` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise TrainError(f"unknown method {name!r}; use one of {', '.join(METHODS)}") from None


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as their unpacked size."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":  # two 4-bit values per stored byte
            n *= 2
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total
