"""The assistant's records: the generation settings a request runs with and the ``Answer`` it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from retrieval.citations import Citation
from retrieval.records import Hit

MODES = ("prompt", "rag", "tuned", "hybrid")
RETRIEVAL_MODES = ("rag", "hybrid")  # modes that put retrieved chunks in the prompt
ADAPTER_MODES = ("tuned", "hybrid")  # modes that generate with an adapter


@dataclass(frozen=True)
class GenerationSettings:
    """The ``generation:`` section of config.yaml; any field can be overridden per request."""

    max_tokens: int = 256
    """Most new tokens to generate."""
    temperature: float = 0.0
    """0 = greedy decoding (the default: reproducible answers); higher samples more freely."""
    top_p: float = 1.0
    """Nucleus sampling: sample only from the smallest set of tokens whose probability reaches top_p."""
    stop: tuple[str, ...] = ()
    """Generation ends before the first of these strings (which is not included in the answer)."""
    k: int = 4
    """Chunks retrieved for rag and hybrid; 0 = no retrieval (the prompt says no documents were found)."""
    min_score: float = 0.25
    """No-evidence threshold on the *dense cosine similarity* (-1..1, the KB embedder's normalized
    vectors) between the retrieval query and its nearest chunk. Below it the assistant answers
    NO_ANSWER without generating. Not the hybrid ranking's fused score: reciprocal rank fusion
    carries no relevance scale. -1 disables the check. Calibrated with all-MiniLM-L6-v2 on the demo
    KB: every answerable question's nearest chunk scored 0.39 or more, off-topic questions 0.13 to
    0.35; 0.25 leaves a margin under short on-topic questions. On-topic questions the documents do
    not answer pass: the grounded prompt makes the model say NO_ANSWER for those. Another embedder
    has another scale: re-check with ``ragtune search --mode dense``."""
    context_tokens: int | None = None
    """Token budget for the retrieved documents; None = what the model's window leaves after the
    system prompt, history, question and max_tokens. Chunks that do not fit are left out (the first
    is cut to fit rather than dropped)."""
    search_mode: str = "hybrid"
    """Retrieval: dense, bm25 or hybrid (see ragtune search)."""
    focus_sentences: int = 2
    """Context focus: the prompt carries only this many sentences of the retrieved chunks, the ones
    most likely to answer (retrieval/focus.py), each inside its chunk's numbered document; citations
    still name whole chunks. It lets the embedded 135M model read the right sentence. ``--from-kb``
    adapters are trained on prompts with as many (GroundingSettings.focus_sentences); on the demo
    eval's first 66 questions a demo adapter trained on 4 answered 38, 44 and 36 given 1, 2 and 4
    sentences. 0 = whole chunks, better for models of a few billion parameters and up."""
    unknown_terms: float = 0.45
    """Unknown-term check: the assistant answers NO_ANSWER without generating when a content word of
    the question appears in no chunk of the knowledge base and no word of the retrieved chunks comes
    within this embedder cosine of it (retrieval/focus.py ``unknown_terms``): the documents never
    mention a mascot or a fax number, so a question about one is not answered from the nearest
    sentence. -1 disables the check. Calibrated with all-MiniLM-L6-v2 on the demo eval's first 66
    questions: the absent words of its answerable questions have a context word at 0.49 or more
    ("took" to "spent", "tallest" to "height"), those of its unanswerable ones at 0.35 to 0.53 (0.45
    catches 6 of 9)."""
    copy_numbers: bool = True
    """In rag and hybrid, the local backend lets the answer write only digit runs that the documents
    shown, the question or the conversation hold (assistant/copying.py): a small model can no longer
    write "€16.40" from a document that says "€14.60" and has no 16. The model still chooses which
    number to copy. An OpenAI-compatible backend cannot be constrained. False = any number."""
    check_shape: bool = True
    """In rag and hybrid, an answer to a numeric question ("how much", "how long", "what time") is held
    back until a sentence of it holds a number of the asked shape (a sum, a period, a clock time; for
    "who", a name the KB does not repeat everywhere; retrieval/focus.py); one that ends without any is
    answered again from only the sentences of the retrieved chunks that hold one. Streamed answers to
    such questions start later (after the first sentence with such a number or name) and never change
    once shown. False = stream at once, never answer again."""
    stop_loops: bool = True
    """In rag and hybrid, end an answer once it writes the same stretch of text three times in a row
    ("- 10. - 10. - 10."): greedy decoding of a small model never leaves such a loop. False = run on."""
    history_turns: int = 1
    """Earlier user turns prepended to a follow-up question to form the retrieval query (0 = none)."""
    seed: int | None = None
    """Random seed for sampling (temperature > 0); None = not reproducible."""

    def __post_init__(self):
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not (isinstance(self.temperature, (int, float)) and 0.0 <= self.temperature <= 5.0):
            raise ValueError(f"temperature must be between 0 and 5, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k must be 0 or a positive integer, got {self.k!r}")
        if not isinstance(self.min_score, (int, float)) or math.isnan(self.min_score):
            raise ValueError(f"min_score must be a number (cosine similarity, -1 disables), got {self.min_score!r}")
        if self.context_tokens is not None and (not isinstance(self.context_tokens, int) or self.context_tokens < 1):
            raise ValueError(f"context_tokens must be a positive integer or null, got {self.context_tokens!r}")
        if self.search_mode not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"search_mode must be dense, bm25 or hybrid, got {self.search_mode!r}")
        if not isinstance(self.focus_sentences, int) or self.focus_sentences < 0:
            raise ValueError(f"focus_sentences must be 0 (whole chunks) or more, got {self.focus_sentences!r}")
        if not isinstance(self.unknown_terms, (int, float)) or math.isnan(self.unknown_terms):
            raise ValueError(f"unknown_terms must be a number (cosine similarity, -1 disables), got {self.unknown_terms!r}")
        if not isinstance(self.check_shape, bool):
            raise ValueError(f"check_shape must be true or false, got {self.check_shape!r}")
        if not isinstance(self.stop_loops, bool):
            raise ValueError(f"stop_loops must be true or false, got {self.stop_loops!r}")
        if not isinstance(self.copy_numbers, bool):
            raise ValueError(f"copy_numbers must be true or false, got {self.copy_numbers!r}")
        if not isinstance(self.history_turns, int) or self.history_turns < 0:
            raise ValueError(f"history_turns must be 0 or more, got {self.history_turns!r}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop must be non-empty strings, got {self.stop!r}")


@dataclass(frozen=True)
class Answer:
    """One answer: its text, how it was produced, what it cites and how long it took."""

    text: str
    """The answer; citations to chunks that were not in the context are already removed."""
    mode: str
    adapter: str | None
    citations: list[Citation]
    """The context chunks the answer cites, by [n], in order of first citation."""
    context: list[Hit]
    """The chunks shown to the model, in prompt order: [n] is context[n-1]. On a no-evidence answer,
    the retrieved chunks that fell under the threshold."""
    dropped_citations: list[int]
    """Numbers the model cited that were not in the context (fabricated), removed from ``text``."""
    abstained: bool
    """The answer declines (NO_ANSWER or a paraphrase)."""
    latency_s: float
    retrieval_s: float
    first_token_s: float | None
    """Seconds from the request to the first streamed text (None if nothing was generated)."""
    tokens: int
    """Generated tokens (0 when the no-evidence check answered without generating)."""
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    """stop (end of answer or a stop string), length (max_tokens), cancelled, or no_evidence."""
    query: str = ""
    """The retrieval query (the question, resolved against the history for a follow-up)."""
    extra: dict = field(default_factory=dict, compare=False)
    """model (the generator or remote model id), decode_s (seconds from the first token to the last),
    evidence_score (the question's cosine similarity to its nearest chunk, which min_score is compared with),
    numbers_steered (decoding steps at which copy_numbers changed the model's choice of digit),
    shape_retry (check_shape answered again from the sentences of the asked shape) and, on a
    no-evidence answer from the unknown-term check, unknown_terms (the words no document has)."""

    def to_dict(self) -> dict:
        """The JSON shape ``ragtune ask --json`` prints and the server's ``ragtune`` field carries."""
        return {
            "answer": self.text,
            "mode": self.mode,
            "adapter": self.adapter,
            "citations": [c.to_dict() for c in self.citations],
            "context": [dict(hit.to_dict(), n=n) for n, hit in enumerate(self.context, start=1)],
            "dropped_citations": list(self.dropped_citations),
            "abstained": self.abstained,
            "finish_reason": self.finish_reason,
            "query": self.query,
            "evidence_score": None if self.extra.get("evidence_score") is None else round(self.extra["evidence_score"], 4),
            "unknown_terms": list(self.extra.get("unknown_terms") or []),
            "numbers_steered": int(self.extra.get("numbers_steered") or 0),
            "shape_retry": bool(self.extra.get("shape_retry")),
            "latency_s": round(self.latency_s, 4),
            "retrieval_s": round(self.retrieval_s, 4),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 4),
            "tokens": self.tokens,
            "prompt_tokens": self.prompt_tokens,
            "tokens_per_s": self.tokens_per_s,
        }

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed: tokens after the first over the seconds they took (None if unknown)."""
        decode_s = self.extra.get("decode_s") or 0.0
        return round((self.tokens - 1) / decode_s, 2) if self.tokens > 1 and decode_s > 0 else None

    @property
    def generation_s(self) -> float:
        """Seconds spent generating (latency minus retrieval)."""
        return max(0.0, self.latency_s - self.retrieval_s)
