"""The latent world prior shipped with gsdi: a Stable Diffusion folder that diffusers samples by itself,
that gsdi loads through its Stable Diffusion path, and that reads prompts in the world's language."""

from __future__ import annotations

import json

import pytest
import torch

from gsdi.errors import GsdiError
from gsdi.priors.stable_diffusion import WORLD
from gsdi.world import VOCABULARY


@pytest.fixture(scope="module")
def pipeline():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(WORLD), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_folder_is_a_stable_diffusion_pipeline_within_the_weight_limits():
    index = json.loads((WORLD / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    scheduler = json.loads((WORLD / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler" and scheduler["beta_schedule"] == "scaled_linear"
    assert (WORLD / "tokenizer" / "vocab.json").is_file() and (WORLD / "tokenizer" / "merges.txt").is_file()
    sizes = [f.stat().st_size for f in WORLD.rglob("*.safetensors")]
    assert len(sizes) == 3 and max(sizes) <= 16 * 2**20 and sum(sizes) <= 30 * 2**20, sizes


def test_every_world_word_is_one_token(pipeline):
    tokenizer = pipeline.tokenizer
    for word in VOCABULARY:
        ids = tokenizer(word).input_ids
        assert len(ids) == 3 and ids[1] != tokenizer.unk_token_id, (word, ids)
    assert len(tokenizer("a red castle with white stripes, front view").input_ids) <= tokenizer.model_max_length


def test_diffusers_samples_a_recognisable_patterned_castle(pipeline):
    """diffusers' own DDIM sampling of the folder, no gsdi code in the loop: the pattern recogniser
    names a castle in most of eight samples, red in most, a white pattern on half, and stripes on at
    least one (seeds 0, 1, 2: castle 8, 8, 8; red 7, 8, 8; white pattern 7, 6, 4; stripes 3, 4, 2; seed
    0 the same on 1 and 2 threads). The prior draws stripes as wavy bands, which this reader, trained
    at the world's own framing where the prior's is 1.5x closer, often reads as dots; eight samples,
    not four, so that one sample read otherwise on another processor cannot tip a count."""
    from gsdi.eval.recogniser import load_recogniser, recognise

    prompt = "a red castle with white stripes, front view"
    images = pipeline([prompt] * 8, height=128, width=128, num_inference_steps=25, guidance_scale=7.5,
                      generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (8, 3, 128, 128)
    names = recognise(load_recogniser(patterns=True), images.permute(0, 2, 3, 1))
    assert names["category"].count("castle") >= 6 and names["colour"].count("red") >= 6, names
    white_pattern = [p != "plain" and c == "white" for p, c in zip(names["pattern"], names["pattern_colour"])]
    assert sum(white_pattern) >= 4 and names["pattern"].count("stripes") >= 1, names


def test_gsdi_reads_it_through_the_stable_diffusion_path_in_the_world_language():
    from gsdi.priors import load_prior, text_cond
    from gsdi.priors.stable_diffusion import StableDiffusionPrior

    prior = load_prior("world", torch.device("cpu"))
    assert isinstance(prior, StableDiffusionPrior) and prior.image_size == 128
    text = text_cond(prior, "a blue car with yellow stripes", "", ["front"], 1)
    assert text.cond.shape[0] == 1 and not torch.equal(text.cond, text.uncond)
    with pytest.raises(GsdiError, match="does not know 'dragon'"):
        text_cond(prior, "a red dragon", "", ["front"], 1)


@pytest.mark.slow
def test_generate_with_the_world_prior_and_the_stable_diffusion_recipe(tmp_path):
    """A short run of the paper's recipe (SDI, Perp-Neg on) on a patterned prompt, end to end."""
    import gsdi

    out = tmp_path / "car"
    gsdi.generate("a blue car with yellow stripes", out=str(out), prior="world", preset="stable-diffusion", steps=3,
                  **{"guidance.inversion_steps": 2, "render.max_resolution": 128})
    config = json.loads((out / "config.json").read_text())
    assert config["prior"] == "world" and config["guidance"]["method"] == "sdi" and config["guidance"]["perp_neg"]
    assert (out / "scene.ply").is_file() and (out / "preview.png").is_file()


def test_latents_fitted_through_the_decoder_draw_a_render_closer_than_the_encoders(pipeline, monkeypatch):
    """train_world_prior.py --fit-latents: K Adam steps from the encoder's mean through the frozen
    decoder bring the decoded image nearer a world render; with no steps they are the encoder's mean."""
    from pathlib import Path

    from gsdi.cameras import sample_orbits
    from gsdi.world import pad_objects, render_objects, sample_object

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    from training_args import decoder_latents

    objects = [sample_object("house", "white", 5, "checks", "red")[0]]
    rgb, _ = render_objects(pad_objects(objects), sample_orbits(1, 128, 128, torch.Generator().manual_seed(0)))
    x = rgb.permute(0, 3, 1, 2) * 2 - 1  # [1, 3, 128, 128]
    vae = pipeline.vae
    with torch.no_grad():
        assert torch.equal(decoder_latents(vae, x, 0), vae.encode(x).latent_dist.mean)
        error = [(vae.decode(decoder_latents(vae, x, k)).sample - x).square().mean().item() for k in (0, 20)]
    assert error[1] < 0.9 * error[0], error


def test_a_world_vae_of_other_widths_keeps_the_latent_factor(monkeypatch):
    """train_world_prior.py --vae-widths / --vae-layers: a wider VAE still codes a 128-px render as
    4x32x32 latents (the UNet's shape) and saves the widths diffusers rebuilds it from; a fourth block
    (factor 8) is refused."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    from train_world_prior import build_vae

    vae = build_vae(widths=[64, 128, 128], layers=2)
    assert list(vae.config.block_out_channels) == [64, 128, 128] and vae.config.layers_per_block == 2
    assert len(vae.encoder.down_blocks[0].resnets) == 2
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 128, 128)).latent_dist.mean
    assert z.shape == (1, 4, 32, 32)
    with pytest.raises(AssertionError):
        build_vae(widths=[32, 64, 64, 64])


# A convolution over more channels may sum in another order (its kernel picks blocks by channel count,
# CPU and threads): one thread here moved a decoded pixel by 5e-6; a wrong widening moves it by 0.1 or more.
SUMMATION_ORDER = {"rtol": 1e-4, "atol": 1e-4}


def test_a_widened_world_vae_and_unet_keep_their_function(pipeline, monkeypatch):
    """train_world_prior.py --latent-channels 2C from a C-channel --init-vae / --init-pipeline (the
    shipped folder's): the widened VAE's first C latent channels are the old ones and it decodes a
    render exactly as the old VAE did (the new channels carry a fixed small variance the decoder starts
    blind to); the widened UNet predicts the old noise on the first C and zero on the new ones."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    from train_world_prior import NEW_LOGVAR, widen_unet, widen_vae

    vae, unet = pipeline.vae, pipeline.unet  # float32 (the fixture)
    C = vae.config.latent_channels
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = torch.randn(2, 2 * C, 32, 32, generator=torch.Generator().manual_seed(1))
    text = torch.randn(2, 16, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    wide_vae, wide_unet = widen_vae(vae, 2 * C).eval(), widen_unet(unet, 2 * C).eval()
    with torch.no_grad():
        old, new = vae.encode(x).latent_dist, wide_vae.encode(x).latent_dist
        assert new.mean.shape == (2, 2 * C, 32, 32)
        torch.testing.assert_close(new.mean[:, :C], old.mean, **SUMMATION_ORDER)
        torch.testing.assert_close(new.logvar[:, :C], old.logvar, **SUMMATION_ORDER)
        assert torch.all(new.logvar[:, C:] == NEW_LOGVAR) and new.mean[:, C:].std() > 0.01
        torch.testing.assert_close(wide_vae.decode(new.mean).sample, vae.decode(old.mean).sample, **SUMMATION_ORDER)
        eps_old, eps_new = unet(z[:, :C], 500, text).sample, wide_unet(z, 500, text).sample
    torch.testing.assert_close(eps_new[:, :C], eps_old, **SUMMATION_ORDER)
    assert torch.all(eps_new[:, C:] == 0)
    with pytest.raises(AssertionError):
        widen_vae(vae, C)
