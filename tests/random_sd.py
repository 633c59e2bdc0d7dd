"""Random-weight Stable Diffusion folders for tests and benchmarks (no download): diffusers' own dummy
configs ("tiny") or SD 2.1 base's shapes, and a character-level CLIP tokenizer made on the spot.

Benchmarks import it with tests/ on sys.path (examples/bench_*.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gsdi.priors.stable_diffusion import SD21_BASE_SCHEDULER, _quiet

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
    assert shape in SHAPES, f"unknown model shape {shape!r}; choose one of: {', '.join(SHAPES)}"
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
