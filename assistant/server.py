"""The OpenAI-compatible HTTP API (FastAPI): ``ragtune serve``.

    GET    /v1/models              one id per mode and adapter: ragtune-rag, ragtune-hybrid:NAME, ...
    POST   /v1/chat/completions    OpenAI chat format, with or without ``stream`` (server-sent events);
                                   citations inline as [n] and in an extra ``citations`` field
    POST   /v1/search              {"query", "k", "mode"} -> ranked chunks
    GET    /v1/kb/documents        the knowledge base's documents
    POST   /v1/kb/documents        multipart upload (field ``file``, repeatable), ingested at once
    DELETE /v1/kb/documents?source=...

Model id ``ragtune`` answers as the knowledge base is answered by default (hybrid with its own
adapter when ``ragtune adapt`` made one its default, else rag). Model ids ``ragtune-<mode>[:<adapter>]`` answer the last user message with that mode (earlier
turns are the history; system messages are ignored: the mode's prompt applies). The generator's
own name and each adapter's name are also accepted and pass the messages to the model as they
are, as vLLM would, so one ``ragtune serve`` can be another ragtune's ``--backend``.

With an API key every request needs ``Authorization: Bearer KEY``. Without one (the default) the
server is for this machine only: it answers only requests whose Host header is a loopback name
(so a web page cannot reach it through DNS rebinding) and refuses any request whose Origin is not
the server's own (so a page in the browser cannot upload or ask cross-origin). docs/security.md
says what each promises. Generation runs one request
at a time (the backend's worker); others wait their turn, up to ``max_queue``, then get 503. A
client that disconnects stops its generation at the next token, even while nothing is being sent
(an answer held back by the citation or shape checks). Errors are JSON
``{"error": {"message", "type", "code"}}``: 4xx for requests that can be fixed, and a 500 without
details (they go to the server log) for anything else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from assistant.assistant import Assistant, default_route
from assistant.errors import AssistantError
from assistant.generation import GenerationResult
from assistant.records import MODES, Answer

log = logging.getLogger(__name__)

_END = object()
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ServerSettings:
    """The ``server:`` section of config.yaml."""

    max_upload_mb: float = 20.0  # per file; a larger one gets 413 as soon as its bytes pass the limit
    max_upload_files: int = 16  # files in one upload request; more get 413
    max_queue: int = 16  # requests generating or waiting; more get 503 with Retry-After
    max_tokens: int = 4096  # the most a request may ask for; the model's window may allow fewer
    max_stop: int = 4  # stop strings per request (OpenAI's limit); each is scanned at every token
    max_stop_chars: int = 64  # characters per stop string

    def __post_init__(self):
        if self.max_upload_mb <= 0 or self.max_queue < 1 or self.max_upload_files < 1:
            raise ValueError("max_upload_mb must be positive, max_queue and max_upload_files at least 1")
        if self.max_tokens < 1 or self.max_stop < 0 or self.max_stop_chars < 1:
            raise ValueError("max_tokens and max_stop_chars must be at least 1, max_stop at least 0")


class ChatMessage(BaseModel):
    """One message; ``content`` may be text or a list of OpenAI content parts (text parts are used)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The OpenAI chat-completions request (unknown fields are ignored, as OpenAI clients send extras)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    seed: int | None = None
    stream_options: dict[str, Any] | None = None
    k: int | None = Field(None, ge=0, le=50)  # ragtune extra: chunks to retrieve


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"


class _ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


def _error(status: int, message: str, code: str | None = None, kind: str = "invalid_request_error", headers=None):
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _user_errors() -> tuple[type[BaseException], ...]:
    from finetune.base_model import ModelError
    from finetune.errors import TrainError
    from ingest.errors import IngestError
    from ragtune.workspace import WorkspaceError
    from retrieval.embedding import EmbedderError
    from retrieval.errors import RetrievalError

    return AssistantError, RetrievalError, IngestError, TrainError, WorkspaceError, EmbedderError, ModelError


