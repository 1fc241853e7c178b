"""Generation backends: turn chat messages into streamed text.

Two backends, registered by name in ``BACKENDS`` (peft-style: parallel things register in a dict):

- ``local`` (default): one resident transformers model on this machine. Adapters load into it
  once with peft (``load_adapter``) and each request picks one with ``set_adapter`` or runs the
  base with ``disable_adapter``: switching never reloads the base model. The process's compute
  thread (ragtune/compute.py) loads and runs the model, so requests queue and generate one at a
  time; a cancelled request stops at its next token. Decoding uses bf16 activations and int4 or
  int8 weight-only matmuls where the CPU has native bf16 (see quantization.py) and a hand-written
  loop over the KV cache (no ``generate`` overhead).
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, another ``ragtune
  serve``) given by URL; an adapter is requested as the model of that name, as vLLM serves LoRA
  modules.

Both yield text deltas and then one ``GenerationResult``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import threading
import time
import warnings
from collections import Counter, OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from assistant.copying import NumberGuard, digit_tokens
from assistant.errors import AssistantError
from assistant.records import GenerationSettings
from ragtune import compute
from ragtune.workspace import Workspace

log = logging.getLogger(__name__)

# Chat-turn markers that end an answer even when the model does not emit its EOS token.
_TURN_MARKERS = ("<|im_end|>", "<|im_start|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>")


@dataclass(frozen=True)
class GenerationResult:
    """What a backend reports after the last delta."""

    text: str
    tokens: int
    prompt_tokens: int
    finish_reason: str  # stop | length | cancelled
    decode_s: float = 0.0  # seconds from the first generated token to the last
    model: str = ""
    numbers_steered: int = 0  # steps at which the number guard changed the model's first choice
    dropped: list = field(default_factory=list)  # citation numbers outside the context, removed (assistant)


class GenerationBackend:
    """What the assistant needs from a backend; subclasses register in ``BACKENDS``."""

    name = "base"

    def warm_up(self) -> None:
        """Load the model (or check the server) now rather than on the first request."""

    @property
    def context_window(self) -> int:
        """Tokens the model attends to: prompt plus answer."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in a prompt."""
        raise NotImplementedError

    def prompt_tokens(self, messages: list[dict]) -> int:
        """Tokens the rendered chat prompt for ``messages`` takes."""
        raise NotImplementedError

    def adapter_names(self) -> list[str]:
        """Adapters this backend can generate with."""
        raise NotImplementedError

    def check_adapter(self, name: str) -> None:
        """Raise ``AssistantError`` (naming what exists) unless ``name`` can be used."""
        raise NotImplementedError

    def stream(self, messages: list[dict], settings: GenerationSettings, adapter: str | None = None,
               cancel: threading.Event | None = None,
               numbers: frozenset[str] | None = None) -> Iterator[str | GenerationResult]:
        """Text deltas for the reply to ``messages``, then one ``GenerationResult``.

        numbers: the digit runs the reply may write (assistant/copying.py), None = any; a backend
        that cannot constrain decoding ignores it.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release threads and connections."""


