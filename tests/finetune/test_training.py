"""Training runs on tiny config-built models: every method learns, adapters reload without ragtune, merge is exact."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune.adapters import get_adapter, list_adapters, merge_adapter
from finetune.datasets.encoding import encode_examples
from finetune.errors import TrainError
from finetune.training import (PaddingCollator, TrainSettings, last_complete_checkpoint, make_collator, prepare_data,
                               train_adapter)
from ragtune.cli import main
from ragtune.workspace import Workspace


def quick(qa_path, base, **overrides) -> TrainSettings:
    """A few steps with a high learning rate: enough for a tiny random model's loss to fall."""
    values = dict(data=[str(qa_path)], base=str(base), max_steps=6, batch_size=6, lr=1e-2, eval_steps=6,
                  val_ratio=0.25, report_examples=1, report_max_new_tokens=4, max_length=128)
    values.update(overrides)
    return TrainSettings(**values)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, qa_path, tiny_llama_path):
    """One fp32 LoRA run shared by the reload, merge and registry tests."""
    ws = Workspace.open(tmp_path_factory.mktemp("ws"))
    settings = quick(qa_path, tiny_llama_path, bf16="false")
    return ws, settings, train_adapter(ws, "capitals", settings, progress=False)


def test_lora_run_lowers_eval_loss_and_writes_a_peft_folder_with_manifest(lora_run):
    ws, settings, info = lora_run
    metrics = info.manifest["metrics"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert (info.path / "adapter_config.json").exists() and (info.path / "adapter_model.safetensors").exists()
    assert (info.path / "loss_curve.png").stat().st_size > 1000 and (info.path / "report.md").exists()
    manifest = info.manifest
    assert manifest["dataset"][0]["sha256"] and manifest["counts"] == {**manifest["counts"], "train": 18, "val": 6}
    assert manifest["base_fingerprint"] and manifest["wall_time_s"] > 0 and manifest["created_at"]
    assert len(manifest["report"]["examples"]) == 1 and manifest["settings"]["rank"] == 16


@pytest.mark.parametrize("method, lr", [("qlora", 1e-2), ("dora", 1e-2), ("freeze", 2e-3), ("full", 1e-3)])
def test_each_method_lowers_eval_loss_in_a_few_steps(workspace, qa_path, tiny_llama_path, method, lr):
    info = train_adapter(workspace, method, quick(qa_path, tiny_llama_path, method=method, lr=lr, freeze_top=1,
                                                  report_examples=0, gradient_checkpointing=method == "freeze"),
                         progress=False)
    metrics = info.manifest["metrics"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    weights = "adapter_model.safetensors" if info.is_peft else "model.safetensors"
    assert (info.path / weights).exists()
    if method == "freeze":
        assert metrics["trainable_params"] < metrics["total_params"] / 2


def test_second_architecture_gemma3_trains_with_packed_batches(workspace, qa_path, tiny_gemma3_path):
    info = train_adapter(workspace, "gemma", quick(qa_path, tiny_gemma3_path, batching="packing", report_examples=0),
                         progress=False)
    assert info.manifest["metrics"]["eval_loss_after"] < info.manifest["metrics"]["eval_loss_before"]
    config = json.loads((info.path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_gemma3_path)


def test_packed_batch_gives_the_same_loss_as_the_padded_batch(qa_path, tiny_llama_path):
    settings = quick(qa_path, tiny_llama_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_path)
    encoded, _ = encode_examples(tokenizer, prepare_data(settings).train[:4], 128)
    features = [e.as_features() for e in encoded]
    tail = features[0]["input_ids"][-8:]
    n = len(features[1]["input_ids"]) - 10
    features.append({"input_ids": features[1]["input_ids"][:n], "labels": features[1]["labels"][:n]})
    features.append({"input_ids": tail, "labels": [-100] * 5 + tail[-3:]})  # fits beside the one above
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    model.config.use_cache = False
    packed_batch = make_collator("packing", tokenizer.pad_token_id)(features)
    assert packed_batch["input_ids"].shape[0] < len(features)  # examples really share rows
    with torch.no_grad():
        padded = model(**PaddingCollator(tokenizer.pad_token_id)(features)).loss
        packed = model(**packed_batch).loss
    assert torch.allclose(padded, packed, atol=1e-5)


def test_answer_only_loss_equals_the_full_logits_loss_padded_and_packed(tmp_path, qa_path, tiny_llama_path):
    from transformers import TrainingArguments

    from finetune.trainer import AnswerOnlyTrainer

    settings = quick(qa_path, tiny_llama_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_path)
    encoded, _ = encode_examples(tokenizer, prepare_data(settings).train[:4], 128)
    features = [e.as_features() for e in encoded]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32)
    model.config.use_cache = False
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                             include_num_input_tokens_seen="non_padding")
    trainer = AnswerOnlyTrainer(model=model, args=args, processing_class=tokenizer)
    assert trainer.can_keep_logits
    for batching in ("group_by_length", "packing"):
        batch = make_collator(batching, tokenizer.pad_token_id)(features)
        trainer.state.num_input_tokens_seen = 0
        trainer._track_num_input_tokens(batch)
        assert trainer.state.num_input_tokens_seen == sum(len(f["input_ids"]) for f in features)
        with torch.no_grad():
            expected = model(**batch).loss
            assert torch.allclose(trainer.compute_loss(model, batch), expected, atol=1e-5)
            n = (batch["labels"][:, 1:] != -100).sum()
            assert torch.allclose(trainer.compute_loss(model, batch, num_items_in_batch=n), expected, atol=1e-5)


def test_adapter_reloads_with_plain_peft_and_reproduces_the_trained_model(lora_run):
    from peft import PeftModel

    ws, settings, info = lora_run
    config = json.loads((info.path / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(info.path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(info.path)
    val, _ = encode_examples(tokenizer, prepare_data(settings).val, settings.max_length)
    with torch.no_grad():
        loss = model(**PaddingCollator(tokenizer.pad_token_id)([e.as_features() for e in val]), use_cache=False).loss
    assert loss.item() == pytest.approx(info.manifest["metrics"]["eval_loss_after"], abs=1e-4)

    from finetune.report import generate_answers

    example = info.manifest["report"]["examples"][0]
    conversation = [{"role": "user", "content": example["question"]}, {"role": "assistant", "content": "x"}]
    assert generate_answers(model, tokenizer, [conversation], 4, bf16=False) == [example["tuned"]]


def test_merged_model_generates_the_same_greedy_text_as_base_plus_adapter(lora_run, tmp_path):
    from peft import PeftModel

    ws, _, info = lora_run
    out = merge_adapter(ws, "capitals", tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(info.base, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(info.path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of Peru?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert torch.allclose(merged(**ids).logits, adapted(**ids).logits, atol=1e-4)
        a = merged.generate(**ids, max_new_tokens=12, do_sample=False)
        b = adapted.generate(**ids, max_new_tokens=12, do_sample=False)
    assert a.tolist() == b.tolist()
    with pytest.raises(TrainError, match="not empty"):
        merge_adapter(ws, "capitals", out)


def test_adapters_cli_lists_shows_and_deletes(lora_run, capsys):
    import shutil

    ws, _, info = lora_run
    shutil.copytree(info.path, ws.adapters_dir / "copy")
    assert main(["adapters", "list", "--json", "--home", str(ws.home)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["capitals", "copy"]
    assert set(rows[0]) == {"name", "path", "method", "base", "created_at"} and rows[0]["method"] == "lora"
    assert main(["adapters", "show", "capitals", "--home", str(ws.home)]) == 0
    assert "eval loss" in capsys.readouterr().out
    assert main(["adapters", "delete", "copy", "--home", str(ws.home)]) == 0
    assert [a.name for a in list_adapters(ws)] == ["capitals"]


def test_unknown_adapter_error_lists_existing_names_and_the_command(lora_run):
    ws, _, _ = lora_run
    with pytest.raises(TrainError, match=r"no adapter named 'nope'.*existing adapters: capitals.*ragtune train"):
        get_adapter(ws, "nope")


def test_training_again_under_an_existing_name_is_refused(lora_run):
    ws, settings, _ = lora_run
    with pytest.raises(TrainError, match="already exists.*ragtune adapters delete capitals"):
        train_adapter(ws, "capitals", settings, progress=False)


def test_resume_after_a_killed_run_finishes_from_the_last_checkpoint(tmp_path, qa_path, tiny_llama_path):
    home = tmp_path / "home"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"eval_steps": 3, "max_steps": 12, "batch_size": 2, "report_examples": 0,
                                      "val_ratio": 0.25, "lr": 1e-3}))
    cmd = [sys.executable, "-m", "ragtune", "train", str(qa_path), "--base", str(tiny_llama_path), "--home", str(home),
           "--config", str(config), "--name", "killed", "--quiet"]
    env = dict(os.environ, RAGTUNE_HOME=str(home))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = home / "runs" / "train-killed" / "checkpoints"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and last_complete_checkpoint(checkpoints) is None:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert last_complete_checkpoint(checkpoints) is not None, "no checkpoint was written in time"
    assert not (home / "adapters" / "killed").exists()

    with pytest.raises(TrainError, match="was interrupted at checkpoint-.*--resume"):
        train_adapter(Workspace.open(home), "killed", TrainSettings(data=[str(qa_path)]), progress=False)
    resumed = subprocess.run(cmd + ["--resume", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    manifest = json.loads(resumed.stdout)["manifest"]
    assert manifest["resumed_from"].startswith("checkpoint-")
    assert manifest["metrics"]["steps"] == 12


def test_settings_come_from_config_file_then_flags(tmp_path, workspace):
    from finetune.training import load_train_settings

    config = tmp_path / "c.yaml"
    config.write_text("method: dora\nrank: 4\nlr: 1.0e-4\ntarget_modules: [q_proj, v_proj]\n")
    settings = load_train_settings(workspace, config, {"rank": 8, "lr": None})
    assert (settings.method, settings.rank, settings.lr, settings.target_modules) == ("dora", 8, 1e-4, ["q_proj", "v_proj"])
    config.write_text("rnak: 4\n")
    with pytest.raises(TrainError, match="unknown setting 'rnak'"):
        load_train_settings(workspace, config)


def test_shipped_configs_load_and_open_with_their_command(workspace):
    from finetune.training import load_train_settings

    configs = sorted((Path(__file__).parents[2] / "finetune" / "configs").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"lora", "qlora", "dora", "freeze", "full"}
    for config in configs:
        assert config.read_text().startswith("# ragtune train"), config
        settings = load_train_settings(workspace, config)
        assert dataclasses.asdict(settings)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_real_default_model_trains_a_few_steps_and_reloads(workspace, qa_path, real_generator_path, method):
    from peft import PeftModel

    info = train_adapter(workspace, method, quick(qa_path, real_generator_path, method=method, lr=1e-3, max_steps=4,
                                                  eval_steps=4, batch_size=4, report_max_new_tokens=8), progress=False)
    metrics = info.manifest["metrics"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert 0 < metrics["trainable_params"] < metrics["total_params"] / 10
    base = AutoModelForCausalLM.from_pretrained(real_generator_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(info.path))
    assert sum("lora_A" in n for n, _ in model.named_parameters()) == 30 * 7  # every linear layer of 30 blocks


@pytest.fixture
def team_kb(workspace, tmp_path, tiny_embedder_path):
    """A knowledge base "team" of two short documents, and a quick training config beside it."""
    from ingest.pipeline import ingest_paths
    from retrieval.knowledge_base import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "history.md").write_text("# History\n\nThe company was founded in 1987 by Tobias Quellan in Bergen. "
                                     "The first ship was named Heron Gift and carried 40 passengers. "
                                     "The fleet grew to 9 ships by the year 2004.\n")
    (docs / "fares.md").write_text("# Fares\n\nA single adult ticket costs 19.80 euros on the main route. "
                                   "Season passes cost 310 euros for twelve months of travel. "
                                   "The help desk opens at 8:30 am on weekdays.\n")
    with KnowledgeBase.open(workspace.kb_path("team"), embedder=tiny_embedder_path, create=True) as kb:
        ingest_paths(kb, [docs], progress=False)
    config = tmp_path / "quick.yaml"
    config.write_text("report_examples: 1\nreport_max_new_tokens: 4\nval_ratio: 0.25\n")
    return config


def _train_from_team(workspace, config, tiny_llama_path, *flags):
    return main(["train", "--from-kb", "team", "--base", str(tiny_llama_path), "--max-steps", "2", "--max-examples",
                 "12", "--batch-size", "4", "--config", str(config), "--quiet", "--json", "--home",
                 str(workspace.home), *flags])


def test_train_from_kb_writes_the_grounding_set_and_trains_on_it(workspace, team_kb, tiny_llama_path, capsys):
    code = _train_from_team(workspace, team_kb, tiny_llama_path)
    assert code == 0
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    grounding = workspace.runs_dir / "train-grounded-team" / "grounding.jsonl"
    rows = [json.loads(line) for line in grounding.read_text().splitlines()]
    assert manifest["dataset"][0]["path"] == str(grounding) and manifest["dataset"][0]["format"] == "messages"
    assert len(rows) == manifest["dataset"][0]["examples"] > 0
    assert rows[0]["messages"][0]["role"] == "system" and "meta" in rows[0]


def test_train_from_kb_keeps_an_eval_set_out(workspace, team_kb, tmp_path, tiny_llama_path, capsys):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "e1", "question": "In which year was the company founded?",
                              "answers": ["1987"]}) + "\n")
    grounding = workspace.runs_dir / "train-grounded-team" / "grounding.jsonl"

    def questions_and_answers():
        rows = [json.loads(line) for line in grounding.read_text().splitlines()]
        return [(r["meta"]["question"], r["meta"]["answer"]) for r in rows]

    assert _train_from_team(workspace, team_kb, tiny_llama_path, "--exclude", str(qa)) == 0
    studied = questions_and_answers()
    assert any("1987" in answer for _, answer in studied)  # the answering sentence is studied...
    assert not any("In which year was the company founded?" in q for q, _ in studied)
    assert _train_from_team(workspace, team_kb, tiny_llama_path, "--exclude", str(qa), "--hold-out-answers",
                            "--name", "held") == 0
    grounding = workspace.runs_dir / "train-held" / "grounding.jsonl"
    assert not any("1987" in q + a for q, a in questions_and_answers())  # ...unless answers are held out
    capsys.readouterr()


def test_train_exclude_errors_name_the_flag_or_the_line(workspace, team_kb, tmp_path, tiny_llama_path, capsys):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "e1", "question": "When?", "answers": ["1987"]}\n{"id": "e2"\n')
    assert main(["train", "data.jsonl", "--exclude", str(qa), "--home", str(workspace.home)]) == 1
    assert "use them with --from-kb KB" in capsys.readouterr().err
    assert _train_from_team(workspace, team_kb, tiny_llama_path, "--hold-out-answers") == 1
    assert "--exclude QA.jsonl" in capsys.readouterr().err
    assert _train_from_team(workspace, team_kb, tiny_llama_path, "--exclude", str(qa)) == 1
    assert f"{qa}:2: not valid JSON" in capsys.readouterr().err
    assert not (workspace.adapters_dir / "grounded-team").exists()


def test_a_checkpoint_killed_while_writing_its_state_is_not_resumed_from(tmp_path):
    from finetune.training import last_complete_checkpoint

    for step, state in [(3, '{"global_step": 3}'), (6, "")]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-3"
