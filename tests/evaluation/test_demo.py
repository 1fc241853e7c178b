"""``ragtune demo`` end to end on tiny models and a small copy of the demo data: idempotent steps."""

import json
import shutil

import pytest
import yaml

from evaluation.demo import DEMO_DATA, DemoSettings, demo_targets, run_demo
from ragtune.workspace import Workspace

TINY = DemoSettings(grounded_examples=8, demo_examples=8, train_k=2, batch_size=4, max_length=512, eval_k=2,
                    max_tokens=8, chunk_tokens=96)


@pytest.fixture
def small_demo_data(tmp_path):
    """kb/ (4 documents), general/ (3), freshness/ (all), 6 eval questions incl. style and freshness, 4 style examples."""
    data = tmp_path / "demo_data"
    for sub, n in (("kb", 4), ("general", 3), ("freshness", 99)):
        (data / sub).mkdir(parents=True)
        for f in sorted(p for p in (DEMO_DATA / sub).iterdir() if p.suffix == ".md")[:n]:
            shutil.copy(f, data / sub / f.name)
    lines = (DEMO_DATA / "eval.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    pick = [r for r in rows if r.get("style")][:1] + [r for r in rows if r.get("freshness")][:1] \
        + [r for r in rows if not r["answerable"]][:1] + [r for r in rows if r["answerable"] and not r.get("style")
                                                         and not r.get("freshness")][:3]
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pick))
    (data / "style.jsonl").write_text("\n".join((DEMO_DATA / "style.jsonl").read_text().splitlines()[:4]) + "\n")
    shutil.copy(DEMO_DATA / "style_checks.yaml", data / "style_checks.yaml")
    return data


@pytest.fixture
def demo_ws(tmp_path, eval_parrot_path, tiny_embedder_path):
    ws = Workspace.open(tmp_path / "home")
    ws.config_path.write_text(yaml.safe_dump({
        "models": {"generator": str(eval_parrot_path), "embedder": tiny_embedder_path, "dtype": "float32"},
        "generation": {"min_score": -1.0}}))
    return ws


def test_demo_builds_trains_evaluates_and_a_second_run_reuses_everything(demo_ws, small_demo_data, capsys,
                                                                         monkeypatch):
    lines = []
    assert run_demo(demo_ws, ui=False, progress=False, say=lines.append, settings=TINY, data=small_demo_data) == 0
    summary = json.loads((demo_ws.runs_dir / "demo-eval" / "summary.json").read_text())
    assert list(summary["modes"]) == ["prompt", "rag", "tuned", "hybrid", "hybrid:grounded"]
    assert summary["modes"]["hybrid"]["adapter"] == "demo" and summary["modes"]["hybrid:grounded"]["adapter"] == "grounded"
    assert {p.name for p in demo_ws.adapters_dir.iterdir()} >= {"grounded", "demo"}
    out = capsys.readouterr().out
    assert "mode" in out.splitlines()[0] and "hybrid:grounded" in out

    # the demo adapter never saw documents added after training, nor the general KB the grounded one learnt from
    from retrieval.knowledge_base import KnowledgeBase

    rows = [json.loads(x) for x in (demo_ws.runs_dir / "train-demo" / "grounding.jsonl").read_text().splitlines()]
    ids = sorted({cid for r in rows for cid in r["meta"]["context_chunk_ids"]})
    with KnowledgeBase.open(demo_ws.kb_path("demo")) as kb:
        sources = {c.source for c in kb.get_chunks(ids)}
    assert rows and sources and all(s.startswith(str(small_demo_data / "kb")) for s in sources)

    again = []
    run_demo(demo_ws, ui=False, progress=False, say=again.append, settings=TINY, data=small_demo_data)
    text = "\n".join(again)
    assert text.count("present: reused") == 2 and "reused: " in text
    assert "0 added, 0 updated" in text

    # a moved checkout: the same files from another folder replace the old ones instead of doubling them
    moved = small_demo_data.parent / "moved" / small_demo_data.name
    shutil.copytree(small_demo_data, moved)
    (moved / "kb" / "extra-notes.md").write_text("# Notes\n\nA file of the new copy only.\n")
    with KnowledgeBase.open(demo_ws.kb_path("demo")) as kb:
        before = {d.source for d in kb.list_documents()}
    fourth = []
    run_demo(demo_ws, ui=False, progress=False, say=fourth.append, settings=TINY, data=moved)
    with KnowledgeBase.open(demo_ws.kb_path("demo")) as kb:
        after = {d.source for d in kb.list_documents()}
    assert after == {s.replace(str(small_demo_data), str(moved)) for s in before} | {str(moved / "kb" / "extra-notes.md")}
    assert f"{len(before)} documents removed" in "\n".join(fourth)
    small_demo_data = moved

    # other generation settings in config.yaml are other answers: the evaluation runs again
    config = yaml.safe_load(demo_ws.config_path.read_text())
    demo_ws.config_path.write_text(yaml.safe_dump({**config, "generation": {**config["generation"], "focus_sentences": 1}}))
    third = []
    run_demo(demo_ws, ui=False, progress=False, say=third.append, settings=TINY, data=small_demo_data)
    assert "written: " in "\n".join(third) and "present: reused" in "\n".join(third)

    # so does an upgrade of the code that answers: the table it printed may no longer be its own
    fourth_again = []
    run_demo(demo_ws, ui=False, progress=False, say=fourth_again.append, settings=TINY, data=small_demo_data)
    assert "reused: " in "\n".join(fourth_again)
    import evaluation.demo as demo_module

    real = demo_module.answering_code_digest()
    monkeypatch.setattr(demo_module, "answering_code_digest", lambda: real + "-upgraded")
    upgraded = []
    run_demo(demo_ws, ui=False, progress=False, say=upgraded.append, settings=TINY, data=small_demo_data)
    assert "written: " in "\n".join(upgraded)


