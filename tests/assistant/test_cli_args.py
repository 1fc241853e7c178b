"""``ragtune ask``, ``chat`` and ``serve``: real commands on a workspace whose generator is the parrot model."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from assistant.assistant import Assistant
from assistant.chat import run_chat
from ragtune.cli import main
from retrieval.citations import strip_citations


@pytest.fixture
def parrot_home(workspace, docs_kb, parrot_llama_path):
    """The workspace configured to generate with the parrot model and skip the no-evidence check."""
    workspace.config_path.write_text(yaml.safe_dump({"models": {"generator": str(parrot_llama_path)},
                                                     "generation": {"min_score": -1.0, "max_tokens": 24}}))
    return workspace


def test_ask_json_prints_answer_citations_context_and_timings(parrot_home, capsys, parrot_answer):
    assert main(["ask", "When does the ferry leave?", "--json", "--home", str(parrot_home.home)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == strip_citations(parrot_answer, [9])
    assert out["mode"] == "rag" and out["adapter"] is None
    assert [c["n"] for c in out["citations"]] == [1]
    assert set(out["citations"][0]) >= {"n", "source", "title", "page", "chunk_id", "text"}
    assert out["context"] and set(out["context"][0]) >= {"n", "source", "title", "page", "chunk_id", "text", "score"}
    assert out["latency_s"] > 0 and out["tokens"] > 0 and out["dropped_citations"] == [9]


def test_ask_streams_the_answer_then_its_sources(parrot_home, capsys):
    assert main(["ask", "When does the ferry leave?", "--home", str(parrot_home.home)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The ferry leaves at seven [1], docks by noon.\n")
    assert "Sources:\n  [1] Ferry" in out and "ferry.md" in out
    assert "removed citation [9]" in out


def test_ask_without_an_adapter_in_tuned_mode_is_one_line_and_exit_one(parrot_home):
    env = dict(os.environ, RAGTUNE_HOME=str(parrot_home.home))
    out = subprocess.run([sys.executable, "-m", "ragtune", "ask", "q", "--mode", "tuned"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "needs an adapter" in out.stderr
    assert "Traceback" not in out.stderr


def test_chat_streams_answers_with_sources_and_handles_commands(parrot_home, parrot_answer):
    assistant = Assistant(parrot_home)
    lines = iter(["When does the ferry leave?", "/mode prompt", "And on Sundays?", "/mode tuned", "/adapter ghost",
                  "/reset", "/frobnicate", "/quit"])
    out = io.StringIO()
    assert run_chat(assistant, "rag", read=lambda prompt: next(lines), out=out) == 0
    text = out.getvalue()
    assert text.count(strip_citations(parrot_answer, [9])) == 1  # rag: [1] kept
    assert strip_citations(parrot_answer, [1, 9]) + "\n" in text  # prompt mode: no documents, no citations
    assert "Sources:\n  [1] Ferry" in text
    assert "(mode prompt)" in text and "needs an adapter" in text and "no adapter named 'ghost'" in text
    assert "(conversation forgotten)" in text and "unknown command /frobnicate" in text
    assistant.close()


def test_chat_passes_the_conversation_as_history(parrot_home):
    assistant = Assistant(parrot_home)
    seen = []
    real_stream = assistant.stream

    def recording(question, **kwargs):
        seen.append([m["content"] for m in kwargs["history"]])
        return real_stream(question, **kwargs)

    assistant.stream = recording
    lines = iter(["When does the ferry leave?", "And on Sundays?", "/reset", "Refunds?", "/quit"])
    run_chat(assistant, "rag", read=lambda prompt: next(lines), out=io.StringIO())
    assert seen[0] == [] and seen[1][0] == "When does the ferry leave?" and len(seen[1]) == 2
    assert seen[2] == []
    assistant.close()


def test_serve_command_answers_the_openai_client(parrot_home):
    import openai

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = dict(os.environ, RAGTUNE_HOME=str(parrot_home.home))
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(port), "--api-key", "k", "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", headers={"Authorization": "Bearer k"}).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="ragtune-rag", messages=[{"role": "user", "content": "Ferry?"}])
        assert reply.choices[0].message.content.startswith("The ferry leaves at seven [1]")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "ragtune API on http://127.0.0.1" in out
