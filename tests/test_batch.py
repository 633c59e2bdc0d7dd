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


def test_every_line_is_read_before_the_first_generation(tmp_path, capsys):
    """A word the embedded prior does not know, on any line, is a usage error (exit 2) before any work."""
    from conftest import run_main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car\na glorp\n")
    code, _, err = run_main(["batch", str(prompts), "--out", str(tmp_path / "out"), "--steps", "2", "--device", "cpu"], capsys)
    assert code == 2 and "line 3" in err and "does not know 'glorp'" in err, err
    assert not (tmp_path / "out").exists()


def test_one_failing_prompt_does_not_stop_the_others(tmp_path, monkeypatch):
    import gsdi.run
    from gsdi.batch import run_batch

    real_run = gsdi.run.run

    def run_failing_for_the_car(config, out, *args, **kwargs):
        if "car" in config.prompt:
            raise GsdiError("simulated failure")
        return real_run(config, out, *args, **kwargs)

    monkeypatch.setattr(gsdi.run, "run", run_failing_for_the_car)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car\n")
    index = run_batch(prompts, tmp_path / "out", {"preset": "preview", "steps": 2, "device": "cpu"}, progress=False,
                      echo=lambda line: None)
    assert [job["status"] for job in index["jobs"]] == ["done", "failed"]
    assert index["jobs"][1]["error"] == "simulated failure"
    assert (tmp_path / "out" / index["jobs"][0]["folder"] / "scene.ply").is_file()


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_then_resume(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car | seed=3\na yellow duck\n")
    out = tmp_path / "out"
    gsdi = shutil.which("gsdi")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", gsdi, "batch",
               str(prompts), "--out", str(out), "--preset", "preview", "--steps", "2", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    index = json.loads((out / "index.json").read_text())
    status = {job["prompt"]: job["status"] for job in index["jobs"]}
    assert status == {"a red castle": "done", "a blue car": "done", "a yellow duck": "done"}
    for job in index["jobs"]:
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


def test_a_batch_stopped_mid_prompt_and_run_again_has_every_prompt_once_and_complete(tmp_path, monkeypatch):
    """Ctrl-C in the second prompt (its scene.ply and checkpoint written, as a stopped run leaves them) stops
    the batch; the rerun skips the finished first prompt, redoes the second and does the third."""
    import gsdi.run
    from gsdi.batch import run_batch
    from gsdi.run import Interrupted

    real_run = gsdi.run.run

    def stopped_in_the_car(config, out, *args, **kwargs):
        if "car" in config.prompt:
            (out / "scene.ply").write_bytes(b"half a scene")
            raise Interrupted(2, 1, config.steps, out)
        return real_run(config, out, *args, **kwargs)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car\na yellow duck\n")
    defaults = {"preset": "preview", "steps": 2, "device": "cpu"}
    monkeypatch.setattr(gsdi.run, "run", stopped_in_the_car)
    with pytest.raises(Interrupted):
        run_batch(prompts, tmp_path / "out", defaults, progress=False, echo=lambda line: None)
    assert not (tmp_path / "out" / "0002-a-yellow-duck").exists()  # the batch stopped there
    monkeypatch.undo()
    lines = []
    index = run_batch(prompts, tmp_path / "out", defaults, progress=False, echo=lines.append)
    assert "already done, skipped" in lines[0] and all("done in" in line for line in lines[1:]), lines
    assert [job["prompt"] for job in index["jobs"]] == ["a red castle", "a blue car", "a yellow duck"]
    assert [job["status"] for job in index["jobs"]] == ["done"] * 3
    for job in index["jobs"]:
        folder = tmp_path / "out" / job["folder"]
        assert {"scene.ply", "preview.png", "metrics.json", "config.json"} <= {p.name for p in folder.iterdir()}
        assert folder / "preview.png" and job["folder"] in (tmp_path / "out" / "index.html").read_text()


def test_a_hundred_prompt_soak_with_failures_and_a_stop_loses_nothing_and_repeats_nothing(tmp_path, monkeypatch, capsys):
    """100 prompts through gsdi batch's bookkeeping (the generation itself replaced by one that writes a
    run's files at once): a list with a bad line is refused whole; then failures in one prompt of ten and
    a stop at the 57th; two reruns finish it. Every prompt ends once in index.json with a complete folder."""
    import types

    import gsdi.run
    from conftest import run_main, small_scene

    from gsdi.batch import run_batch
    from gsdi.formats import write_ply
    from gsdi.outputs import write_json
    from gsdi.run import Interrupted
    from gsdi.world import CATEGORIES, PALETTE, describe

    prompts = [describe(category, colour) for colour in PALETTE for category in CATEGORIES]
    assert len(prompts) == 100
    listing = tmp_path / "prompts.txt"
    listing.write_text("\n".join(prompts[:40] + ["a red dragon"] + prompts[40:]) + "\n")
    code, _, err = run_main(["batch", str(listing), "--out", str(tmp_path / "out"), "--steps", "1"], capsys)
    assert code == 2 and "line 41" in err and not (tmp_path / "out").exists()
    listing.write_text("\n".join(prompts) + "\n")

    runs, plan = [], {"fail": set(range(0, 100, 10)), "stop": 57}

    def fake_run(config, out, *args, **kwargs):
        index = prompts.index(config.prompt)
        runs.append(index)
        if index == plan["stop"]:
            (out / "scene.ply").write_bytes(b"half")
            raise Interrupted(2, 0, config.steps, out)
        if index in plan["fail"]:
            raise GsdiError("injected failure")
        write_ply(out / "scene.ply", small_scene(8))
        (out / "preview.png").write_bytes(b"png")
        write_json(out / "metrics.json", {"steps": config.steps})
        return types.SimpleNamespace(num_gaussians=8, ms_per_step=1.0)

    monkeypatch.setattr(gsdi.run, "run", fake_run)
    defaults = {"steps": 1, "device": "cpu"}
    with pytest.raises(Interrupted):
        run_batch(listing, tmp_path / "out", defaults, progress=False, echo=lambda line: None)
    assert runs == list(range(58))
    plan["stop"] = None
    index = run_batch(listing, tmp_path / "out", defaults, progress=False, echo=lambda line: None)
    assert sorted(runs[58:]) == sorted(set(range(57, 100)) | set(range(0, 57, 10)))  # done ones skipped, the rest once
    assert [job["status"] for job in index["jobs"]].count("failed") == 10
    plan["fail"] = set()
    index = run_batch(listing, tmp_path / "out", defaults, progress=False, echo=lambda line: None)
    assert [job["prompt"] for job in index["jobs"]] == prompts and {job["status"] for job in index["jobs"]} == {"done"}
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert folders == sorted(job["folder"] for job in index["jobs"]) and len(folders) == 100
    for job in index["jobs"]:
        assert {"scene.ply", "preview.png", "metrics.json"} <= {p.name for p in (tmp_path / "out" / job["folder"]).iterdir()}
    html = (tmp_path / "out" / "index.html").read_text()
    assert all(html.count(job["folder"] + "/") >= 1 for job in index["jobs"])


def test_a_prompt_stopped_mid_run_resumes_from_its_checkpoint_on_the_rerun(tmp_path, monkeypatch):
    """SIGINT at step 5 of the second prompt (the run saves a checkpoint); the rerun goes on from it and
    writes the scene an uninterrupted batch writes, byte for byte."""
    import os
    import signal

    from gsdi.batch import run_batch
    from gsdi.run import Interrupted
    from gsdi.step import Generation

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car\n")
    defaults = {"preset": "preview", "steps": 8, "device": "cpu"}
    quiet = {"progress": False, "echo": lambda line: None}
    full = run_batch(prompts, tmp_path / "full", defaults, **quiet)
    real_advance, stepped = Generation.advance, []

    def sigint_in_the_car(self):
        stepped.append((self.config.prompt, self.step))
        if self.config.prompt == "a blue car" and self.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real_advance(self)

    monkeypatch.setattr(Generation, "advance", sigint_in_the_car)
    with pytest.raises(Interrupted):
        run_batch(prompts, tmp_path / "part", defaults, **quiet)
    stepped.clear()
    index = run_batch(prompts, tmp_path / "part", defaults, **quiet)
    assert stepped == [("a blue car", step) for step in range(6, 8)]  # the castle skipped, the car from step 6
    for a, b in zip(full["jobs"], index["jobs"]):
        assert (tmp_path / "full" / a["folder"] / "scene.ply").read_bytes() == (tmp_path / "part" / b["folder"] / "scene.ply").read_bytes()


def _worker_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker of `rank` among `parent`'s children (Linux /proc)."""
    from pathlib import Path

    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds torchrun's workers in /proc (Linux)")
def test_a_lost_torchrun_rank_stops_the_batch_cleanly_and_the_rerun_completes_it(tmp_path):
    """kill -9 of rank 1 in the middle of its first prompt: torchrun stops rank 0 (SIGTERM: it saves its
    prompt's checkpoint); the rerun finishes every prompt once, rank 0's stopped prompt from its checkpoint."""
    import signal
    import time

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red castle\na blue car\na yellow duck\na green tree\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", shutil.which("gsdi"),
               "batch", str(prompts), "--out", str(out), "--preset", "preview", "--steps", "60", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not (out / "0001-a-blue-car" / "config.json").is_file():  # rank 1 has started its first prompt
        assert agent.poll() is None and time.time() < deadline, agent.communicate()
        time.sleep(0.1)
    pid = _worker_pid(agent.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    agent.communicate(timeout=240)
    assert agent.returncode != 0
    assert not (out / "0001-a-blue-car" / "metrics.json").exists()
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    index = json.loads((out / "index.json").read_text())
    assert [job["prompt"] for job in index["jobs"]] == ["a red castle", "a blue car", "a yellow duck", "a green tree"]
    assert {job["status"] for job in index["jobs"]} == {"done"}
    for job in index["jobs"]:
        assert {"scene.ply", "preview.png", "metrics.json"} <= {p.name for p in (out / job["folder"]).iterdir()}
