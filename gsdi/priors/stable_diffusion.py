"""Stable Diffusion as a gsdi prior, loaded with diffusers (hub id or local folder, safetensors only).

Only the parts score distillation needs are loaded: UNet, VAE, CLIP text encoder and tokenizer, and
the scheduler's noise schedule (no safety checker, no pipeline). Weights are fp16 on CUDA, fp32 on CPU.

`build_random_model` writes a folder in the same layout with random weights (tiny, or shaped like
SD 2.1 base) from configs, so loading, guidance and speed can be tested where no weights can be
downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from gsdi.errors import GsdiError
from gsdi.priors.graphs import UNetRunner
from gsdi.priors.base import EmbeddingCache, cfg_noise, noise_schedule
from gsdi.prompts import TextCond

LAYOUT = "a diffusers folder with unet/, vae/, text_encoder/, tokenizer/ and scheduler/"


class StableDiffusionPrior:
    """Latent-space prior: encode = VAE encoder (512^2 RGB -> 4x64^2 latents for SD 2.1 base)."""

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, device: torch.device):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        for module in (unet, vae, text_encoder):
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

    @classmethod
    def load(cls, name: str, device: torch.device) -> "StableDiffusionPrior":
        """Load from a hub id (e.g. stabilityai/stable-diffusion-2-1-base) or a local folder."""
        folder = Path(name).expanduser()
        looks_local = folder.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1
        if looks_local and not folder.is_dir():
            raise GsdiError(f"prior folder {name!r} does not exist; give a hub id or {LAYOUT}")
        source = str(folder) if looks_local else hub_source(name)  # before the heavy imports: fails fast offline

        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        _quiet()
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        try:
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, use_safetensors=True)
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype, use_safetensors=True)
            text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", use_safetensors=True)
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
            scheduler_config = _read_scheduler_config(source)
        except (OSError, ValueError, KeyError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            where = "this folder" if looks_local else "the hub (no network here?); download it elsewhere and pass --prior FOLDER"
            raise GsdiError(f"could not load Stable Diffusion weights from {name!r} ({reason[:200]}); "
                            f"check {where}: it must be {LAYOUT}, with .safetensors weights") from None
        return cls(unet.to(device), vae.to(device), text_encoder.to(device, dtype), tokenizer, scheduler_config, device)

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B = images.shape[0]
        assert images.shape == (B, 3, self.image_size, self.image_size), images.shape
        posterior = self.vae.encode((images * 2 - 1).to(self.dtype)).latent_dist
        return posterior.sample(generator=generator).float() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        images = self.vae.decode((latents / self.scaling_factor).to(self.dtype)).sample.float()
        return ((images + 1) / 2).clamp(0, 1)

    def _encode_text(self, prompts: list[str]) -> Tensor:
        limit = self.tokenizer.model_max_length
        for prompt in prompts:  # refuse rather than silently cut (CLIP reads 77 tokens incl. start/end)
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


# --- random-weight models for tests and benchmarks -------------------------------------------------

SD21_BASE_SCHEDULER = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
}

SHAPES = {
    # diffusers' own dummy configs from its Stable Diffusion pipeline tests.
    "tiny": {
        "unet": dict(block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=2),
        "vae": dict(block_out_channels=[4, 8], in_channels=3, out_channels=3,
                    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                    up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, norm_num_groups=2),
        "text": dict(hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
                     num_hidden_layers=5, max_position_embeddings=77),
    },
    # The shapes of stabilityai/stable-diffusion-2-1-base (865M UNet, OpenCLIP ViT-H text encoder).
    "sd2.1-base": {
        "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                     block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                     down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                     cross_attention_dim=1024, use_linear_projection=True),
        "vae": dict(block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3, layers_per_block=2,
                    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                    latent_channels=4, sample_size=512, scaling_factor=0.18215),
        "text": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                     hidden_act="gelu", projection_dim=512, max_position_embeddings=77),
    },
}


def build_random_model(folder: str | Path, shape: str = "tiny", seed: int = 0, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> Path:
    """Write a Stable-Diffusion-layout folder with random weights (safetensors) from configs; no download.

    The tokenizer is a character-level CLIP BPE vocabulary (no merges) made on the spot.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    _quiet()
    if shape not in SHAPES:
        raise GsdiError(f"unknown model shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _char_tokenizer(folder / "tokenizer")
    spec = SHAPES[shape]
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**spec["unet"])
        vae = AutoencoderKL(**spec["vae"])
        text_config = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                     **spec["text"])
        text_encoder = CLIPTextModel(text_config)
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        module.to(dtype).save_pretrained(folder / name, safe_serialization=True)
    DDIMScheduler(**SD21_BASE_SCHEDULER).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "gsdi_random_shape": shape}))
    return folder


def _char_tokenizer(folder: Path):
    """A CLIP tokenizer over single characters (byte-level BPE with no merges), saved in `folder`."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # GPT-2/CLIP's byte-to-unicode table: printable bytes map to themselves, the rest above 255.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


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