class StopMatcher:
    """Finds stop strings in growing text and says how much text is safe to emit.

    Text that could be the start of a stop string is held back until it is decided.
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self.longest = max((len(s) for s in self.stops), default=0)

    def scan(self, text: str, start: int = 0) -> tuple[int, bool]:
        """(end of the text that may be emitted, whether a stop string was found)."""
        if not self.stops:
            return len(text), False
        begin = max(0, start - self.longest)
        found = [i for i in (text.find(s, begin) for s in self.stops) if i >= 0]
        if found:
            return min(found), True
        for keep in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-keep:]
            if any(s.startswith(tail) for s in self.stops):
                return len(text) - keep, False
        return len(text), False


# --- local transformers backend --------------------------------------------------------------

@dataclass(eq=False)  # identity: jobs live in a set
class _Job:
    messages: list[dict]
    settings: GenerationSettings
    adapter: str | None
    cancel: threading.Event
    out: queue.Queue
    numbers: frozenset[str] | None = None


class LocalBackend(GenerationBackend):
    """One resident transformers model plus peft adapters, generating on the process's compute thread."""

    name = "local"

    def __init__(self, ws: Workspace, generator: str | None = None, dtype: str = "auto", quantize: str = "auto",
                 full_models: int = 1, threads: int | None = None):
        """``generator``: embedded name, local HF folder or hub id (default: the workspace's ``models.generator``).

        dtype: auto (bf16 where the CPU computes it natively, else fp32), bfloat16 or float32.
        quantize: weight-only matmuls (see quantization.py): auto = when running bf16, int4 for a model
        converted from a 4-bit GGUF (the embedded ones: the same grid they ship in) and int8 for
        others; int4, int8 or none to choose.
        full_models: how many freeze/full adapter models (whole models, not peft) stay resident.
        threads: torch's intra-op threads for the process's model work, None = torch's default, one per core.
        """
        from assistant.models import model_settings

        self.ws = ws
        self.generator = generator or model_settings(ws).generator
        if dtype not in ("auto", "bfloat16", "float32"):
            raise AssistantError(f"dtype must be auto, bfloat16 or float32, got {dtype!r}")
        if quantize not in ("auto", "int4", "int8", "none"):
            raise AssistantError(f"quantize must be auto, int4, int8 or none, got {quantize!r}")
        if threads is not None and threads < 1:
            raise AssistantError(f"threads must be at least 1, got {threads}")
        self.dtype_name, self.quantize_name, self.full_models = dtype, quantize, max(1, full_models)
        self.threads = threads
        self.path: Path | str | None = None
        self.tokenizer = None
        self.model = None  # the resident base model; peft injects adapter layers into it in place
        self.peft_model = None  # the PeftModel wrapping ``model``, once an adapter is loaded
        self.loads = 0  # base-model loads: stays 1 however often requests switch adapters
        self.adapter_loads: dict[str, int] = {}
        self.finished: Counter[str] = Counter()  # generations by finish reason (stop, length, cancelled)
        self._full: OrderedDict[str, object] = OrderedDict()
        self._eos: set[int] = set()
        self._control_tokens: list[str] = []
        self._init_lock = threading.Lock()
        self._tok_init_lock = threading.Lock()
        self._tok_lock = threading.Lock()  # a fast tokenizer is not safe to call from two threads at once
        self._jobs: set[_Job] = set()  # queued or running, cancelled by ``close``
        self._window: int | None = None
        self._digit_tokens: dict[int, str] | None = None

    # -- loading ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the tokenizer and the base model once (on the compute thread, which then runs it)."""
        if self.model is not None:
            return
        with self._init_lock:
            if self.model is not None:
                return
            self._load_tokenizer()
            if self.threads:
                compute.set_threads(self.threads)
            dtype = self._dtype()
            started = time.perf_counter()
            model = compute.run(self._load_model, self.path, dtype)
            self.loads += 1
            bits = self.quantize_bits(dtype)
            log.info("loaded generator %s (%s%s) in %.1fs", self.path, str(dtype).replace("torch.", ""),
                     f", int{bits} weights" if bits else "", time.perf_counter() - started)
            self._eos = self._stop_token_ids(model)
            self._window = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
            self._cache_kw = _cache_keyword(model)
            self.model = model

    def _load_tokenizer(self) -> None:
        if self.tokenizer is not None:
            return
        from transformers import AutoTokenizer

        from finetune.base_model import resolve_generator

        with self._tok_init_lock:
            if self.tokenizer is not None:
                return
            self.path = resolve_generator(self.generator, self.ws.models_dir)
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            except (OSError, ValueError) as exc:
                raise AssistantError(f"cannot load the tokenizer of generator {self.generator!r} ({self.path}): {exc}") from exc
            special = set(tokenizer.all_special_tokens)
            special.update(t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special)
            self._control_tokens = sorted((t for t in special if len(t) > 1), key=len, reverse=True)
            self.tokenizer = tokenizer

    def _dtype(self):
        import torch

        if self.dtype_name == "bfloat16" or (self.dtype_name == "auto" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32

    def quantize_bits(self, dtype) -> int | None:
        """4, 8 or None: the weight format the model runs with under this backend's settings."""
        import torch

        from assistant.quantization import int4_supported, int8_supported

        choice = self.quantize_name
        if choice == "auto":
            # The int4/int8 kernels only pay off with bf16 activations (with fp32, fp32 GEMM is faster).
            if dtype != torch.bfloat16:
                return None
            choice = "int4" if _from_4bit_gguf(self.path) else "int8"
        if choice == "int4" and int4_supported():
            return 4
        if choice in ("int4", "int8") and int8_supported():
            return 8
        return None

    def _load_model(self, path, dtype):
        import torch
        from transformers import AutoModelForCausalLM

        from assistant.quantization import quantize_linear_layers

        bits = self.quantize_bits(dtype)
        try:
            # quantized layers are fitted to the full-precision weights, then the rest is cast to bf16
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32 if bits else dtype)
        except (OSError, ValueError) as exc:
            raise AssistantError(f"cannot load generator {path}: {exc}") from exc
        model.eval()
        model.requires_grad_(False)
        if bits:
            quantize_linear_layers(model, bits)
            model.to(torch.bfloat16)
        return model

    def _stop_token_ids(self, model) -> set[int]:
        ids = set()
        for source in (getattr(model.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[m] for m in _TURN_MARKERS if m in vocab)
        return ids

    # -- tokens -------------------------------------------------------------------------------
    @property
    def context_window(self) -> int:
        if self._window is None:
            from transformers import AutoConfig

            self._load_tokenizer()
            config = AutoConfig.from_pretrained(str(self.path))
            self._window = int(getattr(config, "max_position_embeddings", 0) or 2048)
        return self._window

    def digit_tokens(self) -> dict[int, str]:
        """The tokenizer's tokens that hold a digit (for ``NumberGuard``), found once."""
        if self._digit_tokens is None:
            self._load_tokenizer()
            with self._tok_lock:
                self._digit_tokens = digit_tokens(self.tokenizer)
        return self._digit_tokens

    def _defuse(self, text: str) -> str:
        for token in self._control_tokens:
            if token in text:
                text = text.replace(token, f"{token[0]} {token[1:]}")
        return text

    def count_tokens(self, text: str) -> int:
        self._load_tokenizer()
        with self._tok_lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: list[dict]) -> str:
        """The prompt text for ``messages``: the model's chat template, or a plain transcript without one.

        Control tokens written inside a message (``<|im_start|>system`` in a document or a question)
        are broken up first: tokenized as text they would open a real turn and could replace the
        system prompt.
        """
        self._load_tokenizer()
        messages = [dict(m, content=self._defuse(m.get("content") or "")) for m in messages]
        with self._tok_lock:
            if getattr(self.tokenizer, "chat_template", None):
                return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(lines) + "\n\nAssistant:"

    def encode_prompt(self, messages: list[dict]) -> list[int]:
        """Token ids of the rendered prompt."""
        text = self.render(messages)
        with self._tok_lock:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_tokens(self, messages: list[dict]) -> int:
        return len(self.encode_prompt(messages))

    # -- adapters -----------------------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        from finetune.adapters import list_adapters

        return [a.name for a in list_adapters(self.ws)]

    def adapter_info(self, name: str):
        """The registry entry for ``name``; ``AssistantError`` if it is missing or trained on another base."""
        from finetune.adapters import get_adapter
        from finetune.base_model import model_fingerprint
        from finetune.errors import TrainError

        try:
            info = get_adapter(self.ws, name)
        except TrainError as exc:
            raise AssistantError(str(exc)) from None
        self._load_tokenizer()
        trained_on = info.manifest.get("base_fingerprint")
        if trained_on and Path(str(self.path)).exists() and trained_on != model_fingerprint(self.path):
            raise AssistantError(
                f"adapter {name!r} was trained on {info.base} (fingerprint {trained_on}), but the generator is "
                f"{self.path} (fingerprint {model_fingerprint(self.path)}); set models.generator to its base "
                f"or retrain it: ragtune train ... --name {name}")
        return info

    def check_adapter(self, name: str) -> None:
        self.adapter_info(name)

    def use_adapter(self, name: str | None) -> float:
        """Make ``name`` resident (loading it once) on the compute thread; returns the seconds it took."""
        self.warm_up()
        started = time.perf_counter()
        compute.run(self._ensure_adapter, name)
        return time.perf_counter() - started

    def _ensure_adapter(self, name: str | None):
        """The model to run for ``name`` (compute thread only: loading mutates the model)."""
        if name is None:
            return self.model
        if name in self._full:
            self._full.move_to_end(name)
            return self._full[name]
        if self.peft_model is not None and name in self.peft_model.peft_config:
            return self.peft_model
        info = self.adapter_info(name)
        started = time.perf_counter()
        if not info.is_peft:
            model = self._load_model(info.path, self._dtype())
            self._full[name] = model
            while len(self._full) > self.full_models:
                self._full.popitem(last=False)
        else:
            from peft import PeftModel

            # Adapter weights stay fp32 (peft's autocast): the rank-r matmuls of one decode row run
            # faster in fp32 than in bf16 on CPU (LoRA r=16 on all layers: +40% per token, not +90%).
            try:
                with warnings.catch_warnings():
                    # peft calls transformers' deprecated is_gradient_checkpointing: library noise, not the user's
                    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                    if self.peft_model is None:
                        self.peft_model = PeftModel.from_pretrained(self.model, str(info.path), adapter_name=name,
                                                                    is_trainable=False, autocast_adapter_dtype=True)
                        self.peft_model.eval()
                    else:
                        self.peft_model.load_adapter(str(info.path), adapter_name=name, is_trainable=False,
                                                     autocast_adapter_dtype=True)
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise AssistantError(f"cannot load adapter {name!r} from {info.path}: {exc}") from exc
            model = self.peft_model
        self.adapter_loads[name] = self.adapter_loads.get(name, 0) + 1
        log.info("loaded adapter %s (%s) in %.2fs", name, info.method, time.perf_counter() - started)
        return model

    @contextmanager
    def _adapter_scope(self, name: str | None):
        model = self._ensure_adapter(name)
        if model is self.peft_model:
            if self.peft_model.active_adapter != name:  # set_adapter walks every module: only on a change
                self.peft_model.set_adapter(name, inference_mode=True)
            yield model
        elif model is self.model and self.peft_model is not None:
            with self.peft_model.disable_adapter():
                yield self.peft_model
        else:
            yield model

    # -- generation ---------------------------------------------------------------------------
    def stream(self, messages, settings, adapter=None, cancel=None, numbers=None):
        self.warm_up()
        job = _Job(messages, settings, adapter, cancel or threading.Event(), queue.Queue(), numbers)
        self._jobs.add(job)
        compute.submit(self._run, job)
        done = False
        try:
            while True:
                kind, value = job.out.get()
                if kind == "error":
                    raise value
                done = kind == "done"
                yield value
                if done:
                    return
        finally:
            if not done:  # the consumer stopped early (disconnect, Ctrl-C): stop at the next token
                job.cancel.set()  # (not after a whole answer: the caller's event may serve its next one)
            self._jobs.discard(job)

    def _run(self, job: _Job) -> None:
        if job.cancel.is_set():  # gave up while queued
            job.out.put(("done", GenerationResult("", 0, 0, "cancelled", model=str(self.path))))
            return
        try:
            for item in self._decode(job):
                if isinstance(item, GenerationResult):
                    self.finished[item.finish_reason] += 1
                job.out.put(("delta" if isinstance(item, str) else "done", item))
        except BaseException as exc:  # handed to the consumer's thread, which raises it
            if not isinstance(exc, AssistantError):
                log.exception("generation failed")
            job.out.put(("error", exc))

    def _decode(self, job: _Job) -> Iterator[str | GenerationResult]:
        import torch
        from transformers import DynamicCache

        settings = job.settings
        ids = self.encode_prompt(job.messages)
        room = self.context_window - len(ids)
        if room < 1:
            raise AssistantError(f"the prompt takes {len(ids)} tokens, the model's window is {self.context_window}; "
                                 f"shorten the question or history, or lower k / context_tokens")
        max_new = min(settings.max_tokens, room)
        stops = StopMatcher(settings.stop)
        generator = None
        if settings.temperature > 0 and settings.seed is not None:
            generator = torch.Generator().manual_seed(settings.seed)
        guard = NumberGuard(job.numbers, self.digit_tokens()) if job.numbers is not None else None
        out_ids: list[int] = []
        text, emitted, finish = "", 0, "length"
        first_at = None
        with torch.inference_mode(), self._adapter_scope(job.adapter) as model:
            cache = DynamicCache(config=model.config)
            step_input = torch.tensor([ids], dtype=torch.long)
            for _ in range(max_new):
                logits = model(input_ids=step_input, **{self._cache_kw: cache}, use_cache=True,
                               logits_to_keep=1).logits
                scores = guard.mask(logits[0, -1], text) if guard else logits[0, -1]
                token = _pick(scores, settings.temperature, settings.top_p, generator)
                if first_at is None:
                    first_at = time.perf_counter()
                if token in self._eos:
                    finish = "stop"
                    break
                out_ids.append(token)
                with self._tok_lock:
                    text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
                    safe, stopped = stops.scan(text, emitted)
                    if safe > emitted:
                        yield text[emitted:safe]
                        emitted = safe
                    if stopped:
                        text, finish = text[:safe], "stop"
                        break
                if job.cancel.is_set() or compute.interrupted():
                    finish = "cancelled"
                    break
                step_input = torch.tensor([[token]], dtype=torch.long)
        if emitted < len(text):  # held back as a possible stop string that never completed
            yield text[emitted:]
        decode_s = time.perf_counter() - first_at if first_at else 0.0
        yield GenerationResult(text, len(out_ids), len(ids), finish, decode_s, str(self.path),
                               guard.masked if guard else 0)

    def close(self) -> None:
        for job in list(self._jobs):  # queued jobs end unstarted, a running one at its next token
            job.cancel.set()


