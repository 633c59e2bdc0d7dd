"""Train gsdi's world prior: a latent diffusion model of the world in Stable Diffusion's own format.

    python examples/train_world_prior.py all --out runs/world --vae-minutes 3 --minutes 5   # VAE, then text encoder + UNet
    python examples/train_world_prior.py unet --out runs/world --init-pipeline runs/world/pipeline  # go on training
    python examples/train_world_prior.py samples --out runs/world             # DDIM samples by diffusers itself
    python examples/train_world_prior.py vae --out runs/dec --init-vae gsdi/priors/world/vae --vae-decoder-only  # the decoder alone
    python examples/train_world_prior.py vae --out runs/enc --init-vae gsdi/priors/world/vae --vae-encoder-only  # the encoder alone
    python examples/train_world_prior.py vae --out runs/wide --vae-widths 64 128 128  # a new VAE of other widths
    python examples/train_world_prior.py vae --out runs/w8 --init-vae runs/wide/vae --latent-channels 8  # more latent room, widened
    python examples/train_world_prior.py unet --out runs/w8 --init-pipeline runs/world/pipeline  # its UNet widened to match
    python examples/train_world_prior.py tiny --out runs/tiny --vae gsdi/priors/world/vae  # a fast stand-in for its encoder
    python examples/train_world_prior.py readings --out runs/read --vae runs/wide/vae gsdi/priors/world/vae  # samples' renders through each

The result, runs/world/pipeline, is a diffusers StableDiffusionPipeline folder (model_index.json;
vae/ AutoencoderKL, text_encoder/ CLIPTextModel, tokenizer/ CLIPTokenizer, unet/
UNet2DConditionModel, scheduler/ SD 2.1's DDIMScheduler; fp16 safetensors) that
`StableDiffusionPipeline.from_pretrained(folder)` samples with no gsdi code, and that gsdi loads
exactly as a user's own Stable Diffusion folder (`--prior FOLDER`). The shipped one is
gsdi/priors/world (its MODEL_CARD.md has the figures and commands).

- Data: world renders (gsdi.world, on the GPU) of random objects, half of them patterned (stripes,
  dots or checks in a second colour, random period, orientation and phase), from random training
  orbits, 128 px; prompts in the world's language ("a blue car with yellow stripes, front view"),
  the colour word dropped 30% and the view words 20% of the time and the whole prompt 10% (CFG); the
  pattern phrase is never dropped, so a prompt without one means a plain object.
- Tokenizer: CLIP's byte-level BPE (vocab.json + merges.txt), its merges learned with Hugging Face
  tokenizers on the world's words so that each word is one token.
- VAE: L1 + L1 of image gradients (edges and patterns) + a small KL, the object's pixels weighted
  OBJECT_WEIGHT times the white ground's; with --vae-spectral, also the L1 of the amplitude spectra
  of 16-px patches (phase-free: a stripe whose place the latent leaves uncertain is not paid for by
  drawing it blurred, which L1 alone rewards); no perceptual or adversarial term (nothing pretrained
  is downloaded); --latent-channels sets the latent's room (4, as Stable Diffusion's, or 8; more
  than --init-vae's widens it: widen_vae); its scaling factor makes latents unit std.
  --vae-scale-equivariance also asks the latent, average-pooled 2x, to decode to the render pooled 2x
  (Skorokhodov et al., "Improving the diffusability of autoencoders", ICML 2025).
- UNet and text encoder: trained together from scratch, epsilon objective at uniform t with SD's
  schedule, offset noise 0.1 (flat white backgrounds: embedded/MODEL_CARD.md), EMA 0.999 ships.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gsdi.media import image_grid, write_png
from gsdi.priors.stable_diffusion import SD21_BASE_SCHEDULER
from gsdi.prompts import VIEW_WORDS
from gsdi.world import CATEGORIES, PALETTE, VOCABULARY, describe, render_pool
from gsdi.world.shapes import PATTERNS
from training_args import (  # examples/training_args.py
    add_haze, candidate_world_arguments, decoder_latents, denoising_target, ema_step, training_start, use_candidate_world)

CATS, COLOURS = list(CATEGORIES), list(PALETTE)
SIZE = 128  # render size; latents are SIZE / 4 a side
RENDER_BATCH = 768  # objects built a round of render_pool (the tracer goes MAX_RAYS rays a call: gsdi/world/render.py)
OBJECT_WEIGHT = 5.0
NEW_LOGVAR = -6.0  # widen_vae: a new latent channel's log-variance at the start (std 0.05)
SPECTRAL_PATCH = 16  # --vae-spectral's patch: three to five periods of the world's patterns at 128 px
WORLD_SAMPLE_SEED = 60_000  # samples: the world instances read beside them (no training pool uses these seeds)
HEADS = ("category", "colour", "pattern", "pattern_colour", "named")  # what the samples table counts right; named: all of them
MAX_TOKENS = 16  # the text encoder's length: the longest prompt is 11 tokens with start and end
VAE = {"block_out_channels": [32, 64, 64], "layers_per_block": 1, "latent_channels": 4,
       "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3}
UNET = {"block_out_channels": [64, 128, 128], "layers_per_block": 1, "attention_head_dim": 8,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}
FULL_SIZE_ATTENTION = {"down_block_types": ["CrossAttnDownBlock2D"] * 3, "up_block_types": ["CrossAttnUpBlock2D"] * 3}  # --attention-full-size
TEXT = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4}
START, END = "<|startoftext|>", "<|endoftext|>"


def build_tokenizer(folder: Path):
    """A CLIPTokenizer over the world's words, each one token: merges learned by tokenizers' BPE trainer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    words = [w for w in VOCABULARY if w.isalpha()]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz,"))
    trainer = trainers.BpeTrainer(vocab_size=10_000, min_frequency=1, special_tokens=[START, END], end_of_word_suffix="</w>",
                                  initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator([" ".join(words + [","])] * 10, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.model.save(str(folder))  # vocab.json, merges.txt
    vocab = json.loads((folder / "vocab.json").read_text())
    for letter in [*alphabet]:  # CLIP's BPE also reads a lone letter at a word's end
        vocab.setdefault(letter + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=END,
                              model_max_length=MAX_TOKENS)
    for w in words + [","]:
        ids = tokenizer(w).input_ids
        assert len(ids) == 3 and ids[1] != tokenizer.unk_token_id, (w, ids)
    return tokenizer


def build_vae(latent_channels: int = VAE["latent_channels"], widths: list[int] | None = None, layers: int | None = None):
    """A new AutoencoderKL: VAE's architecture, its latent channels, block widths and layers a block
    where given (three blocks, so the latent factor stays 4)."""
    from diffusers import AutoencoderKL

    widths = list(widths or VAE["block_out_channels"])
    assert len(widths) == len(VAE["block_out_channels"]) and all(w % 32 == 0 for w in widths), widths  # factor 4; GroupNorm(32)
    return AutoencoderKL(in_channels=3, out_channels=3, sample_size=SIZE, norm_num_groups=32,
                         **(VAE | {"latent_channels": latent_channels, "block_out_channels": widths,
                                   "layers_per_block": layers or VAE["layers_per_block"]}))


def widen_vae(init, channels: int):
    """A VAE like `init` with `channels` latent channels (more than init's C) that decodes and encodes
    as init does: the first C latent channels are init's (mean and log-variance), the new ones start
    as random features of the encoder's last layer with a small fixed variance (log-variance
    NEW_LOGVAR), and the decoder starts blind to them (their weights into it zero), so training
    begins at init's round trip and the new room is learned from there."""
    c = init.config.latent_channels
    assert channels > c, (channels, c)
    vae = build_vae(channels, init.config.block_out_channels, init.config.layers_per_block)
    old, new = init.state_dict(), vae.state_dict()
    widened = {"encoder.conv_out.weight", "encoder.conv_out.bias", "quant_conv.weight", "quant_conv.bias",
               "post_quant_conv.weight", "post_quant_conv.bias", "decoder.conv_in.weight"}
    assert all(old[k].shape == new[k].shape for k in new if k not in widened), "only the latent's own layers differ"
    state = {k: (new[k] if k in widened else old[k]).clone() for k in new}
    mean, logvar = list(range(c)), list(range(channels, channels + c))  # init's rows in the new [2 * channels] order
    w, b = state["encoder.conv_out.weight"], state["encoder.conv_out.bias"]  # [2 * channels, width, 3, 3]
    w[mean + logvar], b[mean + logvar] = old["encoder.conv_out.weight"], old["encoder.conv_out.bias"]
    w[channels + c:], b[channels + c:] = 0, NEW_LOGVAR
    q, qb = torch.eye(2 * channels)[..., None, None], torch.zeros(2 * channels)  # quant_conv: identity on the new rows
    q[torch.tensor(mean + logvar)[:, None], torch.tensor(mean + logvar)] = old["quant_conv.weight"]
    qb[mean + logvar] = old["quant_conv.bias"]
    state["quant_conv.weight"], state["quant_conv.bias"] = q, qb
    p, pb = torch.eye(channels)[..., None, None], torch.zeros(channels)
    p[:c, :c], pb[:c] = old["post_quant_conv.weight"], old["post_quant_conv.bias"]
    state["post_quant_conv.weight"], state["post_quant_conv.bias"] = p, pb
    d = torch.zeros_like(state["decoder.conv_in.weight"])  # [width, channels, 3, 3]
    d[:, :c] = old["decoder.conv_in.weight"]
    state["decoder.conv_in.weight"] = d
    vae.load_state_dict(state)
    return vae


def widen_unet(unet, channels: int):
    """A UNet like `unet` on `channels` latent channels (more than its C): init's function on the first
    C (the new inputs' weights zero) and an eps of 0 predicted for the new ones until trained."""
    from diffusers import UNet2DConditionModel

    c = unet.config.in_channels
    assert channels > c == unet.config.out_channels, (channels, c)
    wider = UNet2DConditionModel.from_config({**unet.config, "in_channels": channels, "out_channels": channels})
    state = unet.state_dict()
    w_in = torch.zeros_like(wider.conv_in.weight)  # [width, channels, 3, 3]
    w_in[:, :c] = state["conv_in.weight"]
    w_out, b_out = torch.zeros_like(wider.conv_out.weight), torch.zeros_like(wider.conv_out.bias)  # [channels, width, 3, 3]
    w_out[:c], b_out[:c] = state["conv_out.weight"], state["conv_out.bias"]
    state.update({"conv_in.weight": w_in, "conv_out.weight": w_out, "conv_out.bias": b_out})
    wider.load_state_dict(state)
    return wider


def edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def spectral_l1(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, patch: int = SPECTRAL_PATCH) -> torch.Tensor:
    """Weighted L1 between the amplitude spectra of `patch`-px patches: out, x [B, 3, H, W], weight
    [B, 1, H, W] (averaged over each patch). The amplitude ignores where in its patch a stripe lies."""
    def amplitude(img: torch.Tensor) -> torch.Tensor:  # [B, C, H/p, W/p, p, p//2+1]
        return torch.fft.rfft2(img.float().unfold(2, patch, patch).unfold(3, patch, patch), norm="ortho").abs()

    w = F.avg_pool2d(weight, patch)[..., None, None]
    return (w * (amplitude(out) - amplitude(x)).abs()).mean()


def object_mask(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] float: 1 where a render x [B, 3, H, W] in [-1, 1] is not the white ground."""
    return (x < 0.9).any(1, keepdim=True).float()


def decoded(vae, z: torch.Tensor) -> torch.Tensor:
    """Latents z [N, C, h, w] (unscaled) decoded -> images [N, 3, H, W] in [0, 1], float32."""
    return ((vae.decode(z).sample.float() + 1) / 2).clamp(0, 1)


def vae_round_trip(vae, x: torch.Tensor) -> torch.Tensor:
    """Images x [N, 3, H, W] in [0, 1] encoded to the posterior mean and decoded, in the VAE's dtype -> [N, 3, H, W] in [0, 1]."""
    return decoded(vae, vae.encode(x.to(vae.dtype) * 2 - 1).latent_dist.mean)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, images in [0, 1]."""
    return -10 * torch.log10(((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10))


def train_vae(args, device: str, pool: dict) -> dict:
    held = render_pool(min(512, args.pool), args.seed + 1, SIZE, device, batch=RENDER_BATCH, patterned=0.5)
    if args.init_vae:
        from diffusers import AutoencoderKL

        init = AutoencoderKL.from_pretrained(str(args.init_vae), torch_dtype=torch.float32)
        if args.latent_channels > init.config.latent_channels:  # more room, the init's function kept
            assert not (args.vae_decoder_only or args.vae_encoder_only), "a widened latent trains the whole VAE"
            vae = widen_vae(init, args.latent_channels)
        else:
            vae = build_vae(init.config.latent_channels, init.config.block_out_channels, init.config.layers_per_block)
            vae.load_state_dict(init.state_dict())
        vae.register_to_config(scaling_factor=init.config.scaling_factor)  # kept by --vae-decoder-only / --vae-encoder-only
    else:
        vae = build_vae(args.latent_channels, args.vae_widths, args.vae_layers)
    vae = vae.to(device).train()
    if args.vae_decoder_only:  # the encoder, so the latents a UNet was trained on, stays as it is
        assert args.init_vae, "--vae-decoder-only goes on from --init-vae"
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    if args.vae_encoder_only:  # the decoder stays: can an encoder find the latents it draws patterns from?
        assert args.init_vae and not args.vae_decoder_only, "--vae-encoder-only goes on from --init-vae"
        vae.decoder.requires_grad_(False)
        vae.post_quant_conv.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.vae_lr, weight_decay=0.0)
    g = torch.Generator(device=device).manual_seed(args.seed)
    step, losses, train_start = 0, [], time.perf_counter()
    while step < args.max_steps and time.perf_counter() - train_start < 60 * args.vae_minutes:
        idx = torch.randint(args.pool, (args.vae_batch,), device=device, generator=g)
        x = pool["images"][idx].float() / 127.5 - 1
        for group in optimizer.param_groups:
            group["lr"] = args.vae_lr * min(1.0, (step + 1) / 300)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample(generator=g)
            out = vae.decode(z).sample.float()
            if args.vae_scale_equivariance:  # the latent halved decodes to the render halved
                out_half = vae.decode(F.avg_pool2d(z, 2)).sample.float()
        # The object covers a few % of a view: its pixels (and their neighbours) weigh OBJECT_WEIGHT
        # times the background's, else colours are learned last (a first run's decoder turned every
        # colour brown after 5k steps at PSNR 31, the background doing the scoring).
        weight = 1 + (OBJECT_WEIGHT - 1) * F.max_pool2d(object_mask(x), 5, 1, 2)
        (dy, dx), (ey, ex), (wy, wx) = edges(out), edges(x), (weight[..., 1:, :], weight[..., :, 1:])
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
        loss = ((weight * (out - x).abs()).mean() + (wy * (dy - ey).abs()).mean() + (wx * (dx - ex).abs()).mean()) / OBJECT_WEIGHT
        loss = loss + args.kl * kl
        if args.vae_spectral:
            loss = loss + args.vae_spectral * spectral_l1(out, x, weight) / OBJECT_WEIGHT
        if args.vae_scale_equivariance:
            loss = loss + args.vae_scale_equivariance * (F.avg_pool2d(weight, 2) * (out_half - F.avg_pool2d(x, 2)).abs()).mean() / OBJECT_WEIGHT
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 200 == 0:
            losses.append(round(loss.item(), 5))
            print(json.dumps({"event": "vae", "step": step, "loss": losses[-1], "kl": round(kl.item(), 3),
                              "seconds": round(time.perf_counter() - train_start, 1)}), flush=True)
    train_s = time.perf_counter() - train_start
    vae.eval()
    with torch.no_grad():
        if not (args.vae_decoder_only or args.vae_encoder_only):  # a fine-tune keeps --init-vae's scale
            z = torch.cat([vae.encode(pool["images"][i:i + 256].float() / 127.5 - 1).latent_dist.sample(generator=g)
                           for i in range(0, min(2048, args.pool), 256)])
            vae.register_to_config(scaling_factor=round(1.0 / float(z.std()), 5))
        x = held["images"].float() / 255
        shipped = copy.deepcopy(vae)
        dtype = torch.float16 if device == "cuda" else torch.float32  # what ships (fp16 convolutions crawl on a CPU)
        shipped.to(dtype)
        rec = torch.cat([vae_round_trip(shipped, x[i:i + 128]) for i in range(0, x.shape[0], 128)])
        scores = psnr(rec, x)
        patterned = held["pattern"] > 0
        on_object = (x < 0.9).any(1, keepdim=True).float()
        colour_error = round(float(((rec - x).abs() * on_object).sum() / on_object.sum() / 3), 4)  # mean |error| on object pixels
    (args.out / "vae").mkdir(parents=True, exist_ok=True)
    vae.to(torch.float16).save_pretrained(args.out / "vae", safe_serialization=True)
    pairs = torch.stack([x[:16], rec[:16]], 1).flatten(0, 1)
    write_png(args.out / "vae_roundtrip.png", image_grid(pairs.permute(0, 2, 3, 1), 8))
    return {"vae_steps": step, "vae_train_s": round(train_s, 1), "vae_batch": args.vae_batch, "vae_init": str(args.init_vae),
            "object_weight": OBJECT_WEIGHT, "vae_roundtrip_colour_error_object": colour_error,
            "vae_lr": args.vae_lr, "vae_kl": args.kl, "vae_spectral": args.vae_spectral, "vae_scale_equivariance": args.vae_scale_equivariance, "latent_channels": vae.config.latent_channels, "vae_decoder_only": args.vae_decoder_only, "vae_encoder_only": args.vae_encoder_only, "vae_pool": args.pool, "vae_final_losses": losses[-5:],
            "scaling_factor": vae.config.scaling_factor, "vae_widths": list(vae.config.block_out_channels),
            "vae_layers": vae.config.layers_per_block, "vae_parameters": sum(p.numel() for p in vae.parameters()),
            **{f"vae_psnr_{'held_out' if k == 'all' else k}": v for k, v in psnr_split(scores, patterned).items()}}


TINY = {"encoder_block_out_channels": (64, 64, 64), "num_encoder_blocks": (0, 1, 3),
        "decoder_block_out_channels": (64, 64, 64), "num_decoder_blocks": (2, 1, 0)}  # factor 4, as vae/
PERTURBATIONS = ("haze", "blur", "tint", "noise")  # tiny: what the encoder's response to is matched


def perturb(x: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """Renders x [B, 3, S, S] in [0, 1] -> a changed copy of the kind score distillation makes of a
    render: "haze" a tinted cloud on the white ground (training_args.add_haze, any colour, half of them
    grey), "blur" the render seen 2 or 4 times coarser, "tint" the object's colour shifted, "noise"
    pixel noise of std 0.01-0.1."""
    B, _, S, _ = x.shape
    if kind == "haze":
        return add_haze(x, None, g, darken=0.5)[0]
    if kind == "blur":
        factor = 2 ** int(torch.randint(1, 3, (), generator=g, device=x.device))
        return F.interpolate(F.avg_pool2d(x, factor), size=S, mode="bilinear", align_corners=False)
    if kind == "tint":
        shift = 0.3 * (torch.rand(B, 3, 1, 1, generator=g, device=x.device) - 0.5)
        return (x + shift * object_mask(x * 2 - 1)).clamp(0, 1)
    assert kind == "noise", kind
    std = 0.01 + 0.09 * torch.rand(B, 1, 1, 1, generator=g, device=x.device)
    return (x + std * torch.randn(x.shape, generator=g, device=x.device)).clamp(0, 1)


def train_tiny(args, device: str, pool: dict) -> dict:
    """A diffusers AutoencoderTiny (TAESD's layout) distilled from the VAE of --vae: its encoder regresses
    the VAE's scaled posterior mean (so its latents are the UNet's, with scaling factor 1 as TAESD's),
    on the pool's renders and on one perturbed copy of each per kind (PERTURBATIONS), with the change a
    perturbation makes matched too (--tiny-response weighs it): score distillation's gradient reaches
    the splats through the encoder's response to such changes. The VAE's latents are computed once (a
    CPU can afford it). Its decoder learns to draw the renders from the VAE's latents (an eighth of a batch)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    teacher = AutoencoderKL.from_pretrained(str(args.vae[0]), torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    blocks = {"num_encoder_blocks": tuple(args.tiny_blocks)} if args.tiny_blocks else {}
    assert not (args.init_tiny and blocks), "--tiny-blocks shapes a new stand-in; --init-tiny keeps its own"
    if args.init_tiny:  # go on training a stand-in (on fresh renders where --seed differs)
        tiny = AutoencoderTiny.from_pretrained(str(args.init_tiny), torch_dtype=torch.float32)
    else:
        tiny = AutoencoderTiny(**{**TINY, **blocks}, latent_channels=teacher.config.latent_channels)
    tiny = tiny.to(device).train()
    optimizer = torch.optim.AdamW(tiny.parameters(), lr=args.vae_lr, weight_decay=0.0)
    g = torch.Generator(device=device).manual_seed(args.seed)
    clean = pool["images"]  # uint8 [N, 3, S, S]
    images = torch.stack([clean, *((perturb(clean.float() / 255, kind, g) * 255).round().byte() for kind in PERTURBATIONS)])  # [1 + K, N, ...]
    begin = time.perf_counter()
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        targets = torch.stack([torch.cat([scaled_mean(teacher, batch.float() / 255).float() for batch in version.split(64)])
                               for version in images])  # [1 + K, N, C, h, w]
    print(json.dumps({"event": "tiny_targets", "latents": targets.shape[0] * targets.shape[1],
                      "seconds": round(time.perf_counter() - begin, 1)}), flush=True)
    step, losses, train_start = 0, [], time.perf_counter()
    while step < args.max_steps and time.perf_counter() - train_start < 60 * args.vae_minutes:
        idx = torch.randint(args.pool, (args.vae_batch,), device=device, generator=g)
        kind = 1 + torch.randint(len(PERTURBATIONS), (args.vae_batch,), device=device, generator=g)
        x = torch.cat([images[0, idx], images[kind, idx]]).float() / 255
        target = torch.cat([targets[0, idx], targets[kind, idx]])
        for group in optimizer.param_groups:
            group["lr"] = args.vae_lr * min(1.0, (step + 1) / 100)
        drawn_x = x[:max(1, args.vae_batch // 8)]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            z = tiny.encode(x * 2 - 1).latents.float()
            out = (tiny.decode(target[:len(drawn_x)]).sample.float() + 1) / 2
        fit = (z - target).square().mean()
        response, wanted = z[args.vae_batch:] - z[:args.vae_batch], target[args.vae_batch:] - target[:args.vae_batch]
        response_error = (response - wanted).square().mean() / wanted.square().mean().clamp(min=1e-8)
        weight = 1 + (OBJECT_WEIGHT - 1) * F.max_pool2d(object_mask(drawn_x * 2 - 1), 5, 1, 2)
        drawn = (weight * (out - drawn_x).abs()).mean() / OBJECT_WEIGHT
        loss = fit + args.tiny_response * response_error + drawn
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tiny.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % args.tiny_log_every == 0:
            losses.append(round(loss.item(), 5))
            print(json.dumps({"event": "tiny", "step": step, "fit": round(fit.item(), 5), "response": round(response_error.item(), 4),
                              "drawn": round(drawn.item(), 5), "seconds": round(time.perf_counter() - train_start, 1)}), flush=True)
    train_s = time.perf_counter() - train_start
    tiny.eval()
    figures = {"tiny_steps": step, "tiny_train_s": round(train_s, 1), "tiny_batch": args.vae_batch, "tiny_lr": args.vae_lr,
               "tiny_pool": args.pool, "tiny_response_weight": args.tiny_response, "tiny_final_losses": losses[-5:],
               "tiny_teacher": str(args.vae[0]), "tiny_init": str(args.init_tiny), "tiny_encoder_blocks": list(tiny.config.num_encoder_blocks),
               "tiny_encoder_parameters": sum(p.numel() for p in tiny.encoder.parameters()),
               "tiny_decoder_parameters": sum(p.numel() for p in tiny.decoder.parameters())}
    (args.out / "vae_tiny").mkdir(parents=True, exist_ok=True)
    tiny.to(torch.float16).save_pretrained(args.out / "vae_tiny", safe_serialization=True)
    shipped = AutoencoderTiny.from_pretrained(str(args.out / "vae_tiny"), torch_dtype=teacher.dtype).to(device).eval()
    held = render_pool(args.tiny_held_out, args.seed + 1, SIZE, device, batch=RENDER_BATCH, patterned=0.5)
    figures.update(tiny_readings(teacher, shipped, held, args.out))
    return figures


def scaled_mean(vae, x: torch.Tensor) -> torch.Tensor:
    """Images x [N, 3, H, W] in [0, 1] -> the VAE's posterior mean times its scaling factor (the UNet's latents)."""
    return vae.encode(x * 2 - 1).latent_dist.mean * vae.config.scaling_factor


@torch.no_grad()
def tiny_readings(teacher, tiny, held: dict, out: Path) -> dict:
    """On held-out renders: the tiny encoder's latents against the VAE's (relative squared error: the
    error's mean square over the VAE latents' variance), its response to each perturbation against the
    VAE's (error over the response's mean square), PSNR of the renders through the VAE, through the VAE's
    decoder from the tiny latents, and through the tiny one alone; tiny_roundtrip.png shows them."""
    sf = teacher.config.scaling_factor
    x = held["images"].float() / 255
    g = torch.Generator(device=x.device).manual_seed(7)
    kl = torch.cat([scaled_mean(teacher, batch) for batch in x.split(128)])
    z = torch.cat([tiny.encode(batch * 2 - 1).latents.float() for batch in x.split(128)])
    figures = {"tiny_latent_error": round(float((z - kl).square().mean() / kl.var()), 5)}
    for kind in PERTURBATIONS:
        changed = perturb(x, kind, g)
        wanted = scaled_mean(teacher, changed) - kl
        response = tiny.encode(changed * 2 - 1).latents.float() - z
        figures[f"tiny_response_error_{kind}"] = round(float((response - wanted).square().mean() / wanted.square().mean()), 4)
    patterned = held["pattern"] > 0
    through = {"vae": decoded(teacher, kl / sf), "vae_decoder_tiny_latents": decoded(teacher, z / sf),
               "tiny": ((tiny.decode(z).sample.float() + 1) / 2).clamp(0, 1)}
    for name, images in through.items():
        figures[f"tiny_psnr_{name}"] = psnr_split(psnr(images, x).cpu(), patterned.cpu())
    rows = torch.stack([x[:16], *(images[:16] for images in through.values())], 1).flatten(0, 1)
    write_png(out / "tiny_roundtrip.png", image_grid(rows.permute(0, 2, 3, 1), 8))  # per render: it, VAE, VAE decoder of tiny latents, tiny
    return figures


def prompt_table(tokenizer, device: str) -> torch.Tensor:
    """Token ids of every prompt: [category, colour or none, view or none, pattern (0 plain, 1 + 10 p + c), MAX_TOKENS]."""
    patterns = [(None, None)] + [(p, c) for p in PATTERNS for c in COLOURS]
    keys, prompts = [], []
    for a, cat in enumerate(CATS):
        for b, col in enumerate([*COLOURS, None]):
            for c, view in enumerate([*VIEW_WORDS, None]):
                for d, (pattern, second) in enumerate(patterns):
                    keys.append((a, b, c, d))  # a pattern in the object's own colour is never drawn: left plain
                    prompts.append(describe(cat, col, view, *((pattern, second) if second != col else (None, None))))
    ids = tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=False, return_tensors="pt").input_ids
    table = torch.zeros(len(CATS), len(COLOURS) + 1, len(VIEW_WORDS) + 1, len(patterns), MAX_TOKENS, dtype=torch.long)
    index = torch.tensor(keys)
    table[index[:, 0], index[:, 1], index[:, 2], index[:, 3]] = ids
    return table.to(device)


def train_unet(args, device: str, pool: dict) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(str(args.out / "vae"), torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    if args.init_pipeline:  # its text encoder goes on with its own token ids (the BPE trainer's ties differ run to run)
        (args.out / "tokenizer_files").mkdir(parents=True, exist_ok=True)
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(args.init_pipeline / "tokenizer" / name, args.out / "tokenizer_files" / name)
        tokenizer = CLIPTokenizer.from_pretrained(str(args.init_pipeline), subfolder="tokenizer")
    else:
        tokenizer = build_tokenizer(args.out / "tokenizer_files")
    text_config = CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_TOKENS, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT)
    latent = SIZE // 2 ** (len(VAE["block_out_channels"]) - 1)
    if args.init_pipeline:  # go on training a saved pipeline's text encoder and UNet (fresh optimizer)
        text_encoder = CLIPTextModel.from_pretrained(str(args.init_pipeline), subfolder="text_encoder", torch_dtype=torch.float32)
        unet = UNet2DConditionModel.from_pretrained(str(args.init_pipeline), subfolder="unet", torch_dtype=torch.float32)
        if vae.config.latent_channels > unet.config.in_channels:  # a VAE widened from the init's (widen_vae)
            unet = widen_unet(unet, vae.config.latent_channels)
        if args.attention_full_size:
            unet = with_full_size_attention(unet)
    else:
        text_encoder = CLIPTextModel(text_config)
        channels = vae.config.latent_channels
        unet = UNet2DConditionModel(sample_size=latent, in_channels=channels, out_channels=channels,
                                    cross_attention_dim=TEXT["hidden_size"], norm_num_groups=32,
                                    **{**UNET, **(FULL_SIZE_ATTENTION if args.attention_full_size else {})})
    text_encoder, unet = text_encoder.to(device).train(), unet.to(device).train()
    scheduler = DDIMScheduler(**{**SD21_BASE_SCHEDULER, "prediction_type": args.prediction})  # saved with the pipeline
    abar = scheduler.alphas_cumprod.to(device)

    means, stds, cells, latents_start = [], [], [], time.perf_counter()  # cells: [N, 1, latent, latent], the latent cells an object touches, and their neighbours
    with torch.no_grad():  # the posterior of each render: a fresh latent sample every step gives the data thickness
        for i in range(0, args.pool, 256):
            x = pool["images"][i:i + 256].float() / 127.5 - 1
            posterior = vae.encode(x).latent_dist
            # --fit-latents: the posterior's mean moved to what the decoder draws closest to the render
            means.append(decoder_latents(vae, x, args.fit_latents, start=posterior.mean) if args.fit_latents else posterior.mean)
            stds.append(posterior.std)
            cells.append(F.max_pool2d(F.max_pool2d(object_mask(x), SIZE // latent), 3, 1, 1).bool())
        mean = torch.cat(means).half()
        std = torch.cat(stds).half()
        cells = torch.cat(cells)
    print(json.dumps({"event": "latents", "renders": args.pool, "fit_latents": args.fit_latents, "seconds": round(time.perf_counter() - latents_start, 1),
                      "latent_std": round(float(mean.float().std()), 3), "posterior_std": round(float(std.float().mean()), 4)}), flush=True)
    sf = float(vae.config.scaling_factor)
    pattern_index = torch.where(pool["pattern"] > 0, 1 + (pool["pattern"] - 1) * len(COLOURS) + pool["pattern_colour"].clamp_min(0), 0)
    table = prompt_table(tokenizer, device)

    parameters = [*unet.parameters(), *text_encoder.parameters()]
    ema = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    empty = table_empty(tokenizer, device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    step, losses, train_start = 0, [], time.perf_counter()
    while step < args.max_steps and time.perf_counter() - train_start < 60 * args.minutes:
        idx = torch.randint(args.pool, (args.batch,), device=device, generator=g)
        z0 = (mean[idx].float() + std[idx].float() * torch.randn(mean[idx].shape, device=device, generator=g)) * sf
        u = torch.rand(args.batch, 3, device=device, generator=g)
        colour = torch.where(u[:, 0] < 0.3, len(COLOURS), pool["colour"][idx])
        view = torch.where(u[:, 1] < 0.2, len(VIEW_WORDS), pool["view"][idx])
        ids = table[pool["category"][idx], colour, view, pattern_index[idx]]
        ids = torch.where(u[:, 2:3] < 0.1, empty, ids)
        t = torch.randint(0, abar.shape[0], (args.batch,), device=device, generator=g)
        noise = torch.randn(z0.shape, device=device, generator=g)
        noise = noise + args.offset_noise * torch.randn(args.batch, z0.shape[1], 1, 1, device=device, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 500)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            pred = unet(z_t, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        target, weight = denoising_target(z0, noise, a, args.prediction, args.min_snr)
        weight = weight * (1 + (args.unet_object_weight - 1) * cells[idx].float())  # 1 everywhere: the plain objective
        loss = (weight * (pred.float() - target) ** 2).mean() / weight.mean()
        ema_step(loss, optimizer, parameters, ema, args.ema)
        step += 1
        if step % 200 == 0:
            losses.append(round(loss.item(), 5))
            print(json.dumps({"event": "unet", "step": step, "loss": losses[-1],
                              "seconds": round(time.perf_counter() - train_start, 1)}), flush=True)
    train_s = time.perf_counter() - train_start
    with torch.no_grad():  # what ships is the weight average
        for p, e in zip(parameters, ema):
            p.copy_(e)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(args.out / "pipeline", safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # CLIP's own files too, for readers without tokenizer.json
        shutil.copy(args.out / "tokenizer_files" / name, args.out / "pipeline" / "tokenizer" / name)
    return {"unet_steps": step, "unet_train_s": round(train_s, 1), "unet_batch": args.batch,
            "unet_lr": args.lr, "unet_pool": args.pool, "unet_init": str(args.init_pipeline), "offset_noise": args.offset_noise,
            "unet_object_weight": args.unet_object_weight, "unet_min_snr": args.min_snr, "unet_fit_latents": args.fit_latents, "prediction_type": args.prediction, "object_cells": round(float(cells.float().mean()), 4), "unet_final_losses": losses[-5:],
            "unet_parameters": sum(p.numel() for p in unet.parameters()),
            "text_parameters": sum(p.numel() for p in text_encoder.parameters()), "vocabulary": len(tokenizer)}


def with_full_size_attention(unet):
    """`unet` with attention at the latent's full size too (its first down and last up block become
    cross-attention blocks, as FULL_SIZE_ATTENTION), computing the same function: the new blocks'
    output projections start at zero, so each adds nothing to its residual until trained."""
    from diffusers import UNet2DConditionModel

    if list(unet.config.down_block_types) == FULL_SIZE_ATTENTION["down_block_types"]:
        return unet
    wider = UNet2DConditionModel.from_config({**unet.config, **FULL_SIZE_ATTENTION})
    missing, unexpected = wider.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and missing and all(".attentions." in k for k in missing), (missing, unexpected)
    for block in (wider.down_blocks[0], wider.up_blocks[-1]):
        for attention in block.attentions:
            torch.nn.init.zeros_(attention.proj_out.weight)
            torch.nn.init.zeros_(attention.proj_out.bias)
    return wider


def table_empty(tokenizer, device: str) -> torch.Tensor:
    """The empty prompt's ids [1, MAX_TOKENS]: what CFG's unconditional branch reads."""
    return tokenizer([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids.to(device)


def samples(args, device: str) -> dict:
    """DDIM samples of front views by diffusers' own pipeline, named by gsdi's pattern recogniser: per
    category ten prompts, four plain and two of each pattern, the colours turning with the category.
    A sample counts as named when category, colour, pattern and (patterned) the pattern's colour are
    all the prompt's. The same reader also reads one world render of each prompt (a held-out instance
    from a front camera of the training orbits): what a perfect prior would score with this reader; and
    those renders through the pipeline's VAE (encoded to the posterior mean, decoded): what a perfect
    UNet on this VAE would score; with --fit-latents K, also through its decoder alone (latents fitted
    K steps, decoder_latents): what a perfect UNet on latents fitted so (`unet --fit-latents`) would."""
    from diffusers import StableDiffusionPipeline

    from gsdi.eval.recogniser import load_recogniser, recognise

    pipe = StableDiffusionPipeline.from_pretrained(str(args.pipeline or args.out / "pipeline"), dtype=torch.float16 if device == "cuda" else torch.float32)
    pipe.to(device).set_progress_bar_config(disable=True)
    readers = [load_recogniser(device, patterns=True, folder=folder) for folder in args.recogniser or [None]]
    g = torch.Generator(device=device).manual_seed(123 + args.seed)  # seed 0: the card's draw
    sources = ("samples", "world", "round_trip", *(("decoder_fit",) if args.fit_latents else ()))
    hits = [{source: no_hits() for source in sources} for _ in readers]  # per reader
    vae32 = copy.deepcopy(pipe.vae).float() if args.fit_latents else None  # the fit's Adam steps in fp32
    rows = []
    for cat, asked, world in front_views(device):
        prompts = [describe(c, col, "front", p, pc) for c, col, p, pc in asked]
        out = pipe(prompts, height=SIZE, width=SIZE, num_inference_steps=args.sample_steps, guidance_scale=args.cfg,
                   generator=g, output_type="pt").images.float()
        rows.append(out.cpu())
        with torch.no_grad():
            round_trip = vae_round_trip(pipe.vae, world.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        read_as = {"world": world, "round_trip": round_trip}
        if args.fit_latents:
            z = decoder_latents(vae32, world.permute(0, 3, 1, 2) * 2 - 1, args.fit_latents)
            with torch.no_grad():
                read_as["decoder_fit"] = decoded(vae32, z).permute(0, 2, 3, 1)
        names = [recognise(reader, out.permute(0, 2, 3, 1)) for reader in readers]
        for reader, read, reader_hits in zip(readers, names, hits):
            count_named(reader_hits["samples"], asked, read)
            for source, images in read_as.items():
                count_named(reader_hits[source], asked, recognise(reader, images))
        print(json.dumps({"event": "samples", "category": cat, "recognised": names[0]}), flush=True)  # the card's reader
    for reader_hits in hits:
        for table in reader_hits.values():
            add_totals(table)
    write_png(args.out / "samples.png", image_grid(torch.cat(rows).permute(0, 2, 3, 1), 10))
    figures = {"samples_cfg": args.cfg, "samples_steps": args.sample_steps, "recognised": hits[0]["samples"],
               **reading_columns(hits[0])}
    if args.fit_latents:
        figures["samples_fit_latents"] = args.fit_latents
    if len(readers) > 1:  # the same samples and renders read by the other readers
        figures["other_readers"] = {str(folder): {"recognised": h["samples"], **reading_columns(h)}
                                    for folder, h in zip(args.recogniser[1:], hits[1:])}
    return figures


def front_views(device: str):
    """The hundred prompts the samples table asks, per category ten (four plain, two of each pattern, the
    colours turning with the category), with one world render of each (a held-out instance, seeds from
    WORLD_SAMPLE_SEED, from a front camera of the training orbits, --zoom's where given): yields
    (category, asked [(category, colour, pattern, pattern colour)] * 10, renders [10, SIZE, SIZE, 3] in [0, 1])."""
    from gsdi.cameras import FRONT_VIEWS, sample_orbits  # the training orbits, --zoom's where given
    from gsdi.world import pad_objects, render_objects, sample_object

    world_g = torch.Generator().manual_seed(WORLD_SAMPLE_SEED)
    for ci, cat in enumerate(CATS):
        asked = [(cat, COLOURS[(ci + i) % 10], None, None) for i in range(4)]
        asked += [(cat, COLOURS[(ci + i) % 10], PATTERNS[(i - 4) % 3], COLOURS[(ci + i + 3 + (i - 4) // 3) % 10]) for i in range(4, 10)]
        cams = sample_orbits(len(asked), SIZE, SIZE, world_g, azimuth_range=FRONT_VIEWS)
        objects = [sample_object(c, col, WORLD_SAMPLE_SEED + 10 * ci + i, p, pc)[0] for i, (c, col, p, pc) in enumerate(asked)]
        yield cat, asked, render_objects(pad_objects(objects), cams)[0].to(device)  # on the CPU: a hundred renders


def vae_readings(args, device: str) -> dict:
    """The samples table's hundred world renders read as rendered and through each VAE of --vae
    (encoded to the posterior mean, decoded; fp16 on a GPU as shipped, fp32 on a CPU): what a perfect
    UNet on each VAE would score, without sampling a UNet; read by the first --recogniser. Also each
    round trip's PSNR on these renders (mean over all, the plain and the patterned ones)."""
    from diffusers import AutoencoderKL

    from gsdi.eval.recogniser import load_recogniser, recognise

    assert args.vae, "readings reads the VAE folders of --vae"
    reader = load_recogniser(device, patterns=True, folder=(args.recogniser or [None])[0])
    vaes = {str(f): AutoencoderKL.from_pretrained(str(f), torch_dtype=torch.float16 if device == "cuda" else torch.float32).to(device).eval()
            for f in args.vae}
    hits = {source: no_hits() for source in ("world", *vaes)}
    scores, patterned, pictures = {name: [] for name in vaes}, [], []
    for cat, asked, world in front_views(device):
        read_as = {"world": world}
        with torch.no_grad():
            for name, vae in vaes.items():
                read_as[name] = vae_round_trip(vae, world.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
                scores[name].append(psnr(read_as[name].float(), world).cpu())
        patterned += [p is not None for _, _, p, _ in asked]
        for source, images in read_as.items():
            count_named(hits[source], asked, recognise(reader, images))
        pictures.append(torch.stack(list(read_as.values()), 1).flatten(0, 1).cpu())  # per render: as rendered, then each VAE's
    for table in hits.values():
        add_totals(table)
    write_png(args.out / "readings.png", image_grid(torch.cat(pictures), 5 * (1 + len(vaes))))  # a row: five renders, each with its round trips
    return {"readings_recogniser": str((args.recogniser or [None])[0]), "recognised_world_renders": hits["world"],
            "recognised_vae_round_trips": {name: hits[name] for name in vaes},
            "vae_psnr_front_views": {name: psnr_split(torch.cat(s), torch.tensor(patterned)) for name, s in scores.items()}}


def psnr_split(scores: torch.Tensor, patterned: torch.Tensor) -> dict:
    """Per-image PSNRs [N] -> their means over all, the plain and the patterned images, and the worst."""
    return {"all": round(float(scores.mean()), 2), "plain": round(float(scores[~patterned].mean()), 2),
            "patterned": round(float(scores[patterned].mean()), 2), "worst": round(float(scores.min()), 2)}


def reading_columns(hits: dict) -> dict:
    """One reader's readings of the world renders (as rendered, through the VAE, through its decoder alone) under the card's names."""
    names = {"world": "recognised_world_renders", "round_trip": "recognised_vae_round_trip", "decoder_fit": "recognised_decoder_fit"}
    return {names[source]: table for source, table in hits.items() if source in names}


def no_hits() -> dict:
    """One source's counts before any reading: per kind (plain and each pattern), each head right and the samples read."""
    return {kind: dict.fromkeys((*HEADS, "samples"), 0) for kind in ("plain", *PATTERNS)}


def add_totals(hits: dict) -> None:
    """hits["all"]: no_hits()'s counts summed over the kinds."""
    hits["all"] = {k: sum(h[k] for h in hits.values()) for k in (*HEADS, "samples")}


def count_named(hits: dict, asked: list[tuple], read: dict) -> None:
    """Add to hits[kind][head] the prompts `asked` (category, colour, pattern, pattern colour) whose
    reading `read` (recognise's lists) is right on each head, and on all of them ("named")."""
    for i, (c, col, p, pc) in enumerate(asked):
        kind = p or "plain"
        right = {"category": read["category"][i] == c, "colour": read["colour"][i] == col,
                 "pattern": read["pattern"][i] == kind, "pattern_colour": p is None or read["pattern_colour"][i] == pc}
        right["named"] = all(right.values())
        for k, v in right.items():
            hits[kind][k] += int(v)
        hits[kind]["samples"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["vae", "unet", "all", "samples", "readings", "tiny"],
                        help="all: vae, then unet on the same renders; readings: the samples' world renders through the VAEs of --vae; "
                             "tiny: a fast stand-in for the first --vae's encoder (train_tiny), --vae-minutes, --vae-batch, --vae-lr")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pool", type=int, default=16_000, help="training renders")
    parser.add_argument("--batch", type=int, default=256, help="UNet batch")
    parser.add_argument("--lr", type=float, default=4e-4, help="UNet and text encoder learning rate")
    parser.add_argument("--minutes", type=float, default=5.0, help="UNet training time of this call")
    parser.add_argument("--vae-batch", type=int, default=64)
    parser.add_argument("--vae-lr", type=float, default=4e-4)
    parser.add_argument("--vae-minutes", type=float, default=3.0)
    parser.add_argument("--init-vae", type=Path, default=None, help="continue from this VAE folder")
    parser.add_argument("--vae-decoder-only", action="store_true",
                        help="vae: train the decoder alone (the encoder frozen, so a UNet trained on its latents stays valid)")
    parser.add_argument("--vae-encoder-only", action="store_true",
                        help="vae: train the encoder alone (the decoder frozen): a test of whether an encoder finds the latents the decoder draws patterns from")
    parser.add_argument("--init-pipeline", type=Path, default=None, help="unet: continue from this pipeline's text encoder and UNet")
    parser.add_argument("--attention-full-size", action="store_true",
                        help="unet: attend at the latent's full size too (32x32, where the shipped UNet only convolves); "
                             "from --init-pipeline the new attention starts as identity")
    parser.add_argument("--prediction", default="epsilon", choices=["epsilon", "v_prediction"],
                        help="unet: what the UNet predicts (saved as the scheduler's prediction_type, which diffusers and gsdi "
                             "read; v_prediction as in SD 2.1 768)")
    parser.add_argument("--fit-latents", type=int, default=0, metavar="K",
                        help="unet: train on latents fitted through the frozen decoder (K Adam steps from the encoder's "
                             "mean) instead of the encoder's mean: what the decoder can draw, past the encoder's limits; "
                             "samples: also read the world renders through the decoder with latents fitted so")
    parser.add_argument("--min-snr", type=float, default=None, metavar="GAMMA",
                        help="unet: weigh the epsilon loss by min(SNR, GAMMA) / SNR, v's by min(SNR, GAMMA) / (SNR + 1) (Min-SNR, Hang et al. 2023: the nearly "
                             "clean steps weigh less; default: the plain objective)")
    parser.add_argument("--unet-object-weight", type=float, default=1.0,
                        help="unet: the latent cells an object touches weigh this many times the white ground's in the epsilon loss "
                             "(1: the plain objective; the object covers a few %% of a view, its pattern less)")
    parser.add_argument("--latent-channels", type=int, default=VAE["latent_channels"], help="vae: the latent's channels (a new VAE, or more than --init-vae's: widened, its function kept; the UNet follows its VAE, widened from --init-pipeline's)")
    parser.add_argument("--vae-widths", type=int, nargs=3, default=None, metavar="W",
                        help=f"vae: a new VAE's three block widths (default {VAE['block_out_channels']}; the encoder's cost on a "
                             "CPU grows with them: the world MODEL_CARD's Size)")
    parser.add_argument("--vae-layers", type=int, default=None, help=f"vae: a new VAE's layers a block (default {VAE['layers_per_block']})")
    parser.add_argument("--vae-spectral", type=float, default=0.0, help="vae: weight of the patch amplitude-spectrum L1 (0: off)")
    parser.add_argument("--vae-scale-equivariance", type=float, default=0.0,
                        help="vae: weight of the L1 between the latent average-pooled 2x, decoded, and the render pooled 2x "
                             "(Skorokhodov et al., ICML 2025: a latent that decodes like an image when shrunk has less "
                             "detail below its cell for a UNet to draw; 0: off)")
    parser.add_argument("--tiny-response", type=float, default=1.0,
                        help="tiny: weight of the relative error of the encoder's response to a perturbation")
    parser.add_argument("--init-tiny", type=Path, default=None, help="tiny: continue from this AutoencoderTiny folder")
    parser.add_argument("--tiny-held-out", type=int, default=512, help="tiny: held-out renders read after training")
    parser.add_argument("--tiny-log-every", type=int, default=200, help="tiny: steps between log lines")
    parser.add_argument("--tiny-blocks", type=int, nargs=3, default=None, metavar="N",
                        help=f"tiny: the encoder's blocks at each of its three sizes (default {TINY['num_encoder_blocks']})")
    parser.add_argument("--kl", type=float, default=1e-5, help="VAE: weight of the KL per latent element")
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--offset-noise", type=float, default=0.1)
    parser.add_argument("--cfg", type=float, default=7.5, help="samples: CFG scale")
    parser.add_argument("--sample-steps", type=int, default=50, help="samples: DDIM steps")
    parser.add_argument("--pipeline", type=Path, default=None, help="samples: the pipeline folder (default: OUT/pipeline)")
    parser.add_argument("--vae", type=Path, nargs="+", default=None, help="readings: VAE folders whose round trips are read")
    parser.add_argument("--seed", type=int, default=0, help="training draws; samples: another draw of the sampling noise (0: the card's)")
    parser.add_argument("--recogniser", type=Path, nargs="+", default=None,
                        help="samples: folders with pattern_recogniser.safetensors to read them (default: the shipped one); "
                             "the first one's readings are the card's, the others' go under other_readers")
    candidate_world_arguments(parser)
    args = parser.parse_args()
    use_candidate_world(args)
    device = training_start(args)
    figures = {}
    if args.stage == "samples":
        figures.update(samples(args, device))
    elif args.stage == "readings":
        figures.update(vae_readings(args, device))
    else:
        begin = time.perf_counter()
        pool = render_pool(args.pool, args.seed, SIZE, device, batch=RENDER_BATCH, patterned=0.5)
        figures["render_s"] = round(time.perf_counter() - begin, 1)
        print(json.dumps({"event": "pool", "renders": args.pool, "seconds": figures["render_s"]}), flush=True)
        write_png(args.out / "pool.png", image_grid(pool["images"][:40].permute(0, 2, 3, 1).float() / 255, 10))
        if args.stage in ("vae", "all"):
            figures.update(train_vae(args, device, pool))
        if args.stage in ("unet", "all"):
            figures.update(train_unet(args, device, pool))
        if args.stage == "tiny":
            assert args.vae, "tiny distils the VAE of --vae"
            figures.update(train_tiny(args, device, pool))
    card_file = args.out / "card.json"
    card = json.loads(card_file.read_text()) if card_file.exists() else {}
    card.update(figures, **{f"{args.stage}_command": "python examples/train_world_prior.py " + shlex.join(sys.argv[1:]),
                            f"{args.stage}_device": torch.cuda.get_device_name() if device == "cuda" else "cpu"})
    card_file.write_text(json.dumps(card, indent=2))
    print(json.dumps({"event": "done", **figures}), flush=True)


if __name__ == "__main__":
    main()
