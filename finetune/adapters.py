"""The adapter registry: one folder per trained adapter under ``ws.adapters_dir``.

Each folder is something other tools open without ragtune, plus a readable manifest:

- lora, qlora, dora: a standard PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``)
  whose ``base_model_name_or_path`` is the resolved base folder, so ``PeftModel.from_pretrained``
  works on its own;
- freeze, full: a complete transformers model folder (``config.json`` + ``model.safetensors``);

and beside either, ``ragtune-adapter.json``: base model and its fingerprint, method, effective
settings, dataset path and sha256, example counts, metrics, wall time, created_at.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from finetune.errors import TrainError
from ragtune.workspace import Workspace, WorkspaceError, check_name

log = logging.getLogger(__name__)

MANIFEST_NAME = "ragtune-adapter.json"
PEFT_METHODS = frozenset({"lora", "qlora", "dora"})
FULL_MODEL_METHODS = frozenset({"freeze", "full"})
_CREATE_HINT = "create one with: ragtune train DATA.jsonl --name NAME  (or: ragtune train --from-kb KB --name NAME)"


@dataclass(frozen=True)
class AdapterInfo:
    """A trained adapter (or, for freeze/full, a tuned model folder) and its manifest."""

    name: str
    path: Path
    method: str
    base: str  # the base model folder (or hub id) it was trained on
    created_at: str
    manifest: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_peft(self) -> bool:
        """True for a PEFT adapter folder (lora, qlora, dora); False for a full model folder."""
        return self.method in PEFT_METHODS

    def to_dict(self) -> dict:
        """The listing fields plus the full manifest, JSON-ready."""
        return {"name": self.name, "path": str(self.path), "method": self.method, "base": self.base,
                "created_at": self.created_at, "manifest": self.manifest}


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write ``manifest`` as ``ragtune-adapter.json`` in ``folder`` (atomically) and return its path."""
    folder = Path(folder)
    target = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_adapter(folder: Path) -> AdapterInfo:
    """Read the adapter in ``folder`` (a folder holding ``ragtune-adapter.json``)."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainError(f"{folder}: not a ragtune adapter (no {MANIFEST_NAME}); {_CREATE_HINT}") from None
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path}: manifest is not valid JSON ({exc}); delete the folder and train again") from None
    missing = [k for k in ("method", "base", "created_at") if k not in manifest]
    if missing:
        raise TrainError(f"{path}: manifest lacks {', '.join(missing)}; delete the folder and train again")
    # the folder name is the adapter's name (a renamed folder is a renamed adapter)
    return AdapterInfo(name=folder.name, path=folder.resolve(), method=manifest["method"],
                       base=str(manifest["base"]), created_at=manifest["created_at"], manifest=manifest)


def list_adapters(ws: Workspace) -> list[AdapterInfo]:
    """Every adapter in the workspace, sorted by name (folders without a manifest are skipped)."""
    root = ws.adapters_dir
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / MANIFEST_NAME).exists():
            continue
        try:
            found.append(read_adapter(folder))
        except TrainError as exc:
            log.warning("skipping %s", exc)
    return found


def get_adapter(ws: Workspace, name: str) -> AdapterInfo:
    """The adapter called ``name``; a ``TrainError`` lists the existing names and how to create one."""
    try:
        check_name(name, "adapter")
    except WorkspaceError as exc:
        raise TrainError(str(exc)) from None
    folder = ws.adapters_dir / name
    if not (folder / MANIFEST_NAME).exists():
        names = [a.name for a in list_adapters(ws)]
        have = f"existing adapters: {', '.join(names)}" if names else "there are no adapters yet"
        raise TrainError(f"no adapter named {name!r} in {ws.adapters_dir}; {have}; {_CREATE_HINT}")
    return read_adapter(folder)


def delete_adapter(ws: Workspace, name: str) -> AdapterInfo:
    """Remove the adapter folder called ``name``; returns what was deleted."""
    info = get_adapter(ws, name)
    folder = ws.adapters_dir / name
    root = ws.adapters_dir.resolve()
    # info.path is resolved: an adapters/<name> link would otherwise delete its target, wherever it is.
    if not info.path.is_relative_to(root) or info.path == root:
        raise TrainError(f"adapter {name!r} is a link to {info.path}, outside the workspace's {root}; ragtune deletes "
                         f"only folders inside it: remove the link yourself (rm {folder})")
    if folder.is_symlink():  # a link to another folder in the workspace: the name goes, the target stays
        folder.unlink()
    else:
        shutil.rmtree(folder)
    log.info("deleted adapter %s (%s)", name, info.path)
    return info


def load_base_for_merge(base: str, dtype=None):
    """Load the full-precision base model (and tokenizer) an adapter was trained on."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(base) / "config.json").exists() and Path(base).is_absolute():
        raise TrainError(f"the base model {base} is gone; restore it (ragtune models) or retrain the adapter")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype or torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base)
    return model, tokenizer


