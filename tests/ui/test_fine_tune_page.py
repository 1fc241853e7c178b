"""The Fine-tune page (AppTest): dataset validation and preview, background training, adapters."""

from __future__ import annotations

import json
import time

import pytest

from ui.jobs import list_jobs, load_job

DATA = "\n".join(json.dumps({"instruction": f"What is {i} plus one?", "input": "", "output": f"It is {i + 1}."})
                 for i in range(12)).encode()
BAD = b'{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n'


def _errors(at) -> list[str]:
    return [e.value for e in at.exception]


def _upload(at, name: str, data: bytes):
    at.file_uploader(key="ft_upload").set_value((name, data, "application/json")).run()
    assert not _errors(at)
    return at


def _start(at, name: str, **settings):
    at.text_input(key="ft_name").input(name)
    for key, value in settings.items():
        at.number_input(key=f"ft_{key}").set_value(value)
    at.get("form_submit_button")[0].click().run()
    assert not _errors(at)
    jobs = list_jobs(at_workspace(at), kind="train")
    assert jobs and jobs[0].name == name
    return jobs[0]


def at_workspace(at):
    from ragtune.workspace import Workspace

    return Workspace.open()


def test_invalid_dataset_names_the_line_and_field(ui_workspace, open_page):
    at = _upload(open_page("fine_tune"), "bad.jsonl", BAD)
    assert any("bad.jsonl:2" in e.value and "'output'" in e.value for e in at.error)
    assert not at.success


def test_valid_dataset_is_counted_and_previewed_in_the_chat_template(ui_workspace, open_page):
    at = _upload(open_page("fine_tune"), "my data.jsonl", DATA)
    assert any("12 valid examples (alpaca)" in s.value for s in at.success)
    rendered = at.code[0].value
    assert "<|im_start|>user\nWhat is 0 plus one?<|im_end|>" in rendered and "It is 1." in rendered
    assert at.text_input(key="ft_name").value == "my_data"


def test_defaults_are_filled_from_the_training_settings(ui_workspace, open_page):
    at = open_page("fine_tune")
    assert at.number_input(key="ft_rank").value == 16
    assert at.number_input(key="ft_lr").value is None  # blank: the method's own default
    assert at.selectbox(key="ft_method").value == "lora"


def test_training_starts_in_the_background_and_can_be_stopped(ui_workspace, open_page):
    at = _upload(open_page("fine_tune"), "data.jsonl", DATA)
    job = _start(at, "tiny", max_steps=2, batch_size=2)
    assert job.status == "running"
    command = " ".join(job.command)
    assert "-m ragtune train" in command and "--name tiny" in command and "--max-steps 2" in command
    assert "--rank" not in command, "settings left at their defaults are not passed"
    at.run()
    at.button(key=f"stop-{job.id}").click().run()
    deadline = time.time() + 30
    while load_job(job.record_path).status == "running" and time.time() < deadline:
        time.sleep(0.2)
    assert load_job(job.record_path).status == "stopped"
    at.run()
    at.button(key=f"resume-{job.id}").click().run()
    resumed = list_jobs(at_workspace(at), kind="train")[0]
    try:
        assert resumed.id != job.id and resumed.command[-4:] == ["train", "--name", "tiny", "--resume"]
    finally:
        from ui.jobs import stop_job

        stop_job(resumed)


@pytest.mark.slow
def test_finished_training_shows_its_loss_curve_and_adapter_manifest(ui_workspace, open_page, tmp_path):
    at = _upload(open_page("fine_tune"), "data.jsonl", DATA)
    job = _start(at, "tiny", max_steps=3, batch_size=4)
    deadline = time.time() + 600
    while load_job(job.record_path).status == "running" and time.time() < deadline:
        time.sleep(1)
    job = load_job(job.record_path)
    assert job.status == "finished", job.log_tail()
    at.run()
    assert any(p.proto.text.startswith("step 3/3") for p in at.get("progress")), [p.proto for p in at.get("progress")]
    assert at.get("vega_lite_chart"), "the loss curve is drawn"
    adapters = at.dataframe[0].value
    assert list(adapters["name"]) == ["tiny"] and adapters["steps"][0] == 3
    at.text_input(key="ft_merge_out").input(str(tmp_path / "merged"))
    at.get("form_submit_button")[1].click().run()
    assert (tmp_path / "merged" / "config.json").exists()
