import subprocess
import sys

import pytest

from ragtune.cli import EXAMPLES, build_parser


def test_every_command_has_help_and_an_example():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == set(EXAMPLES)
    for name, sub in commands.items():
        assert EXAMPLES[name] in sub.format_help()


@pytest.mark.parametrize("command", ["ingest", "search", "train", "ask", "serve", "eval", "demo", "ui"])
def test_help_exits_zero(command):
    out = subprocess.run([sys.executable, "-m", "ragtune", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "usage: ragtune " + command in out.stdout


def test_usage_error_exits_two():
    out = subprocess.run([sys.executable, "-m", "ragtune", "search"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "error" in out.stderr


def test_bad_kb_name_is_one_line_and_exit_one(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ragtune", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    out = subprocess.run([sys.executable, "-m", "ragtune", "kb", "list", "--kb", "../etc", "--home", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "invalid knowledge base name" in out.stderr
    assert "Traceback" not in out.stderr
