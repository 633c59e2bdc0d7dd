"""Stable Diffusion as a gsdi prior, loaded with diffusers (hub id or local folder, safetensors only).

Only the parts score distillation needs are loaded: UNet, VAE, CLIP text encoder and tokenizer, and
the scheduler's noise schedule (no safety checker, no pipeline), and a folder's vae_tiny/ (a diffusers
AutoencoderTiny, TAESD's layout, whose encoder stands in for the VAE's; GenerateConfig.prior_encoder).
Weights are fp16 on CUDA, fp32 on CPU.

Tests and benchmarks build folders in the same layout with random weights (tests/random_sd.py), so
loading, guidance and speed can be tested where no weights can be downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from gsdi.errors import GsdiError
from gsdi.priors.graphs import UNetRunner
from gsdi.priors.base import EmbeddingCache, cfg_noise, noise_schedule
from gsdi.prompts import TextCond

WORLD = Path(__file__).parent / "world"  # gsdi's latent world prior, in this format (world/MODEL_CARD.md)
LAYOUT = "a diffusers folder with unet/, vae/, text_encoder/, tokenizer/ and scheduler/"
TINY_VAE = "vae_tiny"  # the subfolder of a fast stand-in for the VAE's encoder (an AutoencoderTiny), where a folder has one

# Stable Diffusion 2.1 base's DDIM scheduler config (also the embedded prior's noise schedule).
SD21_BASE_SCHEDULER = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
}


class StableDiffusionPrior:
    """Latent-space prior: encode = VAE encoder (512^2 RGB -> 4x64^2 latents for SD 2.1 base), or
    `tiny_vae`'s encoder where given (an AutoencoderTiny whose latents are the VAE's scaled ones)."""

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, device: torch.device, tiny_vae=None):
        self.unet, self.vae, self.text_encoder, self.tokenizer, self.tiny_vae = unet, vae, text_encoder, tokenizer, tiny_vae
        for module in (unet, vae, text_encoder, tiny_vae):
            if module is not None:
                module.requires_grad_(False).eval()
        self.device = device
        self.dtype = unet.dtype
        self.alphas_cumprod, self.steps_offset = noise_schedule(scheduler_config, device)
        self.prediction_type = scheduler_config.get("prediction_type", "epsilon")
        self.scaling_factor = float(vae.config.scaling_factor)
        vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_size = int(unet.config.sample_size) * vae_scale
        self.runner = UNetRunner(self.unet, graphs=False)  # load_prior(..., cuda_graphs=True) swaps in graphs
        self.text_embeddings = EmbeddingCache(self._encode_text)
        self.language: Callable[[str], object] | None = None  # checks a prompt's words (the world prior's grammar)

    @classmethod
    def load(cls, name: str, device: torch.device, encoder: str = "auto") -> "StableDiffusionPrior":
        """Load from a hub id (e.g. stabilityai/stable-diffusion-2-1-base) or a local folder; `encoder`
        (GenerateConfig.prior_encoder) says whether renders are encoded by the folder's vae_tiny/."""
        folder = Path(name).expanduser()
        looks_local = folder.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1
        if looks_local and not folder.is_dir():
            raise GsdiError(f"prior folder {name!r} does not exist; give a hub id or {LAYOUT}")
        source = str(folder) if looks_local else hub_source(name)  # before the heavy imports: fails fast offline
        has_tiny = (Path(source) / TINY_VAE / "config.json").is_file()
        if encoder == "vae_tiny" and not has_tiny:
            raise GsdiError(f"prior_encoder=vae_tiny: {name!r} has no {TINY_VAE}/ folder (a diffusers AutoencoderTiny); "
                            "use prior_encoder=vae or auto")

        from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        _quiet()
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        try:
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, use_safetensors=True)
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype, use_safetensors=True)
            tiny = (AutoencoderTiny.from_pretrained(source, subfolder=TINY_VAE, torch_dtype=dtype, use_safetensors=True).to(device)
                    if has_tiny and encoder != "vae" else None)
            text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", use_safetensors=True)
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
            scheduler_config = _read_scheduler_config(source)
        except (OSError, ValueError, KeyError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            where = "this folder" if looks_local else "the hub (no network here?); download it elsewhere and pass --prior FOLDER"
            raise GsdiError(f"could not load Stable Diffusion weights from {name!r} ({reason[:200]}); "
                            f"check {where}: it must be {LAYOUT}, with .safetensors weights") from None
        return cls(unet.to(device), vae.to(device), text_encoder.to(device, dtype), tokenizer, scheduler_config, device, tiny)

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B = images.shape[0]
        assert images.shape == (B, 3, self.image_size, self.image_size), images.shape
        if self.tiny_vae is not None:  # the VAE's scaled posterior mean, approximately (no posterior noise)
            return self.tiny_vae.encode((images * 2 - 1).to(self.dtype)).latents.float() * self.tiny_vae.config.scaling_factor
        posterior = self.vae.encode((images * 2 - 1).to(self.dtype)).latent_dist
        return posterior.sample(generator=generator).float() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        images = self.vae.decode((latents / self.scaling_factor).to(self.dtype)).sample.float()
        return ((images + 1) / 2).clamp(0, 1)

    def _encode_text(self, prompts: list[str]) -> Tensor:
        limit = self.tokenizer.model_max_length
        for prompt in prompts:
            if self.language is not None and prompt.strip():
                self.language(prompt)  # refuse rather than silently cut (CLIP reads 77 tokens incl. start/end)
            ids = self.tokenizer(prompt, truncation=False).input_ids
            if len(ids) > limit:
                kept = self.tokenizer.decode(ids[1:limit - 1], skip_special_tokens=True)
                raise GsdiError(f"the prompt {prompt!r} is {len(ids)} tokens; the text encoder reads {limit} "
                                f"(it would keep only {kept!r}); shorten it")
        tokens = self.tokenizer(prompts, padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: int, text: TextCond, scale: float) -> Tensor:
        return cfg_noise(self.runner, x_t, t, text, scale, self.dtype,
                         self._v_to_eps if self.prediction_type == "v_prediction" else None)

    def _v_to_eps(self, v: Tensor, x: Tensor, t: int) -> Tensor:
        """eps = sqrt(abar) v + sqrt(1 - abar) x for v-prediction models."""
        abar = self.alphas_cumprod[t]
        return abar.sqrt() * v + (1 - abar).sqrt() * x


def _quiet() -> None:
    """diffusers/transformers progress bars and advice would bury gsdi's own progress display."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _read_scheduler_config(source: str) -> dict:
    from diffusers import DDIMScheduler

    return dict(DDIMScheduler.load_config(source, subfolder="scheduler"))


HUB_TIMEOUT_S = 4.0  # how long to wait for the hub before telling the user to download elsewhere


def hub_source(name: str) -> str:
    """Where to load hub id `name` from: its cached snapshot if the cache has one, else the hub itself
    when it answers within HUB_TIMEOUT_S; otherwise a GsdiError that says what to do (no retries)."""
    import os

    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the cache (LocalEntryNotFoundError and kin)
        pass
    advice = (f"download it where there is network with huggingface_hub's `hf` command (hf download {name} "
              "--local-dir FOLDER) and pass --prior FOLDER")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise GsdiError(f"{name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {advice}")
    if not hub_reachable():
        raise GsdiError(f"{name} is not in the local Hugging Face cache and the hub cannot be reached; {advice}")
    return name


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (HF_ENDPOINT) opens within `timeout` seconds, name lookup included."""
    import os
    import socket
    import threading
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    result = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)  # a DNS lookup ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(result)
