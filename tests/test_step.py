"""One generation step (gsdi/step.py): a held level keeps its views, t and noise, and survives a resume."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest
import torch

RUN = {"steps": 12, "seed": 5, "device": "cpu", "cpu_threads": 1, "turntable_frames": 0, "progress": False,
       "log_every": 1, "guidance.hold_steps": 5, "guidance.method": "sdi", "densify.refine_start_iter": 4,
       "densify.refine_every": 4}


def test_a_level_keeps_its_t_and_views_for_hold_steps():
    from gsdi.config import make_config
    from gsdi.step import Generation

    threads = torch.get_num_threads()
    try:
        gen = Generation(make_config("a red castle", "preview", **{k: v for k, v in RUN.items() if k != "progress"}))
        records, orbits = [], []
        for _ in range(11):
            records.append(gen.advance())
            orbits.append(gen.held["orbit"][0].clone())
    finally:
        torch.set_num_threads(threads)
    ts = [r["t"] for r in records]
    assert ts[:5] == [ts[0]] * 5 and ts[5:10] == [ts[5]] * 5 and ts[0] > ts[5] > ts[10]  # annealed, level by level
    assert len({r["t_noisy"] for r in records[:5]}) == 1  # the level's inversion once: one t'
    assert all(torch.equal(orbits[0], o) for o in orbits[:5]) and not torch.equal(orbits[0], orbits[5])


def test_a_run_interrupted_inside_a_level_resumes_to_the_same_bytes(tmp_path):
    import gsdi
    from gsdi.run import Interrupted

    def on_log(gen):
        if gen.step == 7:  # inside the second level
            os.kill(os.getpid(), signal.SIGINT)

    threads = torch.get_num_threads()
    try:
        full = gsdi.generate("a red castle", out=tmp_path / "full", preset="preview", **RUN).ply
        with pytest.raises(Interrupted):
            gsdi.generate("a red castle", out=tmp_path / "part", preset="preview", on_log=on_log, **RUN)
        resumed = gsdi.generate(resume=tmp_path / "part", progress=False).ply
    finally:
        torch.set_num_threads(threads)
    assert hashlib.sha256(full.read_bytes()).digest() == hashlib.sha256(resumed.read_bytes()).digest()
