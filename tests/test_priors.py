"""The Stable Diffusion prior, loaded for real from a tiny random-weight folder (no download)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from gsdi.errors import GsdiError
from gsdi.priors import Prior, TextCond, text_cond
from gsdi.priors.stable_diffusion import StableDiffusionPrior


@pytest.fixture(scope="module")
def prior(tiny_sd):
    return StableDiffusionPrior.load(str(tiny_sd), torch.device("cpu"))


def test_loads_as_a_prior_with_the_schedule(prior):
    assert isinstance(prior, Prior)
    assert prior.image_size == 64 and prior.steps_offset == 1
    assert prior.alphas_cumprod.shape == (1000,) and prior.alphas_cumprod[0] > prior.alphas_cumprod[-1]
    assert all(not p.requires_grad for p in prior.unet.parameters())


def test_encode_is_differentiable_and_decode_shapes(prior):
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    latents = prior.encode(images, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 32, 32)
    latents.sum().backward()
    assert images.grad.abs().sum() > 0
    assert prior.decode(latents.detach()).shape == (2, 3, 64, 64)


def test_cfg_is_one_batched_call_with_the_standard_form(prior):
    text = text_cond(prior, "a castle", "", ["front", "back"], 2)
    x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    calls = []
    handle = prior.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    eps = prior.predict_noise(x, 500, text, 7.5)
    handle.remove()
    assert calls == [4]
    t = torch.full((2,), 500)
    eps_c = prior.unet(x, t, encoder_hidden_states=text.cond).sample
    eps_u = prior.unet(x, t, encoder_hidden_states=text.uncond).sample
    assert torch.allclose(eps, eps_u + 7.5 * (eps_c - eps_u), atol=1e-4)


def test_text_embeddings_are_cached_per_prompt(prior):
    calls = []
    handle = prior.text_encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    a = prior.text_embeddings(["a tree, front view", "a tree, side view", "a tree, front view"])
    b = prior.text_embeddings(["a tree, side view"])
    handle.remove()
    assert calls == [2]  # two distinct prompts, encoded once
    assert torch.equal(a[1], b[0]) and torch.equal(a[0], a[2]) and not torch.equal(a[0], a[1])


def test_missing_or_broken_folders_are_clear_errors(tmp_path, tiny_sd):
    with pytest.raises(GsdiError, match="does not exist"):
        StableDiffusionPrior.load(str(tmp_path / "nope"), torch.device("cpu"))
    with pytest.raises(GsdiError, match="could not load Stable Diffusion weights"):
        StableDiffusionPrior.load(str(tmp_path), torch.device("cpu"))  # empty folder
    # Pickled weights only: refused, safetensors only.
    import shutil

    broken = tmp_path / "pickled"
    shutil.copytree(tiny_sd, broken)
    unet = StableDiffusionPrior.load(str(tiny_sd), torch.device("cpu")).unet
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(broken / "unet", safe_serialization=False)
    with pytest.raises(GsdiError, match="safetensors"):
        StableDiffusionPrior.load(str(broken), torch.device("cpu"))


def test_view_prompts():
    class Recorder:
        def text_embeddings(self, prompts):
            self.last = prompts
            return torch.zeros(len(prompts), 1, 1)

    r = Recorder()
    cond = text_cond(r, "a castle", "blurry", ["front", "side"], 2)
    assert isinstance(cond, TextCond)
    assert r.last == ["blurry", "blurry"]
    text_cond(r, "a castle", "", ["front", "side"], 2)
    text_cond(r, "a castle", "", None, 2)
    assert r.last == ["", ""]


def protocol_members(protocol) -> set[str]:
    """The names a Protocol declares: its annotated attributes and its methods."""
    names = set(protocol.__annotations__)
    names.update(n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_"))
    return names


@pytest.mark.parametrize("which", ["embedded", "world", "stable-diffusion"])
def test_every_member_of_the_prior_protocol_works_on_each_prior(which, tiny_sd):
    """Each member called or read on every prior, with the shapes and types the protocol promises."""
    from gsdi.priors import load_prior
    from gsdi.priors.graphs import UNetRunner

    prior = load_prior(str(tiny_sd) if which == "stable-diffusion" else which, torch.device("cpu"))
    checked = set()

    def check(name, ok):
        assert ok, name
        checked.add(name)

    T = prior.alphas_cumprod.shape[0]
    check("alphas_cumprod", prior.alphas_cumprod.dtype == torch.float32 and prior.alphas_cumprod.shape == (T,))
    check("steps_offset", isinstance(prior.steps_offset, int) and 0 <= prior.steps_offset < T)
    check("image_size", isinstance(prior.image_size, int) and prior.image_size > 0)
    check("device", prior.device == torch.device("cpu"))
    check("dtype", prior.dtype == next(prior.unet.parameters()).dtype)
    check("unet", isinstance(prior.unet, torch.nn.Module))
    S = prior.image_size
    images = torch.rand(2, 3, S, S, requires_grad=True)
    latents = prior.encode(images, generator=torch.Generator().manual_seed(0))
    latents.sum().backward()
    check("encode", latents.dim() == 4 and latents.shape[0] == 2 and images.grad.abs().sum() > 0)
    check("decode", prior.decode(latents.detach()).shape == (2, 3, S, S))
    embeddings = prior.text_embeddings(["a red castle", "a red castle, front view"])
    check("text_embeddings", embeddings.dim() == 3 and embeddings.shape[0] == 2
          and torch.equal(prior.text_embeddings(["a red castle"])[0], embeddings[0]))  # cached: the same rows
    text = text_cond(prior, "a red castle", "", ["front", "back"], 2)
    eps = prior.predict_noise(latents.detach(), 500, text, 7.5)
    check("predict_noise", eps.shape == latents.shape and not eps.requires_grad)
    calls = prior.runner.calls
    x = latents.detach().repeat(2, 1, 1, 1)
    out = prior.runner(x, torch.full((4,), 500), torch.cat([text.uncond, text.cond]))
    check("runner", isinstance(prior.runner, UNetRunner) and prior.runner.calls == calls + 1 and out.shape == x.shape)
    assert checked == protocol_members(Prior), protocol_members(Prior) ^ checked


def test_offline_hub_advice_names_a_command_that_exists(monkeypatch):
    from gsdi.priors import stable_diffusion

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GsdiError) as info:
        stable_diffusion.hub_source("someone/not-cached-model")
    assert "hf download someone/not-cached-model --local-dir" in str(info.value)
    assert "huggingface-cli" not in str(info.value)


def test_offline_stable_diffusion_fails_fast_with_one_line(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    for extra in ({}, {"HF_HUB_OFFLINE": "1"}):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "gsdi.cli", "generate", "a castle", "--prior",
                               "stabilityai/stable-diffusion-2-1-base", "--out", str(tmp_path / "sd"), "--device", "cpu"],
                              capture_output=True, text=True, timeout=60, env={**env, **extra})
        elapsed = time.perf_counter() - start
        assert proc.returncode == 2, proc.stderr
        # a download that retries takes minutes; the bound leaves a slow machine's imports room
        assert elapsed < 45, elapsed
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--prior FOLDER" in lines[0] and "config.json" not in lines[0], proc.stderr
        assert not (tmp_path / "sd").exists()


@pytest.fixture(scope="module")
def sd_with_tiny_vae(tiny_sd, tmp_path_factory):
    """The tiny random folder with a vae_tiny/ beside its vae/: a random AutoencoderTiny of the same factor."""
    import shutil

    from diffusers import AutoencoderTiny

    folder = tmp_path_factory.mktemp("sd_tiny_vae") / "sd"
    shutil.copytree(tiny_sd, folder)
    torch.manual_seed(3)
    AutoencoderTiny(encoder_block_out_channels=(4, 4), num_encoder_blocks=(0, 1), decoder_block_out_channels=(4, 4),
                    num_decoder_blocks=(1, 0), latent_channels=4).save_pretrained(folder / "vae_tiny", safe_serialization=True)
    return folder


def test_a_folders_tiny_vae_encodes_renders_unless_told_otherwise(sd_with_tiny_vae, tiny_sd):
    from gsdi.priors import load_prior

    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    fast = load_prior(str(sd_with_tiny_vae), torch.device("cpu"))  # auto: the folder's vae_tiny/
    assert fast.tiny_vae is not None
    latents = fast.encode(images)
    assert latents.shape == (2, 4, 32, 32)
    assert torch.equal(latents, fast.tiny_vae.encode(images * 2 - 1).latents)  # the tiny encoder alone, no posterior noise
    latents.sum().backward()
    assert images.grad.abs().sum() > 0
    full = load_prior(str(sd_with_tiny_vae), torch.device("cpu"), encoder="vae")
    assert full.tiny_vae is None
    mean = full.vae.encode(images.detach() * 2 - 1).latent_dist.mean * full.scaling_factor
    assert not torch.allclose(full.encode(images.detach()), latents.detach(), atol=1e-3)
    assert (full.encode(images.detach()) - mean).abs().max() < 1  # the VAE's posterior sample, as without a vae_tiny/
    with pytest.raises(GsdiError, match="has no vae_tiny/"):
        load_prior(str(tiny_sd), torch.device("cpu"), encoder="vae_tiny")
    with pytest.raises(GsdiError, match="works on pixels"):
        load_prior("embedded", torch.device("cpu"), encoder="vae_tiny")


def test_prior_encoder_takes_only_its_three_values():
    from gsdi.config import make_config

    assert make_config("a castle", prior="world").prior_encoder == "auto"
    assert make_config("a castle", prior="world", prior_encoder="vae").prior_encoder == "vae"
    with pytest.raises(GsdiError, match="prior_encoder must be auto, vae or vae_tiny"):
        make_config("a castle", prior="world", prior_encoder="taesd")
