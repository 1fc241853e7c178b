"""``ragtune kb migrate``: SQLite <-> PostgreSQL without re-embedding, verified, and the KB left alone on failure."""

import json
import subprocess
import sys

import numpy as np
import pytest

from retrieval.errors import RetrievalError
from retrieval.knowledge_base import PG_POINTER, KnowledgeBase, KnowledgeBaseSettings
from retrieval.migrate import _exact_top, export_documents, migrate_kb

from .test_store_suite import doc, state, write

# "no-model-needed" is not an embedder anyone can load: a migration that tried to re-embed would fail.
EMBEDDER = "no-model-needed"
DOCS = [doc(f"/d/{i}", [f"chunk {i} {j} harbour ferry" if j % 2 else f"chunk {i} {j} refunds office"
                        for j in range(1 + i % 4)], seed=i) for i in range(30)]


def vectors_by_chunk(kb) -> dict[str, bytes]:
    return {c.chunk_id: v.tobytes() for d in export_documents(kb) for c, v in zip(d.chunks, d.vectors)}


def test_sqlite_to_postgres_and_back_keeps_every_vector_bit_for_bit_and_the_exact_neighbours(workspace, pg_dsn, pg_schema):
    path = workspace.kb_path("team")
    kb = KnowledgeBase.open(path, embedder=EMBEDDER, create=True)
    write(kb, DOCS)
    before, vectors = state(kb), vectors_by_chunk(kb)
    probes = [DOCS[i].vectors[0] for i in (0, 7, 19)]
    tops = [_exact_top(kb, v) for v in probes]
    kb.close()

    report = migrate_kb(path, KnowledgeBaseSettings(store="postgres", dsn=pg_dsn, pg_schema=pg_schema))
    assert (report.source_store, report.target_store, report.documents) == ("sqlite", "postgres", 30)
    assert report.verified_queries >= 20
    pg = KnowledgeBase.open(path)
    assert (path / PG_POINTER).is_file() and (path / "previous-store" / "kb.sqlite").is_file()
    assert type(pg).__name__ == "PostgresKnowledgeBase" and pg.embedder_name == EMBEDDER
    assert state(pg) == before and vectors_by_chunk(pg) == vectors and pg.check() == []
    assert [_exact_top(pg, v) for v in probes] == tops
    assert {h.chunk.source for h in pg.search("ferry", mode="bm25", k=50)} == {d.source for d in DOCS if len(d.chunks) > 1}
    pg.close()

    back = migrate_kb(path, KnowledgeBaseSettings())
    assert (back.source_store, back.target_store) == ("postgres", "sqlite")
    lite = KnowledgeBase.open(path)
    assert not (path / PG_POINTER).exists() and (path / "previous-store" / PG_POINTER).is_file()
    assert state(lite) == before and vectors_by_chunk(lite) == vectors and lite.check() == []
    assert [_exact_top(lite, v) for v in probes] == tops


def test_a_failed_migration_leaves_the_kb_as_it_was(workspace, pg_dsn, pg_schema):
    path = workspace.kb_path("team")
    kb = KnowledgeBase.open(path, embedder=EMBEDDER, create=True)
    write(kb, DOCS[:3])
    kb.close()
    # the target schema already holds a KB with chunks: refused before anything is swapped
    other = KnowledgeBase.open(workspace.kb_path("other"), embedder=EMBEDDER, create=True,
                               settings=KnowledgeBaseSettings(store="postgres", dsn=pg_dsn, pg_schema=pg_schema))
    write(other, DOCS[3:5])
    with pytest.raises(RetrievalError, match=f"schema '{pg_schema}' already holds chunks"):
        migrate_kb(path, KnowledgeBaseSettings(store="postgres", dsn=pg_dsn, pg_schema=pg_schema))
    assert not (path / PG_POINTER).exists() and not (path.parent / ".team.migrating").exists()
    assert sorted(state(KnowledgeBase.open(path))) == [d.source for d in DOCS[:3]]
    assert sorted(state(other)) == [d.source for d in DOCS[3:5]]


def test_cli_kb_create_and_migrate_print_one_line_and_exit_codes(tmp_path, pg_dsn, pg_schema):
    home = str(tmp_path / "home")
    run = lambda *a: subprocess.run([sys.executable, "-m", "ragtune", *a, "--home", home], capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    made = run("kb", "create", "team", "--store", "postgres", "--dsn", pg_dsn, "--schema", pg_schema,
               "--embedder", EMBEDDER, "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["store"] == f"postgres (schema {pg_schema})"
    bad = run("kb", "create", "x", "--store", "postgres", "--dsn", "postgresql://u:pw@/db", "--embedder", EMBEDDER)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "holds a password" in bad.stderr
    same = run("kb", "migrate", "team", "--to", "postgres", "--dsn", pg_dsn)
    assert same.returncode == 1 and "already on postgres" in same.stderr and "Traceback" not in same.stderr
    moved = run("kb", "migrate", "team", "--to", "sqlite")
    assert moved.returncode == 0, moved.stderr
    assert "migrated 'team' from postgres to sqlite" in moved.stdout
    assert run("kb", "check", "team").returncode == 0
