"""gsdi.kernels: finite-difference gradients, a brute-force reference, gsplat's conventions and meta."""

from __future__ import annotations

import pytest
import torch

from gsdi.cameras import orbit_cameras, sample_orbits
from gsdi.kernels import quat_scale_to_covar, rasterization, spherical_harmonics


def random_gaussians(N, generator, dtype=torch.float32, scale=0.05, sh_coeffs=None):
    means = torch.randn(N, 3, generator=generator, dtype=dtype) * 0.3
    quats = torch.randn(N, 4, generator=generator, dtype=dtype)
    scales = torch.rand(N, 3, generator=generator, dtype=dtype) * scale + 0.02
    opacities = torch.rand(N, generator=generator, dtype=dtype) * 0.8 + 0.1
    shape = (N, 3) if sh_coeffs is None else (N, sh_coeffs, 3)
    colors = torch.rand(shape, generator=generator, dtype=dtype) * (1 if sh_coeffs is None else 0.3)
    return means, quats, scales, opacities, colors


def cameras(C=2, size=24):
    return orbit_cameras(torch.tensor([10.0, 100.0])[:C], torch.tensor([20.0, -5.0])[:C],
                         torch.tensor([1.6, 1.8])[:C], torch.tensor([50.0, 60.0])[:C], size, size)


def brute_force(means, quats, scales, opacities, colors, viewmats, Ks, width, height, background):
    """Every pixel composites every visible Gaussian in depth order: no tiles, no chunks."""
    from gsdi.kernels import project_gaussians

    radii, means2d, depths, conics = project_gaussians(
        means, quat_scale_to_covar(quats, scales), opacities, viewmats, Ks, width, height)
    images = []
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype) + 0.5, torch.arange(width, dtype=means.dtype) + 0.5, indexing="ij")
    for c in range(viewmats.shape[0]):
        image = torch.zeros(height, width, 3, dtype=means.dtype)
        T = torch.ones(height, width, dtype=means.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        for n in torch.argsort(depths[c]).tolist():
            if not (radii[c, n] > 0).all():
                continue
            dx, dy = xs - means2d[c, n, 0], ys - means2d[c, n, 1]
            a, b, cc = conics[c, n]
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp_max(opacities[n] * torch.exp(-sigma), 0.999)
            use = (sigma >= 0) & (alpha >= 1 / 255) & ~done
            next_T = T * (1 - alpha)
            done = done | (use & (next_T <= 1e-4))
            use = use & (next_T > 1e-4)
            image = image + torch.where(use[..., None], (alpha * T)[..., None] * colors[n], 0)
            T = torch.where(use, next_T, T)
        images.append(image + (T[..., None]) * background)
    return torch.stack(images)


def test_matches_brute_force_reference():
    g = torch.Generator().manual_seed(1)
    # Some large, some tiny and some opaque Gaussians so tiles hold lists of very different lengths.
    means, quats, scales, opacities, colors = random_gaussians(300, g, scale=0.08)
    opacities[:40] = 0.995
    cams = cameras(2, 40)
    bg = torch.tensor([0.2, 0.3, 0.4])
    ours, alphas, _ = rasterization(means, quats, scales, opacities, colors, cams.viewmats, cams.Ks, 40, 40,
                                    backgrounds=bg.expand(2, 3), chunk_elements=5000)
    ref = brute_force(means, quats, scales, opacities, colors, cams.viewmats, cams.Ks, 40, 40, bg)
    assert torch.allclose(ours, ref, atol=2e-5), (ours - ref).abs().max()
    assert alphas.shape == (2, 40, 40, 1) and alphas.max() > 0.9


def test_chunk_size_does_not_change_the_image():
    g = torch.Generator().manual_seed(2)
    args = random_gaussians(500, g)
    cams = cameras(2, 48)
    a, _, _ = rasterization(*args, cams.viewmats, cams.Ks, 48, 48, chunk_elements=1 << 24)
    b, _, _ = rasterization(*args, cams.viewmats, cams.Ks, 48, 48, chunk_elements=300)
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("sh_degree", [None, 3])
def test_gradients_match_finite_differences(sh_degree):
    g = torch.Generator().manual_seed(3)
    coeffs = None if sh_degree is None else 16
    inputs = [x.requires_grad_() for x in random_gaussians(6, g, torch.float64, scale=0.15, sh_coeffs=coeffs)]
    cams = cameras(2, 20)
    viewmats, Ks = cams.viewmats.double(), cams.Ks.double()
    weights = torch.rand(2, 20, 20, 3, generator=g, dtype=torch.float64)

    def f(means, quats, scales, opacities, colors):
        image, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, 20, 20,
                                        sh_degree=sh_degree, backgrounds=torch.ones(2, 3, dtype=torch.float64))
        return (image * weights).sum() + alpha.sum()

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_means2d_gradient_is_kept_for_densification():
    g = torch.Generator().manual_seed(4)
    means, quats, scales, opacities, colors = [x.requires_grad_() for x in random_gaussians(50, g)]
    cams = cameras(2, 32)
    image, _, meta = rasterization(means, quats, scales, opacities, colors, cams.viewmats, cams.Ks, 32, 32)
    meta["means2d"].retain_grad()
    image.sum().backward()
    assert meta["means2d"].grad.shape == (2, 50, 2)
    visible = (meta["radii"] > 0).all(-1)
    assert meta["means2d"].grad[visible].abs().sum() > 0
    assert meta["radii"].dtype == torch.int32 and meta["radii"].shape == (2, 50, 2)
    assert (meta["width"], meta["height"], meta["n_cameras"], meta["gaussian_ids"]) == (32, 32, 2, None)