def merge_adapter(ws: Workspace, name: str, out: Path) -> Path:
    """Fold the adapter into its base (``merge_and_unload``) and save a standalone model folder at ``out``.

    QLoRA adapters are merged into the full-precision base, not the 4-bit one, so the result is
    an ordinary model. Freeze/full adapters already are model folders: they are copied.
    """
    info = get_adapter(ws, name)
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise TrainError(f"{out} exists and is not empty; choose a new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        if info.is_peft:
            from peft import PeftModel

            base_model, tokenizer = load_base_for_merge(info.base)
            merged = PeftModel.from_pretrained(base_model, str(info.path)).merge_and_unload()
            merged.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        else:
            shutil.copytree(info.path, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint-*", MANIFEST_NAME))
        manifest = dict(info.manifest, merged_from=str(info.path), merged_into=str(out))
        (tmp / "ragtune-merged.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("merged adapter %s into %s", name, out)
    return out


# --- a knowledge base's default adapter ----------------------------------------------------
# ``ragtune adapt`` records here which adapter a KB answers with when no adapter is named, and
# only after the adapter beat RAG-only on that KB's held-out self-check. A KB without an entry is
# answered RAG-only: an adapter trained elsewhere is never applied to it unasked.

DEFAULTS_FILE = "kb-defaults.json"


def _read_defaults(ws: Workspace) -> dict:
    path = ws.adapters_dir / DEFAULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        log.warning("%s is not valid JSON (%s): no knowledge base has a default adapter", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def kb_default(ws: Workspace, kb: str) -> dict | None:
    """The default-adapter entry of knowledge base ``kb`` (adapter, evidence, set_at), or None.

    An entry whose adapter was deleted since counts as none."""
    entry = _read_defaults(ws).get(kb)
    if not isinstance(entry, dict) or not entry.get("adapter"):
        return None
    if not (ws.adapters_dir / str(entry["adapter"]) / MANIFEST_NAME).exists():
        return None
    return entry


def kb_default_adapter(ws: Workspace, kb: str) -> str | None:
    """The adapter knowledge base ``kb`` answers with when none is named, or None (RAG-only)."""
    entry = kb_default(ws, kb)
    return entry["adapter"] if entry else None


def set_kb_default(ws: Workspace, kb: str, adapter: str | None, evidence: dict | None = None) -> None:
    """Make ``adapter`` the default of knowledge base ``kb`` (None: clear it), with the evidence that
    justified it; written atomically."""
    check_name(kb, "knowledge base")
    defaults = _read_defaults(ws)
    if adapter is None:
        defaults.pop(kb, None)
    else:
        get_adapter(ws, adapter)
        defaults[kb] = {"adapter": adapter, "evidence": evidence or {},
                        "set_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    ws.adapters_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=ws.adapters_dir, suffix=".tmp", delete=False, encoding="utf-8") as fh:
        fh.write(json.dumps(defaults, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(fh.name, ws.adapters_dir / DEFAULTS_FILE)