def create_app(assistant: Assistant, api_key: str | None = None, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``assistant`` (``app.state.assistant``); run it with uvicorn."""
    settings = settings or ServerSettings()
    app = FastAPI(title="ragtune", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.assistant = assistant
    user_errors = _user_errors()
    busy = {"n": 0}
    busy_lock = threading.Lock()

    if api_key:
        app.add_middleware(_RequireKey, api_key=api_key)
    else:
        app.add_middleware(_LoopbackOnly)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                             for e in exc.errors()[:5])
        return _error(400, f"invalid request: {problems}", "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), None, headers=getattr(exc, "headers", None))

    @app.exception_handler(_ApiError)
    async def api_error(request: Request, exc: _ApiError):
        return _error(exc.status, exc.message, exc.code, exc.kind)

    async def user_error(request: Request, exc: Exception):
        return _error(400, str(exc), type(exc).__name__)

    for error_type in user_errors:
        app.add_exception_handler(error_type, user_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path)  # uvicorn logs the traceback
        return _error(500, "internal error; the server log has the details", None, "server_error")

    def admit():
        with busy_lock:
            if busy["n"] >= settings.max_queue:
                raise _ApiError(503, f"busy: {busy['n']} requests are generating or queued; retry shortly",
                                "server_busy", "server_error")
            busy["n"] += 1

    def release():
        with busy_lock:
            busy["n"] -= 1

    # -- models and chat ------------------------------------------------------------------------
    @app.get("/v1/models")
    async def list_models():
        pairs = await run_in_threadpool(assistant.modes_available)
        created = int(time.time())
        mode, adapter = await run_in_threadpool(default_route, assistant.ws, assistant.kb_name)
        data = [{"id": DEFAULT_MODEL, "object": "model", "created": created, "owned_by": "ragtune",
                 "ragtune": {"mode": mode, "adapter": adapter, "default": True}}]
        data += [{"id": model_id(mode, adapter), "object": "model", "created": created, "owned_by": "ragtune",
                  "ragtune": {"mode": mode, "adapter": adapter}} for mode, adapter in pairs]
        # the generator and each adapter as such, fed the messages unchanged (for another ragtune's --backend)
        raw = [(_raw_base_id(assistant), None)] + [(name, name) for mode, name in pairs if mode == "tuned"]
        data += [{"id": name, "object": "model", "created": created, "owned_by": "ragtune",
                  "ragtune": {"mode": "raw", "adapter": adapter}} for name, adapter in raw]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        mode, adapter, raw = await run_in_threadpool(_parse_model, assistant, body.model)
        max_tokens = body.max_completion_tokens or body.max_tokens
        if max_tokens is not None and max_tokens > settings.max_tokens:
            # the answer's room is what the window leaves after the prompt (the documents come first);
            # a bigger request would hold the one worker for minutes
            raise _ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens} "
                                 f"(server.max_tokens in config.yaml)", "max_tokens_too_large")
        _check_stop(body.stop, settings)
        overrides = {"max_tokens": max_tokens, "temperature": body.temperature,
                     "top_p": body.top_p, "stop": body.stop, "seed": body.seed}
        cancel = threading.Event()
        if raw:
            messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                        for m in body.messages if m.role != "tool"]
            settings_ = assistant.settings_for(**overrides)
            items = assistant.backend.stream(messages, settings_, adapter=adapter, cancel=cancel)
        else:
            turns = [m for m in body.messages if m.role in ("user", "assistant")]
            if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
                raise _ApiError(400, "the last message must be a non-empty user message", "invalid_messages")
            history = [{"role": m.role, "content": m.text()} for m in turns[:-1]]
            if body.k is not None:
                overrides["k"] = body.k
            items = assistant.stream(turns[-1].text(), mode=mode, adapter=adapter, history=history, cancel=cancel,
                                     **overrides)
        admit()
        # The answer may be held back (the citation filter, the shape check) for many tokens before a
        # piece is sent, and an await on the next piece notices no disconnect: a watcher does.
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, cancel))
        try:
            first = await run_in_threadpool(next, items, _END)  # errors here still become 4xx responses
        except BaseException:
            watcher.cancel()
            release()
            cancel.set()
            raise
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _sse(items, first, cancel, _stop_watching(watcher, release), completion_id, body.model, include_usage),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            parts, final = [], None
            item = first
            while item is not _END:
                if isinstance(item, (Answer, GenerationResult)):
                    final = item
                    break
                parts.append(item)
                if await request.is_disconnected():
                    cancel.set()
                item = await run_in_threadpool(next, items, _END)
        finally:
            watcher.cancel()
            cancel.set()
            items.close()
            release()
        return _completion(completion_id, body.model, "".join(parts), final)

    # -- search and documents -------------------------------------------------------------------
    @app.post("/v1/search")
    async def search(body: SearchRequest):
        hits = await run_in_threadpool(assistant.knowledge_base.search, body.query, body.k, body.mode)
        return {"object": "list", "data": [h.to_dict() for h in hits]}

    @app.get("/v1/kb/documents")
    async def list_documents():
        from retrieval.knowledge_base import KnowledgeBase

        if not KnowledgeBase.exists(assistant.ws.kb_path(assistant.kb_name)):
            return {"object": "list", "kb": assistant.kb_name, "data": []}
        docs = await run_in_threadpool(assistant.knowledge_base.list_documents)
        return {"object": "list", "kb": assistant.kb_name, "data": [d.to_dict() for d in docs]}

    @app.post("/v1/kb/documents")
    async def upload_documents(request: Request):
        limit = int(settings.max_upload_mb * 1024 * 1024)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit * settings.max_upload_files + 65536:
            raise _ApiError(413, f"upload larger than {settings.max_upload_mb:g} MB per file "
                                 f"(server.max_upload_mb in config.yaml)", "too_large")
        files = await _read_uploads(request, limit, settings)
        folder = uploads_dir(assistant)
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        try:
            for upload in files:
                saved.append(await _save_upload(upload, folder, limit))
        except BaseException:
            for path, tmp in saved:
                tmp.unlink(missing_ok=True)
            raise
        finally:
            for upload in files:
                await upload.close()
        # Each upload goes in under its name with the file it replaces kept aside, so that a
        # re-upload that fails to ingest puts the good file back (the KB still lists it).
        paths, kept = [], {}
        for path, tmp in saved:
            if path.exists():
                keep = path.with_name(f".keep-{uuid.uuid4().hex[:8]}-{path.name}")
                os.replace(path, keep)
                kept[path] = keep
            os.replace(tmp, path)
            paths.append(path)
        try:
            report = await run_in_threadpool(_ingest, assistant, paths)
        except BaseException:
            _restore(paths, kept, failed=set(paths))
            raise
        failed = {Path(f.source).resolve() for f in report.failed}
        _restore(paths, kept, failed={p for p in paths if p.resolve() in failed})
        if report.failed and not (report.added or report.updated or report.unchanged):
            raise _ApiError(400, "; ".join(f"{Path(f.source).name}: {f.reason}" for f in report.failed), "ingest_failed")
        return {"kb": assistant.kb_name, **report.to_dict()}

    @app.delete("/v1/kb/documents")
    async def delete_document(source: str):
        docs = await run_in_threadpool(assistant.knowledge_base.list_documents)
        if source not in {d.source for d in docs}:
            raise _ApiError(404, f"no document {source!r} in knowledge base '{assistant.kb_name}'; "
                                 f"GET /v1/kb/documents lists them", "document_not_found")
        report = await run_in_threadpool(_remove, assistant, source)
        path = Path(source)
        if path.is_absolute() and path.parent == uploads_dir(assistant).resolve() and path.is_file():
            path.unlink()
        return {"kb": assistant.kb_name, **report.to_dict()}

    @app.get("/health")
    async def health():
        return {"status": "ok", "kb": assistant.kb_name, "backend": assistant.backend.name}

    return app


# The id that answers as the KB is answered by default: hybrid with its own adapter when ``ragtune adapt``
# made one its default, else rag (assistant.default_route).
DEFAULT_MODEL = "ragtune"


def model_id(mode: str, adapter: str | None) -> str:
    """The API model id for a mode and adapter: ``ragtune-rag``, ``ragtune-hybrid:NAME``."""
    return f"ragtune-{mode}" + (f":{adapter}" if adapter else "")


def _parse_model(assistant: Assistant, model: str) -> tuple[str | None, str | None, bool]:
    """(mode, adapter, raw) for a model id; raw passes messages straight to the generator."""
    if model == DEFAULT_MODEL:
        return (*default_route(assistant.ws, assistant.kb_name), False)
    if model.startswith("ragtune-"):
        mode, _, adapter = model[len("ragtune-"):].partition(":")
        if mode in MODES:
            if mode in ("tuned", "hybrid") and not adapter:
                raise _ApiError(404, f"model {model!r} needs an adapter: ragtune-{mode}:NAME (GET /v1/models)",
                                "model_not_found")
            if adapter:
                assistant.backend.check_adapter(adapter)
            return mode, adapter or None, False
    if model == _raw_base_id(assistant):
        return None, None, True
    if model in assistant.backend.adapter_names():
        return None, model, True
    raise _ApiError(404, f"model {model!r} not found; GET /v1/models lists the ids", "model_not_found")


def _raw_base_id(assistant: Assistant) -> str:
    """The id under which the bare generator is served: its name (a folder's last part)."""
    generator = getattr(assistant.backend, "generator", None) or getattr(assistant.backend, "model", None) or "base"
    return Path(str(generator)).name


def _check_stop(stop: str | list[str] | None, settings: ServerSettings) -> None:
    """400 for a stop list longer than ``server.max_stop`` or a stop string over ``server.max_stop_chars``."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > settings.max_stop:
        raise _ApiError(400, f"stop has {len(stops)} strings; this server takes at most {settings.max_stop} "
                             f"(server.max_stop in config.yaml)", "too_many_stops")
    long = [s for s in stops if len(s) > settings.max_stop_chars]
    if long:
        raise _ApiError(400, f"a stop string has {len(long[0])} characters; this server takes at most "
                             f"{settings.max_stop_chars} (server.max_stop_chars in config.yaml)", "stop_too_long")


async def _cancel_on_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client goes away; ends when cancelled (the request finished)."""
    while not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(0.1)


def _stop_watching(watcher: "asyncio.Future", release):
    def done():
        watcher.cancel()
        release()
    return done


def _restore(paths: list[Path], kept: dict[Path, Path], failed: set[Path]) -> None:
    """Put back the files kept aside for uploads that failed to ingest; drop the others' copies."""
    for path in paths:
        keep = kept.get(path)
        if path in failed:
            if keep is not None:
                os.replace(keep, path)
            else:
                path.unlink(missing_ok=True)
        elif keep is not None:
            keep.unlink(missing_ok=True)


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def _host_name(value: str) -> str:
    """The host of a Host header or an origin's authority, without the port, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_loopback(host: str) -> bool:
    name = _host_name(host)
    return name in _LOOPBACK_HOSTS or name.endswith(".localhost") or re.fullmatch(r"127(\.\d{1,3}){3}", name) is not None


class _LoopbackOnly:
    """ASGI middleware for a server without an API key: this machine's own clients only.

    A Host header that is not a loopback name is refused (a DNS-rebinding page reaches us under
    its own name), and so is an Origin other than the server's own (a page on another site may
    send a simple cross-origin POST, such as a multipart upload, without any preflight).
    Requests without an Origin (curl, SDKs) are not from a page and pass.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin")
            problem = None
            if not _is_loopback(host):
                problem = (f"host {host!r} refused: without an API key this server answers only to localhost; "
                           "start it with --api-key KEY to serve other hosts")
            elif origin is not None and origin.decode("latin-1").lower() != f"{scope.get('scheme', 'http')}://{host}".lower():
                problem = ("cross-origin request refused: without an API key this server accepts no requests "
                           "from web pages of other origins; start it with --api-key KEY")
            if problem:
                await _error(403, problem, "forbidden_origin")(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _RequireKey:
    """ASGI middleware: 401 for any request without ``Authorization: Bearer KEY`` (constant-time compare).

    Plain ASGI rather than ``BaseHTTPMiddleware``, which would get between a streaming response
    and the client's disconnect.
    """

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = _error(401, "missing or wrong API key: send Authorization: Bearer KEY", "invalid_api_key")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _sse(items, first, cancel, release, completion_id, model, include_usage):
    """Server-sent events in the OpenAI chunk format; the ``finally`` runs on disconnect too."""
    created = int(time.time())

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    try:
        yield event({"role": "assistant", "content": ""})
        item = first
        while item is not _END:
            if isinstance(item, (Answer, GenerationResult)):
                body = _final_fields(item)
                yield event({}, body.pop("finish_reason"), **body)
                if include_usage:
                    usage = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                             "model": model, "choices": [], "usage": _usage(item)}
                    yield f"data: {json.dumps(usage)}\n\n"
                break
            yield event({"content": item})
            item = await run_in_threadpool(next, items, _END)
        yield "data: [DONE]\n\n"
    except _user_errors() as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'invalid_request_error'}})}\n\n"
    except Exception:
        log.exception("generation failed mid-stream")
        yield f"data: {json.dumps({'error': {'message': 'internal error', 'type': 'server_error'}})}\n\n"
    finally:
        cancel.set()  # a disconnect cancels this generator: the backend stops at its next token
        items.close()
        release()


