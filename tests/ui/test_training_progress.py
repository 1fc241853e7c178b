"""Live training progress, read from the Trainer's progress bar and the run folder."""

from __future__ import annotations

import json

from ui.training_progress import losses_from_log_history, parse_progress_bar, read_progress

# What `ragtune train` writes to its log: tqdm redraws separated by carriage returns; the postfix
# carries the loss logged at the previous step.
BAR = ("Loading weights: 100%|██████████| 20/20 [00:00<00:00, 20370.59it/s]\n"
       "\r  0%|          | 0/4 [00:00<?, ?it/s]"
       "\r 25%|██▌       | 1/4 [00:02<00:06,  2.60s/it]"
       "\r 50%|█████     | 2/4 [00:05<00:05,  2.50s/it, loss=10.8257]"
       "\r 75%|███████▌  | 3/4 [00:07<00:02,  2.50s/it, loss=10.8236]"
       "\r 75%|███████▌  | 3/4 [00:08<00:03,  2.50s/it, loss=10.8236, eval_loss=10.7595]")


def test_progress_bar_gives_step_total_eta_and_loss_points():
    progress = parse_progress_bar(BAR)
    assert (progress.step, progress.total_steps, progress.eta_s) == (3, 4, 3.0)
    assert progress.losses == [{"step": 1, "train loss": 10.8257},
                               {"step": 2, "train loss": 10.8236, "eval loss": 10.7595}]


def test_loading_bars_with_a_description_are_not_taken_for_training():
    assert parse_progress_bar("Loading weights:  50%|█████     | 10/20 [00:00<00:00]").total_steps == 0


def test_log_history_gives_exact_train_and_eval_losses():
    history = [{"step": 0, "eval_loss": 2.5}, {"loss": 2.4, "step": 1}, {"loss": 2.2, "eval_loss": None, "step": 2},
               {"eval_loss": 2.1, "step": 2}, {"train_runtime": 3.0, "step": 2}]
    assert losses_from_log_history(history) == [{"step": 0, "eval loss": 2.5}, {"step": 1, "train loss": 2.4},
                                                {"step": 2, "train loss": 2.2, "eval loss": 2.1}]


def test_checkpoint_state_is_merged_with_the_newer_bar_points(workspace):
    checkpoint = workspace.runs_dir / "train-style" / "checkpoints" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps(
        {"max_steps": 4, "log_history": [{"loss": 10.82571234, "step": 1}]}))
    progress = read_progress(workspace, "style", BAR)
    assert progress.losses[0] == {"step": 1, "train loss": 10.82571234}
    assert progress.losses[1]["step"] == 2 and progress.total_steps == 4
