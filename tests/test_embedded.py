"""The embedded prior's interface, checked with untrained weights (fast, no shipped weights needed)."""

from __future__ import annotations

import json

import pytest
import torch

from gsdi.config import GuidanceConfig
from gsdi.errors import GsdiError
from gsdi.formats import read_ply
from gsdi.guidance import Rng, guidance_loss
from gsdi.priors import Prior, load_prior, text_cond
from gsdi.priors.embedded import CONFIG_FILE, WEIGHTS_FILE, EmbeddedPrior

SMALL = {"image_size": 32, "unshuffle": 2, "max_words": 12, "text_dim": 32,
         "unet": {"block_out_channels": [32, 32], "layers_per_block": 1, "attention_head_dim": 8,
                  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                  "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}}


@pytest.fixture(scope="module")
def prior():
    return EmbeddedPrior.random("cpu", seed=0, arch=SMALL)


def test_space_to_depth_is_exactly_invertible(prior):
    assert isinstance(prior, Prior)
    images = torch.rand(2, 3, 32, 32)
    latents = prior.encode(images)
    assert latents.shape == (2, 12, 16, 16) and latents.min() >= -1 and latents.max() <= 1
    assert torch.allclose(prior.decode(latents), images, atol=1e-6)


def test_words_and_unknown_words(prior):
    emb = prior.text_embeddings(["a red castle, front view", "", "a red castle, back view"])
    assert emb.shape == (3, 12, 32) and not torch.equal(emb[0], emb[2])
    with pytest.raises(GsdiError, match="does not know 'dragon'.*castle"):
        prior.text_embeddings(["a dragon"])


def test_the_shipped_pixel_prior_refuses_pattern_words_it_never_learned():
    shipped = load_prior("embedded", torch.device("cpu"))
    with pytest.raises(GsdiError, match="pixel prior does not know 'with stripes'.*--prior world"):
        shipped.text_embeddings(["a blue car with yellow stripes"])


def test_guidance_runs_on_it(prior):
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    x0 = prior.encode(x)
    text = text_cond(prior, "a blue car", "", ["side"], 1)
    out = guidance_loss(prior, x0, text, 700, GuidanceConfig(method="sdi", inversion_steps=4), Rng.seeded(0))
    out.loss.backward()
    assert x.grad.abs().sum() > 0 and 700 <= out.t_noisy < 950


def test_save_load_round_trip_and_damage(prior, tmp_path):
    folder = prior.save(tmp_path / "p")
    back = load_prior(str(folder), torch.device("cpu"))
    assert isinstance(back, EmbeddedPrior)
    x = torch.randn(1, 12, 16, 16)
    text = text_cond(prior, "a tree", "", None, 1)
    # fp16 storage: equal to the fp16-rounded original
    assert torch.allclose(back.predict_noise(x, 500, text_cond(back, "a tree", "", None, 1), 3.0),
                          prior.predict_noise(x, 500, text, 3.0), atol=5e-2)
    (folder / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(GsdiError, match="damaged"):
        load_prior(str(folder), torch.device("cpu"))
    with pytest.raises(GsdiError, match="no embedded prior"):
        EmbeddedPrior.load(tmp_path / "empty", torch.device("cpu"))
    assert json.loads((folder / CONFIG_FILE).read_text())["image_size"] == 32


def test_generate_end_to_end_with_an_untrained_embedded_prior(prior, tmp_path):
    import gsdi

    folder = prior.save(tmp_path / "p")
    result = gsdi.generate("a red castle", out=tmp_path / "o", prior=str(folder), steps=3, preset="preview",
                           progress=False, device="cpu")
    assert read_ply(result.ply)["means"].shape[0] == result.num_gaussians
    with pytest.raises(GsdiError, match="does not know 'dragon'"):
        gsdi.generate("a red dragon", out=tmp_path / "o2", prior=str(folder), steps=1, progress=False, device="cpu")


def test_the_shipped_prior_is_the_offline_default(tmp_path, capsys):
    """No --prior: the packaged weights load (fp16 safetensors within the size budget) and run."""
    import gsdi
    from gsdi.cli import main
    from gsdi.priors.embedded import PACKAGED

    assert (PACKAGED / WEIGHTS_FILE).stat().st_size <= 16 * 2**20
    result = gsdi.generate("a red castle", out=tmp_path / "o", steps=2, preset="preview", progress=False, device="cpu")
    assert json.loads((result.out / "config.json").read_text())["prior"] == "embedded"
    with pytest.raises(SystemExit) as info:
        main(["generate", "a red dragon", "--out", str(tmp_path / "d"), "-q", "--device", "cpu"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "does not know 'dragon'" in err and "castle" in err and err.count("\n") == 1


DEEPER = {**SMALL, "unet": {**SMALL["unet"], "block_out_channels": [16, 32, 32], "layers_per_block": 2,
                            "attention_head_dim": 4, "down_block_types": ["CrossAttnDownBlock2D"] * 3,
                            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}}


@pytest.mark.parametrize("arch", [SMALL, DEEPER])
def test_gsdis_unet_is_diffusers_unet(arch):
    """Same weights, same output and input gradient as diffusers' UNet2DConditionModel."""
    from diffusers import UNet2DConditionModel

    arch, ours, _ = EmbeddedPrior.build(arch, seed=1)
    channels = 3 * arch["unshuffle"] ** 2
    theirs = UNet2DConditionModel(sample_size=arch["image_size"] // 2, in_channels=channels, out_channels=channels,
                                  cross_attention_dim=arch["text_dim"], **arch["unet"])
    theirs.load_state_dict(ours.state_dict(), strict=True)  # the same names: shipped weights load into either
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, channels, 16, 16, generator=g)
    text = torch.randn(3, arch["max_words"], arch["text_dim"], generator=g)
    t = torch.tensor([1, 480, 999])
    outs = []
    for unet in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        out = unet(xi, t, encoder_hidden_states=text)
        out = out if torch.is_tensor(out) else out.sample
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append((out.detach(), xi.grad))
    assert outs[0][0].abs().mean() > 0.1
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5), (outs[0][0] - outs[1][0]).abs().max()
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-5), (outs[0][1] - outs[1][1]).abs().max()


def test_noise_schedule_is_diffusers_ddim_schedule():
    from diffusers import DDIMScheduler

    from gsdi.priors.base import noise_schedule
    from gsdi.priors.stable_diffusion import SD21_BASE_SCHEDULER

    for config in (SD21_BASE_SCHEDULER, {**SD21_BASE_SCHEDULER, "beta_schedule": "linear", "beta_start": 1e-4,
                                         "beta_end": 0.02, "steps_offset": 0}):
        alphas_cumprod, offset = noise_schedule(config, torch.device("cpu"))
        reference = DDIMScheduler.from_config(config)
        assert torch.equal(alphas_cumprod, reference.alphas_cumprod.float()) and offset == reference.config.steps_offset


def test_loading_the_embedded_prior_does_not_import_diffusers():
    """diffusers' model stack takes seconds to import; the default prior needs none of it."""
    import subprocess
    import sys

    code = ("import sys, torch; from gsdi.priors import load_prior; p = load_prior('embedded', torch.device('cpu')); "
            "from gsdi.priors import text_cond; t = text_cond(p, 'a red castle', '', None, 1); "
            "p.predict_noise(torch.zeros(1, 12, 32, 32), 500, t, 7.5); "
            "print(sorted(m for m in ('diffusers', 'transformers', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
