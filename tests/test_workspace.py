from dataclasses import dataclass

import pytest

from ragtune.workspace import Workspace, WorkspaceError, fill_settings


@dataclass(frozen=True)
class Example:
    rank: int = 8
    lr: float = 2e-4
    modules: tuple[str, ...] = ("q_proj",)
    name: str | None = None
    flag: bool = False


def test_settings_fill_from_yaml_then_flags():
    s = fill_settings(Example, {"rank": 16, "modules": ["a", "b"]}, {"rank": 4, "lr": None, "flag": "true"})
    assert s == Example(rank=4, lr=2e-4, modules=("a", "b"), flag=True)


def test_unknown_setting_names_the_field():
    with pytest.raises(WorkspaceError, match="unknown setting 'rnak'"):
        fill_settings(Example, {"rnak": 3})


def test_wrong_type_names_the_field():
    with pytest.raises(WorkspaceError, match="rank: expected int"):
        fill_settings(Example, {"rank": "lots"})


def test_workspace_reads_config_section(tmp_path):
    ws = Workspace.open(tmp_path)
    ws.config_path.write_text("train:\n  rank: 32\n")
    assert ws.settings(Example, "train").rank == 32


def test_invalid_yaml_is_reported_with_its_path(tmp_path):
    ws = Workspace.open(tmp_path)
    ws.config_path.write_text("train: [unclosed\n")
    with pytest.raises(WorkspaceError, match="config.yaml"):
        ws.config()


def test_a_kb_name_with_a_trailing_newline_is_refused_before_it_becomes_a_folder(tmp_path):
    ws = Workspace.open(tmp_path)
    with pytest.raises(WorkspaceError, match="invalid knowledge base name"):
        ws.kb_path("team\n")
    assert not (tmp_path / "kb").exists()
