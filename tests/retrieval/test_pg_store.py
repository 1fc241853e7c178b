"""What only the PostgreSQL store does: a DSN kept out of files, many writer processes, many servers, one KB."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from retrieval.errors import RetrievalError
from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings

ROOT = Path(__file__).resolve().parents[2]


def pg_settings(dsn: str, schema: str, **kw) -> KnowledgeBaseSettings:
    return KnowledgeBaseSettings(store="postgres", dsn=dsn, pg_schema=schema, **kw)


def test_a_dsn_with_a_password_is_refused_and_nothing_is_written(workspace, pg_server_uri, pg_schema):
    dsn = pg_server_uri.replace("postgres:@", "postgres:s3cret@")
    with pytest.raises(RetrievalError, match="holds a password.*--dsn env:RAGTUNE_PG_DSN"):
        KnowledgeBase.open(workspace.kb_path("k"), embedder="e", create=True, settings=pg_settings(dsn, pg_schema))
    assert not workspace.kb_path("k").exists()


def test_an_env_dsn_is_stored_by_name_and_an_unset_variable_is_named(workspace, pg_dsn, pg_server_uri, pg_schema,
                                                                        monkeypatch):
    path = workspace.kb_path("k")
    KnowledgeBase.open(path, embedder="e", create=True, settings=pg_settings(pg_dsn, pg_schema)).close()
    files = "".join(p.read_text() for p in path.iterdir() if p.is_file())
    assert "env:RAGTUNE_PG_DSN" in files and pg_server_uri not in files
    monkeypatch.delenv("RAGTUNE_PG_DSN")
    with pytest.raises(RetrievalError, match=r"reads its PostgreSQL DSN from \$RAGTUNE_PG_DSN, which is not set"):
        KnowledgeBase.open(path)


def test_an_unreachable_server_is_one_clear_error(workspace, pg_schema, monkeypatch):
    monkeypatch.setenv("RAGTUNE_PG_DSN", "postgresql://nobody@/db?host=/nonexistent-socket-dir")
    with pytest.raises(RetrievalError, match="cannot reach PostgreSQL for knowledge base 'k'"):
        KnowledgeBase.open(workspace.kb_path("k"), embedder="e", create=True,
                           settings=pg_settings("env:RAGTUNE_PG_DSN", pg_schema))


def test_a_second_machine_attaches_to_the_same_schema_and_sees_its_documents(tmp_path, pg_dsn, pg_schema):
    from .test_store_suite import doc, write

    one = KnowledgeBase.open(tmp_path / "ws1" / "team", embedder="e", create=True, settings=pg_settings(pg_dsn, pg_schema))
    write(one, [doc("/a", ["alpha"])])
    two = KnowledgeBase.open(tmp_path / "ws2" / "team", embedder="e", create=True, settings=pg_settings(pg_dsn, pg_schema))
    assert [d.source for d in two.list_documents()] == ["/a"]
    with pytest.raises(RetrievalError, match="was built with embedder 'e'"):
        KnowledgeBase.open(tmp_path / "ws3" / "team", embedder="other", create=True,
                           settings=pg_settings(pg_dsn, pg_schema))


_WRITERS = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from test_store_suite import doc
    from retrieval.knowledge_base import KnowledgeBase
    me = int(sys.argv[1])
    kb = KnowledgeBase.open({path!r})
    with kb.writer() as w:
        for round in range(12):
            shared = [doc(f"/shared/{{(round + k) % 6}}", [f"shared text {{i}}" for i in range(1 + (me + round + k) % 4)],
                          seed=me * 100 + round) for k in range(2)]
            own = [doc(f"/own/{{me}}/{{round}}", [f"own text {{me}} {{round}} {{i}}" for i in range(3)])]
            w.write(upserts=shared + own, removals=[f"/own/{{me}}/{{round - 1}}"] if round % 3 == 1 else [])
    print("DONE", flush=True)
""")


