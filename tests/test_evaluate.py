"""The quality yardstick: degradations, the critic's sharpness and KID fidelity on world renders, and compare().

The monotonicity checks are a small version of examples/validate_yardstick.py (docs/eval/yardstick/):
held-out instances the reference and the critic's training never used, degraded step by step.
"""

from __future__ import annotations

import pytest
import torch

from gsdi.eval import degrade
from gsdi.world import parse
from gsdi.eval.critic import load_critic, training_batch
from gsdi.eval.evaluate import (Yardstick, compare, ddim_reference, eval_cameras, kid, reference_objects, render_instances,
                                sharpness)
from gsdi.world.objects import PARTS, build_object, pattern_averaged, pattern_shifted, without_part

HELD_OUT = 50_000  # as examples/validate_yardstick.py


@pytest.fixture(scope="module")
def castle():
    """16 eval views of one held-out red castle, whole and without its towers, and a yardstick with 8 reference instances."""
    spec = parse("a red castle")
    cams = eval_cameras(64)
    whole, _ = render_instances(reference_objects(spec, 1, HELD_OUT), cams)
    parted, _ = render_instances([without_part("castle", "red", HELD_OUT)], cams)
    return spec, whole[0], parted[0], Yardstick(load_critic(), instances=8)


def degraded(views, kind, strength):
    return degrade.apply(kind, views.permute(0, 3, 1, 2), strength, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1)


@pytest.mark.parametrize("kind,strengths", [("blur", [0.5, 1.0, 2.0]), ("noise", [0.02, 0.05, 0.1]),
                                            ("speckle", [0.005, 0.01, 0.02]), ("haze", [0.1, 0.2, 0.4])])
def test_each_degradation_lowers_sharpness_and_raises_kid_step_by_step(castle, kind, strengths):
    spec, views, _, yard = castle
    chain = [yard.score(spec, views)] + [yard.score(spec, degraded(views, kind, s)) for s in strengths]
    kids, sharp = [c["fidelity_kid"] for c in chain], [c["sharpness"] for c in chain]
    assert all(a < b for a, b in zip(kids, kids[1:])), (kind, kids)
    assert all(a > b for a, b in zip(sharp, sharp[1:])), (kind, sharp)
    assert sharp[0] > 0.8, sharp  # a clean world render reads as sharp


def test_a_missing_part_scores_worse(castle):
    spec, views, parted, yard = castle
    whole, missing = yard.score(spec, views), yard.score(spec, parted)
    assert missing["fidelity_kid"] > whole["fidelity_kid"] + 0.1, (whole, missing)
    assert missing["sharpness"] < whole["sharpness"] - 0.2, (whole, missing)


def test_kid_is_reproducible_and_near_zero_for_the_same_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 16, generator=g, dtype=torch.float64), torch.randn(200, 16, generator=g, dtype=torch.float64)
    assert kid(a, b) == kid(a, b)
    assert abs(kid(a, b)) < 0.05 < kid(a + 1.0, b)


def test_degradations_keep_range_and_strength_zero_changes_nothing():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    for kind in degrade.KINDS:
        out = degrade.apply(kind, images, 0.0, g)
        assert out.shape == images.shape and torch.allclose(out, images, atol=1e-6), kind
        strong = degrade.apply(kind, images, torch.tensor([0.1, 0.5, 1.0]), g)
        assert strong.min() >= 0 and strong.max() <= 1 and (strong - images).abs().mean() > 1e-3, kind
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade.apply("smudge", images, 1.0, g)


