"""The ingest pipeline into a real KB (SQLite + FAISS) with the tiny embedder."""

from __future__ import annotations

import os

import pytest

import ingest.pipeline as pipeline
from ingest.chunking import ChunkingSettings
from ingest.errors import IngestError
from ingest.loaders import load_document
from ingest.pipeline import IngestReport, ingest_paths, remove_documents
from retrieval.embedding import Embedder
from retrieval.errors import KBLockedError
from retrieval.knowledge_base import KnowledgeBase

REFUNDS = "# Refunds\n\nRefunds are paid within fourteen days.\n\n## Gift cards\n\nGift cards are never refunded.\n"
OFFICE = "The office opened in 1998 in Lisbon and moved to Porto in 2010.\n"


@pytest.fixture
def kb(workspace, tiny_embedder_path):
    base = KnowledgeBase.open(workspace.kb_path("p"), embedder=tiny_embedder_path, create=True)
    yield base
    base.close()


@pytest.fixture
def docs(tmp_path):
    """A folder with a Markdown file, a text file in a subfolder, and things a folder walk must skip."""
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "refunds.md").write_text(REFUNDS)
    (root / "sub" / "office.txt").write_text(OFFICE)
    (root / ".hidden.md").write_text("# Secret\n\nnot for the index\n")
    (root / "notes.xyz").write_text("unsupported")
    return root


def sources(kb: KnowledgeBase) -> list[str]:
    return [d.source for d in kb.list_documents()]


def test_ingest_stores_each_supported_file_under_its_absolute_path(kb, docs):
    report = ingest_paths(kb, [docs], progress=False)
    expected = [str(docs / "refunds.md"), str(docs / "sub" / "office.txt")]
    assert sorted(report.added) == expected
    assert sources(kb) == expected
    assert report.failed == [] and report.chunks_added == kb.stats()["chunks"]
    assert kb.check() == []


def test_every_chunk_points_at_its_exact_span_of_the_extracted_text(kb, docs, build_pdf):
    pdf = build_pdf(docs / "guide.pdf", [["Boarding starts at the blue gate."], ["Bikes travel free on weekdays."]])
    ingest_paths(kb, [docs], progress=False, settings=ChunkingSettings(chunk_tokens=16, overlap_tokens=4))
    for chunk in kb.iter_chunks():
        text = load_document(chunk.source).text
        assert text[chunk.start:chunk.end] == chunk.text
    pages = {c.page for c in kb.iter_chunks() if c.source == str(pdf)}
    assert pages == {1, 2}
    headings = {c.heading for c in kb.iter_chunks() if c.source.endswith("refunds.md")}
    assert "Refunds > Gift cards" in headings
    info = {d.source: d for d in kb.list_documents()}
    assert info[str(pdf)].pages == 2 and info[str(docs / "refunds.md")].title == "Refunds"


def test_reingesting_unchanged_files_skips_them_without_loading_the_embedder(kb, docs, monkeypatch):
    ingest_paths(kb, [docs], progress=False)
    monkeypatch.setattr(Embedder, "warm_up", lambda self: pytest.fail("the embedder was loaded"))
    again = ingest_paths(KnowledgeBase.open(kb.path), [docs], progress=False)
    assert sorted(again.unchanged) == sources(kb)
    assert (again.added, again.updated, again.chunks_added) == ([], [], 0)
    assert kb.stats()["generation"] == 1


def test_a_changed_file_replaces_its_chunks(kb, docs):
    ingest_paths(kb, [docs], progress=False)
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds now take thirty days by bank transfer.\n")
    report = ingest_paths(kb, [docs], progress=False)
    assert report.updated == [str(docs / "refunds.md")] and report.unchanged == [str(docs / "sub" / "office.txt")]
    assert kb.search("gift cards", mode="bm25") == []
    assert kb.search("bank transfer", mode="bm25")[0].chunk.source == str(docs / "refunds.md")
    assert kb.check() == []


def test_changed_chunking_settings_rechunk_unchanged_files(kb, docs):
    ingest_paths(kb, [docs], progress=False)
    before = kb.stats()["chunks"]
    report = ingest_paths(kb, [docs], progress=False, settings=ChunkingSettings(chunk_tokens=8, overlap_tokens=0))
    assert len(report.updated) == 2
    assert kb.stats()["chunks"] > before


