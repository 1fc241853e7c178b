"""``ragtune chat``: a conversation in the terminal, streamed, with the sources under each answer."""

from __future__ import annotations

import sys
from typing import Callable, TextIO

from assistant.assistant import Assistant
from assistant.errors import AssistantError
from assistant.records import ADAPTER_MODES, MODES, Answer

HELP = """commands:
  /mode prompt|rag|tuned|hybrid   answer in another mode
  /adapter NAME | /adapter none   use another adapter
  /modes                          what this workspace can answer with
  /reset                          forget the conversation
  /quit                           leave (or Ctrl-D)"""

# Earlier messages kept in the prompt: enough for follow-ups, short enough for a small window.
HISTORY_MESSAGES = 6


def format_sources(answer: Answer) -> str:
    """The lines printed under an answer: cited sources, removed citations, the no-evidence note."""
    lines = []
    if answer.citations:
        lines.append("Sources:")
        lines += [_source_line(c.n, c.chunk) for c in answer.citations]
    elif answer.context and answer.finish_reason != "no_evidence":
        lines.append("Context given (the answer cites none of it):")
        lines += [_source_line(n, hit.chunk) for n, hit in enumerate(answer.context, start=1)]
    if answer.dropped_citations:
        numbers = ", ".join(f"[{n}]" for n in answer.dropped_citations)
        lines.append(f"(removed citation {numbers}: not among the {len(answer.context)} documents given)")
    if answer.finish_reason == "no_evidence" and answer.extra.get("unknown_terms"):
        terms = ", ".join(f"'{t}'" for t in answer.extra["unknown_terms"])
        lines.append(f"(the knowledge base never mentions {terms}; nothing was generated)")
    elif answer.finish_reason == "no_evidence":
        lines.append("(no document in the knowledge base is close enough to the question; nothing was generated)")
    elif answer.finish_reason == "length":
        lines.append(f"(stopped at max_tokens={answer.tokens}; raise it with --max-tokens)")
    return "\n".join(lines)


def _source_line(n: int, chunk) -> str:
    title = chunk.title or chunk.source
    heading = chunk.heading or ""
    if heading == title or heading.startswith(title + " > "):  # the heading path repeats the title
        heading = heading[len(title) + 3:]
    where = f" (p. {chunk.page})" if chunk.page else ""
    return f"  [{n}] {title}" + (f" § {heading}" if heading else "") + f": {chunk.source}{where}"


def stream_answer(assistant: Assistant, question: str, out: TextIO, **kwargs) -> Answer:
    """Print the answer to ``out`` as it is generated, then its sources; return the ``Answer``."""
    answer = None
    for item in assistant.stream(question, **kwargs):
        if isinstance(item, Answer):
            answer = item
        else:
            out.write(item)
            out.flush()
    out.write("\n")
    sources = format_sources(answer)
    if sources:
        out.write(sources + "\n")
    out.flush()
    return answer


def run_chat(assistant: Assistant, mode: str, adapter: str | None = None, read: Callable[[str], str] = input,
             out: TextIO = sys.stdout, prompt: str = "you> ") -> int:
    """The chat loop: read a line, answer it (or run a /command), until /quit or end of input."""
    history: list[dict] = []
    out.write(f"ragtune chat: mode {mode}" + (f", adapter {adapter}" if adapter else "") + ". /help for commands.\n")
    while True:
        try:
            line = read(prompt).strip()
        except EOFError:
            out.write("\n")
            return 0
        if not line:
            continue
        if line.startswith("/"):
            command, _, value = line[1:].partition(" ")
            value = value.strip()
            if command in ("quit", "exit", "q"):
                return 0
            if command == "help":
                out.write(HELP + "\n")
            elif command == "reset":
                history.clear()
                out.write("(conversation forgotten)\n")
            elif command == "modes":
                pairs = assistant.modes_available()
                out.write("\n".join(f"  {m}" + (f" --adapter {a}" if a else "") for m, a in pairs) + "\n")
            elif command == "mode":
                if value not in MODES:
                    out.write(f"(unknown mode {value!r}; use one of {', '.join(MODES)})\n")
                elif value in ADAPTER_MODES and not adapter:
                    out.write(f"(mode {value} needs an adapter: /adapter NAME first)\n")
                else:
                    mode = value
                    out.write(f"(mode {mode})\n")
            elif command == "adapter":
                if value in ("", "none"):
                    adapter = None
                    if mode in ADAPTER_MODES:
                        mode = {"tuned": "prompt", "hybrid": "rag"}[mode]
                    out.write(f"(no adapter; mode {mode})\n")
                else:
                    try:
                        assistant.backend.check_adapter(value)
                    except AssistantError as exc:
                        out.write(f"({exc})\n")
                        continue
                    adapter = value
                    out.write(f"(adapter {adapter}; mode {mode})\n")
            else:
                out.write(f"(unknown command /{command}; /help lists them)\n")
            out.flush()
            continue
        try:
            answer = stream_answer(assistant, line, out, mode=mode, adapter=adapter, history=history)
        except AssistantError as exc:
            out.write(f"\nerror: {exc}\n")
            continue
        history += [{"role": "user", "content": line}, {"role": "assistant", "content": answer.text}]
        del history[:-HISTORY_MESSAGES]