@pytest.mark.timeout(180)
def test_concurrent_writer_processes_lose_and_duplicate_no_document(workspace, pg_dsn, pg_schema):
    kb = KnowledgeBase.open(workspace.kb_path("busy"), embedder="e", create=True, settings=pg_settings(pg_dsn, pg_schema))
    script = _WRITERS.format(root=str(ROOT), tests=str(Path(__file__).parent), path=str(kb.path))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(me)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for me in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        assert out.strip() == "DONE", err[-2000:]
    own = {f"/own/{me}/{r}" for me in range(4) for r in range(12)} - {f"/own/{me}/{r}" for me in range(4) for r in (0, 3, 6, 9)}
    docs = kb.list_documents()
    assert [d.source for d in docs] == sorted({f"/shared/{i}" for i in range(6)} | own)
    chunks = list(kb.iter_chunks())
    assert len({c.chunk_id for c in chunks}) == len(chunks) == sum(d.chunks for d in docs)
    for d in docs:  # each document holds exactly the chunks of the one write that won, never a mix
        ids = kb.document_chunk_ids(d.source)
        assert len({i.split("#")[1] for i in ids}) == 1 and len(ids) == d.chunks
    assert kb.check() == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ragtune serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"ragtune serve did not answer on {url} within {seconds} s:\n{log.read_text()[-3000:]}")


def _upload(url: str, name: str, text: str) -> dict:
    boundary = "ragtuneboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(f"{url}/v1/kb/documents", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _sources_found(url: str, query: str) -> set[str]:
    request = urllib.request.Request(f"{url}/v1/search", data=json.dumps({"query": query, "k": 5, "mode": "bm25"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return {Path(hit["source"]).name for hit in json.loads(response.read())["data"]}


@pytest.mark.timeout(300)
def test_two_serve_processes_on_one_kb_see_a_document_added_through_either_within_a_second(
        tmp_path, pg_dsn, pg_schema, tiny_embedder_path, tiny_llama_path):
    urls, procs = [], []
    try:
        for n in (1, 2):  # two workspaces: two machines that share only the database
            home = tmp_path / f"home{n}"
            home.mkdir()
            (home / "config.yaml").write_text(yaml.safe_dump({
                "models": {"generator": str(tiny_llama_path), "embedder": tiny_embedder_path},
                "kb": {"store": "postgres", "dsn": pg_dsn, "pg_schema": pg_schema}}))
            created = subprocess.run([sys.executable, "-m", "ragtune", "kb", "create", "team", "--home", str(home)],
                                     capture_output=True, text=True, timeout=120)
            assert created.returncode == 0, created.stderr
            port, log = _free_port(), tmp_path / f"serve{n}.log"
            with open(log, "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--kb", "team", "--port", str(port),
                                               "--home", str(home), "--quiet"], stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            urls.append((f"http://127.0.0.1:{port}", procs[-1], log))
        for url, proc, log in urls:
            _wait_healthy(url, proc, log)
        (one, _, _), (two, _, _) = urls
        for writer, reader, name, text in [(one, two, "ferry.txt", "The ferry leaves the harbour at seven."),
                                           (two, one, "tram.txt", "The tram depot is next to the station.")]:
            assert _upload(writer, name, text)["added"]
            added = time.monotonic()
            while name not in _sources_found(reader, text):
                assert time.monotonic() - added < 1.0, f"{name} added through {writer} not seen by {reader} within 1 s"
                time.sleep(0.05)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_a_dropped_connection_is_one_error_and_the_next_search_reconnects(workspace, pg_dsn, pg_schema, pg_server_uri):
    import psycopg

    from .test_store_suite import doc, write

    kb = KnowledgeBase.open(workspace.kb_path("k"), embedder="e", create=True, settings=pg_settings(pg_dsn, pg_schema))
    write(kb, [doc("/a", ["alpha harbour"])])
    pid = kb._conn.info.backend_pid
    with psycopg.connect(pg_server_uri, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(RetrievalError, match="lost PostgreSQL for knowledge base 'k'"):
        kb.search("harbour", mode="bm25")
    assert kb.search("harbour", mode="bm25")[0].chunk.source == "/a"