def test_projection_conventions():
    # A Gaussian at the origin projects to the image centre; one above (-Y) lands in the upper half.
    cams = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([60.0]), 64, 64)
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.3, 0.0], [0.0, 0.0, 10.0]])
    ones = torch.ones(3)
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(3, 1)
    _, _, meta = rasterization(means, quats, torch.full((3, 3), 0.01), ones * 0.9, torch.ones(3, 3), cams.viewmats, cams.Ks, 64, 64)
    centre, above = meta["means2d"][0, 0], meta["means2d"][0, 1]
    assert torch.allclose(centre, torch.tensor([32.0, 32.0]), atol=1e-4)
    assert above[1] < 32 and abs(above[0] - 32) < 1e-4
    assert (meta["radii"][0, 2] == 0).all()  # behind the camera


def test_spherical_harmonics_degree0_is_constant_and_bands_vary():
    g = torch.Generator().manual_seed(5)
    coeffs = torch.randn(10, 16, 3, generator=g)
    dirs = torch.randn(10, 3, generator=g)
    assert torch.allclose(spherical_harmonics(0, dirs, coeffs), 0.28209479177387814 * coeffs[:, 0])
    assert not torch.allclose(spherical_harmonics(3, dirs, coeffs), spherical_harmonics(3, -dirs, coeffs))


def test_default_strategy_runs_on_our_meta():
    """gsplat's DefaultStrategy (pure torch) densifies from our meta on CPU, unchanged."""
    from gsplat.strategy import DefaultStrategy

    g = torch.Generator().manual_seed(6)
    params = torch.nn.ParameterDict({
        "means": torch.randn(200, 3, generator=g) * 0.3, "scales": torch.full((200, 3), -4.0),
        "quats": torch.randn(200, 4, generator=g), "opacities": torch.zeros(200),
        "colors": torch.rand(200, 3, generator=g),
    })
    optimizers = {k: torch.optim.Adam([{"params": p, "lr": 1e-3, "name": k}]) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=2, grow_grad2d=1e-9)
    state = strategy.initialize_state(scene_scale=1.0)
    for step in range(3):
        cams = sample_orbits(2, 32, 32, g)
        image, _, meta = rasterization(params["means"], params["quats"], torch.exp(params["scales"]),
                                       torch.sigmoid(params["opacities"]), params["colors"], cams.viewmats, cams.Ks, 32, 32)
        strategy.step_pre_backward(params, optimizers, state, step, meta)
        image.mean().backward()
        strategy.step_post_backward(params, optimizers, state, step, meta, packed=False)
    assert params["means"].shape[0] > 200


@pytest.mark.cuda
@pytest.mark.parametrize("sh_degree", [None, 3])
def test_matches_gsplat_forward_and_backward(sh_degree):
    """The oracle check: gsplat's CUDA rasterizer and ours agree on images and on every gradient."""
    import gsplat

    g = torch.Generator().manual_seed(7)
    coeffs = None if sh_degree is None else 16
    inputs = [x.cuda() for x in random_gaussians(3000, g, scale=0.04, sh_coeffs=coeffs)]
    cams = sample_orbits(3, 128, 96, g)
    viewmats, Ks = cams.viewmats.cuda(), cams.Ks.cuda()
    bg = torch.rand(3, 3, generator=g).cuda()
    weights = torch.rand(3, 96, 128, 3, generator=g).cuda()
    results = []
    for fn in (gsplat.rasterization, rasterization):
        leaves = [x.clone().requires_grad_() for x in inputs]
        image, alpha, meta = fn(*leaves, viewmats, Ks, 128, 96, sh_degree=sh_degree, backgrounds=bg, packed=False)
        meta["means2d"].retain_grad()
        ((image * weights).sum() + alpha.sum()).backward()
        results.append((image, alpha, meta["radii"], meta["means2d"].grad, [x.grad for x in leaves]))
    (img_g, a_g, r_g, m2_g, grads_g), (img_o, a_o, r_o, m2_o, grads_o) = results

    def rel(ours, theirs):  # relative L2 error
        return ((ours - theirs).norm() / theirs.norm().clamp_min(1e-12)).item()

    report = {
        "image_max": (img_o - img_g).abs().max().item(), "image_mean": (img_o - img_g).abs().mean().item(),
        "alpha_max": (a_o - a_g).abs().max().item(), "radii_differ": (r_o != r_g).float().mean().item(),
        "means2d_grad": rel(m2_o, m2_g),
        **{f"grad_{name}": rel(o, t) for name, o, t in zip(["means", "quats", "scales", "opacities", "colors"], grads_o, grads_g)},
    }
    print("ours vs gsplat:", report)
    # A Gaussian right at the 1/255 alpha threshold (fast-math exp on the GPU) may be kept by one
    # rasterizer and skipped by the other: that moves one pixel by at most ~1/255.
    assert report["image_max"] < 2 / 255 and report["image_mean"] < 1e-5, report
    assert report["alpha_max"] < 2 / 255, report
    assert report["radii_differ"] < 1e-3, report  # ceil() at float rounding edges
    for key, value in report.items():
        if key.startswith(("grad_", "means2d")):
            assert value < 1e-2, (key, report)
