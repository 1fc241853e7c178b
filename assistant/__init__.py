"""The assistant: four answer modes with citations, adapter hot-swap, terminal chat and an OpenAI-compatible API.

``from assistant import Assistant`` is the entry point; names load lazily so importing
``assistant.records`` stays free of torch.
"""

from __future__ import annotations

__all__ = ["Assistant", "Answer", "GenerationSettings", "AssistantError", "BACKENDS", "make_backend", "MODES"]

_LAZY = {
    "Assistant": "assistant.assistant", "Answer": "assistant.records", "GenerationSettings": "assistant.records",
    "MODES": "assistant.records", "AssistantError": "assistant.errors", "BACKENDS": "assistant.generation",
    "make_backend": "assistant.generation",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
