"""The models a workspace uses: which generator and embedder, and whether they are ready."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from finetune.base_model import DEFAULT_GENERATOR, EMBEDDED, resolve_generator
from ragtune.workspace import Workspace
from retrieval.embedding import DEFAULT_EMBEDDER, resolve_embedder


@dataclass(frozen=True)
class ModelSettings:
    """The ``models:`` section of config.yaml."""

    generator: str = DEFAULT_GENERATOR  # embedded name, local HF folder or hub id
    embedder: str = DEFAULT_EMBEDDER  # embedded name, local sentence-transformers folder or hub id
    dtype: str = "auto"  # local generator: auto = bfloat16 where the CPU has native bf16, else float32
    quantize: str = "auto"  # local generator weight-only matmuls: auto (bf16 only: int4 for 4-bit GGUF models, else int8), int4, int8, none
    threads: int | None = None  # local generator: torch threads; None = one per core. On a busy machine 1 is steadier
    backend: str = "local"  # "local", or the URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama, ragtune serve)
    backend_model: str | None = None  # that server's base model id (default: the first it lists)
    backend_context: int = 4096  # that server's context window in tokens (it cannot be asked)


def model_settings(ws: Workspace, **overrides) -> ModelSettings:
    """The workspace's ``models:`` settings, with non-None ``overrides`` applied."""
    return ws.settings(ModelSettings, "models", overrides)


def describe_models(ws: Workspace, prepare: bool = True) -> list[dict]:
    """One row per model (role, name, status, path); converts embedded generators if ``prepare``."""
    settings = model_settings(ws)
    rows = []
    names = [settings.generator] + [n for n in EMBEDDED if n != settings.generator]
    for name in names:
        role = "generator" if name == settings.generator else "available"
        if name in EMBEDDED and not prepare:
            target = ws.models_dir / name
            ready = (target / "model.safetensors").exists()
            rows.append({"role": role, "name": name, "status": "ready" if ready else "not converted", "path": str(target)})
            continue
        if role == "available":
            rows.append({"role": role, "name": name, "status": "embedded", "path": EMBEDDED[name].package})
            continue
        path = resolve_generator(name, ws.models_dir)
        rows.append({"role": role, "name": name, "status": "ready" if Path(path).exists() else "hub id", "path": str(path)})
    emb = resolve_embedder(settings.embedder)
    rows.append({"role": "embedder", "name": settings.embedder, "status": "ready" if Path(emb).exists() else "hub id", "path": emb})
    return rows
