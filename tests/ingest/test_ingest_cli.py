"""ingest / remove / kb / search through the real command line: exit codes, one-line errors, --json, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from retrieval.knowledge_base import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]


def ragtune(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragtune", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env or dict(os.environ), timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def kb(workspace, tiny_embedder_path):
    base = KnowledgeBase.open(workspace.kb_path("default"), embedder=tiny_embedder_path, create=True)
    yield base
    base.close()


@pytest.mark.timeout(300)
def test_each_bad_file_is_one_error_line_while_good_files_are_ingested(kb, tmp_path, build_pdf):
    from reportlab.lib.pdfencrypt import StandardEncryption

    kept = tmp_path / "kept.md"
    kept.write_text("# Kept\n\nStored before the bad batch.\n")
    ingest_paths(kb, [kept], progress=False)

    batch = tmp_path / "batch"
    batch.mkdir()
    good_pdf = build_pdf(tmp_path / "good.pdf", [["A real page of text."]])
    (batch / "corrupt.pdf").write_bytes(good_pdf.read_bytes()[:300])
    build_pdf(batch / "encrypted.pdf", [["Secret."]], encrypt=StandardEncryption("pw", ownerPassword="o"))
    (batch / "binary.txt").write_bytes(bytes(range(256)) * 16)
    (batch / "fake.docx").write_bytes(b"PK but not really a zip")
    (batch / "empty.md").write_bytes(b"")
    (batch / "latin1.txt").write_bytes("Le café est à côté de la gare, près du crème brûlée.".encode("latin-1"))
    # 3 MB on one line, minified-data style (one opaque run): 3 MB of words is ~6,000 chunks, minutes to embed
    (batch / "one-line.txt").write_text("minified:" + "x" * 3_000_000)
    assert (batch / "one-line.txt").stat().st_size > 3_000_000
    missing = tmp_path / "does-not-exist.pdf"

    out = ragtune("ingest", str(batch), str(missing), "--json")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    bad = ["corrupt.pdf", "encrypted.pdf", "binary.txt", "fake.docx", "empty.md"]
    lines = error_lines(out.stderr)
    assert len(lines) == len(bad) + 1
    for name in bad:
        assert sum(str(batch / name) in line for line in lines) == 1, name
    assert any(str(missing) in line and "no such file" in line for line in lines)
    summary = json.loads(out.stdout)
    assert sorted(summary["added"]) == [str(batch / "latin1.txt"), str(batch / "one-line.txt")]
    assert {f["source"] for f in summary["failed"]} == {str(batch / n) for n in bad} | {str(missing)}
    assert all(f["reason"] for f in summary["failed"])

    listed = json.loads(ragtune("kb", "list", "--json").stdout)
    assert {d["source"] for d in listed} == {str(kept), str(batch / "latin1.txt"), str(batch / "one-line.txt")}
    assert set(listed[0]) >= {"source", "title", "chunks", "pages", "sha256", "ingested_at"}
    hit = json.loads(ragtune("search", "café gare", "--mode", "bm25", "--json").stdout)[0]
    assert hit["source"] == str(batch / "latin1.txt") and "café" in hit["text"]


def test_ingest_exits_zero_when_every_file_succeeds(workspace, tiny_embedder_path, tmp_path, capsys):
    from ragtune.cli import main  # in-process: the console script's own entry point, without a torch import

    doc = tmp_path / "a.md"
    doc.write_text("# A\n\nAll good.\n")
    assert main(["ingest", str(doc), "--embedder", tiny_embedder_path, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["added"] == [str(doc)] and "error" not in err
    assert main(["ingest", str(doc)]) == 0
    assert capsys.readouterr().out.startswith("0 added, 0 updated, 1 unchanged")


def test_ingest_without_paths_is_a_usage_error():
    out = ragtune("ingest")
    assert out.returncode == 2 and "usage: ragtune ingest" in out.stderr


def test_a_second_writer_gets_one_line_naming_the_pid(kb, tmp_path):
    doc = tmp_path / "a.txt"
    doc.write_text("hello")
    with kb.writer():
        out = ragtune("ingest", str(doc))
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: knowledge base 'default' is locked by pid {os.getpid()} (ingest running?); "
                                  "wait or stop it")


def test_kb_list_stats_check_search_and_remove_speak_json(kb, tmp_path):
    doc = tmp_path / "ferry.md"
    doc.write_text("# Ferry\n\nThe ferry leaves the harbour at seven.\n")
    ingest_paths(kb, [doc], progress=False)
    stats = json.loads(ragtune("kb", "stats", "--json").stdout)
    assert (stats["documents"], stats["chunks"], stats["vectors"]) == (1, 1, 1)
    check = ragtune("kb", "check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout) == {"ok": True, "problems": []}
    hits = json.loads(ragtune("search", "harbour", "--mode", "bm25", "--json", "-k", "3").stdout)
    assert [h["rank"] for h in hits] == [1] and hits[0]["source"] == str(doc) and hits[0]["heading"] == "Ferry"
    human = ragtune("search", "harbour", "--mode", "bm25")
    assert human.stdout.startswith("[1] ") and str(doc) in human.stdout
    removed = ragtune("remove", str(doc), "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == [str(doc)]
    again = ragtune("remove", str(doc))
    assert again.returncode == 1 and error_lines(again.stderr) == [
        f"error: {doc}: not in knowledge base 'default'; see: ragtune kb list --kb default"]


def test_commands_on_a_missing_kb_say_how_to_create_it(workspace):
    out = ragtune("search", "x", "--kb", "ghost")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: no knowledge base 'ghost' at ")
    assert out.stderr.strip().endswith("create it with: ragtune ingest PATH --kb ghost")


@pytest.mark.timeout(300)
def test_kill_9_in_the_middle_of_an_update_leaves_the_old_version_and_check_passes(kb, tmp_path):
    doc = tmp_path / "policy.md"
    doc.write_text("# Policy\n\nParcels travel on the morning boat.\n")
    ingest_paths(kb, [doc], progress=False)
    doc.write_text("# Policy\n\nParcels now travel by seaplane.\n")
    env = dict(os.environ, RAGTUNE_TEST_PAUSE_AT="after-delete")
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "ingest", str(doc), "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "paused at after-delete" not in (line := proc.stderr.readline()):
            assert line, f"ingest exited before pausing: {proc.wait()}"
        # the old chunks are deleted inside the paused, uncommitted transaction: readers still see them
        assert json.loads(ragtune("search", "morning boat", "--mode", "bm25", "--json").stdout)[0]["source"] == str(doc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    check = ragtune("kb", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(ragtune("search", "morning boat", "--mode", "bm25", "--json").stdout)[0]["source"] == str(doc)
    assert ingest_paths(kb, [doc], progress=False).updated == [str(doc)]
    assert kb.search("seaplane", mode="bm25") and not kb.search("morning boat", mode="bm25")


_INGEST = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import ingest.pipeline as pipeline
    from retrieval.knowledge_base import KnowledgeBase
    pipeline.BATCH_CHUNKS = 3
    kb = KnowledgeBase.open({kb!r})
    kb.embedder.warm_up()
    print("STARTED", flush=True)
    pipeline.ingest_paths(kb, [{folder!r}], progress=False)
    print("DONE", flush=True)
""")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_at_random_moments_never_leaves_a_mixed_document(kb, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    rng = random.Random(7)

    def write_version(v: int) -> None:
        for n in range(32):
            (folder / f"doc{n:02d}.txt").write_text(f"Document {n} version {v}: " + " ".join(f"v{v}term{n}x{i}" for i in range(60)))

    write_version(0)
    ingest_paths(kb, [folder], progress=False)
    script = _INGEST.format(root=str(ROOT), kb=str(kb.path), folder=str(folder))
    for attempt in range(6):
        write_version(1 - attempt % 2)  # every run has all its documents to rewrite
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "STARTED"
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader = KnowledgeBase.open(kb.path)
        assert reader.check() == [], attempt
        texts: dict[str, str] = {}
        for chunk in reader.iter_chunks():
            texts[chunk.source] = texts.get(chunk.source, "") + chunk.text
        assert len(texts) == 32
        for n in range(32):
            body = texts[str(folder / f"doc{n:02d}.txt")]
            assert (f"v0term{n}x" in body) != (f"v1term{n}x" in body), f"doc{n} mixes versions after kill {attempt}"
    report = ingest_paths(kb, [folder], progress=False)
    assert not report.failed and kb.check() == []
    assert all("v0term" in c.text for c in kb.iter_chunks())  # the last version written (attempt 5) is v0


def test_remove_of_an_empty_path_is_one_error_line_and_keeps_every_document(kb, tmp_path):
    doc = tmp_path / "ferry.md"
    doc.write_text("# Ferry\n\nThe ferry leaves the harbour at seven.\n")
    ingest_paths(kb, [doc], progress=False)
    out = ragtune("remove", "")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert error_lines(out.stderr) == [out.stderr.strip()] and "empty or blank path" in out.stderr
    assert [d.source for d in kb.list_documents()] == [str(doc)]


def test_ingest_stderr_carries_no_kernel_publisher_trust_warning(workspace, tiny_embedder_path, tmp_path):
    # bitsandbytes asks the `kernels` package for a CPU kernel at import; offline, kernels warns on
    # every command. Only machines whose CPU has AVX512-BF16 take that path.
    doc = tmp_path / "a.md"
    doc.write_text("# A\n\nAll good.\n")
    out = ragtune("ingest", str(doc), "--embedder", tiny_embedder_path, "-q", env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr
    assert "publisher trust" not in out.stderr and "kernels" not in out.stderr


def test_config_ingest_max_file_mb_refuses_a_large_file_in_one_line_naming_the_setting(kb, workspace, tmp_path):
    workspace.config_path.write_text("ingest:\n  max_file_mb: 0.05\n")
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("The ferry leaves at seven.\n")
    large.write_text("The ferry leaves at seven. " * 4000)
    out = ragtune("ingest", str(small), str(large))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert error_lines(out.stderr) == [f"error: {large}: the file is 0.1 MB, over the limit of 0.05 MB (setting "
                                       "ingest.max_file_mb); split it, or raise ingest.max_file_mb in config.yaml"]
    assert [d.source for d in kb.list_documents()] == [str(small)]
