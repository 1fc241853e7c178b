"""UI fixtures: a workspace wired to tiny models, a knowledge base with a document, and a tiny
generator that was trained (for real, a few seconds) to answer grounded prompts with a citation.

A random tiny Llama almost never writes "[1]", so the pages that show citations could not be
tested with it; ``citing_llama_path`` fine-tunes it on grounded prompts (the assistant's own
prompt format, with random questions and passages) to answer ``CITED_ANSWER``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

CITED_ANSWER = "The documents answer this [1]."
OFFICE_DOC = """# Harbour office

The Harbour office opened in 1998 on Quay Street, next to the ferry ramp.

## Opening hours

The office is open on weekdays from nine to five, and on Saturdays in summer.
"""
_WORDS = ("ferry harbour refund ticket weather island office opened year captain route storm card member "
          "timetable crossing vehicle deck cabin pier fare season winter summer passenger").split()


@pytest.fixture(scope="session")
def citing_llama_path(tmp_path_factory, tiny_llama_path) -> Path:
    """The tiny Llama, trained to answer any grounded prompt with ``CITED_ANSWER`` (greedy)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from retrieval.citations import grounded_messages
    from retrieval.records import Chunk

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_path)
    model = LlamaForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    rng = random.Random(0)
    torch.manual_seed(0)

    def example() -> tuple[list[int], list[int]]:
        question = " ".join(rng.choices(_WORDS, k=rng.randint(3, 8))) + "?"
        chunks = [Chunk(f"c{i}", f"doc{i}.md", f"Doc {i}", " ".join(rng.choices(_WORDS, k=rng.randint(8, 40))), 0, 1)
                  for i in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            chunks[0] = Chunk("o", "/tmp/office.md", "Harbour office", OFFICE_DOC, 0, len(OFFICE_DOC))
        history = [] if rng.random() < 0.7 else [{"role": "user", "content": "hello?"},
                                                  {"role": "assistant", "content": CITED_ANSWER}]
        prompt = tokenizer.apply_chat_template(grounded_messages(question, chunks, history), tokenize=False,
                                               add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(prompt + CITED_ANSWER + "<|im_end|>", add_special_tokens=False)["input_ids"]
        return ids, [-100] * len(prompt_ids) + ids[len(prompt_ids):]

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model: more threads only add contention (4x slower on 2 busy cores)
    try:
        _train_steps(model, tokenizer, example, optimizer, steps=70)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path_factory.mktemp("citing-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _train_steps(model, tokenizer, example, optimizer, steps: int) -> None:
    import torch

    for _ in range(steps):
        batch = [example() for _ in range(6)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [tokenizer.pad_token_id] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        # logits only where there are labels: the 49k-token head over every position would dominate
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        keep = targets != -100
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[keep]), targets[keep])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def write_config(ws, generator: Path | str, embedder: str, **sections) -> None:
    """config.yaml pointing the workspace at the tiny models, with short greedy answers and no evidence cut-off."""
    config = {"models": {"generator": str(generator), "embedder": embedder},
              "generation": {"min_score": -1, "max_tokens": 12}}
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    ws.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.fixture
def ui_workspace(workspace, tiny_embedder_path, citing_llama_path):
    """A workspace whose generator is the citing tiny Llama and whose embedder is the tiny BERT."""
    write_config(workspace, citing_llama_path, tiny_embedder_path)
    return workspace


@pytest.fixture
def office_kb(ui_workspace, tmp_path):
    """The ``default`` knowledge base holding one Markdown document; returns the document's path."""
    from ingest.pipeline import ingest_paths
    from retrieval.knowledge_base import KnowledgeBase

    doc = tmp_path / "docs" / "office.md"
    doc.parent.mkdir()
    doc.write_text(OFFICE_DOC, encoding="utf-8")
    kb = KnowledgeBase.open(ui_workspace.kb_path("default"), embedder=str(ui_workspace.config()["models"]["embedder"]),
                            create=True)
    with kb:
        report = ingest_paths(kb, [doc], progress=False)
    assert report.added == [str(doc)], report
    return doc


@pytest.fixture
def open_page():
    """``open_page("chat")``: an ``AppTest`` of one page script of the UI, already run once."""
    from streamlit.testing.v1 import AppTest

    def run(name: str, timeout: float = 180) -> AppTest:
        script = Path(__file__).resolve().parents[2] / "ui" / "pages" / f"{name}.py"
        return AppTest.from_file(str(script), default_timeout=timeout).run()

    return run
