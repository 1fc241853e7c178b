"""Loading a base causal LM for training, and the precision it trains in.

bf16 is used where the hardware runs it fast (CUDA with bf16, or a CPU with AVX512-BF16 / AMX):
the frozen base of a LoRA/DoRA run is stored in bf16 (half the memory, bf16 matmuls), while
trainable weights stay fp32 and the forward pass runs under autocast. Freeze and full runs keep
fp32 master weights for the same reason optimizers want them: bf16 updates lose small steps.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from finetune.errors import TrainError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_peft_deprecations():
    """peft calls transformers' deprecated gradient-checkpointing names (``is_gradient_checkpointing``,
    ``gradient_checkpointing_enable``): library noise, not the user's, so it is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing\w*` is deprecated", category=FutureWarning)
        yield


@dataclass(frozen=True)
class Precision:
    """Where and in which dtype a run computes."""

    device: str  # "cpu" or "cuda:<n>"
    bf16: bool

    @property
    def compute_dtype(self) -> torch.dtype:
        """bf16 when enabled, else fp32."""
        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def name(self) -> str:
        """``bf16`` or ``fp32`` (for manifests and tables)."""
        return "bf16" if self.bf16 else "fp32"


def bf16_supported(device: str) -> bool:
    """True if ``device`` runs bf16 matmuls natively (CUDA bf16, or CPU AVX512-BF16 / AMX)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(bf16: str) -> Precision:
    """The device (CUDA if present, else CPU) and whether to use bf16 (``auto``, ``true`` or ``false``)."""
    if torch.cuda.is_available():
        import os

        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    else:
        device = "cpu"
    supported = bf16_supported(device)
    if bf16 == "auto":
        return Precision(device, supported)
    if bf16 in ("true", True):
        if not supported:
            log.warning("bf16 requested on %s without native bf16 support: it will be slow", device)
        return Precision(device, True)
    if bf16 in ("false", False):
        return Precision(device, False)
    raise TrainError(f"bf16 must be auto, true or false, not {bf16!r}")


def load_causal_lm(base: str | Path, dtype: torch.dtype, **kwargs):
    """``AutoModelForCausalLM.from_pretrained`` with a clear error when the folder is not a causal LM."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainError(f"cannot load {base} as a causal language model: {exc}") from None
    model.config.use_cache = False  # no KV cache while training; also lets packed batches mask by position ids
    return model


def decoder_layers(model) -> torch.nn.ModuleList:
    """The model's stack of decoder blocks (``model.layers``, ``transformer.h`` ...): the longest ModuleList."""
    lists = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)]
    if not lists:
        raise TrainError(f"{type(model).__name__}: no list of decoder layers found")
    return max(lists, key=lambda item: (len(item[1]), item[0].endswith("layers")))[1]