def test_targets_are_checked_on_the_summary():
    pair = {"delta": 0.2, "ci95": [0.1, 0.3], "p_value": 0.001}
    summary = {"modes": {"hybrid": {"correctness": 0.75, "groups": {"freshness": {"n": 3, "correct": 3}}},
                         "tuned": {"correctness": 0.1, "groups": {"freshness": {"n": 3, "correct": 0}}}},
               "pairs": {"hybrid-vs-prompt": pair, "hybrid-vs-rag": {**pair, "ci95": [-0.01, 0.3]},
                         "hybrid-vs-tuned": pair}}
    met = {t["target"]: t["met"] for t in demo_targets(summary)}
    assert met["hybrid beats prompt on correctness, 95% CI excluding zero"]
    assert not met["hybrid beats rag on correctness, 95% CI excluding zero"]
    assert met["hybrid correctness at least 0.7"]
    assert met["tuned-only misses the freshness questions that hybrid answers"]


def test_incomplete_demo_data_is_a_clear_error(demo_ws, tmp_path):
    from evaluation.errors import EvaluationError

    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="demo data is incomplete"):
        run_demo(demo_ws, ui=False, progress=False, say=lambda s: None, settings=TINY, data=tmp_path / "empty")


def test_a_training_run_an_earlier_demo_left_interrupted_is_resumed_or_started_over(demo_ws, tmp_path):
    from evaluation.demo import _train_or_resume
    from finetune.training import TrainSettings, train_adapter

    data = tmp_path / "style.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Good tide! Answer {i}."}]} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = TrainSettings(data=[str(data)], format="messages", batch_size=4, max_steps=4, eval_steps=2,
                             val_ratio=0.25, report_examples=0, keep_checkpoints=True)
    train_adapter(demo_ws, "demo", settings, progress=False)
    # a kill after the last checkpoint and before the adapter was saved leaves exactly this behind
    shutil.rmtree(demo_ws.adapters_dir / "demo")
    said = []
    info = _train_or_resume(demo_ws, "demo", settings, False, said.append)
    assert "resumed the interrupted run" in said[-1]
    assert info.manifest["resumed_from"].startswith("checkpoint-")

    shutil.rmtree(demo_ws.adapters_dir / "demo")
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))  # the demo built other data since
    said.clear()
    info = _train_or_resume(demo_ws, "demo", settings, False, said.append)
    assert said and said[0].strip().startswith("starting over: cannot resume: the data changed")
    assert info.manifest["resumed_from"] is None and (demo_ws.adapters_dir / "demo").exists()
