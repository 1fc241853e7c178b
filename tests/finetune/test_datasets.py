"""Training data: each format parsed into chat messages, each bad record named by file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from finetune.datasets import load_examples
from finetune.datasets.splits import MixSpec, mix_examples, parse_mix, split_examples
from finetune.errors import DatasetError


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_alpaca_record_becomes_system_history_user_and_assistant_turns(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Translate", "input": "bonjour", "output": "hello",
                                               "system": "Be terse.", "history": [["hi", "hey"]]}])
    [ex] = load_examples(path)
    assert ex.format == "alpaca"
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert ex.messages[3]["content"] == "Translate\n\nbonjour"
    assert ex.messages[-1]["content"] == "hello"


def test_sharegpt_speakers_map_to_chat_roles(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
        {"from": "user", "value": "Q2"}, {"from": "assistant", "value": "A2"}]}])
    [ex] = load_examples(path)
    assert ex.format == "sharegpt"
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant", "user", "assistant"]


def test_messages_record_with_text_parts_is_joined(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello."}]}])
    [ex] = load_examples(path)
    assert ex.format == "messages" and ex.messages[0]["content"] == "Hi there"


def test_json_array_records_keep_their_starting_line(tmp_path):
    records = [{"instruction": "q1", "output": "a1"}, {"instruction": "q2", "output": "a2"}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    examples = load_examples(path)
    assert [e.line for e in examples] == [2, 6]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(records[:1] + [{"instruction": "q2", "output": ""}], indent=2), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.json:6: empty answer in field 'output'"):
        load_examples(bad)


def test_forced_format_is_enforced_on_every_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                            {"role": "assistant", "content": "a"}]}])
    with pytest.raises(DatasetError, match=r"a\.jsonl:1: missing field 'instruction'"):
        load_examples(path, "alpaca")


@pytest.mark.parametrize("bad, message", [
    ('{"instruction": "q", "output": "a"', r"bad\.jsonl:3: not valid JSON"),
    ({"instruction": "q"}, r"bad\.jsonl:3: missing field 'output'"),
    ({"instruction": "q", "output": "   "}, r"bad\.jsonl:3: empty answer in field 'output'"),
    ({"instruction": "q", "output": 7}, r"bad\.jsonl:3: field 'output' must be text"),
    ([1, 2], r"bad\.jsonl:3: expected a JSON object"),
    ({"instruction": "q", "output": "a", "history": [["only one"]]}, r"bad\.jsonl:3: field 'history\[0\]'"),
])
def test_alpaca_errors_name_file_line_and_field(tmp_path, bad, message):
    good = {"instruction": "q", "output": "a"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good, bad if isinstance(bad, str) else json.dumps(bad)])
    with pytest.raises(DatasetError, match=message):
        load_examples(path)


@pytest.mark.parametrize("bad, message", [
    ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "a"}]},
     r"bad\.jsonl:2: field 'messages\[0\]\.role' has unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
     r"bad\.jsonl:2: empty answer in field 'messages\[1\]\.content'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]},
     r"bad\.jsonl:2: missing field 'messages\[1\]\.content'"),
    ({"messages": [{"role": "user", "content": "q"}]}, r"bad\.jsonl:2: field 'messages' has no assistant answer"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "q2"}]}, r"bad\.jsonl:2: .* ends with a user turn"),
    ({"messages": []}, r"bad\.jsonl:2: field 'messages' must be a non-empty list"),
])
def test_messages_errors_name_file_line_and_field(tmp_path, bad, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
    with pytest.raises(DatasetError, match=message):
        load_examples(path)


def test_sharegpt_unknown_speaker_names_turn_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["", json.dumps({"conversations": [
        {"from": "human", "value": "q"}, {"from": "function_call", "value": "f()"}, {"from": "gpt", "value": "a"}]})])
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: field 'conversations\[1\]\.from' has unknown speaker"):
        load_examples(path)


def test_unrecognised_record_asks_for_format(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DatasetError, match=r"x\.jsonl:1: cannot tell the format .* --format"):
        load_examples(path)


def test_missing_and_empty_files_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_examples(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="no records"):
        load_examples(tmp_path / "empty.jsonl")


def test_validation_split_is_seeded_and_holds_out_the_ratio(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)])
    examples = load_examples(path)
    train, val = split_examples(examples, 0.2, seed=1)
    again = split_examples(examples, 0.2, seed=1)
    assert (len(train), len(val)) == (16, 4)
    assert [e.line for e in val] == [e.line for e in again[1]]
    assert not {e.line for e in val} & {e.line for e in train}


def test_mix_ratio_is_the_share_of_the_final_training_set(tmp_path):
    task = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"instruction": f"q{i}", "output": "a"} for i in range(40)]))
    general = load_examples(write_jsonl(tmp_path / "g.jsonl", [{"instruction": f"g{i}", "output": "b"} for i in range(50)]))
    mixed, added = mix_examples(task, [(MixSpec(tmp_path / "g.jsonl", 0.2), general)], seed=0)
    assert added == {str(tmp_path / "g.jsonl"): 10}
    assert len(mixed) == 50 and sum(e.source.endswith("g.jsonl") for e in mixed) == 10


@pytest.mark.parametrize("spec", ["general.jsonl", "general.jsonl:1.5", "general.jsonl:x", ":0.2"])
def test_bad_mix_spec_explains_the_form(spec):
    with pytest.raises(DatasetError, match="FILE:RATIO"):
        parse_mix(spec)


def test_cli_reports_bad_line_in_one_line_before_loading_any_model(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "q", "output": "a"}, {"instruction": "q", "output": ""}])
    result = subprocess.run([sys.executable, "-m", "ragtune", "train", str(path), "--home", str(tmp_path / "home"),
                             "--base", str(tmp_path / "no-such-model")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {path}:2: empty answer in field 'output'; write the answer or remove the example")
