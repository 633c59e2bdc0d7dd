"""Perp-Neg: the view weights of the reference implementation and the perpendicular composition."""

from __future__ import annotations

import pytest
import torch

from gsdi.priors import TextCond, cfg_noise
from gsdi.priors.base import combine, perpendicular
from gsdi.prompts import view_mix


@pytest.mark.parametrize("azimuth", [0.0, 20.0, 60.0, 100.0, 150.0, 180.0, -30.0, -170.0])
def test_positive_is_a_convex_mix_of_neighbouring_views(azimuth):
    positive, negatives = view_mix(azimuth, 10.0)
    assert abs(sum(positive.values()) - 1.0) < 1e-9 and all(w >= 0 for w in positive.values())
    assert len(negatives) == 2 and all(w <= 1e-9 for _, w in negatives)  # negatives push away


def test_weights_at_the_pure_views():
    positive, negatives = view_mix(0.0, 10.0)  # the front: the side prompt is the negative
    assert positive["front"] == 1.0
    assert dict(negatives)["front"] == pytest.approx(0.0, abs=1e-3) and dict(negatives)["side"] < -1.0
    positive, negatives = view_mix(180.0, 10.0)  # the back: the front prompt is the strong negative
    assert positive["back"] == 1.0 and dict(negatives)["front"] < -1.5 < dict(negatives)["side"] < 0
    assert view_mix(30.0, 75.0) == ({"overhead": 1.0}, [])


def test_perpendicular_and_combine():
    g = torch.Generator().manual_seed(0)
    eps_u, eps_c = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    e_pos = eps_c - eps_u
    assert torch.allclose((perpendicular(torch.randn(2, 4, 8, 8, generator=g), e_pos) * e_pos).sum((1, 2, 3)),
                          torch.zeros(2), atol=1e-3)
    # a negative along the positive direction changes nothing; zero weights give standard CFG
    parallel = (eps_u + 3 * e_pos)[:, None]
    standard = eps_u + 7.5 * e_pos
    assert torch.allclose(combine(eps_u, eps_c, parallel, torch.full((2, 1), -2.0), 7.5), standard, atol=1e-4)
    other = torch.randn(2, 1, 4, 8, 8, generator=g)
    assert torch.allclose(combine(eps_u, eps_c, other, torch.zeros(2, 1), 7.5), standard)
    # a perpendicular negative enters with weight * scale
    perp = perpendicular(other[:, 0], e_pos)
    got = combine(eps_u, eps_c, (eps_u + perp)[:, None], torch.full((2, 1), -0.5), 7.5)
    assert torch.allclose(got, standard - 0.5 * 7.5 * perp, atol=1e-4)


def test_cfg_noise_batches_negatives_after_uncond_and_cond():
    """A fake UNet whose output channels are the embedding's first numbers shows which row feeds which term."""
    def runner(sample, timesteps, hidden):
        return hidden[:, 0, :4, None, None].expand_as(sample).clone()

    g = torch.Generator().manual_seed(1)
    B, L, D = 2, 3, 5
    cond, uncond, negatives = torch.randn(B, L, D, generator=g), torch.randn(B, L, D, generator=g), torch.randn(B, 2, L, D, generator=g)
    weights = torch.tensor([[-1.0, -0.3], [-0.2, -2.0]])
    x = torch.zeros(B, 4, 2, 2)
    out = cfg_noise(runner, x, 10, TextCond(cond, uncond, negatives, weights), 7.5, torch.float32)
    eps = lambda e: e[..., 0, :4, None, None].expand(*e.shape[:-2], 4, 2, 2)  # noqa: E731
    assert torch.allclose(out, combine(eps(uncond), eps(cond), eps(negatives), weights, 7.5), atol=1e-5)
    standard = cfg_noise(runner, x, 10, TextCond(cond, uncond), 7.5, torch.float32)
    assert torch.allclose(standard, eps(uncond) + 7.5 * (eps(cond) - eps(uncond)), atol=1e-5)
    assert not torch.allclose(out, standard)


def test_a_generation_with_perp_neg_runs_on_the_embedded_prior(tmp_path):
    import gsdi
    from gsdi.formats import read_ply

    common = dict(steps=3, progress=False, device="cpu", turntable_frames=0)
    plain = gsdi.generate("a red castle", out=tmp_path / "plain", **common)
    with_pn = gsdi.generate("a red castle", out=tmp_path / "pn", **common, **{"guidance.perp_neg": True})
    assert not plain.config.guidance.perp_neg and with_pn.config.guidance.perp_neg
    assert not torch.equal(read_ply(plain.ply)["means"], read_ply(with_pn.ply)["means"])
