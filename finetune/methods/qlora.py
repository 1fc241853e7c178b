"""QLoRA: LoRA on a 4-bit NF4 base with double quantization (Dettmers et al., 2023), via bitsandbytes.

The frozen base is stored as 4-bit NormalFloat with quantized quantization constants, cutting
its memory about 3.5x against bf16; matmuls dequantize on the fly in the compute dtype.
bitsandbytes >= 0.50 runs this on CPU as well as CUDA. ``prepare_model_for_kbit_training``
casts the remaining small weights (norms, embeddings) to fp32 for stable training. Gradient
checkpointing is on by default here, as in the QLoRA recipe: on a small model activations, not
weights, fill memory, so 4-bit weights alone save little.
"""

from __future__ import annotations

from finetune.errors import TrainError
from finetune.methods.lora import attach_lora

NAME = "qlora"
DEFAULT_LR = 2e-4
SAVES_ADAPTER = True
DESCRIPTION = "LoRA on a 4-bit NF4 double-quantized base (bitsandbytes)"


def quantization_config(precision):
    """The ``BitsAndBytesConfig``: NF4 weights, double quantization, compute in the run's dtype."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainError("--method qlora needs bitsandbytes: pip install 'bitsandbytes>=0.50'") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=precision.compute_dtype)


def prepare_model(base, settings, precision):
    """The 4-bit base, prepared for k-bit training, with trainable LoRA adapters."""
    from peft import prepare_model_for_kbit_training

    from finetune.methods.loading import load_causal_lm, quiet_peft_deprecations

    model = load_causal_lm(base, precision.compute_dtype, quantization_config=quantization_config(precision),
                           device_map={"": precision.device})
    with quiet_peft_deprecations():
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.use_gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    return attach_lora(model, settings)