def _from_4bit_gguf(path) -> bool:
    """Whether ``path`` is an embedded model converted from a 4-bit GGUF (its ragtune-model.json says so)."""
    try:
        source = json.loads((Path(str(path)) / "ragtune-model.json").read_text()).get("source", "")
    except (OSError, ValueError):
        return False
    name = Path(source).name.upper()
    return name.endswith(".GGUF") and re.search(r"(^|[._-])Q4_", name) is not None


def _cache_keyword(model) -> str:
    """The name the model's forward takes its KV cache by: ``cache`` in newer transformers 5 releases
    (which warn on every call given the old name), ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _pick(logits, temperature: float, top_p: float, generator) -> int:
    """Greedy when temperature is 0, else temperature + nucleus sampling."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p  # always keeps the top token
        sorted_probs = sorted_probs * keep
        return int(order[torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX), where bf16 beats fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# --- OpenAI-compatible HTTP backend -----------------------------------------------------------

class OpenAICompatibleBackend(GenerationBackend):
    """Generate with any server that speaks ``/v1/chat/completions`` (streaming, server-sent events)."""

    name = "openai"

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, context_window: int = 4096,
                 timeout_s: float = 600.0):
        """``url``: the server's base URL (``http://host:8000`` or ``.../v1``); ``model``: the base model id
        (default: the first one the server lists); an adapter is requested as the model of its name.

        Without the server's tokenizer, token counts are estimated at one token per 3 characters
        (conservative for English), and ``context_window`` is taken as given.
        """
        import httpx

        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise AssistantError(f"backend {url!r} is not an http(s) URL; give e.g. http://127.0.0.1:8000/v1")
        self.url = url if url.endswith("/v1") else url + "/v1"
        self.model = model
        self._window = context_window
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0))
        self._models: list[str] | None = None

    def _get_models(self, refresh: bool = False) -> list[str]:
        import httpx

        if self._models is None or refresh:
            try:
                response = self._client.get(self.url + "/models")
            except httpx.HTTPError as exc:
                raise AssistantError(f"backend {self.url} is unreachable ({exc}); start it or fix --backend") from None
            _raise_for_status(response, self.url)
            entries = [m for m in response.json().get("data", []) if isinstance(m, dict) and "id" in m]
            # A ragtune server lists its answer modes too (ragtune-rag, ...): as a backend, only the
            # generator and adapters it serves "raw" are models in the vLLM sense.
            self._models = [m["id"] for m in entries if (m.get("ragtune") or {}).get("mode", "raw") == "raw"]
        return self._models

    def warm_up(self) -> None:
        models = self._get_models()
        if self.model is None:
            if not models:
                raise AssistantError(f"backend {self.url} lists no models; give one with models.backend_model")
            self.model = models[0]

    @property
    def context_window(self) -> int:
        return self._window

    def count_tokens(self, text: str) -> int:
        return max(1, math.ceil(len(text) / 3))

    def prompt_tokens(self, messages: list[dict]) -> int:
        return sum(self.count_tokens(m.get("content") or "") + 4 for m in messages)

    def adapter_names(self) -> list[str]:
        self.warm_up()
        return [m for m in self._get_models() if m != self.model]

    def check_adapter(self, name: str) -> None:
        if name not in self._get_models() and name not in self._get_models(refresh=True):
            raise AssistantError(f"backend {self.url} does not serve {name!r}; it serves: {', '.join(self._models) or 'nothing'}")

    def stream(self, messages, settings, adapter=None, cancel=None, numbers=None):  # numbers: cannot constrain a server
        import httpx

        self.warm_up()
        model = adapter or self.model
        payload = {"model": model, "messages": messages, "stream": True, "max_tokens": settings.max_tokens,
                   "temperature": settings.temperature, "top_p": settings.top_p,
                   "stream_options": {"include_usage": True}}
        if settings.stop:
            payload["stop"] = list(settings.stop)
        if settings.seed is not None:
            payload["seed"] = settings.seed
        stops = StopMatcher(settings.stop)  # servers that ignore ``stop`` still end there
        text, emitted, finish, tokens, prompt_tokens = "", 0, "stop", 0, 0
        first_at, stopped = None, False
        try:
            with self._client.stream("POST", self.url + "/chat/completions", json=payload) as response:
                if response.status_code != 200:
                    response.read()
                    _raise_for_status(response, self.url)
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"  # leaving the block closes the connection: the server stops
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise AssistantError(f"backend {self.url}: {_error_message(chunk)}")
                    if chunk.get("usage"):
                        tokens = int(chunk["usage"].get("completion_tokens") or tokens)
                        prompt_tokens = int(chunk["usage"].get("prompt_tokens") or prompt_tokens)
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            first_at = first_at or time.perf_counter()
                            text += piece
                            safe, stopped = stops.scan(text, emitted)
                            if safe > emitted:
                                yield text[emitted:safe]
                                emitted = safe
                            if stopped:
                                text, finish = text[:safe], "stop"
                                break
                        if choice.get("finish_reason"):
                            finish = "length" if choice["finish_reason"] == "length" else "stop"
                    if stopped:
                        break
        except httpx.HTTPError as exc:
            raise AssistantError(f"backend {self.url} failed mid-answer ({exc})") from None
        if emitted < len(text):
            yield text[emitted:]
        decode_s = time.perf_counter() - first_at if first_at else 0.0
        yield GenerationResult(text, tokens or self.count_tokens(text),
                               prompt_tokens or self.prompt_tokens(messages), finish, decode_s, model)

    def close(self) -> None:
        self._client.close()