def test_training_batch_targets_follow_the_degradation():
    spec = parse("a blue car")
    cams = eval_cameras(64)
    clean = render_instances(reference_objects(spec, 1, HELD_OUT), cams)[0][0].permute(0, 3, 1, 2)
    parted = render_instances([without_part("car", "blue", HELD_OUT)], cams)[0][0].permute(0, 3, 1, 2)
    images, quality = training_batch(clean.repeat(4, 1, 1, 1), parted.repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    assert images.shape == (64, 3, 64, 64) and quality.shape == (64,)
    untouched = (images - clean.repeat(4, 1, 1, 1)).flatten(1).abs().amax(1) == 0
    assert untouched.any() and (quality[untouched] == 1).all()  # a clean render's target is 1
    assert (quality[~untouched] < 1).all() and (quality > 0).all()


def test_pattern_critic_batches_grade_an_averaged_pattern_below_one_and_a_plain_render_at_one():
    spec = parse("a blue car with yellow stripes")
    cams = eval_cameras(128)
    prims = reference_objects(spec, 1, HELD_OUT)[0]
    clean, averaged = (render_instances([p], cams)[0][0].permute(0, 3, 1, 2) for p in (prims, pattern_averaged(prims)))
    painted = prims[:, 20] > 0
    assert painted.any() and (pattern_averaged(prims)[:, 20:] == 0).all()  # plain, in the blend of blue and yellow
    assert torch.allclose(pattern_averaged(prims)[painted, 17:20], 0.75 * prims[painted, 17:20] + 0.25 * prims[painted, 21:24])
    shifted = pattern_shifted(prims, torch.Generator().manual_seed(0))
    assert torch.equal(shifted[:, :27], prims[:, :27]) and not torch.equal(shifted[painted, 27:], prims[painted, 27:])
    parted = render_instances([without_part("car", "blue", HELD_OUT, None, "stripes", "yellow")], cams)[0][0].permute(0, 3, 1, 2)
    g = torch.Generator().manual_seed(0)
    for flat, graded in ((averaged, lambda q: (q < 1).all()), (clean, lambda q: (q == 1).all())):  # a plain render averages to itself
        images, quality = training_batch(clean.repeat(4, 1, 1, 1), parted.repeat(4, 1, 1, 1), g, flat.repeat(4, 1, 1, 1))
        took = (images - flat.repeat(4, 1, 1, 1)).flatten(1).abs().amax(1) == 0
        assert took.any() and graded(quality[took]), quality[took]


def test_the_shipped_pattern_critic_sees_a_pattern_averaged_away_and_blurred_step_by_step():
    """The 128-px critic that has seen patterns, on a held-out patterned car's 16 eval views (a small
    version of validate_yardstick.py --patterns, docs/eval/yardstick_patterns/): clean views read as
    sharp; the pattern averaged into its mean colour and blur at 0.5 / 1 / 2 px lower the sharpness."""
    critic = load_critic(patterns=True)
    assert critic.size == 128
    spec = parse("a blue car with yellow stripes")
    prims = reference_objects(spec, 1, HELD_OUT)[0]
    clean, averaged = (render_instances([p], eval_cameras(128))[0][0] for p in (prims, pattern_averaged(prims)))
    chain = [sharpness(critic, v) for v in (clean, *(degraded(clean, "blur", s) for s in (0.5, 1.0, 2.0)))]
    assert chain[0] > 0.8 and all(a > b for a, b in zip(chain, chain[1:])), chain
    assert sharpness(critic, averaged) < chain[0] - 0.3, (chain[0], sharpness(critic, averaged))


def test_every_category_names_its_yardstick_part():
    for category, part in PARTS.items():
        prims, _, parts = build_object(category, None, 7)
        assert part in parts and len(without_part(category, None, 7)) < len(prims), category
    with pytest.raises(AssertionError, match="has no part"):
        without_part("car", None, 7, "towers")


def test_compare_scores_a_scene_that_is_the_instance_perfectly():
    spec = parse("a yellow duck")
    cams = eval_cameras(32)
    rgb, alpha = render_instances(reference_objects(spec, 2), cams)
    out = compare(rgb[1], alpha[1], rgb, alpha)
    assert out["best_instance"] == 1 and out["silhouette_iou"] == 1.0 and out["front_back_correct"] == 1
    assert out["alpha_outside"] == 0 and out["area_ratio"] == 1.0 and out["best_instance_psnr"] > 90


def test_ddim_reference_returns_the_prior_clean_image_when_ddim_is_exact(gaussian_prior):
    """A single-point prior: DDIM's x0 prediction is the point at every step, so both the full
    sampler and the one stopped early (the grain-free reference) return it."""
    want = gaussian_prior.decode(gaussian_prior.mu_cond)[0].permute(1, 2, 0)
    for ratio in (0.3, None):
        out = ddim_reference(gaussian_prior, "a castle", ["front", "back"], seed=0, steps=10, scale=1.0, denoise_ratio=ratio)
        assert out.shape == (2, 8, 8, 3)
        assert torch.allclose(out, want.clamp(0, 1).expand_as(out).to(out.dtype), atol=1e-6), ratio


def test_the_ddim_reference_asks_for_views_framed_as_the_prior_saw_them():
    """The latent prior was trained 1.5x closer: its DDIM reference is scored against instances seen
    through its own narrower fields of view; the pixel prior's keep the orbits' range."""
    from gsdi.config import ORBIT_FOV, prior_fov_range

    yard = Yardstick(critic=None, size=32)
    for prior in ("world", "embedded"):
        lo, hi = fov_range = prior_fov_range(prior)
        fov = yard.ddim_cameras(seed=0, views=64, fov_range=fov_range).fov
        assert lo <= fov.min() and fov.max() <= hi and fov.max() - fov.min() > 0.5 * (hi - lo), prior
    assert prior_fov_range("embedded") == ORBIT_FOV and prior_fov_range("world")[1] < ORBIT_FOV[1]
