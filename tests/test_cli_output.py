"""What the CLI prints besides its own output: nothing from libraries unless --verbose."""

from __future__ import annotations

import subprocess
import sys

import yaml


def test_ingest_prints_no_kernels_publisher_trust_warning(workspace, tiny_embedder_path, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe ferry leaves the harbour at seven.", encoding="utf-8")
    workspace.config_path.write_text(yaml.safe_dump({"models": {"embedder": tiny_embedder_path}}), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ragtune", "ingest", str(docs), "--home", str(workspace.home), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "publisher trust" not in out.stderr and "kernels" not in out.stderr, out.stderr
