"""An optional LLM judge through any OpenAI-compatible endpoint (off by default).

The judge sees the question, the accepted answers (or that the question is unanswerable) and
the candidate answer, and replies CORRECT or INCORRECT; the harness records 1.0 or 0.0 as the
``judge`` metric next to the judge-free ones. The model is ``$RAGTUNE_JUDGE_MODEL`` or the
endpoint's first listed model; the key is ``$RAGTUNE_JUDGE_API_KEY`` or ``$OPENAI_API_KEY``.
"""

from __future__ import annotations

import logging
import os
import re

from evaluation.errors import EvaluationError
from evaluation.qa import QAItem

log = logging.getLogger(__name__)

JUDGE_SYSTEM = ("You grade answers to questions. Compare the candidate answer with the reference. Reply with one "
                "word: CORRECT if the candidate states the reference answer (wording may differ), otherwise INCORRECT.")


class Judge:
    """Scores answers by asking a chat model at ``base_url`` (e.g. http://127.0.0.1:8000/v1)."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, timeout: float = 60.0):
        from openai import OpenAI

        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        key = api_key or os.environ.get("RAGTUNE_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self.client = OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=1)
        self._model = model or os.environ.get("RAGTUNE_JUDGE_MODEL")

    @property
    def model(self) -> str:
        """The judge model: as given, or the endpoint's first model."""
        if self._model is None:
            try:
                models = [m.id for m in self.client.models.list()]
            except Exception as exc:  # any transport or API failure is the user's endpoint to fix
                raise EvaluationError(f"judge {self.base_url}: cannot list models ({exc}); check --judge URL") from None
            if not models:
                raise EvaluationError(f"judge {self.base_url}: the endpoint lists no models; set RAGTUNE_JUDGE_MODEL")
            self._model = models[0]
        return self._model

    def prompt(self, item: QAItem, answer: str) -> list[dict]:
        """The judge's chat messages for one answer."""
        reference = ("The question cannot be answered from the documents: only a reply that declines to answer is "
                     "CORRECT." if not item.answerable else "Accepted answers: " + " | ".join(item.answers))
        return [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": f"Question: {item.question}\n{reference}\nCandidate answer: {answer}\n"
                                            "Verdict (CORRECT or INCORRECT):"}]

    def score(self, item: QAItem, answer: str) -> float | None:
        """1.0 if the judge says CORRECT, 0.0 if INCORRECT, None if it says neither."""
        try:
            reply = self.client.chat.completions.create(model=self.model, messages=self.prompt(item, answer),
                                                        temperature=0, max_tokens=5)
        except EvaluationError:
            raise
        except Exception as exc:
            raise EvaluationError(f"judge {self.base_url}: request failed ({exc}); check --judge URL") from None
        text = (reply.choices[0].message.content or "").strip().upper()
        if re.match(r"\W*INCORRECT", text):
            return 0.0
        if re.match(r"\W*CORRECT", text):
            return 1.0
        log.warning("judge gave no verdict for %s: %r", item.id, text[:40])
        return None
