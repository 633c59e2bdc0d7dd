"""The one interface guidance code sees: a frozen text-conditioned epsilon-prediction diffusion model.

Two implementations: `stable_diffusion.StableDiffusionPrior` (diffusers; hub id or local folder)
and `embedded.EmbeddedPrior` (the small world model). Guidance cannot tell them apart. The shared
pieces (the `Prior` protocol, CFG) live in `base.py`, what a prompt becomes for a view in gsdi/prompts.py;
`load_prior` picks one.
"""

from __future__ import annotations

import torch

from gsdi.errors import GsdiError
from gsdi.priors.base import EmbeddingCache, Prior, cfg_noise, combine, noise_schedule, perpendicular
from gsdi.prompts import TextCond, text_cond  # what a prior is given (gsdi/prompts.py)

__all__ = ["EmbeddingCache", "Prior", "TextCond", "cfg_noise", "combine", "load_prior", "noise_schedule",
           "perpendicular", "text_cond"]


def load_prior(name: str, device: torch.device, cuda_graphs: bool = False, encoder: str = "auto") -> Prior:
    """A prior by name: 'world' (the latent world prior, a Stable Diffusion folder shipped in the package,
    read through the world's language), 'embedded' (the pixel prior, or a folder holding one), or a
    Stable Diffusion hub id or folder.

    With `cuda_graphs` (and a CUDA device) its no-grad UNet calls replay captured CUDA graphs. `encoder`
    picks what encodes renders for a Stable Diffusion prior (GenerateConfig.prior_encoder).
    """
    from pathlib import Path

    from gsdi.priors.embedded import CONFIG_FILE, PACKAGED, EmbeddedPrior
    from gsdi.priors.graphs import UNetRunner

    if name == "world":
        from gsdi.priors.stable_diffusion import WORLD, StableDiffusionPrior
        from gsdi.world.language import parse

        prior = StableDiffusionPrior.load(str(WORLD), device, encoder)
        prior.language = parse  # a word it was not trained on is an error that lists its words
    elif name == "embedded" or (Path(name).expanduser() / CONFIG_FILE).is_file():
        if encoder == "vae_tiny":
            raise GsdiError("prior_encoder=vae_tiny needs a latent prior (a Stable Diffusion folder with vae_tiny/); "
                            "the embedded prior works on pixels")
        prior = EmbeddedPrior.load(PACKAGED if name == "embedded" else Path(name).expanduser(), device)
    else:
        from gsdi.priors.stable_diffusion import StableDiffusionPrior

        prior = StableDiffusionPrior.load(name, device, encoder)
    prior.runner = UNetRunner(prior.unet, graphs=cuda_graphs)
    return prior
