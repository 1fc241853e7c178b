"""The adapter registry on real folders: names, and deletes that stay inside the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.adapters import delete_adapter, get_adapter, write_manifest
from finetune.errors import TrainError

MANIFEST = {"method": "lora", "base": "/models/base", "created_at": "2026-12-01T00:00:00+00:00"}


def make_adapter(folder: Path) -> Path:
    """A folder the registry recognizes: a manifest and one weights file."""
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    write_manifest(folder, MANIFEST)
    return folder


def test_an_adapter_name_with_a_trailing_newline_is_refused(workspace):
    make_adapter(workspace.adapters_dir / "style")
    with pytest.raises(TrainError, match="invalid adapter name"):
        get_adapter(workspace, "style\n")


def test_deleting_a_linked_adapter_folder_leaves_its_target_outside_the_workspace(workspace, tmp_path):
    outside = make_adapter(tmp_path / "elsewhere" / "precious")
    workspace.adapters_dir.mkdir(parents=True)
    (workspace.adapters_dir / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(TrainError, match="outside the workspace"):
        delete_adapter(workspace, "linked")
    assert (outside / "adapter_model.safetensors").read_bytes() == b"weights"

