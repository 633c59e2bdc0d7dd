"""Does DDIM inversion give back the noise a DDIM sample came from? (the testbed check for SDI)

    python examples/research/roundtrip.py --steps 10 50 200

SDI assumes that inverting a render recovers the noise DDIM would have used. For a prior where that
holds, a round trip noise -> DDIM-K sample -> DDIM-K inversion comes back near the starting noise at
CFG 1 (Stable Diffusion's latents do). Prints, per K, the mean squared distance between the two
noises (2 for independent draws, 0 for an exact round trip), their cosine, and the error of the
sample regenerated from the inverted noise, for six front-view prompts of the embedded prior.

With --kappa it prints instead the RMS of SDI's noise from the paper's clean start (K = 10; CFG 1
and eta 0, then the paper's CFG -7.5 and eta 0.3) at t = 300, 600, 900 for "a red castle, front view": of the prior's own DDIM sample, of a world
render, of that render blurred, and of a grey disc on white (the 2D dual's start). 1 is a typical
noise's size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from gsdi.guidance.ddim import ddim_invert, ddim_sample, sampling_grid
from gsdi.priors import TextCond, load_prior

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/training_args.py
from training_args import candidate_world_arguments, use_candidate_world  # noqa: E402

PROMPTS = ["a red castle", "a blue car", "a yellow duck", "a purple lamp", "a green tree", "a brown table"]


def start_noise(prior, batch: int, seed: int) -> torch.Tensor:
    """[batch, C, h, w] Gaussian noise in the prior's model space, drawn on the CPU (same on every device)."""
    S = prior.image_size
    shape = prior.encode(torch.zeros(1, 3, S, S, device=prior.device)).shape[1:]
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed)).to(prior.device)


def sampling_steps(prior, K: int) -> list[int]:
    """DDIM-K's timesteps, decreasing, ending at the clean image."""
    return sampling_grid(prior.alphas_cumprod.shape[0], K, prior.steps_offset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200], help="K: DDIM steps each way")
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kappa", action="store_true", help="SDI's clean-start noise size instead of the round trip")
    candidate_world_arguments(parser)  # --zoom: the world render framed as the prior's training views (1.5 for "world")
    args = parser.parse_args()
    use_candidate_world(args)
    prior = load_prior(args.prior, torch.device(args.device))
    if args.kappa:
        return clean_start_kappa(prior)
    B = len(PROMPTS)
    text = TextCond(prior.text_embeddings([f"{p}, front view" for p in PROMPTS]), prior.text_embeddings([""] * B))
    z = start_noise(prior, B, seed=0)

    def eps(x, t):
        return prior.predict_noise(x, t, text, args.cfg)

    for K in args.steps:
        grid = sampling_steps(prior, K)
        x0 = ddim_sample(eps, z, prior.alphas_cumprod, grid)
        z_back = ddim_invert(eps, x0, prior.alphas_cumprod, grid[::-1])
        x0_again = ddim_sample(eps, z_back, prior.alphas_cumprod, grid)
        print(json.dumps({"steps": K, "cfg": args.cfg, "noise_distance": round(float((z_back - z).pow(2).mean()), 3),
                          "noise_cosine": round(float(torch.nn.functional.cosine_similarity(z.flatten(1), z_back.flatten(1)).mean()), 3),
                          "inverted_noise_std": round(float(z_back.std()), 3),
                          "sample_error": round(float((x0_again - x0).pow(2).mean()), 5)}), flush=True)


def clean_start_kappa(prior) -> None:
    from gsdi.config import GuidanceConfig
    from gsdi.rng import Rng
    from gsdi.guidance.sdi import sdi_noise
    from sdi_dual import disc_start, front_references

    text = TextCond(prior.text_embeddings(["a red castle, front view"]), prior.text_embeddings([""]))
    S = prior.image_size
    sample = ddim_sample(lambda x, t: prior.predict_noise(x, t, text, 7.5), start_noise(prior, 1, seed=1),
                         prior.alphas_cumprod, sampling_steps(prior, 50))
    render = front_references("a red castle", 1, S)[0][:1].permute(0, 3, 1, 2).to(prior.device)
    images = {"ddim_sample": prior.decode(sample), "world_render": render,
              "blurred_render": F.avg_pool2d(render, 5, 1, 2, count_include_pad=False), "grey_disc": disc_start(S).to(prior.device)}
    settings = {"cfg1": GuidanceConfig(method="sdi", inversion_start=0, inversion_steps=10),
                "paper": GuidanceConfig(method="sdi", inversion_start=0, inversion_steps=10, inversion_cfg_scale=-7.5,
                                        inversion_eta=0.3)}  # the paper's 3D config

    def kappa_rms(x0: torch.Tensor, t: int, seed: int, config: GuidanceConfig) -> float:
        kappa = sdi_noise(prior, x0, t, text, config, Rng.seeded(seed, prior.device))[2]
        return float(kappa.pow(2).mean().sqrt())

    for name, config in settings.items():
        for kind, image in images.items():
            x0 = prior.encode(image, generator=torch.Generator(prior.device).manual_seed(0))
            rms = {f"kappa_rms_t{t}": round(sum(kappa_rms(x0, t, seed, config) for seed in range(3)) / 3, 2) for t in (300, 600, 900)}
            print(json.dumps({"inversion": name, "image": kind, **rms}), flush=True)


if __name__ == "__main__":
    main()