def _error_message(body) -> str:
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(body)


def _raise_for_status(response, url: str) -> None:
    if response.status_code < 400:
        return
    try:
        message = _error_message(response.json())
    except ValueError:
        message = response.text[:300]
    raise AssistantError(f"backend {url} answered HTTP {response.status_code}: {message}")


BACKENDS: dict[str, type[GenerationBackend]] = {"local": LocalBackend, "openai": OpenAICompatibleBackend}


def make_backend(ws: Workspace, spec: str | None = None, generator: str | None = None) -> GenerationBackend:
    """The backend for ``spec``: None or "local" (the workspace's generator), or an OpenAI-compatible URL.

    Settings come from config.yaml's ``models:`` section (dtype, quantize, backend_model,
    backend_context); the remote API key from ``$RAGTUNE_BACKEND_API_KEY``.
    """
    from assistant.models import model_settings

    settings = model_settings(ws)
    spec = spec or settings.backend or "local"
    if spec.startswith(("http://", "https://")):
        return OpenAICompatibleBackend(spec, model=settings.backend_model, api_key=os.environ.get("RAGTUNE_BACKEND_API_KEY"),
                                       context_window=settings.backend_context)
    if spec == "local":
        return LocalBackend(ws, generator, dtype=settings.dtype, quantize=settings.quantize, threads=settings.threads)
    if spec in BACKENDS:
        raise AssistantError(f"backend {spec!r} needs a URL: give --backend http://HOST:PORT/v1")
    raise AssistantError(f"unknown backend {spec!r}: use 'local' or the URL of an OpenAI-compatible server")