def _finish_reason(item) -> str:
    return "length" if item.finish_reason == "length" else "stop"


def _usage(item) -> dict:
    return {"prompt_tokens": item.prompt_tokens, "completion_tokens": item.tokens,
            "total_tokens": item.prompt_tokens + item.tokens}


def _final_fields(item) -> dict:
    if isinstance(item, Answer):
        return {"finish_reason": _finish_reason(item), "citations": [c.to_dict() for c in item.citations],
                "ragtune": item.to_dict()}
    return {"finish_reason": _finish_reason(item), "citations": []}


def _completion(completion_id: str, model: str, text: str, final) -> dict:
    body = {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": _finish_reason(final) if final else "stop"}],
            "usage": _usage(final) if final else {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    if final is not None:
        fields = _final_fields(final)
        fields.pop("finish_reason")
        body.update(fields)
    return body


def uploads_dir(assistant: Assistant) -> Path:
    """Where uploads for the served knowledge base are kept: ``<workspace>/uploads/<kb>/``."""
    return assistant.ws.home / "uploads" / assistant.kb_name


def sanitize_filename(name: str) -> str:
    """A safe file name for an upload: no folders, only letters, digits, '.', '_' and '-'."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = _SAFE_NAME.sub("_", stem).strip("._-")[:100]
    ext = _SAFE_NAME.sub("", ext)[:10].lower()
    if not stem:
        raise _ApiError(400, f"unusable file name {name!r}: give the upload a name like report.pdf", "bad_filename")
    return f"{stem}.{ext}" if ext else stem


class _LimitedUploads(MultiPartParser):
    """Starlette's multipart parser with the size limit checked as bytes arrive, per file, so an
    oversized upload stops at the limit instead of being spooled to disk in full first."""

    def __init__(self, headers, stream, limit: int, settings: ServerSettings):
        super().__init__(headers, stream, max_files=settings.max_upload_files, max_fields=16)
        self.limit, self.settings = limit, settings

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._part_bytes += end - start
        if self._part_bytes > self.limit:
            raise _ApiError(413, f"an uploaded file is larger than the {self.settings.max_upload_mb:g} MB limit "
                                 f"(server.max_upload_mb in config.yaml)", "too_large")
        super().on_part_data(data, start, end)


async def _read_uploads(request: Request, limit: int, settings: ServerSettings) -> list[UploadFile]:
    """The ``file`` parts of a multipart request, each at most ``limit`` bytes (413 past it)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _ApiError(400, "upload documents as multipart/form-data with one or more 'file' fields", "invalid_upload")
    try:
        form = await _LimitedUploads(request.headers, request.stream(), limit, settings).parse()
    except MultiPartException as exc:
        status = 413 if "Too many files" in str(exc) else 400
        hint = f" (server.max_upload_files in config.yaml is {settings.max_upload_files})" if status == 413 else ""
        raise _ApiError(status, f"upload refused: {exc}{hint}", "invalid_upload") from None
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not files:
        for value in form.values():
            if isinstance(value, UploadFile):
                await value.close()
        raise _ApiError(400, "no 'file' field in the upload: send the documents as multipart field 'file'", "invalid_upload")
    return files


async def _save_upload(upload: UploadFile, folder: Path, limit: int) -> tuple[Path, Path]:
    from ingest.loaders import SUPPORTED_EXTENSIONS

    name = sanitize_filename(upload.filename or "")
    if Path(name).suffix not in SUPPORTED_EXTENSIONS:
        raise _ApiError(415, f"{name}: unsupported type; upload one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}",
                        "unsupported_type")
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    tmp = Path(tmp_name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while block := await upload.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise _ApiError(413, f"{name}: larger than the {limit // (1024 * 1024)} MB limit", "too_large")
                out.write(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return folder / name, tmp


def _ingest(assistant: Assistant, paths: list[Path]):
    from assistant.models import model_settings
    from ingest.chunking import ChunkingSettings
    from ingest.limits import IngestLimits
    from ingest.pipeline import ingest_paths
    from retrieval.knowledge_base import KnowledgeBase

    ws = assistant.ws
    path = ws.kb_path(assistant.kb_name)
    embedder = None if KnowledgeBase.exists(path) else model_settings(ws).embedder
    with KnowledgeBase.open(path, embedder=embedder, create=True) as kb:
        return ingest_paths(kb, [str(p) for p in paths], progress=False, settings=ws.settings(ChunkingSettings, "chunking"),
                            limits=ws.settings(IngestLimits, "ingest"))


def _remove(assistant: Assistant, source: str):
    from ingest.pipeline import remove_documents
    from retrieval.knowledge_base import KnowledgeBase

    with KnowledgeBase.open(assistant.ws.kb_path(assistant.kb_name)) as kb:
        return remove_documents(kb, [source])
