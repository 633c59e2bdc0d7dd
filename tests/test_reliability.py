"""What users do wrong or to a running generation: one-line errors, nothing lost, exact resume.

The table below runs the real CLI entry point for each case and asserts the exit code, the
message, and that every file that existed before is byte-for-byte untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import run_main

from gsdi.checkpoint import read_checkpoint
from gsdi.formats import read_ply


def snapshot(root: Path) -> dict[str, tuple[bytes, float]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime) for p in sorted(root.rglob("*")) if p.is_file()}


def setup_existing(tmp: Path) -> None:
    (tmp / "existing").mkdir()
    (tmp / "existing" / "notes.txt").write_text("my notes")
    (tmp / "a-file").write_text("not a folder")
    damaged = tmp / "damaged-prior"
    damaged.mkdir()
    (damaged / "gsdi_embedded.json").write_text("{}")
    (damaged / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    sd = tmp / "damaged-sd"
    (sd / "unet").mkdir(parents=True)
    (sd / "model_index.json").write_text("{}")
    (sd / "unet" / "config.json").write_text("{not json")
    (tmp / "no-checkpoint").mkdir()
    (tmp / "no-checkpoint" / "config.json").write_text("{}")
    (tmp / "bad-checkpoint").mkdir()
    (tmp / "bad-checkpoint" / "checkpoint.safetensors").write_bytes(b"\xff" * 64)


# (case, argv with {tmp}, expected exit code, words the one-line message must contain)
CASES = [
    ("empty prompt", ["generate", ""], 2, "prompt is empty"),
    ("whitespace prompt", ["generate", "   "], 2, "prompt is empty"),
    ("no prompt", ["generate"], 2, "say what to generate"),
    ("unknown word", ["generate", "a glorp"], 2, "does not know 'glorp'"),
    ("beyond the grammar", ["generate", "a red castle, front view, side view"], 2, "expects"),
    ("steps 0", ["generate", "a castle", "--steps", "0"], 2, "--steps must be at least 1"),
    ("negative seed", ["generate", "a castle", "--seed", "-1"], 2, "--seed must be non-negative"),
    ("unknown preset", ["generate", "a castle", "--preset", "fast"], 2, "unknown preset 'fast'"),
    ("bad --set", ["generate", "a castle", "--set", "render.nope=1"], 2, "unknown config key"),
    ("malformed --set", ["generate", "a castle", "--set", "steps"], 2, "--set takes key=value"),
    ("bad --set value", ["generate", "a castle", "--set", "steps=many"], 2, "bad value for steps"),
    ("checkpoint every -1", ["generate", "a castle", "--checkpoint-every", "-1"], 2, "--checkpoint-every"),
    ("out exists", ["generate", "a castle", "--out", "{tmp}/existing"], 2, "already exists"),
    ("out is a file", ["generate", "a castle", "--out", "{tmp}/a-file"], 2, "not a folder"),
    ("out unwritable", ["generate", "a castle", "--out", "{tmp}/a-file/sub"], 2, "cannot write to --out"),
    ("missing prior folder", ["generate", "a castle", "--prior", "{tmp}/nowhere/model"], 2, "does not exist"),
    ("damaged embedded prior", ["generate", "a castle", "--prior", "{tmp}/damaged-prior", "--out", "{tmp}/o1"], 2, "damaged"),
    ("damaged SD folder", ["generate", "a castle", "--prior", "{tmp}/damaged-sd", "--out", "{tmp}/o2"], 2, "could not load"),
    ("resume without checkpoint", ["generate", "--resume", "{tmp}/no-checkpoint"], 2, "nothing to resume"),
    ("resume damaged checkpoint", ["generate", "--resume", "{tmp}/bad-checkpoint"], 2, "damaged"),
    ("resume with a prompt", ["generate", "a castle", "--resume", "{tmp}/no-checkpoint"], 2, "drop a prompt"),
    ("batch list missing", ["batch", "{tmp}/nowhere.txt", "--out", "{tmp}/b"], 2, "cannot read prompt list"),
    ("info on a non-ply", ["info", "{tmp}/a-file"], 2, "a-file"),
]


@pytest.mark.parametrize("case,argv,code,words", CASES, ids=[c[0] for c in CASES])
def test_user_mistakes_give_one_line_and_touch_nothing(case, argv, code, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    setup_existing(tmp_path)
    before = snapshot(tmp_path)
    got, out, err = run_main([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert got == code, (case, got, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
    assert words in lines[0], (case, lines[0])
    assert "Traceback" not in err
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, case  # nothing changed
    new = set(after) - set(before)
    assert not any(Path(p).name in ("scene.ply", "checkpoint.safetensors") for p in new), (case, new)


def test_sd_prompt_over_the_token_limit_is_refused(tiny_sd, tmp_path, capsys):
    long_prompt = "a castle " + "with towers " * 12  # char-level tokenizer: well over 77 tokens
    code, _, err = run_main(["generate", long_prompt, "--prior", str(tiny_sd), "--out", str(tmp_path / "o"),
                             "--device", "cpu"], capsys)
    assert code == 2 and "tokens; the text encoder reads 77" in err and "shorten it" in err


def test_internal_error_exits_1_with_a_log(monkeypatch, tmp_path, capsys):
    import gsdi.run as module

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(module, "run", broken)
    code, _, err = run_main(["generate", "a castle", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert "internal error: RuntimeError: simulated bug" in err and "Traceback" not in err
    log = Path(err.strip().split("the traceback is in ")[1])
    assert log.is_file() and "Traceback" in log.read_text() and "simulated bug" in log.read_text()


class FlakyPrior:
    """Wraps a prior; its noise prediction is NaN on the calls listed in `bad` (all calls if None)."""

    def __init__(self, prior, bad: set[int] | None):
        self.prior, self.bad, self.calls = prior, bad, 0

    def __getattr__(self, name):
        return getattr(self.prior, name)

    def predict_noise(self, x_t, t, text, scale):
        self.calls += 1
        eps = self.prior.predict_noise(x_t, t, text, scale)
        return eps * float("nan") if self.bad is None or self.calls in self.bad else eps


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    from gsdi.config import make_config
    from gsdi.step import Generation, NonFiniteError
    from gsdi.priors import load_prior

    config = make_config("a red castle", "preview", steps=8, device="cpu", **{"guidance.method": "sds"})
    prior = load_prior("embedded", torch.device("cpu"))
    gen = Generation(config, prior=FlakyPrior(prior, bad={2, 5}))  # SDS: one UNet call per step
    while gen.step < config.steps:
        gen.advance()
    assert gen.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in gen.params.values())

    gen = Generation(config, prior=FlakyPrior(prior, bad=None))
    with pytest.raises(NonFiniteError, match="not finite 10 steps in a row"):
        for _ in range(20):
            gen.advance()
    assert all(torch.isfinite(p).all() for p in gen.params.values())


GENERATE = ["gsdi", "generate", "a red castle", "--preset", "preview", "--steps", "24", "--device", "cpu",
            "--set", "densify.refine_start_iter=3", "--set", "densify.refine_every=4", "--quiet"]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigint_saves_and_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    full = subprocess.run([*GENERATE, "--out", str(tmp_path / "full")], capture_output=True, text=True, env=env, timeout=600)
    assert full.returncode == 0, full.stderr

    part = tmp_path / "part"
    proc = subprocess.Popen([*GENERATE, "--out", str(part), "--checkpoint-every", "6"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    wait_for(part / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "interrupted: SIGINT at step" in err and f"gsdi generate --resume {part}" in err
    _, meta = read_checkpoint(part)
    assert 6 <= meta["step"] < 24  # stopped mid-run, at the end of a step
    interrupted_ply = read_ply(part / "scene.ply")  # the current scene was written too
    assert interrupted_ply["means"].shape[0] > 0

    resumed = subprocess.run(["gsdi", "generate", "--resume", str(part), "--quiet"], capture_output=True, text=True,
                             env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_ply(tmp_path / "full" / "scene.ply"), read_ply(part / "scene.ply")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # exactly the uninterrupted result
    assert read_checkpoint(part)[1]["step"] == 24


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_scene(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([*GENERATE, "--out", str(out), "--checkpoint-every", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(out / "checkpoint.safetensors", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and (out / "scene.ply").is_file()
    assert read_checkpoint(out)[1]["step"] >= 4
    # The interrupted folder is protected: a new run there needs --force or --resume.
    again = subprocess.run(GENERATE[:3] + ["--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_a_full_disk_keeps_the_previous_file_and_says_so_in_one_line(tmp_path):
    import errno

    from gsdi.errors import GsdiError
    from gsdi.outputs import write_atomically

    path = tmp_path / "scene.ply"
    path.write_bytes(b"the good scene")

    def fills_the_disk(tmp):
        tmp.write_bytes(b"half of a new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(GsdiError) as info:
        write_atomically(path, fills_the_disk)
    assert str(info.value) == f"could not write {path} (No space left on device); the previous scene.ply is kept"
    assert path.read_bytes() == b"the good scene" and [p.name for p in tmp_path.iterdir()] == ["scene.ply"]


def test_a_checkpoint_that_cannot_be_written_leaves_the_last_one_whole_and_exits_2(tmp_path, capsys, monkeypatch):
    """The disk fills at the second checkpoint (step 8): one line, exit 2, and step 4's checkpoint resumes."""
    import errno

    import safetensors.torch

    real_save = safetensors.torch.save_file
    saved = []

    def save_then_fill(tensors, filename, metadata=None):
        saved.append(filename)
        if len(saved) == 2:
            open(filename, "wb").write(b"\x00" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_fill)
    out = tmp_path / "run"
    code, _, err = run_main(["generate", "a red castle", "--steps", "8", "--checkpoint-every", "4", "--out", str(out),
                             "--device", "cpu", "--preset", "preview", "--no-turntable", "--quiet",
                             "--set", "cpu_threads=1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and "previous checkpoint.safetensors is kept" in err, err
    monkeypatch.undo()
    assert read_checkpoint(out)[1]["step"] == 4 and not (out / "checkpoint.safetensors.tmp").exists()


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_last_complete_one(tmp_path):
    """kill -9 between writing checkpoint.safetensors.tmp and renaming it leaves the tmp beside the last
    complete checkpoint; --resume reads the complete one and ends where an uninterrupted run ends."""
    import gsdi
    from gsdi.run import Interrupted

    run = {"steps": 8, "seed": 2, "device": "cpu", "cpu_threads": 1, "turntable_frames": 0, "progress": False,
           "log_every": 1, "preset": "preview"}
    threads = torch.get_num_threads()

    def stop_at_4(gen):
        if gen.step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    try:
        full = gsdi.generate("a red castle", out=tmp_path / "full", **run).ply
        with pytest.raises(Interrupted):
            gsdi.generate("a red castle", out=tmp_path / "part", on_log=stop_at_4, **run)
        (tmp_path / "part" / "checkpoint.safetensors.tmp").write_bytes(b"\x93half a checkpoint")  # the kill
        resumed = gsdi.generate(resume=tmp_path / "part", progress=False).ply
    finally:
        torch.set_num_threads(threads)
    assert full.read_bytes() == resumed.read_bytes()


def test_out_of_memory_names_the_settings_to_lower_and_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    from gsdi.step import Generation

    real_advance = Generation.advance

    def out_of_memory_at_step_6(self):
        if self.step == 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_advance(self)

    monkeypatch.setattr(Generation, "advance", out_of_memory_at_step_6)
    out = tmp_path / "run"
    code, _, err = run_main(["generate", "a red castle", "--steps", "8", "--checkpoint-every", "4", "--out", str(out),
                             "--device", "cpu", "--preset", "preview", "--no-turntable", "--quiet",
                             "--set", "cpu_threads=1"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "render.max_resolution" in err and "densify.max_gaussians" in err and "camera.views_per_step" in err
    assert f"the checkpoint of step 4 is kept: gsdi generate --resume {out}" in err
    assert read_checkpoint(out)[1]["step"] == 4
