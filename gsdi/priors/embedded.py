"""The small prior shipped with gsdi: a 64x64 pixel-space text-conditioned diffusion model of the world.

Model space is the image itself, rearranged by a fixed invertible space-to-depth ("encode" =
pixel-unshuffle by 2: [B,3,64,64] in [0,1] -> [B,12,32,32] in [-1,1]; "decode" = pixel-shuffle),
which keeps the Prior interface while cutting the UNet's cost about 3x on CPU (embedded/MODEL_CARD.md).
The text encoder is a word-level embedding over the world's vocabulary (gsdi.world.language):
an unknown word is a GsdiError listing the vocabulary. The noise schedule is SD's (scaled linear,
T = 1000, steps_offset 1), so guidance code cannot tell this prior from Stable Diffusion.

A prior folder holds `gsdi_embedded.json` (architecture) and `model.safetensors` (fp16 weights).
The trained one ships in `embedded/` beside this file (see its MODEL_CARD.md); it is made by
examples/train_embedded_prior.py. `EmbeddedPrior.random` builds an untrained one for tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsdi.errors import GsdiError
from gsdi.priors.graphs import UNetRunner
from gsdi.priors.base import EmbeddingCache, cfg_noise, noise_schedule
from gsdi.prompts import TextCond

CONFIG_FILE = "gsdi_embedded.json"
WEIGHTS_FILE = "model.safetensors"
PACKAGED = Path(__file__).parent / "embedded"  # the shipped, trained prior

DEFAULT_ARCH = {
    "image_size": 64,
    "unshuffle": 2,
    "max_words": 12,
    "text_dim": 128,
    "unet": {
        "block_out_channels": [64, 128, 128], "layers_per_block": 1, "attention_head_dim": 8,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "norm_num_groups": 32,
    },
}


class WordEncoder(nn.Module):
    """Words of the world's language -> [B, max_words, dim]: learned word plus position embeddings.

    Index 0 is padding; the empty prompt (all padding) is the unconditional input for CFG.
    """

    def __init__(self, vocabulary: list[str], max_words: int, dim: int):
        super().__init__()
        self.vocabulary, self.max_words = list(vocabulary), max_words
        self.index = {w: i + 1 for i, w in enumerate(self.vocabulary)}
        self.words = nn.Embedding(len(self.vocabulary) + 1, dim)
        self.positions = nn.Parameter(torch.zeros(max_words, dim))

    def tokenize(self, prompt: str) -> list[int]:
        from gsdi.world.language import parse, words

        if not prompt.strip():
            return [0] * self.max_words
        parse(prompt)  # the grammar's clear error for anything the prior cannot read
        unknown = [w for w in words(prompt) if w not in self.index]
        if unknown:  # words of the world this prior was trained before (patterns)
            raise GsdiError(f"the pixel prior does not know {' '.join(dict.fromkeys(unknown))!r} (it knows plain objects); "
                            "the world prior (--prior world) knows patterns")
        ids = [self.index[w] for w in words(prompt)]
        if len(ids) > self.max_words:
            raise GsdiError(f"prompt {prompt!r} has {len(ids)} words; the embedded prior reads at most {self.max_words}")
        return ids + [0] * (self.max_words - len(ids))

    def forward(self, prompts: list[str]) -> Tensor:
        return self.embed(torch.tensor([self.tokenize(p) for p in prompts], device=self.positions.device))

    def embed(self, ids: Tensor) -> Tensor:
        """Token ids [B, max_words] (0 = padding) -> [B, max_words, dim]."""
        return self.words(ids) + self.positions


class EmbeddedPrior:
    """Implements gsdi.priors.Prior for the world model."""

    def __init__(self, arch: dict, unet, text_encoder: WordEncoder, device: torch.device):
        from gsdi.priors.stable_diffusion import SD21_BASE_SCHEDULER

        self.arch, self.unet, self.text_encoder = arch, unet.to(device).eval(), text_encoder.to(device).eval()
        for module in (self.unet, self.text_encoder):
            module.requires_grad_(False)
        self.device, self.dtype = device, torch.float32
        self.alphas_cumprod, self.steps_offset = noise_schedule(SD21_BASE_SCHEDULER, device)
        self.image_size = int(arch["image_size"])
        self.unshuffle = int(arch["unshuffle"])
        self.runner = UNetRunner(self.unet, graphs=False)  # load_prior(..., cuda_graphs=True) swaps in graphs
        self.text_embeddings = EmbeddingCache(self.text_encoder)

    @staticmethod
    def build(arch: dict | None = None, seed: int = 0) -> tuple[dict, nn.Module, WordEncoder]:
        """Untrained networks for an architecture (default: DEFAULT_ARCH)."""
        from gsdi.priors.unet import UNet
        from gsdi.world.language import VOCABULARY

        arch = json.loads(json.dumps(arch or DEFAULT_ARCH))
        arch.setdefault("vocabulary", list(VOCABULARY))
        channels = 3 * arch["unshuffle"] ** 2
        torch.manual_seed(seed)
        unet = UNet(in_channels=channels, out_channels=channels, cross_attention_dim=arch["text_dim"], **arch["unet"])
        return arch, unet, WordEncoder(arch["vocabulary"], arch["max_words"], arch["text_dim"])

    @classmethod
    def random(cls, device: torch.device | str = "cpu", seed: int = 0, arch: dict | None = None) -> "EmbeddedPrior":
        return cls(*cls.build(arch, seed), torch.device(device))

    def save(self, folder: str | Path) -> Path:
        """Write the architecture and fp16 weights (safetensors) to `folder`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.arch, indent=2))
        state = {f"unet.{k}": v for k, v in self.unet.state_dict().items()}
        state.update({f"text.{k}": v for k, v in self.text_encoder.state_dict().items()})
        save_file({k: v.detach().half().contiguous().cpu() for k, v in state.items()}, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device) -> "EmbeddedPrior":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise GsdiError(f"no embedded prior in {folder} (it needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                            "reinstall gsdi, or pass --prior with a Stable Diffusion hub id or folder")
        try:
            arch = json.loads((folder / CONFIG_FILE).read_text())
            _, unet, text = cls.build(arch)
            state = load_file(str(folder / WEIGHTS_FILE))
            unet.load_state_dict({k[5:]: v.float() for k, v in state.items() if k.startswith("unet.")})
            text.load_state_dict({k[5:]: v.float() for k, v in state.items() if k.startswith("text.")})
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
            raise GsdiError(f"the embedded prior in {folder} is damaged: {str(error).splitlines()[0][:200]}") from None
        return cls(arch, unet, text, device)

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        B = images.shape[0]
        assert images.shape == (B, 3, self.image_size, self.image_size), images.shape
        return F.pixel_unshuffle(images * 2 - 1, self.unshuffle)

    def decode(self, latents: Tensor) -> Tensor:
        return ((F.pixel_shuffle(latents, self.unshuffle) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: int, text: TextCond, scale: float) -> Tensor:
        return cfg_noise(self.runner, x_t, t, text, scale, self.dtype)
