"""gsdi batch: prompt lists, per-prompt folders and index, resume, and 2 processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from gsdi.batch import job_config, read_prompt_list
from gsdi.errors import GsdiError


def test_prompt_list_parsing(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a red castle\n\n# a comment\na blue car | seed=3 preset=preview  # why not\n")
    jobs = read_prompt_list(path)
    assert [j.prompt for j in jobs] == ["a red castle", "a blue car"]
    assert jobs[1].options == {"seed": "3", "preset": "preview"} and jobs[1].line == 4
    config = job_config(jobs[1], {"preset": "default", "guidance.method": "sds"})
    assert config.seed == 3 and config.preset == "preview" and config.guidance.method == "sds"
    assert jobs[0].folder_name == "0000-a-red-castle"


@pytest.mark.parametrize("text,words", [
    ("", "has no prompts"),
    ("a castle | colour=red\n", "bad option 'colour=red'"),
    ("| seed=1\n", "prompt before '|' is empty"),
])
def test_prompt_list_errors(tmp_path, text, words):
    path = tmp_path / "p.txt"
    path.write_text(text)
    with pytest.raises(GsdiError, match=words):
        read_prompt_list(path)


def test_bad_option_value_names_the_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a castle\na car | steps=-4\n")
    with pytest.raises(GsdiError, match="line 2"):
        job_config(read_prompt_list(path)[1], {})


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_then_resume(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car | seed=3\na yellow duck\na glorp\n")
    out = tmp_path / "out"
    gsdi = shutil.which("gsdi")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", gsdi, "batch",
               str(prompts), "--out", str(out), "--preset", "preview", "--steps", "2", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 1, first.stdout + first.stderr  # one prompt fails, the others finish
    index = json.loads((out / "index.json").read_text())
    status = {job["prompt"]: job["status"] for job in index["jobs"]}
    assert status == {"a red castle": "done", "a blue car": "done", "a yellow duck": "done", "a glorp": "failed"}
    assert "does not know 'glorp'" in index["jobs"][3]["error"]
    for job in index["jobs"][:3]:
        folder = out / job["folder"]
        assert (folder / "scene.ply").is_file() and (folder / "preview.png").is_file()
        assert json.loads((folder / "config.json").read_text())["prompt"] == job["prompt"]
    assert json.loads((out / "0001-a-blue-car" / "config.json").read_text())["seed"] == 3
    assert "[rank 0/2]" in first.stdout and "[rank 1/2]" in first.stdout  # both ranks took a share
    html = (out / "index.html").read_text()
    assert "a yellow duck" in html and "0000-a-red-castle/" in html

    mtime = (out / "0000-a-red-castle" / "scene.ply").stat().st_mtime_ns
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.stdout.count("already done, skipped") == 3, second.stdout
    assert (out / "0000-a-red-castle" / "scene.ply").stat().st_mtime_ns == mtime
