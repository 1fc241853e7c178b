"""The workspace: one directory that holds every knowledge base, model, adapter and run.

Layout (all plain files another tool can open)::

    $RAGTUNE_HOME/
      config.yaml          # optional settings, one section per concern
      kb/<name>/           # a knowledge base: kb.sqlite, vectors.<generation>.faiss, manifest.json
      models/              # converted embedded models (safetensors HF folders)
      adapters/<name>/     # PEFT adapter folders with a manifest
      runs/                # training and evaluation runs
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

DEFAULT_HOME = "~/.ragtune"
DEFAULT_KB = "default"
# Matched with fullmatch: "$" would also accept a trailing newline, which then becomes part of a folder name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

T = TypeVar("T")


class WorkspaceError(Exception):
    """A problem with the workspace or its settings that the user can fix."""


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a safe folder name (letters, digits, '.', '_', '-'), else raise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WorkspaceError(
            f"invalid {what} name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Workspace:
    home: Path

    @classmethod
    def open(cls, home: str | os.PathLike | None = None) -> "Workspace":
        """The workspace at ``home``, else ``$RAGTUNE_HOME``, else ``~/.ragtune``; created if missing."""
        raw = home or os.environ.get("RAGTUNE_HOME") or DEFAULT_HOME
        path = Path(raw).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def kb_path(self, name: str = DEFAULT_KB) -> Path:
        return self.home / "kb" / check_name(name, "knowledge base")

    def kb_names(self) -> list[str]:
        root = self.home / "kb"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def config_path(self) -> Path:
        return self.home / "config.yaml"

    def config(self) -> dict[str, Any]:
        """The parsed ``config.yaml`` (empty if absent)."""
        if not self.config_path.exists():
            return {}
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise WorkspaceError(f"{self.config_path}: not valid YAML ({exc}); fix or delete the file") from exc
        if not isinstance(data, dict):
            raise WorkspaceError(f"{self.config_path}: expected a mapping of sections, got {type(data).__name__}")
        return data

    def settings(self, cls: type[T], section: str, overrides: dict[str, Any] | None = None) -> T:
        """Fill the dataclass ``cls`` from ``config.yaml``'s ``section``, then from non-None ``overrides``."""
        return fill_settings(cls, self.config().get(section) or {}, overrides, origin=f"{self.config_path} [{section}]")


def fill_settings(cls: type[T], values: dict[str, Any], overrides: dict[str, Any] | None = None, origin: str = "settings") -> T:
    """Build the settings dataclass ``cls`` from a mapping (a YAML section) and flag overrides.

    Unknown keys and values of the wrong type raise ``WorkspaceError`` naming the field.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    merged = dict(values or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in merged.items():
        if key not in fields:
            raise WorkspaceError(f"{origin}: unknown setting {key!r}; known: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(value, hints[key], f"{origin}: {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise WorkspaceError(f"{origin}: {exc}") from exc


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except WorkspaceError as exc:
                errors.append(str(exc))
        raise WorkspaceError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise WorkspaceError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise WorkspaceError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise WorkspaceError(f"{where}: expected a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise WorkspaceError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != int(value):
            raise WorkspaceError(f"{where}: expected an integer, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise WorkspaceError(f"{where}: expected text, got {value!r}")
        return str(value)
    return value
