from __future__ import annotations

import json

import pytest

from gsdi.config import PRESETS, GenerateConfig, make_config
from gsdi.errors import GsdiError


def test_presets_and_overrides():
    config = make_config("a castle", "preview", steps=12, **{"guidance.method": "sds"})
    assert config.steps == 12 and config.guidance.method == "sds"
    assert config.guidance.inversion_steps == GenerateConfig().guidance.inversion_steps
    assert make_config("a castle", "long").steps == PRESETS["long"]["steps"] == 1500
    # Perp-Neg: off for the embedded prior, on for Stable Diffusion unless asked otherwise
    assert not make_config("a castle").guidance.perp_neg
    assert make_config("a castle", prior="some/sd-model").guidance.perp_neg
    assert not make_config("a castle", prior="some/sd-model", **{"guidance.perp_neg": False}).guidance.perp_neg
    # An option left out (None, as the CLI passes it) keeps the preset's value.
    assert make_config("a castle", "preview", steps=None).steps == GenerateConfig().steps


def test_the_dataclass_defaults_are_what_gsdi_generate_runs():
    """GenerateConfig() is the default preset; make_config only resolves `auto` (SDS, annealed t, on the
    embedded prior) and Perp-Neg (off there)."""
    default = GenerateConfig(prompt="a castle")
    resolved = make_config("a castle")
    assert PRESETS["default"] == {}
    assert default.guidance.method == "auto" and resolved.guidance.method == "sds"
    assert resolved.guidance.t_schedule == "anneal" and not resolved.guidance.perp_neg
    default.guidance.method, default.guidance.t_schedule = "sds", "anneal"
    assert resolved == default


def test_json_round_trip():
    config = make_config("a castle", "preview", seed=3, **{"camera.radius_range": [1.0, 2.5]})
    back = GenerateConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.camera.radius_range == (1.0, 2.5)


@pytest.mark.parametrize("prompt, preset, overrides, message", [
    ("   ", "default", {}, "prompt is empty"),
    ("a castle", "fast", {}, "unknown preset"),
    ("a castle", "default", {"steps": 0}, "--steps"),
    ("a castle", "default", {"seed": -1}, "--seed"),
    ("a castle", "default", {"guidance.method": "dds"}, "--guidance"),
    ("a castle", "default", {"device": "tpu"}, "--device"),
    ("a castle", "default", {"nonsense": 1}, "unknown config key"),
    ("a castle", "default", {"steps": "many"}, "bad value"),
])
def test_bad_values_are_one_line_errors(prompt, preset, overrides, message):
    with pytest.raises(GsdiError, match=message) as info:
        make_config(prompt, preset, **overrides)
    assert "\n" not in str(info.value)


def test_auto_guidance_resolves_by_prior(tiny_sd):
    from gsdi.config import make_config

    embedded = make_config("a red castle")
    assert (embedded.guidance.method, embedded.guidance.t_schedule) == ("sds", "anneal")
    sd = make_config("a castle", prior=str(tiny_sd))
    assert sd.guidance.method == "sdi"
    explicit = make_config("a red castle", **{"guidance.method": "sdi"})
    assert explicit.guidance.method == "sdi" and explicit.guidance.t_schedule == "auto"