def test_a_newer_reader_rereads_the_files_of_its_format_only(kb, docs, monkeypatch):
    from ingest.loaders import READER_VERSIONS
    from ingest.loaders.markdown import load_markdown

    ingest_paths(kb, [docs], progress=False)
    monkeypatch.setitem(READER_VERSIONS, load_markdown, READER_VERSIONS[load_markdown] + 1)
    report = ingest_paths(kb, [docs], progress=False)
    markdown = [s for s in sources(kb) if s.endswith(".md")]
    assert markdown and report.updated == markdown
    assert sorted(report.unchanged) == sorted(set(sources(kb)) - set(markdown))
    assert ingest_paths(kb, [docs], progress=False).updated == []  # read once with the new version
    assert kb.check() == []


def test_chunk_ids_are_stable_when_the_same_bytes_are_ingested_again(kb, docs):
    ingest_paths(kb, [docs], progress=False)
    first = [c.chunk_id for c in kb.iter_chunks()]
    remove_documents(kb, [docs])
    ingest_paths(kb, [docs], progress=False)
    assert [c.chunk_id for c in kb.iter_chunks()] == first
    assert len(set(first)) == len(first)


def test_reingesting_a_folder_removes_documents_whose_files_were_deleted(kb, docs):
    ingest_paths(kb, [docs], progress=False)
    (docs / "sub" / "office.txt").unlink()
    report = ingest_paths(kb, [docs], progress=False)
    assert report.removed == [str(docs / "sub" / "office.txt")]
    assert sources(kb) == [str(docs / "refunds.md")]


def test_remove_accepts_the_listed_source_and_the_relative_path_that_was_ingested(kb, docs, monkeypatch):
    monkeypatch.chdir(docs.parent)
    ingest_paths(kb, ["docs/refunds.md", "docs/sub/office.txt"], progress=False)
    assert remove_documents(kb, ["docs/refunds.md"]).removed == [str(docs / "refunds.md")]
    assert remove_documents(kb, [str(docs / "sub" / "office.txt")]).removed == [str(docs / "sub" / "office.txt")]
    assert sources(kb) == [] and kb.check() == []


def test_removing_a_folder_removes_every_document_below_it(kb, docs, tmp_path):
    other = tmp_path / "docs-other.txt"  # shares the folder's name as a string prefix, not as a path
    other.write_text("Not below docs/.")
    ingest_paths(kb, [docs, other], progress=False)
    report = remove_documents(kb, [docs])
    assert sorted(report.removed) == [str(docs / "refunds.md"), str(docs / "sub" / "office.txt")]
    assert sources(kb) == [str(other)]


def test_removing_an_unknown_path_is_a_failure_naming_the_kb(kb):
    report = remove_documents(kb, ["nowhere.md"])
    assert report.failed[0].source == "nowhere.md"
    assert "not in knowledge base 'p'; see: ragtune kb list --kb p" in report.failed[0].reason


