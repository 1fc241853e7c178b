"""The OpenAI-compatible server, driven by the official ``openai`` client against real uvicorn on loopback."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest

from assistant.assistant import Assistant
from assistant.server import ServerSettings, create_app, sanitize_filename
from retrieval.citations import strip_citations

KEY = "test-key"


@contextmanager
def running(app):
    """Serve ``app`` with uvicorn on a free loopback port; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def parrot_server(shared_parrot, parrot_llama_path, make_adapter):
    """A server (with an API key) for the module's parrot assistant, whose workspace has an adapter 'alpha'."""
    make_adapter(shared_parrot.ws, parrot_llama_path, "alpha")
    with running(create_app(shared_parrot, api_key=KEY)) as url:
        yield url, shared_parrot


@pytest.fixture
def client(parrot_server):
    return openai.OpenAI(base_url=parrot_server[0] + "/v1", api_key=KEY, max_retries=0)


def expected(parrot_answer):
    return strip_citations(parrot_answer, [9])


def test_models_lists_one_id_per_mode_and_adapter(client):
    ids = [m.id for m in client.models.list()]
    assert ids[:5] == ["ragtune", "ragtune-prompt", "ragtune-rag", "ragtune-tuned:alpha", "ragtune-hybrid:alpha"]
    assert "alpha" in ids  # the adapter as such, for another ragtune's --backend


def test_model_ragtune_answers_rag_until_the_kb_has_its_own_adapter(client, parrot_server):
    from finetune.adapters import set_kb_default

    ask = [{"role": "user", "content": "When does the ferry leave?"}]
    default = client.models.list().data[0]
    assert default.id == "ragtune" and default.model_extra["ragtune"] == {"mode": "rag", "adapter": None, "default": True}
    assert client.chat.completions.create(model="ragtune", messages=ask).model_extra["ragtune"]["mode"] == "rag"
    ws = parrot_server[1].ws
    set_kb_default(ws, parrot_server[1].kb_name, "alpha", {"delta": 0.2})
    try:
        answer = client.chat.completions.create(model="ragtune", messages=ask).model_extra["ragtune"]
        assert (answer["mode"], answer["adapter"]) == ("hybrid", "alpha")
    finally:
        set_kb_default(ws, parrot_server[1].kb_name, None)


def test_completion_has_inline_citations_and_a_citations_field(client, parrot_answer):
    response = client.chat.completions.create(model="ragtune-rag",
                                              messages=[{"role": "user", "content": "When does the ferry leave?"}])
    choice = response.choices[0]
    assert choice.message.content == expected(parrot_answer)
    assert choice.finish_reason == "stop"
    citations = response.model_extra["citations"]
    assert [c["n"] for c in citations] == [1] and citations[0]["source"].endswith(".md")
    assert response.model_extra["ragtune"]["dropped_citations"] == [9]
    assert response.usage.completion_tokens > 0 and response.usage.prompt_tokens > 0


