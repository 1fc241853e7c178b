"""The transformers Trainer as ragtune runs it: answer-only loss, a progress bar with losses, epoch checkpoints.

Kept apart from training.py so that reading and validating data (which fails fast on bad
input) does not import the Trainer stack.
"""

from __future__ import annotations

import inspect

from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

from finetune.datasets.encoding import IGNORE_INDEX
from ragtune import compute


class AnswerOnlyTrainer(Trainer):
    """The Trainer, with the output head run only where a token is learned.

    Loss is on answer tokens only, yet a causal LM normally computes vocabulary logits at every
    position: on grounded prompts (documents + question) that is 80-90% wasted, and with a 49k
    vocabulary the head is a fifth of the model's FLOPs and most of its activation memory. We pass
    ``logits_to_keep`` = the positions whose next token carries a label (their union over the
    batch), so the loss is the same number the standard path gives, computed on far fewer logits.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_is_scaled_for_ga = True  # divided by the accumulated batch's answer-token count below
        forward = inspect.signature(self.accelerator.unwrap_model(self.model).get_base_model().forward
                                    if hasattr(self.model, "get_base_model") else self.model.forward)
        self.can_keep_logits = "logits_to_keep" in forward.parameters

    def _track_num_input_tokens(self, inputs):
        """Count real tokens of packed batches too (the Trainer's own count sees only attention masks)."""
        if self.args.include_num_input_tokens_seen != "non_padding" or "position_ids" not in inputs \
                or "attention_mask" in inputs:
            return super()._track_num_input_tokens(inputs)
        import torch

        count = 0
        pad_id = self.processing_class.pad_token_id
        for ids, positions in zip(inputs["input_ids"], inputs["position_ids"]):
            tail = int((positions == 0).nonzero().max())  # the last block of a row is padding if all pad ids
            pad = len(ids) - tail if tail > 0 and bool((ids[tail:] == pad_id).all()) else 0
            count += len(ids) - pad
        tokens = torch.as_tensor(count, device=self.args.device, dtype=torch.int64)
        self.state.num_input_tokens_seen += self.accelerator.gather(tokens).sum().item()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mean cross-entropy over answer tokens (normalised over the whole accumulated batch in training)."""
        import torch
        import torch.nn.functional as F

        inputs = dict(inputs)
        targets = inputs.pop("labels")[:, 1:]  # position t predicts token t + 1
        keep = (targets != IGNORE_INDEX).any(0).nonzero().squeeze(-1)
        if self.can_keep_logits:
            outputs = model(**inputs, logits_to_keep=keep)
            logits, targets = outputs.logits, targets[:, keep]
        else:
            outputs = model(**inputs)
            logits = outputs.logits[:, :-1]
        total = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten().to(logits.device),
                                ignore_index=IGNORE_INDEX, reduction="sum")
        if num_items_in_batch is None:
            loss = total / (targets != IGNORE_INDEX).sum().clamp(min=1)
        else:
            loss = total / torch.as_tensor(num_items_in_batch, device=total.device)
            if self.args.average_tokens_across_devices:  # num_items was summed over processes; DDP averages grads
                loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss


def install_callbacks(trainer, progress: bool) -> None:
    """Our progress bar (with losses) instead of the Trainer's, and a checkpoint at each epoch end."""
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(LossProgressCallback())
    trainer.add_callback(SaveEachEpochCallback())
    trainer.add_callback(InterruptCallback())


class LossProgressCallback(ProgressCallback):
    """The Trainer's tqdm bar (steps, ETA) with the latest train and eval loss in its postfix."""

    def __init__(self):
        super().__init__()
        self.shown: dict[str, str] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Show the latest losses instead of printing every log dict."""
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        for key in ("loss", "eval_loss"):
            if key in logs:
                self.shown[key] = f"{logs[key]:.4f}"
        self.training_bar.set_postfix(self.shown, refresh=False)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        """No second bar for the short evaluation passes: the eval loss appears in the main bar."""


class InterruptCallback(TrainerCallback):
    """Ctrl-C reaches the caller waiting for the compute thread (ragtune/compute.py): stop training at the
    next step as an interrupt, leaving the run folder's checkpoints for ``--resume``."""

    def on_step_end(self, args, state, control, **kwargs):
        """Raise ``KeyboardInterrupt`` on the compute thread once the caller was interrupted."""
        if compute.interrupted():
            raise KeyboardInterrupt


class SaveEachEpochCallback(TrainerCallback):
    """A checkpoint at the end of every epoch, besides the ones every ``eval_steps``; the last step is
    always evaluated and saved, so the best-checkpoint choice includes the end of training."""

    def on_epoch_end(self, args, state, control, **kwargs):
        """Ask the Trainer to save now."""
        control.should_save = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        """Evaluate and save after the final optimizer step."""
        if state.global_step >= state.max_steps:
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = True
        return control
