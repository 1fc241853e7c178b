"""The ``ask``, ``chat`` and ``serve`` commands: flags in, one call into the assistant, output out."""

from __future__ import annotations

import json
import logging
import sys

from assistant.assistant import Assistant, default_route
from assistant.records import GenerationSettings
from finetune.adapters import kb_default_adapter
from ragtune.workspace import Workspace

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def assistant_from_args(ws: Workspace, args) -> Assistant:
    """An ``Assistant`` with config.yaml's ``generation:`` settings overridden by the flags."""
    overrides = {"k": getattr(args, "k", None), "max_tokens": getattr(args, "max_tokens", None),
                 "temperature": getattr(args, "temperature", None), "top_p": getattr(args, "top_p", None)}
    settings = ws.settings(GenerationSettings, "generation", overrides)
    return Assistant(ws, kb=args.kb, backend=getattr(args, "backend", None), settings=settings)


def resolve_mode(ws: Workspace, args) -> tuple[str, str | None]:
    """(mode, adapter): --mode and --adapter as given; no --adapter takes the KB's default adapter (set by
    ``ragtune adapt`` only when it beat RAG-only on that KB), and no --mode is hybrid with an adapter, else rag."""
    if args.mode is None and not args.adapter:
        return default_route(ws, args.kb)
    adapter = args.adapter or (kb_default_adapter(ws, args.kb) if args.mode in ("tuned", "hybrid") else None)
    return args.mode or "hybrid", adapter


def check_mode(assistant: Assistant, mode: str, adapter: str | None) -> None:
    """Raise ``AssistantError`` if ``mode`` needs an adapter that is missing or unknown."""
    from assistant.errors import AssistantError

    if adapter:
        assistant.backend.check_adapter(adapter)
    elif mode in ("tuned", "hybrid"):
        raise AssistantError(f"mode {mode!r} needs an adapter: --adapter NAME (see ragtune adapters list)")


def ask_from_args(ws: Workspace, args) -> int:
    """``ragtune ask``: stream the answer and its sources, or print ``Answer.to_dict()`` with --json."""
    from assistant.chat import format_sources, stream_answer

    assistant = assistant_from_args(ws, args)
    mode, adapter = resolve_mode(ws, args)
    try:
        check_mode(assistant, mode, adapter)  # a missing or misspelt adapter fails before the model loads
        assistant.warm_up(retrieval=mode in ("rag", "hybrid"))  # loading is not part of the answer's latency
        if args.json or args.no_stream:
            answer = assistant.answer(args.question, mode=mode, adapter=adapter)
            if args.json:
                print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
            else:
                sources = format_sources(answer)
                print(answer.text + ("\n" + sources if sources else ""))
        else:
            stream_answer(assistant, args.question, sys.stdout, mode=mode, adapter=adapter)
    finally:
        assistant.close()
    return 0


def chat_from_args(ws: Workspace, args) -> int:
    """``ragtune chat``: the terminal conversation."""
    from assistant.chat import run_chat

    assistant = assistant_from_args(ws, args)
    mode, adapter = resolve_mode(ws, args)
    check_mode(assistant, mode, adapter)
    try:
        return run_chat(assistant, mode, adapter, prompt="you> " if sys.stdin.isatty() else "")
    finally:
        assistant.close()


def serve_from_args(ws: Workspace, args) -> int:
    """``ragtune serve``: load the model, then serve the OpenAI-compatible API with uvicorn."""
    import uvicorn

    from assistant.server import ServerSettings, create_app

    assistant = assistant_from_args(ws, args)
    assistant.warm_up()
    app = create_app(assistant, api_key=args.api_key, settings=ws.settings(ServerSettings, "server"))
    if args.host not in _LOOPBACK and not args.api_key:
        print(f"warning: serving on {args.host} without --api-key: anyone who can reach it can use it",
              file=sys.stderr)
    ids = ", ".join(f"ragtune-{m}" + (f":{a}" if a else "") for m, a in assistant.modes_available())
    print(f"ragtune API on http://{args.host}:{args.port}/v1  (models: {ids})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    finally:
        assistant.close()
    return 0
