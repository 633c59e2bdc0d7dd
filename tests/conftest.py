"""Shared fixtures: a tiny random-weight Stable Diffusion folder, a closed-form Gaussian prior, the CLI run in
process (run_main) and a small scene."""

from __future__ import annotations

import os

import pytest
import torch

from gsdi.priors import TextCond

# A CPU generation picks its thread count from the cores busy at its start (gsdi.device.choose_cpu_threads);
# the suite fixes it, so that two runs compared bit for bit use the same count whatever else is running.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    # CUDA tests run on the GPU machine, browser tests where Chromium is installed (.ci/run installs it);
    # elsewhere they are skipped with the reason shown (-ra, on in pyproject's addopts).
    import importlib.util
    import shutil

    skips = {}
    if not torch.cuda.is_available():
        skips["cuda"] = "needs a CUDA GPU with gsplat's extension: run `pytest -m cuda` on a machine with an NVIDIA GPU"
    missing = [name for name in ("chromium", "chromedriver") if not (shutil.which(name) or shutil.which(f"{name}-browser"))]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip)")
    if missing:
        skips["browser"] = f"needs {', '.join(missing)}: apt install chromium chromium-driver"
    try:
        import open3d  # noqa: F401
    except ImportError as error:  # e.g. libusb-1.0 missing from the system
        skips["mesh"] = f"needs open3d importable ({error}): pip install -e \".[mesh]\" (and apt install libusb-1.0-0)"
    for item in items:
        for marker, reason in skips.items():
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def run_main(argv, capsys):
    """gsdi's CLI in this process: (exit code, stdout, stderr)."""
    from gsdi.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def small_scene(n: int = 64) -> dict:
    """A small random scene of n Gaussians (SH degree 0), in the parameter layout gsdi writes."""
    g = torch.Generator().manual_seed(0)
    quats = torch.randn(n, 4, generator=g)
    return {"means": 0.3 * torch.randn(n, 3, generator=g), "scales": torch.full((n, 3), -3.5),
            "quats": quats / quats.norm(dim=-1, keepdim=True), "opacities": torch.full((n,), 2.0),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.zeros(n, 0, 3)}


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A diffusers Stable Diffusion folder with random weights from diffusers' dummy configs (64^2 images)."""
    from random_sd import build_random_model

    return build_random_model(tmp_path_factory.mktemp("tiny_sd"), "tiny", seed=0)


class GaussianPrior:
    """Data x0 ~ N(mu, s^2 I) in pixel space, where the optimal eps is known in closed form.

    eps(x, t) = sqrt(1-abar) (x - sqrt(abar) mu) / (abar s^2 + 1 - abar). The conditional model
    uses `mu_cond`, the unconditional `mu_uncond`; CFG mixes them as the real priors do. s = 0 is a
    single data point, for which DDIM is exact (eps is constant along DDIM trajectories).
    """

    steps_offset = 1
    image_size = 8

    def __init__(self, mu_cond: torch.Tensor, mu_uncond: torch.Tensor, s: float = 0.0):
        from diffusers import DDIMScheduler

        self.device = torch.device("cpu")
        self.alphas_cumprod = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod.double()
        self.mu_cond, self.mu_uncond, self.s = mu_cond.double(), mu_uncond.double(), s
        self.calls = 0

    def encode(self, images, generator=None):
        return images * 2 - 1

    def decode(self, latents):
        return (latents + 1) / 2

    def text_embeddings(self, prompts):
        return torch.zeros(len(prompts), 1, 1, dtype=torch.float64)

    def eps(self, x, t, mu):
        abar = self.alphas_cumprod[max(t, 0)]  # SDI's clean start asks at a timestep before the schedule
        return (1 - abar).sqrt() * (x - abar.sqrt() * mu) / (abar * self.s**2 + 1 - abar)

    def predict_noise(self, x_t, t, text: TextCond, scale: float):
        self.calls += 1
        eps_u, eps_c = self.eps(x_t, t, self.mu_uncond), self.eps(x_t, t, self.mu_cond)
        return eps_u + scale * (eps_c - eps_u)


@pytest.fixture
def gaussian_prior():
    g = torch.Generator().manual_seed(0)
    shape = (1, 3, 8, 8)
    return GaussianPrior(torch.randn(shape, generator=g), torch.randn(shape, generator=g), s=0.0)