def test_streaming_sends_openai_chunks_then_citations_and_usage(client, parrot_answer):
    stream = client.chat.completions.create(model="ragtune-hybrid:alpha", stream=True,
                                            stream_options={"include_usage": True},
                                            # "where" wants a name: the parrot's answer names none and is asked
                                            # again with the request's cancel event, which must still be clear
                                            messages=[{"role": "user", "content": "Where does the ferry leave from?"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected(parrot_answer)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert [c["n"] for c in final.model_extra["citations"]] == [1]
    assert chunks[-1].usage.completion_tokens > 0
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # really streamed


def test_wrong_or_missing_key_gets_401(parrot_server):
    url = parrot_server[0]
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    response = httpx.get(url + "/v1/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(url + "/v1/search", json={"query": "ferry"}).status_code == 401


@pytest.mark.parametrize("body, status", [
    ({"model": "ragtune-rag", "messages": []}, 400),
    ({"model": "ragtune-rag"}, 400),
    ({"model": "ragtune-rag", "messages": [{"role": "user", "content": "q"}], "temperature": 9}, 400),
    ({"model": "ragtune-rag", "messages": [{"role": "wizard", "content": "q"}]}, 400),
    ({"model": "ragtune-rag", "messages": [{"role": "assistant", "content": "hi"}]}, 400),
    ({"model": "ragtune-nope", "messages": [{"role": "user", "content": "q"}]}, 404),
    ({"model": "ragtune-tuned:ghost", "messages": [{"role": "user", "content": "q"}]}, 400),
])
def test_malformed_requests_get_4xx_json_errors(parrot_server, body, status):
    response = httpx.post(parrot_server[0] + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]


def test_body_that_is_not_json_gets_400(parrot_server):
    response = httpx.post(parrot_server[0] + "/v1/chat/completions", content=b"{not json",
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code == 400 and "error" in response.json()


def test_openai_client_sees_bad_request_and_not_found(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ragtune-rag", messages=[])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "q"}])


def test_concurrent_requests_all_complete(client, parrot_answer):
    results = []

    def ask():
        r = client.chat.completions.create(model="ragtune-rag", messages=[{"role": "user", "content": "Ferry?"}])
        results.append(r.choices[0].message.content)

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [expected(parrot_answer)] * 5


def test_search_endpoint_returns_ranked_chunks(parrot_server):
    response = httpx.post(parrot_server[0] + "/v1/search", json={"query": "ferry harbour", "k": 2, "mode": "bm25"},
                          headers={"Authorization": f"Bearer {KEY}"})
    hits = response.json()["data"]
    assert response.status_code == 200 and 1 <= len(hits) <= 2
    assert hits[0]["source"].endswith("ferry.md") and hits[0]["rank"] == 1


def test_upload_is_confined_to_the_workspace_listed_searchable_and_deletable(parrot_server):
    url, served = parrot_server
    workspace = served.ws
    auth = {"Authorization": f"Bearer {KEY}"}
    files = {"file": ("../../etc/evil name!.md", b"# Lighthouse\n\nThe lighthouse keeper is Morwenna Trask.", "text/markdown")}
    response = httpx.post(url + "/v1/kb/documents", files=files, headers=auth)
    assert response.status_code == 200, response.text
    stored = workspace.home / "uploads" / "default" / "evil_name.md"
    assert stored.is_file() and response.json()["added"] == [str(stored)]
    sources = [d["source"] for d in httpx.get(url + "/v1/kb/documents", headers=auth).json()["data"]]
    assert str(stored) in sources
    hits = httpx.post(url + "/v1/search", json={"query": "lighthouse keeper Morwenna", "k": 1, "mode": "bm25"},
                      headers=auth).json()["data"]
    assert hits[0]["source"] == str(stored)
    deleted = httpx.delete(url + "/v1/kb/documents", params={"source": str(stored)}, headers=auth)
    assert deleted.status_code == 200 and deleted.json()["removed"] == [str(stored)]
    assert not stored.exists()
    assert httpx.delete(url + "/v1/kb/documents", params={"source": str(stored)}, headers=auth).status_code == 404


def test_upload_over_the_size_limit_or_of_unknown_type_is_refused(workspace, docs_kb, parrot_llama_path):
    assistant = Assistant(workspace, generator=str(parrot_llama_path))
    with running(create_app(assistant, settings=ServerSettings(max_upload_mb=0.01))) as url:
        big = httpx.post(url + "/v1/kb/documents", files={"file": ("big.md", b"x" * 20_000)})
        exe = httpx.post(url + "/v1/kb/documents", files={"file": ("tool.exe", b"MZ")})
    assert big.status_code == 413 and "limit" in big.json()["error"]["message"]
    assert exe.status_code == 415
    assert not any((workspace.home / "uploads" / "default").glob("*"))


@pytest.mark.parametrize("name, safe", [("../../a.md", "a.md"), ("..\\..\\win.txt", "win.txt"),
                                        ("my report (v2).PDF", "my_report_v2.pdf"), (".hidden.md", "hidden.md")])
def test_upload_names_are_sanitized(name, safe):
    assert sanitize_filename(name) == safe


def test_client_disconnect_stops_generation(workspace, docs_kb, tiny_llama_path):
    from assistant.records import GenerationSettings

    assistant = Assistant(workspace, generator=str(tiny_llama_path), settings=GenerationSettings(max_tokens=1500))
    with running(create_app(assistant)) as url:
        body = {"model": "ragtune-prompt", "stream": True, "messages": [{"role": "user", "content": "A long story?"}]}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
        deadline = time.time() + 20
        while not assistant.backend.finished["cancelled"] and time.time() < deadline:
            time.sleep(0.05)
    assert assistant.backend.finished["cancelled"] == 1
    assistant.close()


def test_queue_limit_answers_503_while_busy(workspace, docs_kb, tiny_llama_path):
    from assistant.records import GenerationSettings

    assistant = Assistant(workspace, generator=str(tiny_llama_path), settings=GenerationSettings(max_tokens=1500))
    with running(create_app(assistant, settings=ServerSettings(max_queue=1))) as url:
        body = {"model": "ragtune-prompt", "stream": True, "messages": [{"role": "user", "content": "A long story?"}]}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)
            second = httpx.post(url + "/v1/chat/completions", json=dict(body, stream=False), timeout=30)
    assert second.status_code == 503 and second.json()["error"]["code"] == "server_busy"
    assistant.close()


def test_openai_compatible_backend_generates_through_a_ragtune_server(parrot_server, fast_settings, parrot_answer,
                                                                      monkeypatch):
    url, served = parrot_server
    monkeypatch.setenv("RAGTUNE_BACKEND_API_KEY", KEY)
    remote = Assistant(served.ws, backend=url, settings=fast_settings)  # same workspace and KB, remote generator
    assert remote.backend.name == "openai"
    local_answer = served.answer("Where does the ferry leave from?", mode="rag")
    items = list(remote.stream("Where does the ferry leave from?", mode="rag"))
    *deltas, answer = items
    assert answer.text == local_answer.text == expected(parrot_answer)
    assert "".join(deltas) == answer.text and len(deltas) > 3
    assert [c.n for c in answer.citations] == [1] and answer.dropped_citations == [9]
    assert answer.tokens > 0
    assert remote.modes_available()[2:] == [("tuned", "alpha"), ("hybrid", "alpha")]
    assert remote.answer("When?", mode="tuned", adapter="alpha").text == expected(parrot_answer).replace(" [1]", "")
    remote.close()


# -- exposure without a key -------------------------------------------------------------------------

@pytest.fixture
def keyless_server(workspace, docs_kb, parrot_llama_path, fast_settings):
    """A server without an API key (the default) over the DOCS KB; yields (url, assistant)."""
    assistant = Assistant(workspace, generator=str(parrot_llama_path), settings=fast_settings)
    with running(create_app(assistant)) as url:
        yield url, assistant
    assistant.close()


def test_without_a_key_a_foreign_host_header_is_refused(keyless_server):
    url, _ = keyless_server
    rebound = httpx.get(url + "/v1/kb/documents", headers={"Host": "attacker.example"})
    assert rebound.status_code == 403 and "api-key" in rebound.json()["error"]["message"]
    port = url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert httpx.get(url + "/v1/kb/documents", headers={"Host": host}).status_code == 200


def test_without_a_key_a_cross_origin_upload_is_refused_and_adds_nothing(keyless_server):
    url, served = keyless_server
    files = {"file": ("notice.md", b"# Notice\n\nAll ferries are cancelled.", "text/markdown")}
    response = httpx.post(url + "/v1/kb/documents", files=files, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    sources = [d["source"] for d in httpx.get(url + "/v1/kb/documents").json()["data"]]
    assert not any(s.endswith("notice.md") for s in sources)
    same_origin = httpx.get(url + "/v1/kb/documents", headers={"Origin": url})
    assert same_origin.status_code == 200


def test_with_a_key_any_host_is_served(parrot_server):
    url, _ = parrot_server
    response = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {KEY}", "Host": "api.example"})
    assert response.status_code == 200


# -- uploads --------------------------------------------------------------------------------------

def _largest_open_temp_file(folder) -> int:
    """The size of the largest file this process holds open under ``folder`` (deleted ones included)."""
    largest = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
                largest = max(largest, os.stat(f"/proc/self/fd/{fd}").st_size)
        except OSError:
            pass
    return largest


def test_chunked_upload_over_the_limit_is_stopped_while_streaming(workspace, docs_kb, parrot_llama_path, tmp_path,
                                                                 monkeypatch):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where multipart parsing spools file parts
    assistant = Assistant(workspace, generator=str(parrot_llama_path))
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _largest_open_temp_file(spool))
            time.sleep(0.01)

    def body():  # chunked: no Content-Length to refuse it by
        yield (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="huge.md"\r\n'
               b"Content-Type: text/markdown\r\n\r\n")
        for _ in range(64):
            yield b"x" * (1 << 20)
        yield b"\r\n--b0undary--\r\n"

    watcher = threading.Thread(target=watch, daemon=True)
    with running(create_app(assistant, settings=ServerSettings(max_upload_mb=1))) as url:
        watcher.start()
        try:
            response = httpx.post(url + "/v1/kb/documents", content=body(), timeout=60,
                                  headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
            assert response.status_code == 413 and "server.max_upload_mb" in response.json()["error"]["message"]
        except httpx.TransportError:
            pass  # the server may close the connection while the client is still sending
        finally:
            done.set()
            watcher.join()
    assistant.close()
    assert peak[0] <= 2 * 1024 * 1024, f"{peak[0]} bytes spooled for a 1 MB limit"
    assert not any((workspace.home / "uploads" / "default").glob("*"))


def test_failed_reupload_keeps_the_good_file_the_kb_lists(keyless_server):
    url, served = keyless_server
    good = b"# Lighthouse\n\nThe lighthouse keeper is Morwenna Trask."
    first = httpx.post(url + "/v1/kb/documents", files={"file": ("light.md", good)})
    assert first.status_code == 200, first.text
    stored = served.ws.home / "uploads" / "default" / "light.md"
    broken = httpx.post(url + "/v1/kb/documents", files={"file": ("light.md", b"\xff\xfe\x00\x00" * 4)})
    assert broken.status_code == 400, broken.text
    assert stored.read_bytes() == good
    assert str(stored) in [d["source"] for d in httpx.get(url + "/v1/kb/documents").json()["data"]]
    assert [p.name for p in stored.parent.iterdir()] == ["light.md"]


# -- generation limits ----------------------------------------------------------------------------

def test_max_tokens_near_the_window_keeps_the_retrieved_documents(client, parrot_answer):
    response = client.chat.completions.create(model="ragtune-rag", max_tokens=2000,  # the parrot's window: 2048
                                              messages=[{"role": "user", "content": "When does the ferry leave?"}])
    assert response.model_extra["ragtune"]["context"], "the documents were dropped to make room for max_tokens"
    assert response.choices[0].message.content == expected(parrot_answer)


def test_max_tokens_over_the_server_cap_is_refused_naming_the_setting(client):
    with pytest.raises(openai.BadRequestError, match="server.max_tokens"):
        client.chat.completions.create(model="ragtune-rag", max_tokens=1_000_000,
                                       messages=[{"role": "user", "content": "When does the ferry leave?"}])


@pytest.mark.parametrize("stop, setting", [([f"s{i}" for i in range(20_000)], "server.max_stop"),
                                           (["x" * 5000], "server.max_stop_chars")])
def test_stop_list_over_the_caps_is_refused_naming_the_setting(client, stop, setting):
    with pytest.raises(openai.BadRequestError, match=setting):
        client.chat.completions.create(model="ragtune-rag", stop=stop,
                                       messages=[{"role": "user", "content": "When does the ferry leave?"}])


def test_disconnect_while_the_answer_is_held_back_stops_generation(workspace, docs_kb, tiny_llama_path):
    from assistant.records import GenerationSettings

    # "how many" asks for a count: the shape check holds the tiny model's answer back (it writes none),
    # so nothing is sent while it generates (and it repeats itself: the loop stop would end it early)
    assistant = Assistant(workspace, generator=str(tiny_llama_path),
                          settings=GenerationSettings(max_tokens=1500, min_score=-1.0, unknown_terms=-1.0,
                                                      stop_loops=False))
    with running(create_app(assistant)) as url:
        body = {"model": "ragtune-rag", "stream": True,
                "messages": [{"role": "user", "content": "How many ferries leave the harbour each weekday?"}]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=body, timeout=2)
        deadline = time.time() + 20
        while not assistant.backend.finished["cancelled"] and time.time() < deadline:
            time.sleep(0.05)
    assert assistant.backend.finished["cancelled"] == 1
    assert assistant.backend.finished["length"] == 0  # not run to max_tokens first
    assistant.close()
