"""Generation backends: stop strings, the registry, the HTTP backend's errors, window overflow."""

from __future__ import annotations

import pytest

from assistant.errors import AssistantError
from assistant.generation import LocalBackend, OpenAICompatibleBackend, StopMatcher, make_backend
from assistant.records import GenerationSettings


@pytest.mark.parametrize("text, start, expected", [
    ("hello world", 0, (11, False)),
    ("hello ###", 0, (6, True)),
    ("hello #", 0, (6, False)),  # "#" may start "###": held back
    ("hello ##", 0, (6, False)),
    ("abc\nUser:", 0, (3, True)),
    ("abc\nUs", 0, (3, False)),
])
def test_stop_matcher_holds_back_possible_stop_prefixes(text, start, expected):
    assert StopMatcher(("###", "\nUser:")).scan(text, start) == expected


def test_stop_matcher_without_stops_emits_everything():
    assert StopMatcher(()).scan("anything ###", 0) == (12, False)


def test_make_backend_picks_local_or_http_by_spec(workspace):
    assert isinstance(make_backend(workspace), LocalBackend)
    remote = make_backend(workspace, "http://127.0.0.1:9/v1")
    assert isinstance(remote, OpenAICompatibleBackend) and remote.url == "http://127.0.0.1:9/v1"
    assert make_backend(workspace, "http://127.0.0.1:9").url == "http://127.0.0.1:9/v1"
    with pytest.raises(AssistantError, match="needs a URL"):
        make_backend(workspace, "openai")
    with pytest.raises(AssistantError, match="unknown backend"):
        make_backend(workspace, "vllm")


def test_unreachable_http_backend_is_one_clear_error(workspace):
    with socket_closed_port() as port:
        backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}")
        with pytest.raises(AssistantError, match="unreachable"):
            list(backend.stream([{"role": "user", "content": "q"}], GenerationSettings()))


def test_prompt_longer_than_the_window_is_an_assistant_error(workspace, tiny_llama_path):
    backend = LocalBackend(workspace, str(tiny_llama_path))
    huge = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(AssistantError, match="window"):
        list(backend.stream(huge, GenerationSettings(max_tokens=4)))
    backend.close()


def test_answer_is_capped_by_the_room_left_in_the_window(workspace, tiny_llama_path):
    backend = LocalBackend(workspace, str(tiny_llama_path))
    messages = [{"role": "user", "content": "word " * 2000}]
    room = backend.context_window - backend.prompt_tokens(messages)
    *_, result = backend.stream(messages, GenerationSettings(max_tokens=500))
    assert result.tokens <= room < 500
    backend.close()


def test_bad_dtype_or_quantize_setting_is_refused(workspace):
    with pytest.raises(AssistantError, match="dtype"):
        LocalBackend(workspace, dtype="float8")
    with pytest.raises(AssistantError, match="quantize"):
        LocalBackend(workspace, quantize="int3")


def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def port():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        number = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        yield number

    return port()


def test_the_decode_loop_gives_the_greedy_tokens_of_plain_generate(workspace, tiny_llama_path):
    # the KV cache reaches the model under the name its forward takes (a cache it ignored would
    # give other tokens from the second step on)
    import torch
    from transformers import AutoModelForCausalLM

    from assistant.generation import _cache_keyword

    backend = LocalBackend(workspace, str(tiny_llama_path), dtype="float32", quantize="none")
    messages = [{"role": "user", "content": "tell me about ferries"}]
    *_, result = backend.stream(messages, GenerationSettings(max_tokens=12))
    ids = backend.encode_prompt(messages)
    backend.close()
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    assert _cache_keyword(model) in ("cache", "past_key_values")
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    expected = [t for t in out[0, len(ids):].tolist() if t not in backend._eos]
    assert result.tokens == len(expected) and result.tokens > 1
    assert result.text == backend.tokenizer.decode(expected, skip_special_tokens=True)
