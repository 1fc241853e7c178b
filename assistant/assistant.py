"""``Assistant``: answer a question in one of four modes, with citations.

    prompt  the base model alone              rag     base model + retrieved chunks
    tuned   an adapter, no retrieval          hybrid  an adapter + retrieved chunks

Retrieved chunks are numbered, fenced as untrusted data and fitted to the model's window by a
token budget (retrieval/citations.py builds the prompt, the same one adapters are trained on).
Before generating, a question whose nearest chunk is not similar enough gets NO_ANSWER; after,
each [n] is resolved to its chunk and a number that was not in the context is removed and counted,
already while streaming, so the streamed text and ``Answer.text`` are the same.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from contextlib import closing
from typing import Iterator

from assistant.copying import allowed_numbers
from assistant.errors import AssistantError
from assistant.generation import GenerationBackend, GenerationResult, make_backend
from assistant.records import ADAPTER_MODES, MODES, RETRIEVAL_MODES, Answer, GenerationSettings
from finetune.adapters import kb_default_adapter
from ragtune.workspace import DEFAULT_KB, Workspace, WorkspaceError
from retrieval.citations import (CITATION_PATTERN, MARKUP_STOPS, NO_ANSWER, format_context, grounded_messages,
                                 is_abstention, numbered, plain_messages, resolve_citations, without_markup_numbers)
from retrieval.focus import answers_shape, asked_shapes, shaped_spans
from retrieval.records import Chunk, Hit

log = logging.getLogger(__name__)

# Tokens kept free besides the answer: chat-template tokens the per-chunk estimate can miss.
_BUDGET_MARGIN = 16
_PUNCTUATION = ".,;:!?"
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


class Assistant:
    """The retriever, one resident generator and its adapters, answering in four modes."""

    def __init__(self, ws: Workspace, kb: str = DEFAULT_KB, generator: str | None = None, backend: str | None = None,
                 settings: GenerationSettings | None = None):
        """Light: nothing loads until ``warm_up`` or the first request.

        kb: knowledge base name; generator: embedded name or model folder for the local backend;
        backend: "local" or an OpenAI-compatible URL; settings: default generation settings
        (default: config.yaml's ``generation:`` section).
        """
        self.ws = ws
        self.kb_name = kb
        try:
            self.settings = settings or ws.settings(GenerationSettings, "generation")
        except WorkspaceError as exc:
            raise AssistantError(str(exc)) from None
        self.backend: GenerationBackend = make_backend(ws, backend, generator)
        self._kb = None
        self._kb_lock = threading.Lock()

    # -- pieces ---------------------------------------------------------------------------------
    @property
    def knowledge_base(self):
        """The knowledge base (opened on first use; a missing one raises with the command that creates it)."""
        if self._kb is None:
            from retrieval.knowledge_base import KnowledgeBase

            with self._kb_lock:
                if self._kb is None:
                    self._kb = KnowledgeBase.open(self.ws.kb_path(self.kb_name))
        return self._kb

    def warm_up(self, retrieval: bool = True) -> None:
        """Load the generator and, with ``retrieval`` and if the knowledge base exists, its embedder."""
        from retrieval.knowledge_base import KnowledgeBase

        self.backend.warm_up()
        if retrieval and KnowledgeBase.exists(self.ws.kb_path(self.kb_name)):
            self.knowledge_base.embedder.warm_up()

    def modes_available(self) -> list[tuple[str, str | None]]:
        """(mode, adapter) pairs this assistant can answer in: prompt and rag, then tuned and hybrid per adapter."""
        pairs: list[tuple[str, str | None]] = [("prompt", None), ("rag", None)]
        for name in self.backend.adapter_names():
            pairs += [("tuned", name), ("hybrid", name)]
        return pairs

    def settings_for(self, **overrides) -> GenerationSettings:
        """The default settings with per-request ``overrides`` (None values ignored)."""
        fields = {f.name for f in dataclasses.fields(GenerationSettings)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise AssistantError(f"unknown generation setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(values.get("stop"), (list, str)):
            values["stop"] = tuple([values["stop"]] if isinstance(values["stop"], str) else values["stop"])
        try:
            return dataclasses.replace(self.settings, **values)
        except (TypeError, ValueError) as exc:
            raise AssistantError(f"bad generation setting: {exc}") from None

    # -- retrieval ------------------------------------------------------------------------------
    def retrieval_query(self, question: str, history: list[dict] | None = None, turns: int | None = None) -> str:
        """The query to retrieve with: the question, after the last ``turns`` user turns of a conversation.

        A follow-up ("and on Sundays?") means little alone; prefixed with the previous question it
        retrieves what the conversation is about. BM25 and the embedder both use the added words.
        """
        turns = self.settings.history_turns if turns is None else turns
        previous = [m["content"] for m in _clean_history(history) if m["role"] == "user"][-turns:] if turns else []
        return "\n".join([*previous, question.strip()])

    def retrieve(self, question: str, k: int | None = None, history: list[dict] | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``question`` (resolved against ``history``), best first."""
        k = self.settings.k if k is None else k
        if k <= 0:
            return []
        return self.knowledge_base.search(self.retrieval_query(question, history), k=k, mode=self.settings.search_mode)

    def evidence_score(self, query: str, hits: list[Hit], search_mode: str) -> float:
        """Cosine similarity of ``query`` and its nearest chunk (the scale of ``min_score``)."""
        if search_mode == "dense":
            return hits[0].score if hits else -1.0
        nearest = self.knowledge_base.search(query, k=1, mode="dense")
        return nearest[0].score if nearest else -1.0

    def fit_context(self, hits: list[Hit], question: str, history: list[dict] | None,
                    settings: GenerationSettings) -> list[Hit]:
        """The hits that fit the token budget, in order; the first is cut to fit rather than dropped."""
        if not hits:
            return []
        overhead = self.backend.prompt_tokens(grounded_messages(question, [], history))
        free = self.backend.context_window - overhead - _BUDGET_MARGIN
        # The documents come first: a max_tokens near the window would leave them no room and the
        # model would answer from nothing. The answer claims at most half of what is free, and
        # generation stops where the window ends (the Answer's finish_reason then says "length").
        answer_room = min(settings.max_tokens, max(free // 2, 0))
        if answer_room < settings.max_tokens:
            log.info("max_tokens %d leaves the documents no room in a %d-token window: the documents get %d "
                     "tokens, the answer what is left", settings.max_tokens, self.backend.context_window,
                     free - answer_room)
        room = free - answer_room
        budget = room if settings.context_tokens is None else min(room, settings.context_tokens)
        fitted: list[Hit] = []
        used = 0
        for hit in hits:
            cost = self.backend.count_tokens(format_context([hit.chunk])) + 1
            if used + cost <= budget:
                fitted.append(hit)
                used += cost
            elif not fitted and budget > 32:
                fitted.append(dataclasses.replace(hit, chunk=self._cut_chunk(hit.chunk, budget - 32)))
                used = budget
        if len(fitted) < len(hits):
            log.info("context budget %d tokens: kept %d of %d chunks", budget, len(fitted), len(hits))
        return fitted

    def _cut_chunk(self, chunk: Chunk, tokens: int) -> Chunk:
        text = chunk.text
        while text and self.backend.count_tokens(text) > tokens:
            text = text[: int(len(text) * 0.9)]
        return dataclasses.replace(chunk, text=text, end=chunk.start + len(text))

    # -- answering ------------------------------------------------------------------------------
    def answer(self, question: str, mode: str = "hybrid", adapter: str | None = None,
               history: list[dict] | None = None, **overrides) -> Answer:
        """Answer ``question`` (see ``stream`` for the arguments)."""
        result = None
        for item in self.stream(question, mode=mode, adapter=adapter, history=history, **overrides):
            result = item
        return result

    def stream(self, question: str, mode: str = "hybrid", adapter: str | None = None,
               history: list[dict] | None = None, **overrides) -> Iterator[str | Answer]:
        """Text deltas of the answer as they are generated, then the final ``Answer``.

        mode: prompt, rag, tuned or hybrid (tuned and hybrid need ``adapter``; prompt and rag ignore it).
        history: earlier turns, ``[{"role": "user"|"assistant", "content": ...}, ...]``.
        overrides: any ``GenerationSettings`` field (k=0 sends no documents), plus ``extra_context``
        (chunks appended to the retrieved ones: distractors for robustness tests) and ``cancel``
        (a ``threading.Event`` that stops generation at the next token).
        """
        started = time.perf_counter()
        extra_context = list(overrides.pop("extra_context", None) or [])
        cancel = overrides.pop("cancel", None)
        settings = self.settings_for(**overrides)
        question = (question or "").strip()
        if not question:
            raise AssistantError("the question is empty")
        if mode not in MODES:
            raise AssistantError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if mode in ADAPTER_MODES:
            if not adapter:
                names = self.backend.adapter_names()
                have = f"available: {', '.join(names)}" if names else "none exist yet: ragtune train DATA --name NAME"
                raise AssistantError(f"mode {mode!r} needs an adapter (--adapter NAME); {have}")
            self.backend.check_adapter(adapter)
        else:
            adapter = None
        history = _clean_history(history)

        hits: list[Hit] = []
        query = question
        retrieval_s = 0.0
        evidence = None
        if mode in RETRIEVAL_MODES:
            query = self.retrieval_query(question, history, settings.history_turns)
            if settings.k > 0:
                hits = self.knowledge_base.search(query, k=settings.k, mode=settings.search_mode)
                if settings.min_score > -1.0:
                    evidence = self.evidence_score(query, hits, settings.search_mode) if hits else -1.0
                    if evidence < settings.min_score:
                        log.info("no evidence for %r (nearest chunk similarity %.3f < min_score %.3f)",
                                 query, evidence, settings.min_score)
                        yield from _no_evidence(mode, adapter, hits, query, started,
                                                {"evidence_score": evidence})
                        return
            offset = len(hits)
            hits = hits + [Hit(chunk=c, score=0.0, rank=offset + i) for i, c in enumerate(extra_context, start=1)]
            context = self.fit_context(hits, question, history, settings)
            documents = [h.chunk for h in context]
            unknown = (self.knowledge_base.unknown_terms(question, documents, settings.unknown_terms)
                       if documents and settings.unknown_terms > -1.0 else [])
            retrieval_s = time.perf_counter() - started
            if unknown:
                log.info("no evidence for %r: the knowledge base never mentions %s", question, ", ".join(unknown))
                yield from _no_evidence(mode, adapter, context, query, started,
                                        {"evidence_score": evidence, "unknown_terms": unknown})
                return
            if settings.focus_sentences and documents:
                documents = self.knowledge_base.focus(query, documents, settings.focus_sentences)
            messages = grounded_messages(question, documents, history)
        else:
            context = []
            messages = plain_messages(question, history)

        parts: list[str] = []
        first_token_s = None
        retried = False
        grounded = mode in RETRIEVAL_MODES
        run = self._generate(messages, settings, adapter, cancel, grounded, len(context))
        if (grounded and settings.check_shape and settings.focus_sentences and documents
                and asked_shapes(question)):
            # Hold the answer back until a sentence of it holds a number (or a name) of the asked shape; one
            # that ends without any is answered again from only the sentences that hold one (when there are others).
            held: list[str] = []
            result = None
            shown = "\n".join(chunk.text for _, chunk in numbered(documents))
            frequency = self.knowledge_base.document_frequencies
            for piece in run:
                if isinstance(piece, GenerationResult):
                    result = piece
                    break
                held.append(piece)
                # judged a sentence at a time: the words after a number settle its shape ("14" of
                # "14 March 1987" is no count)
                said = "".join(held)
                ends = [m.end() for m in _SENTENCE_END.finditer(said)]
                if ends and answers_shape(said[:ends[-1]], question, shown, frequency):
                    break
            if result is None:  # the shape turned up: stream on
                first_token_s = time.perf_counter() - started
                parts.extend(held)
                yield "".join(held)
            else:
                strict = None
                if not answers_shape("".join(held), question, shown, frequency) and result.finish_reason != "cancelled":
                    strict, context = self._shaped_sentences(query, context, documents, settings)
                if strict:
                    # and this time the numbers it writes are theirs of that shape: given "She is licensed
                    # for 312 passengers and carries up to 38 cars", "how many passengers" gets no 38
                    shaped = shaped_spans("\n".join(chunk.text for _, chunk in strict), question)
                    if not any(ch.isdigit() for span in shaped for ch in span) and "money" not in asked_shapes(question):
                        shaped = []  # a code or an address without digits: no reason to forbid the numbers shown
                    log.info("the answer to %r holds no %s: answering again from the sentences that do, "
                             "writing only their numbers of that shape (%s)", question,
                             " or ".join(asked_shapes(question)), ", ".join(shaped) or "none found: any of theirs")
                    retried = True
                    messages = grounded_messages(question, strict, history)
                    run = self._generate(messages, settings, adapter, cancel, grounded, len(context), shaped)
                else:
                    run = iter([*held, result])
        for piece in run:
            if isinstance(piece, GenerationResult):
                result = piece
                break
            if first_token_s is None:
                first_token_s = time.perf_counter() - started
            parts.append(piece)
            yield piece
        text = "".join(parts)
        citations, _ = resolve_citations(text, context)
        yield Answer(text=text, mode=mode, adapter=adapter, citations=citations, context=context,
                     dropped_citations=result.dropped, abstained=is_abstention(text),
                     latency_s=time.perf_counter() - started, retrieval_s=retrieval_s, first_token_s=first_token_s,
                     tokens=result.tokens, prompt_tokens=result.prompt_tokens, finish_reason=result.finish_reason,
                     query=query, extra={"model": result.model, "decode_s": result.decode_s, "evidence_score": evidence,
                                         "numbers_steered": result.numbers_steered, "shape_retry": retried})

    def _shaped_sentences(self, query: str, context: list[Hit], documents,
                          settings: GenerationSettings) -> tuple[list[tuple[int, Chunk]] | None, list[Hit]]:
        """The sentences of the retrieved chunks that hold an answer of the asked shape, when they are
        not the ones shown (else None), and the context their [n] refer to. Where the shown chunks
        hold no other, the search looks three times as deep inside the documents they come from
        ("Capacity: 260 passengers" can rank below three chunks of the same announcement), and the
        chunks it adds join the context after those shown. Other documents are not searched: their
        numbers are about something else as often as not ("She carries 140 passengers" is another ship).
        Failing that, the best of the sentences shown is shown alone."""
        chunks = [h.chunk for h in context]
        strict = self.knowledge_base.focus(query, chunks, settings.focus_sentences, strict=True)
        if strict and strict != documents:
            return strict, context
        seen = {c.chunk_id for c in chunks}
        sources = {c.source for c in chunks}
        deeper = [h for h in self.knowledge_base.search(query, k=3 * settings.k, mode=settings.search_mode)
                  if h.chunk.chunk_id not in seen and h.chunk.source in sources]
        if not deeper:
            return None, context
        wider = context + [dataclasses.replace(h, rank=len(context) + i) for i, h in enumerate(deeper, start=1)]
        strict = self.knowledge_base.focus(query, [h.chunk for h in wider], settings.focus_sentences, strict=True)
        if strict and strict != documents and any(n > len(context) for n, _ in strict):
            return strict, wider
        # the same sentences again would get the same answer: the best one alone reads more plainly
        best = self.knowledge_base.focus(query, chunks, 1, strict=True)
        return (best, context) if best and best != documents else (None, context)

    def _generate(self, messages: list[dict], settings: GenerationSettings, adapter: str | None, cancel,
                  grounded: bool, size: int, only: list[str] | None = None) -> Iterator[str | GenerationResult]:
        """The backend's text deltas with citations outside 1..``size`` removed, then its
        ``GenerationResult`` (``dropped``: the numbers removed). A ``grounded`` answer (from documents)
        writes only the numbers of its messages when ``settings.copy_numbers``, or of ``only``
        (the numbers of the asked shape) where that is given and not empty."""
        numbers = None
        if grounded and settings.copy_numbers:
            numbers = allowed_numbers(only or [without_markup_numbers(m["content"])
                                               for m in messages if m["role"] != "system"])
        if grounded:
            settings = dataclasses.replace(settings, stop=tuple(dict.fromkeys(settings.stop + MARKUP_STOPS)))
        filtered = CitationFilter(size)
        result = None
        text = ""
        with closing(self.backend.stream(messages, settings, adapter=adapter, cancel=cancel,
                                         numbers=numbers)) as generated:
            for item in generated:
                if isinstance(item, GenerationResult):
                    result = item
                    break
                text += item
                piece = filtered.feed(item)
                if piece:
                    yield piece
                if grounded and settings.stop_loops and looping(text):  # closing the stream stops the backend at its next token
                    result = GenerationResult(text, self.backend.count_tokens(text), 0, "stop")
                    break
        tail = filtered.finish()
        if tail:
            yield tail
        yield dataclasses.replace(result or GenerationResult("", 0, 0, "cancelled"), dropped=list(filtered.dropped))

    def close(self) -> None:
        """Stop the generation worker and close the knowledge base."""
        self.backend.close()
        if self._kb is not None:
            self._kb.close()


def default_route(ws: Workspace, kb: str) -> tuple[str, str | None]:
    """How knowledge base ``kb`` is answered when the caller names no mode or adapter: hybrid with the
    KB's own adapter when ``ragtune adapt`` made one its default (it beat RAG-only there), else rag."""
    adapter = kb_default_adapter(ws, kb)
    return ("hybrid", adapter) if adapter else ("rag", None)


def _no_evidence(mode: str, adapter: str | None, context: list[Hit], query: str, started: float,
                 extra: dict) -> Iterator[str | Answer]:
    """The stream of an answer declined before generating: NO_ANSWER, then its ``Answer`` (no tokens)."""
    retrieval_s = time.perf_counter() - started
    yield NO_ANSWER
    now = time.perf_counter() - started
    yield Answer(NO_ANSWER, mode, adapter, [], context, [], True, now, retrieval_s, now, 0,
                 finish_reason="no_evidence", query=query, extra=extra)


def _clean_history(history: list[dict] | None) -> list[dict]:
    """Validated turns with [n] markers removed from earlier answers (their numbers meant other documents)."""
    cleaned = []
    for i, turn in enumerate(history or []):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise AssistantError(f"history[{i}]: expected {{'role': 'user'|'assistant', 'content': text}}, got {turn!r}")
        role = turn.get("role")
        if role == "system":
            continue  # the mode's own system prompt applies; a conversation cannot replace it
        if role not in ("user", "assistant"):
            raise AssistantError(f"history[{i}]: role must be 'user' or 'assistant', got {role!r}")
        content = turn["content"]
        if role == "assistant":
            content = re.sub(r"[ \t]+([.,;:!?])", r"\1", CITATION_PATTERN.sub("", content)).strip()
        cleaned.append({"role": role, "content": content})
    return cleaned


_LOOP_REPEATS = 3  # a stretch of text written this many times in a row is a loop, not an answer


def looping(text: str, shortest: int = 5, longest: int = 60) -> bool:
    """True when ``text`` ends with the same stretch of 5 to 60 characters written three times in a row
    ("- 10. - 10. - 10."): greedy decoding of a small model never leaves such a loop by itself."""
    tail = text[-longest * _LOOP_REPEATS:]
    for size in range(shortest, min(longest, len(tail) // _LOOP_REPEATS) + 1):
        unit = tail[-size:]
        if unit.strip() and tail.endswith(unit * _LOOP_REPEATS):
            return True
    return False


class CitationFilter:
    """Removes citations to numbers outside 1..size from streamed text, tidying spaces as ``strip_citations`` does.

    A "[" and the digits after it are held back until the "]" decides; so is whitespace, until
    the next visible character shows whether a dropped citation left a space before punctuation.
    """

    def __init__(self, size: int):
        self.size = size
        self.dropped: list[int] = []
        self._bracket = ""
        self._space = ""
        self._started = False

    def feed(self, text: str) -> str:
        """The part of ``text`` (appended to what came before) that is now certain."""
        return "".join(self._char(ch) for ch in text)

    def finish(self) -> str:
        """What was still held back at the end (an unclosed "[12"; trailing whitespace is dropped)."""
        pending, self._bracket = self._bracket, ""
        return self._emit(pending)

    def _char(self, ch: str) -> str:
        if self._bracket:
            if ch.isdigit() and len(self._bracket) < 4:
                self._bracket += ch
                return ""
            if ch == "]" and len(self._bracket) > 1:
                marker, self._bracket = self._bracket + "]", ""
                n = int(marker[1:-1])
                if 1 <= n <= self.size:
                    return self._emit(marker)
                if n not in self.dropped:
                    self.dropped.append(n)
                return ""
            pending, self._bracket = self._bracket, ""
            return self._emit(pending) + self._char(ch)
        if ch == "[":
            self._bracket = "["
            return ""
        return self._emit(ch)

    def _emit(self, text: str) -> str:
        out = []
        for ch in text:
            if ch.isspace():
                if self._started:
                    self._space += ch
                continue
            space, self._space = self._space, ""
            space = re.sub(r"[ \t]{2,}", " ", space)
            if ch in _PUNCTUATION:
                space = re.sub(r"[ \t]+$", "", space)
            out.append(space + ch)
            self._started = True
        return "".join(out)
