"""The QA file is validated before any model loads: errors name file:line and field."""

import json

import pytest

from evaluation.errors import EvaluationError
from evaluation.qa import load_qa
from evaluation.style import load_style_checks


def write(tmp_path, *lines, name="qa.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


GOOD = {"id": "q1", "question": "When?", "answers": ["2019"], "sources": ["kb/a.md"]}


def test_a_valid_file_loads_with_defaults(tmp_path):
    items = load_qa(write(tmp_path, GOOD, "", {"id": 2, "question": "Who?", "answers": [], "answerable": False}))
    assert [i.id for i in items] == ["q1", "2"]
    assert items[0].answerable and not items[1].answerable and items[1].line == 3


@pytest.mark.parametrize("line, message", [
    ("{not json", "qa.jsonl:2: not valid JSON"),
    ({"id": "q2", "question": "Why?"}, "qa.jsonl:2: field 'answers' is missing"),
    ({"id": "q2", "question": "", "answers": ["x"]}, "qa.jsonl:2: field 'question'"),
    ({"id": "q2", "question": "Why?", "answers": []}, "qa.jsonl:2: field 'answers': an answerable question"),
    ({"id": "q2", "question": "Why?", "answers": ["x"], "answerable": "no"}, "qa.jsonl:2: field 'answerable'"),
    ({"id": "q2", "question": "Why?", "answers": ["x"], "sources": [3]}, "qa.jsonl:2: field 'sources'"),
    ({"question": "Why?", "answers": ["x"]}, "qa.jsonl:2: field 'id' is missing"),
    ({"id": "q1", "question": "Why?", "answers": ["x"]}, "qa.jsonl:2: field 'id': 'q1' repeats line 1"),
    ([1, 2], "qa.jsonl:2: expected a JSON object"),
])
def test_each_bad_line_names_its_line_and_field(tmp_path, line, message):
    with pytest.raises(EvaluationError) as err:
        load_qa(write(tmp_path, GOOD, line))
    assert message in str(err.value)


def test_an_unknown_style_check_names_the_line_and_the_known_ones(tmp_path):
    path = write(tmp_path, {**GOOD, "style": "pirate"})
    with pytest.raises(EvaluationError, match=r"qa.jsonl:1: field 'style': no style check named 'pirate' \(known: house\)"):
        load_qa(path, {"house"})


def test_empty_and_missing_files_are_errors(tmp_path):
    with pytest.raises(EvaluationError, match="empty"):
        load_qa(write(tmp_path, ""))
    with pytest.raises(EvaluationError, match="no such QA file"):
        load_qa(tmp_path / "nope.jsonl")


def test_bad_style_checks_name_the_check_and_rule(tmp_path):
    path = tmp_path / "style_checks.yaml"
    path.write_text("house:\n  regex: '('\n")
    with pytest.raises(EvaluationError, match="house: regex '\\(' does not compile"):
        load_style_checks(path)
    path.write_text("house:\n  shout: true\n")
    with pytest.raises(EvaluationError, match="unknown rule 'shout'"):
        load_style_checks(path)


def test_the_bundled_demo_eval_set_validates():
    from evaluation.demo import DEMO_DATA

    styles = load_style_checks(DEMO_DATA / "style_checks.yaml")
    items = load_qa(DEMO_DATA / "eval.jsonl", set(styles))
    assert any(not i.answerable for i in items) and any(i.freshness for i in items) and any(i.style for i in items)