def test_bad_files_fail_one_by_one_while_good_files_and_stored_documents_survive(kb, docs, tmp_path):
    ingest_paths(kb, [docs], progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (bad / "fake.docx").write_bytes(b"this is not a zip")
    (bad / "good.md").write_text("# Ferry\n\nThe ferry leaves at seven.\n")
    report = ingest_paths(kb, [bad, tmp_path / "missing.pdf"], progress=False)
    failed = {f.source: f.reason for f in report.failed}
    assert set(failed) == {str(bad / "empty.txt"), str(bad / "binary.txt"), str(bad / "fake.docx"),
                           str(tmp_path / "missing.pdf")}
    assert all(reason and "\n" not in reason for reason in failed.values())
    assert failed[str(tmp_path / "missing.pdf")] == "no such file or folder; check the path"
    assert report.added == [str(bad / "good.md")]
    assert sources(kb) == sorted([str(docs / "refunds.md"), str(docs / "sub" / "office.txt"), str(bad / "good.md")])
    assert kb.check() == []


def test_a_stored_document_that_turns_unreadable_keeps_its_last_good_version(kb, docs):
    ingest_paths(kb, [docs], progress=False)
    (docs / "sub" / "office.txt").write_bytes(bytes(range(256)) * 4)
    report = ingest_paths(kb, [docs], progress=False)
    assert [f.source for f in report.failed] == [str(docs / "sub" / "office.txt")]
    assert kb.search("Lisbon Porto", mode="bm25")[0].chunk.source == str(docs / "sub" / "office.txt")


def test_a_folder_without_supported_files_is_reported(kb, tmp_path):
    (tmp_path / "empty").mkdir()
    report = ingest_paths(kb, [tmp_path / "empty"], progress=False)
    assert "no supported files in this folder" in report.failed[0].reason


def test_the_same_file_named_twice_is_ingested_once(kb, docs):
    report = ingest_paths(kb, [docs / "refunds.md", docs, str(docs / "refunds.md")], progress=False)
    assert sorted(report.added) == [str(docs / "refunds.md"), str(docs / "sub" / "office.txt")]


def test_a_document_is_searchable_by_another_reader_when_ingest_returns(kb, docs):
    reader = KnowledgeBase.open(kb.path)
    assert reader.search("Lisbon Porto", mode="bm25") == []
    ingest_paths(kb, [docs / "sub"], progress=False)
    assert reader.search("Lisbon Porto", mode="bm25")[0].chunk.source == str(docs / "sub" / "office.txt")
    assert reader.search(OFFICE.strip(), mode="dense")[0].chunk.source == str(docs / "sub" / "office.txt")


def test_ingest_while_another_writer_holds_the_kb_raises_locked(kb, docs):
    with KnowledgeBase.open(kb.path).writer():
        with pytest.raises(KBLockedError, match=f"locked by pid {os.getpid()}"):
            ingest_paths(kb, [docs], progress=False)


def test_an_ingest_that_dies_between_batches_keeps_whole_documents_and_resumes(kb, tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(6):
        (folder / f"doc{n}.txt").write_text(f"Document number {n} talks about topic {n}. " * 3)
    monkeypatch.setattr(pipeline, "BATCH_CHUNKS", 2)
    real_write = pipeline.KnowledgeBaseWriter.write
    calls = []

    def dying_write(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is stopped after its first batch commits
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.KnowledgeBaseWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        ingest_paths(kb, [folder], progress=False)
    kept = sources(kb)
    assert 0 < len(kept) < 6
    assert all(d.chunks == len(kb.get_chunks([c.chunk_id for c in kb.iter_chunks() if c.source == d.source]))
               for d in kb.list_documents())
    assert kb.check() == []
    monkeypatch.setattr(pipeline.KnowledgeBaseWriter, "write", real_write)
    report = ingest_paths(kb, [folder], progress=False)
    assert sorted(report.unchanged) == kept and len(report.added) == 6 - len(kept)


def test_report_serializes_outcomes_and_failures_for_json(kb, docs, tmp_path):
    report = ingest_paths(kb, [docs, tmp_path / "nope.txt"], progress=False)
    data = report.to_dict()
    assert set(data) == {"added", "updated", "unchanged", "removed", "failed", "skipped", "chunks_added", "seconds"}
    assert data["failed"] == [{"source": str(tmp_path / "nope.txt"), "reason": "no such file or folder; check the path"}]
    assert report.summary_line().startswith("2 added, 0 updated, 0 unchanged, 0 removed, 1 failed; ")
    assert isinstance(IngestReport().to_dict()["seconds"], float)


def test_progress_bar_goes_to_stderr_with_an_eta(kb, docs, capsys):
    ingest_paths(kb, [docs], progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "eta" in err and "2/2 files" in err



@pytest.mark.slow
def test_the_real_embedder_finds_a_paraphrase_densely_and_a_code_by_keyword(workspace, tmp_path):
    docs = {
        "lost.md": "# Lost property\n\nItems found on board are kept for 90 days at the terminal, then given to charity.\n",
        "luggage.md": "# Luggage\n\nEach passenger may bring two bags of up to 23 kg free of charge.\n",
        "complaints.md": "# Complaints\n\nEvery complaint gets a reference such as CMP-2024-0137 within three working days.\n",
        "pets.md": "# Pets\n\nDogs travel for 2.50 euros and must stay on a short lead on deck.\n",
    }
    for name, text in docs.items():
        (tmp_path / name).write_text(text)
    kb = KnowledgeBase.open(workspace.kb_path("real"), create=True)  # the embedded all-MiniLM-L6-v2
    ingest_paths(kb, [tmp_path], progress=False)
    assert kb.stats()["dimension"] == 384
    hit = kb.search("My child forgot a teddy bear on the ship, how long do you hold on to it?", k=1, mode="dense")[0]
    # above the assistant's no-evidence threshold (min_score 0.25); the score is 0.30 in fp32 and
    # a little over in bf16, so a tighter bound would fail on one CPU or the other
    assert hit.chunk.source == str(tmp_path / "lost.md") and hit.score > 0.25
    assert kb.search("CMP-2024-0137", k=1, mode="hybrid")[0].chunk.source == str(tmp_path / "complaints.md")
    assert kb.search("how heavy may a suitcase be", k=1, mode="hybrid")[0].chunk.source == str(tmp_path / "luggage.md")


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_removing_an_empty_or_blank_path_is_refused_and_removes_nothing(kb, docs, blank):
    ingest_paths(kb, [docs], progress=False)
    before = sources(kb)
    with pytest.raises(IngestError, match="empty or blank path would match every document"):
        remove_documents(kb, [str(docs / "refunds.md"), blank])
    assert sources(kb) == before


def test_a_full_disk_names_every_document_not_stored_and_keeps_the_kb_readable(kb, docs, tmp_path, monkeypatch):
    import retrieval.store as store

    ingest_paths(kb, [docs], progress=False)
    real_connect = store.connect

    def capped(db):  # SQLite's own page limit raises its real "database or disk is full"
        conn = real_connect(db)
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        return conn

    monkeypatch.setattr(store, "connect", capped)
    more = tmp_path / "more"
    more.mkdir()
    for n in range(3):
        (more / f"part{n}.txt").write_text(" ".join(f"Crossing {n}-{i} leaves at dawn." for i in range(3000)))
    report = ingest_paths(kb, [more], progress=False)
    assert {f.source for f in report.failed} == {str(more / f"part{n}.txt") for n in range(3)}
    assert all(f.reason.startswith("not stored: the disk is full") for f in report.failed)
    assert report.added == []
    monkeypatch.undo()
    assert sources(kb) == [str(docs / "refunds.md"), str(docs / "sub" / "office.txt")]
    assert kb.check() == [] and kb.search("fourteen days", k=1, mode="bm25")[0].chunk.source == str(docs / "refunds.md")


def test_links_out_of_the_ingested_folder_are_not_read_and_are_named_in_the_report(kb, docs, tmp_path):
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    (outside / "secret.txt").write_text("root:x:0:0:the private key of the harbour master\n")
    (outside / "private" / "diary.md").write_text("# Diary\n\nThe private harbour master diary.\n")
    (docs / "passwd.txt").symlink_to(outside / "secret.txt")
    (docs / "more").symlink_to(outside / "private", target_is_directory=True)
    report = ingest_paths(kb, [docs], progress=False)
    assert sources(kb) == [str(docs / "refunds.md"), str(docs / "sub" / "office.txt")]
    assert {s.source for s in report.skipped} == {str(docs / "passwd.txt"), str(docs / "more")}
    assert all("outside the folder being ingested" in s.reason for s in report.skipped)
    assert "2 skipped" in report.summary_line() and report.to_dict()["skipped"]
    assert kb.search("harbour master", k=3, mode="bm25") == []


def test_links_that_stay_inside_the_ingested_folder_are_followed_for_files_and_folders(kb, docs):
    hidden = docs / ".drafts"
    hidden.mkdir()
    (hidden / "ferry.md").write_text("# Ferry\n\nThe ferry leaves at seven.\n")
    (docs / ".bus.txt").write_text("The bus meets every ferry.\n")
    (docs / "drafts").symlink_to(hidden, target_is_directory=True)
    (docs / "bus.txt").symlink_to(docs / ".bus.txt")
    (docs / "office-again.txt").symlink_to(docs / "sub" / "office.txt")  # the real name wins: stored once
    (docs / "loop").symlink_to(docs, target_is_directory=True)
    report = ingest_paths(kb, [docs], progress=False)
    assert report.skipped == [] and report.failed == []
    assert sources(kb) == sorted([str(docs / "refunds.md"), str(docs / "sub" / "office.txt"),
                                  str(docs / "drafts" / "ferry.md"), str(docs / "bus.txt")])


def test_a_stored_link_that_now_points_out_of_the_folder_leaves_the_kb_on_the_next_ingest(kb, docs, tmp_path):
    (docs / ".notes.txt").write_text("Bikes ride free on the early ferry.\n")
    link = docs / "notes.txt"
    link.symlink_to(docs / ".notes.txt")
    ingest_paths(kb, [docs], progress=False)
    assert str(link) in sources(kb)
    outside = tmp_path / "outside.txt"
    outside.write_text("Not for the index.\n")
    link.unlink()
    link.symlink_to(outside)
    report = ingest_paths(kb, [docs], progress=False)
    assert [s.source for s in report.skipped] == [str(link)] and report.removed == [str(link)]
    assert str(link) not in sources(kb)
