"""Shared fixtures: a workspace in tmp_path, tiny config-built models, no network.

Fast tests use a 2-layer BERT embedder and a 2-layer Llama generator built from configs with
the real tokenizers; slow tests (``-m slow``) load the embedded models.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Unit tests cannot reach a hub by accident: only loopback connections are allowed."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace; RAGTUNE_HOME points at it so subprocesses use it too."""
    from ragtune.workspace import Workspace

    home = tmp_path / "home"
    monkeypatch.setenv("RAGTUNE_HOME", str(home))
    return Workspace.open(home)


@pytest.fixture(scope="session")
def tiny_embedder_path(tmp_path_factory) -> str:
    """A 2-layer, 64-dim BERT sentence-transformers folder with MiniLM's tokenizer (random weights, seeded)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from retrieval.embedding import resolve_embedder

    out = tmp_path_factory.mktemp("tiny-embedder")
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve_embedder(None))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=512)
    bert_dir = out / "bert"
    BertModel(cfg).save_pretrained(bert_dir)
    tok.save_pretrained(bert_dir)
    word = models.Transformer(str(bert_dir), max_seq_length=256)
    st = SentenceTransformer(modules=[word, models.Pooling(64, "mean"), models.Normalize()], device="cpu")
    st.save(str(out / "st"))
    return str(out / "st")


@pytest.fixture(scope="session")
def smollm_tokenizer_path(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer (with its chat template), read once from the embedded GGUF."""
    from transformers import AutoTokenizer

    from finetune.base_model import EMBEDDED

    gguf = EMBEDDED["smollm2-135m-instruct"].gguf_path()
    out = tmp_path_factory.mktemp("smollm-tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory, smollm_tokenizer_path) -> Path:
    """A 2-layer, 64-dim Llama causal LM with SmolLM2's tokenizer, saved as a plain HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm_tokenizer_path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def real_generator_path(tmp_path_factory) -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once per test session (slow tests only)."""
    from finetune.base_model import resolve_generator

    cache = Path(os.environ.get("RAGTUNE_TEST_MODELS", tmp_path_factory.mktemp("models")))
    return Path(resolve_generator(None, cache))


@pytest.fixture(scope="session")
def pg_server_uri(tmp_path_factory) -> str:
    """A real PostgreSQL 16 with pgvector (the pgserver package), started in a tmp folder for the session.

    Tests give every knowledge base its own schema, so they never see each other's rows."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed: `make install` installs it "
                                                      "(requirements.txt) to run the PostgreSQL store tests")
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'ragtune[postgres]'")
    # A short path: the server's unix socket lives in the folder and socket paths stop at 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="ragtune-pg-"))
    server = pgserver.get_server(folder, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def pg_dsn(pg_server_uri, monkeypatch) -> str:
    """The DSN as a KB stores it (env:RAGTUNE_PG_DSN); the variable is set here and in subprocesses."""
    monkeypatch.setenv("RAGTUNE_PG_DSN", pg_server_uri)
    return "env:RAGTUNE_PG_DSN"


@pytest.fixture
def pg_schema() -> str:
    """A fresh schema name for one test's knowledge base."""
    import uuid

    return f"t_{uuid.uuid4().hex[:12]}"
