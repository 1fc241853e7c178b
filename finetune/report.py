"""After a run: the loss curve and a short "did it learn?" report.

The report compares eval loss before and after training and shows, for a few held-out
examples, the reference answer beside the base model's and the tuned model's greedy answers
(the base answers are generated before the first step, so every method, including freeze and
full, compares against the untouched base without loading it twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class LearningReport:
    """Eval loss before and after, and side-by-side answers on held-out examples."""

    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    examples: list[dict] = field(default_factory=list)  # question, reference, base, tuned

    @property
    def learned(self) -> bool | None:
        """True if the eval loss went down (None without a validation set)."""
        if self.eval_loss_before is None or self.eval_loss_after is None:
            return None
        return self.eval_loss_after < self.eval_loss_before

    def summary_line(self) -> str:
        """One line: eval loss before → after and the verdict."""
        if self.learned is None:
            return "no validation set: eval loss not measured"
        change = (self.eval_loss_after - self.eval_loss_before) / self.eval_loss_before
        verdict = "it learned" if self.learned else "it did NOT improve on held-out data"
        return f"eval loss {self.eval_loss_before:.4f} -> {self.eval_loss_after:.4f} ({change:+.1%}): {verdict}"

    def to_dict(self) -> dict:
        """JSON-ready report."""
        return {"eval_loss_before": self.eval_loss_before, "eval_loss_after": self.eval_loss_after,
                "learned": self.learned, "examples": self.examples}

    def to_markdown(self, title: str) -> str:
        """The report as Markdown (written as report.md beside the adapter)."""
        lines = [f"# Did it learn? {title}", "", self.summary_line(), ""]
        for i, ex in enumerate(self.examples, start=1):
            lines += [f"## Held-out example {i}", "", "**Prompt**", "", _quote(ex["question"]), "",
                      "**Reference**", "", _quote(ex["reference"]), "", "**Base model**", "", _quote(ex["base"]), "",
                      "**Tuned**", "", _quote(ex["tuned"]), ""]
        return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in (text.strip() or "(empty)").splitlines())


def prompt_messages(messages) -> list[dict]:
    """The conversation up to (not including) its last assistant answer: what the model is asked."""
    messages = list(messages)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def generate_answers(model, tokenizer, conversations: list, max_new_tokens: int, bf16: bool) -> list[str]:
    """Greedy answers of ``model`` to each conversation's last question (the chat template with generation prompt)."""
    import torch

    from finetune.datasets.encoding import render

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers = []
    try:
        for messages in conversations:
            text = render(tokenizer, prompt_messages(messages), add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return answers


def plot_loss_curve(log_history: list[dict], path: Path, title: str = "") -> Path | None:
    """Save train and eval loss against step as a PNG; ``None`` if nothing was logged."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4", linewidth=1.4)
    if evals:
        ax.plot(*zip(*evals), label="eval loss", color="#d62728", marker="o", linewidth=1.4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (answer tokens)")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
