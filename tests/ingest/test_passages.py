"""What a chunk is embedded as: its title and heading path before its text, when the KB says so."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.pipeline import ingest_paths
from retrieval.knowledge_base import KnowledgeBase, KnowledgeBaseSettings


@pytest.mark.parametrize("embed_context", [True, False])
def test_a_chunk_is_embedded_with_its_title_and_heading_path_only_when_the_kb_says_so(workspace, tiny_embedder_path,
                                                                                       tmp_path, embed_context):
    doc = tmp_path / "guide.md"
    doc.write_text("# Kiln Guide\n\n## Firing\n\nHold the kiln at 1240 degrees for two hours.\n", encoding="utf-8")
    kb = KnowledgeBase.open(workspace.kb_path("k"), embedder=tiny_embedder_path, create=True,
                            settings=KnowledgeBaseSettings(embed_context=embed_context))
    assert not ingest_paths(kb, [doc], progress=False).failed
    chunk = next(kb.iter_chunks())
    assert chunk.text.startswith("## Firing") or chunk.text.startswith("# Kiln")  # stored text is untouched
    expected = f"Kiln Guide > Firing\n{chunk.text}" if embed_context else chunk.text
    assert kb.passage(chunk.title, chunk.heading, chunk.text) == expected
    hit = kb.search(expected, k=1, mode="dense")[0]
    assert hit.chunk.chunk_id == chunk.chunk_id and hit.score == pytest.approx(1.0, abs=1e-4)
    assert KnowledgeBase.open(kb.path).settings.embed_context is embed_context  # fixed at creation


def test_title_repeated_as_first_heading_is_said_once_and_a_bare_chunk_is_itself(workspace, tiny_embedder_path):
    kb = KnowledgeBase.open(workspace.kb_path("k"), embedder=tiny_embedder_path, create=True)
    assert kb.passage("Release notes", "Release notes > 2.1 > Fixes", "Fixed a leak.") == \
        "Release notes > 2.1 > Fixes\nFixed a leak."
    assert kb.passage("", "", "Plain text.") == "Plain text."
    assert kb.passage("Pricing", "", "Tea costs £2.") == "Pricing\nTea costs £2."
    assert np.isfinite(kb.embedder.embed_query(kb.passage("Pricing", "", "Tea costs £2."))).all()
