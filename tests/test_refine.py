"""The refinement after score distillation (gsdi/guidance/refine.py, Generation.refine_advance): its
targets on an exact prior, its noise levels, its place in a run and its resume; and the polish after it."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest
import torch

from gsdi.config import RefineConfig, make_config

RUN = {"steps": 4, "seed": 3, "device": "cpu", "cpu_threads": 1, "turntable_frames": 0, "log_every": 1,
       "refine.steps": 9, "refine.views": 3, "refine.refresh_every": 2, "refine.t_start": 500, "refine.t_end": 100}
POLISHED = {**RUN, "refine.polish_steps": 3}  # then 3 polish steps (steps 13-15)


def two_mode_prior():
    """An exact prior of 1x4x4 images whose prompt has two modes, a checker pattern A and its opposite -A
    (the same pattern at the other phase); their average is flat grey."""
    from gsdi.guidance.exact import ExactPrior, Factor

    A = torch.tensor([[(-1.0) ** (i + j) for j in range(4)] for i in range(4)], dtype=torch.float64).reshape(1, 16) * 0.8
    modes = torch.cat([A, -A])
    return ExactPrior([Factor(torch.eye(16, dtype=torch.float64), modes, modes)], (1, 4, 4), s=0.05), A.reshape(1, 1, 4, 4)


def test_a_target_is_one_mode_at_full_contrast_never_the_average():
    """From a render with A's pattern at 0.4 of its contrast, every target is a whole mode (A or -A at
    full contrast), never their flat average, which score distillation's averaged updates settle on.
    At a low t nearly all keep the render's phase; at a high t both phases come."""
    from gsdi.guidance.refine import sdedit_targets
    from gsdi.priors import TextCond

    prior, A = two_mode_prior()
    n = 64
    render = (0.4 * A).repeat(n, 1, 1, 1)
    text = TextCond(cond=prior.text_embeddings(["p"] * n), uncond=prior.text_embeddings([""] * n))
    g = torch.Generator().manual_seed(0)

    def phases(t):  # [n] bools near A, near -A (within a tenth of |A|)
        y = sdedit_targets(prior, render, text, t, 5, 7.5, g).flatten(1)
        near_a = (y - A.flatten()).norm(dim=1) < 0.1 * A.norm()
        near_b = (y + A.flatten()).norm(dim=1) < 0.1 * A.norm()
        assert bool((near_a | near_b).all()), f"at t={t} a target is not a whole mode"
        return near_a.double().mean(), near_b.double().mean()

    low_a, _ = phases(150)
    assert low_a >= 0.9, f"at a low t the render's phase is kept ({low_a:.2f} of targets)"
    high_a, high_b = phases(800)
    assert min(high_a, high_b) >= 0.25, f"at a high t either phase comes ({high_a:.2f} / {high_b:.2f})"


def test_the_noise_level_falls_from_t_start_to_t_end():
    config = RefineConfig(steps=720, t_start=400, t_end=100)
    from gsdi.guidance.refine import refine_t

    levels = [refine_t(k, config) for k in range(0, 721, 30)]
    assert levels[0] == 400 and levels[-1] == 100 and all(a > b for a, b in zip(levels, levels[1:]))


def test_only_the_refined_preset_refines_and_refinement_counts_in_the_total():
    """`refined` (what --prior world runs) refines and polishes; no other preset does (the pixel prior
    and Stable Diffusion were not measured with it); --set refine.steps adds steps after --steps."""
    for prior, preset in [("embedded", "auto"), ("world", "default"), ("world", "short"), ("world", "preview"), ("some/sd-model", "auto")]:
        assert make_config("a blue car", preset, prior=prior).refine.steps == 0
    assert make_config("a blue car", "auto", prior="world").refine.steps > 0
    tested = make_config("a blue car with yellow stripes", "default", prior="world", steps=500, **{"refine.steps": 720})
    assert (tested.steps, tested.refine.steps, tested.total_steps) == (500, 720, 1220)


