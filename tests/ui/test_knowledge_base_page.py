"""The Knowledge base page (AppTest): create, upload with per-file reasons, list, delete, re-ingest, search."""

from __future__ import annotations

from ui.session import sanitize_filename

GOOD = ("guide.md", b"# Guide\n\nRefunds are paid within ten days of a cancelled crossing.\n", "text/markdown")
FAKE_PDF = ("scan.pdf", b"this is not a pdf at all", "application/pdf")
EMPTY = ("empty.txt", b"", "text/plain")


def _errors(at) -> list[str]:
    return [e.value for e in at.exception]


def _create(at, name: str):
    at.sidebar.text_input(key="kb_new_name").input(name)
    at.sidebar.get("form_submit_button")[0].click().run()
    assert not _errors(at)
    return at


def _upload(at, *files):
    at.file_uploader[0].set_value(list(files)).run()
    at.button(key="kb_ingest").click().run()
    assert not _errors(at)
    return at


def test_without_knowledge_bases_the_page_offers_to_create_one(ui_workspace, open_page):
    at = open_page("knowledge_base")
    assert any("Create a knowledge base" in i.value for i in at.info)


def test_created_knowledge_base_is_selected(ui_workspace, open_page):
    at = _create(open_page("knowledge_base"), "team-docs")
    assert ui_workspace.kb_names() == ["team-docs"]
    assert at.sidebar.selectbox(key="kb_picker").value == "team-docs"


def test_invalid_knowledge_base_name_is_refused_with_the_rule(ui_workspace, open_page):
    at = _create(open_page("knowledge_base"), "../escape")
    assert ui_workspace.kb_names() == []
    assert any("invalid knowledge base name" in e.value for e in at.error)


def test_upload_keeps_good_files_and_gives_each_bad_file_its_reason(ui_workspace, open_page):
    at = _upload(_create(open_page("knowledge_base"), "docs"), GOOD, FAKE_PDF, EMPTY)
    errors = {e.value.split("**")[1]: e.value for e in at.error}
    assert set(errors) == {"scan.pdf", "empty.txt"}
    assert "PDF" in errors["scan.pdf"] and "empty" in errors["empty.txt"]
    assert any("1 added" in w.value and "2 failed" in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert list(table["document"]) == ["uploads/docs/guide.md"] and table["chunks"][0] >= 1
    assert (ui_workspace.home / "uploads" / "docs" / "guide.md").read_bytes() == GOOD[1]


def test_deleted_document_leaves_the_knowledge_base(ui_workspace, open_page):
    at = _upload(_create(open_page("knowledge_base"), "docs"), GOOD)
    at.multiselect(key="kb_selected").select("uploads/docs/guide.md").run()
    at.button(key="kb_delete").click().run()
    assert not _errors(at)
    assert any("1 removed" in s.value for s in at.success)
    assert at.metric[0].value == "0"


def test_reingest_re_embeds_the_selected_document(ui_workspace, open_page):
    at = _upload(_create(open_page("knowledge_base"), "docs"), GOOD)
    (ui_workspace.home / "uploads" / "docs" / "guide.md").write_text("# Guide\n\nRefunds now take five days.\n")
    at.multiselect(key="kb_selected").select("uploads/docs/guide.md").run()
    at.button(key="kb_reingest").click().run()
    assert any("1 updated" in s.value for s in at.success), [s.value for s in at.success]
    at.text_input(key="kb_query").input("refunds").run()
    assert any("five days" in m.value for e in at.expander for m in e.markdown)


def test_search_playground_shows_ranked_chunks_with_scores(ui_workspace, office_kb, open_page):
    at = open_page("knowledge_base")
    at.text_input(key="kb_query").input("when did the office open").run()
    labels = [e.label for e in at.expander if e.label.startswith("**")]
    assert labels and labels[0].startswith("**1.**") and "score" in labels[0]
    assert any("hybrid" in c.value for c in at.caption)


def test_upload_names_are_sanitized_to_a_plain_file_name():
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("C:\\Users\\me\\My Report (final).PDF") == "My_Report_final.PDF"
    assert sanitize_filename(".hidden") == "hidden"
    assert sanitize_filename("") == "upload"