@pytest.mark.parametrize("key, value, message", [
    ("refine.steps", -1, "refine.steps"), ("refine.views", 0, "refine.views"),
    ("refine.t_start", 50, "refine.t_end <= refine.t_start"), ("refine.lr_scale", 0.0, "refine.lr_scale"),
    ("refine.polish_steps", -1, "refine.polish_steps"), ("refine.polish_p_min", 0.6, "refine.polish_p_min <= refine.polish_p_max"),
])
def test_bad_refinement_values_are_one_line_errors(key, value, message):
    from gsdi.errors import GsdiError

    with pytest.raises(GsdiError, match=message):
        make_config("a castle", **{key: value})


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_a_run_refines_after_its_score_distillation_steps(device):
    """The steps after `steps` fit buffer views to targets: the buffer holds one target per view, in
    [0, 1], and only the view refreshed at a refresh step changes (on the GPU too: the buffer lives
    there, its view index on the host)."""
    from gsdi.step import Generation

    threads = torch.get_num_threads()
    try:
        gen = Generation(make_config("a red castle", "preview", **{**RUN, "device": device}))
        records = [gen.advance() for _ in range(RUN["steps"] + 1)]
        targets = gen.buffer.targets.clone()
        records += [gen.advance() for _ in range(2)]  # step 6 refreshed view 0 (k = 2)
    finally:
        torch.set_num_threads(threads)
    assert targets.shape == (3, 3, gen.prior.image_size, gen.prior.image_size)
    assert 0 <= float(targets.min()) and float(targets.max()) <= 1
    changed = [not torch.equal(a, b) for a, b in zip(targets, gen.buffer.targets)]
    assert changed == [True, False, False]
    assert [r["grad_x0"] is None for r in records] == [False] * 4 + [True] * 3
    assert [r["t"] for r in records[4:]] == [500, 456, 411]


# inside the refinement after a refresh; inside the polish after its first step
@pytest.mark.parametrize("settings, stop_at", [(RUN, 9), (POLISHED, 14)], ids=["refining", "polishing"])
def test_a_run_interrupted_while_refining_or_polishing_resumes_to_the_same_bytes(tmp_path, settings, stop_at):
    import gsdi
    from gsdi.run import Interrupted

    def on_log(gen):
        if gen.step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    threads = torch.get_num_threads()
    try:
        full = gsdi.generate("a red castle", out=tmp_path / "full", preset="preview", progress=False, **settings).ply
        with pytest.raises(Interrupted):
            gsdi.generate("a red castle", out=tmp_path / "part", preset="preview", progress=False, on_log=on_log, **settings)
        resumed = gsdi.generate(resume=tmp_path / "part", progress=False).ply
    finally:
        torch.set_num_threads(threads)
    assert hashlib.sha256(full.read_bytes()).digest() == hashlib.sha256(resumed.read_bytes()).digest()


def test_the_polish_is_low_t_distillation_after_the_refinement_without_densification():
    """After the refinement, polish_steps score-distillation steps (a gradient through the prior again) with
    t annealed from polish_p_max down to polish_p_min, fresh Adam state and the Gaussians neither grown
    nor removed; they count in the total."""
    from gsdi.guidance import run_timestep
    from gsdi.step import Generation

    config = make_config("a red castle", "preview", **POLISHED)
    assert (config.total_steps, config.refine.polish_p_max, config.refine.polish_p_min) == (16, 0.5, 0.02)
    assert make_config("a red castle", "preview", **RUN).refine.polish_steps == 0
    threads = torch.get_num_threads()
    try:
        gen = Generation(config)
        records = [gen.advance() for _ in range(config.steps + config.refine.steps)]
        before = gen.num_gaussians
        records += [gen.advance() for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    T = gen.prior.alphas_cumprod.shape[0]
    assert [r["grad_x0"] is None for r in records] == [False] * 4 + [True] * 9 + [False] * 3
    assert [r["t"] for r in records[13:]] == [run_timestep(s, config, T, gen.rng) for s in (13, 14, 15)] == [500, 339, 180]  # int(T p), p = 0.5 - 0.48 k / 3
    assert gen.num_gaussians == before
    assert all(int(state["step"]) == 3 for opt in gen.optimizers.values() for state in opt.state.values())

