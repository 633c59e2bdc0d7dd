"""Every knob of a generation, as typed dataclasses with defaults, plus named presets.

One `GenerateConfig` describes a run completely; it is written whole to `config.json` next to the
outputs and can be read back with `GenerateConfig.from_dict`. The CLI maps its flags onto it and the
Python API takes it. Presets are partial overrides on top of the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from gsdi.errors import GsdiError
from gsdi.presets import AUTO_PRESETS, PRESETS

DEFAULT_PRIOR = "embedded"  # shipped in the package; works offline (gsdi/priors/embedded/MODEL_CARD.md)


TURNTABLE_FRAMES = 48  # frames of a turntable, from `gsdi generate` and `gsdi render` alike

# The options of `gsdi generate` and `gsdi batch` (flags, and a prompt list's per-line key=value) as the
# config keys make_config takes: one table for both ("preset" is make_config's own argument).
OPTION_KEYS = {"steps": "steps", "seed": "seed", "device": "device", "negative": "negative_prompt",
               "guidance": "guidance.method", "renderer": "render.backend", "prior": "prior",
               "perp_neg": "guidance.perp_neg", "checkpoint_every": "checkpoint_every", "preset": "preset"}


@dataclass
class SceneConfig:
    """Initial Gaussians: random points in a ball, small isotropic scales, grey, half transparent."""

    num_points: int = 2048
    init_radius: float = 0.5  # radius of the ball the centres are drawn in (world units)
    init_scale: float = 0.02  # initial standard deviation of every Gaussian
    init_opacity: float = 0.1
    sh_degree: int = 0  # 0..3; the view-dependent SH bands are learned only when > 0


@dataclass
class OptimConfig:
    """One Adam per parameter (gsplat's convention); the means' rate decays exponentially."""

    means_lr: float = 1e-3
    means_lr_final: float = 2e-5
    scales_lr: float = 5e-3
    quats_lr: float = 5e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 1e-2
    shN_lr: float = 5e-4
    rate_scale: float = 1.0  # every rate above times this: a shorter run's larger steps (presets.py, short and refined)


# The training orbits: the views the world is rendered from for training its networks, and a
# generation's random views (gsdi.cameras.sample_orbits reads these when given no ranges).
ORBIT_RADIUS = (1.5, 2.0)  # distance to the origin, world units (objects are about 0.6 across)
ORBIT_FOV = (40.0, 70.0)  # vertical field of view, degrees
ORBIT_ELEVATION = (-10.0, 45.0)  # degrees, positive looks down


def zoomed_fov(fov_range: tuple[float, float], zoom: float) -> tuple[float, float]:
    """A vertical field-of-view range (degrees) narrowed so that what it shows appears zoom times larger."""
    assert zoom > 0, zoom
    lo, hi = (math.degrees(2 * math.atan(math.tan(math.radians(f / 2)) / zoom)) for f in fov_range)
    return lo, hi


@dataclass
class CameraConfig:
    """Random training orbits around the origin and the fixed evaluation orbit (docs/method.md)."""

    radius_range: tuple[float, float] = ORBIT_RADIUS
    fov_range: tuple[float, float] = ORBIT_FOV
    elevation_range: tuple[float, float] = ORBIT_ELEVATION
    views_per_step: int = 1  # B: views rendered and guided together in one step
    eval_fov: float = 40.0  # preview.png and the turntable: field of view; the distance frames the scene
    eval_elevation: float = 15.0
    eval_views: int = 8  # views in preview.png (azimuths evenly spaced)
    view_dependent_prompt: bool = True  # append ", front view" etc. to the prompt


@dataclass
class RenderConfig:
    backend: Literal["auto", "gsplat", "torch"] = "auto"  # auto: gsplat on CUDA, ours elsewhere
    max_resolution: int = 512  # renders at min(prior's image size, this), resized to the prior's
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    preview_size: int = 256  # side of each view in preview.png and turntable.mp4 (splats render at any size)


@dataclass
class GuidanceConfig:
    """Score distillation (docs/method.md). SDS and SDI differ only in how the noise is made."""

    # auto: SDS (annealed t) on the embedded prior, SDI on Stable Diffusion (resolve_auto_method);
    # ism: LucidDreamer's interval score matching, a comparison row
    method: Literal["auto", "sdi", "sds", "ism"] = "auto"
    cfg_scale: float = 7.5  # in the form cfg_form names
    # standard: diffusers' eps_u + s (eps_c - eps_u); reference: the SDI code's, eps_c + s (eps_c - eps_u)
    # without Perp-Neg (standard s + 1) and the standard form with it (standard_scale below)
    cfg_form: Literal["standard", "reference"] = "standard"
    # The timestep SDI's sample inverted to t' = t + delta is predicted at: scheduled (t, the reference
    # code's labelling, which the stable-diffusion recipe uses) or inverted (t', measured better on the
    # embedded prior: research log, 2026-12-02 later)
    prediction_timestep: Literal["scheduled", "inverted"] = "inverted"
    t_schedule: Literal["auto", "anneal", "random"] = "auto"  # auto: anneal for SDI, random for SDS
    p_min: float = 0.25
    p_max: float = 0.98
    inversion_steps: int = 5  # K: grid points of the DDIM inversion (research log, 2026-11-26)
    # The embedded prior's inversion (research log, 2026-11-26): the conditional prediction (CFG 1), eta 0,
    # from the render noised with fresh noise to t0 = inversion_start (at t' <= t0 the noise is SDS's);
    # inversion_start 0 is the paper's clean start, which turns that prior's renders into noise.
    inversion_cfg_scale: float = 1.0
    inversion_eta: float = 0.0
    inversion_start: int = 300
    # Steps a level lasts: its t, views and noise (drawn for SDS, inverted for SDI) are kept for that
    # many steps while the render changes (the prediction is asked anew at each); 1: fresh every step
    # (docs/exact-study.md; in 3D on the embedded prior it hazes: research log, 2026-12-02 later).
    hold_steps: int = 1
    # Perp-Neg against the Janus problem (gsdi/prompts.py): the other views' prompts as
    # perpendicular negatives; needs view-dependent prompts; the UNet batch grows from 2 to 4 per view.
    perp_neg: bool = False

    @property
    def resolved_t_schedule(self) -> str:
        """t_schedule with "auto" resolved: annealed for SDI, random for SDS and ISM (make_config writes
        the resolved value into the config, so config.json records it)."""
        if self.t_schedule != "auto":
            return self.t_schedule
        return "anneal" if self.method == "sdi" else "random"

    def standard_scale(self, scale: float) -> float:
        """The scale in the standard form eps_u + s (eps_c - eps_u) that `scale` means under cfg_form:
        "reference" is the SDI code's rule, eps_c + scale (eps_c - eps_u) (= standard scale + 1) without
        Perp-Neg and the standard form with it; "standard" is diffusers' form always."""
        return scale + 1.0 if self.cfg_form == "reference" and not self.perp_neg else scale


@dataclass
class DensifyConfig:
    """gsplat's DefaultStrategy with thresholds for an object of radius ~0.5, plus a cap.

    The image-space gradient scale depends on the prior (latent size, loss normalisation), so instead
    of a fixed `grow_grad2d` the Gaussians whose mean gradient is in the top (1 - grow_quantile)
    are grown at each refinement.
    """

    enabled: bool = True
    # grow the top 40% at each refinement (research log, 2026-12-02)
    grow_quantile: float = 0.6
    grow_scale3d: float = 0.01  # relative to the scene scale (init_radius)
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    refine_start_iter: int = 50
    refine_stop_iter_fraction: float = 0.7  # stop densifying after this fraction of the steps
    refine_every: int = 100
    reset_every: int = 500  # opacity reset; done by us (gsplat 1.5.3's never fires)
    max_gaussians: int = 20_000
    # Haze: faint Gaussians around the object that the prior cannot see on a white background
    # (docs/research-log.md). From clean_start (a fraction of the steps, by default where
    # densification stops), every refine_every steps and after the last step, Gaussians fainter than
    # clean_opa are removed; with opacity_l1 > 0, opacity_l1 * mean(opacity) also joins the loss so
    # that the ones the prior does not need fade.
    clean_opa: float = 0.05
    clean_start: float = 0.7
    # Off by default: over a 1000-step run it shrinks objects and costs their parts (research log, 2026-12-01)
    opacity_l1: float = 0.0


@dataclass
class RefineConfig:
    """Refinement after the score-distillation steps (gsdi/guidance/refine.py): a buffer of `views`
    target images, each the prior's few-step DDIM sample from the current render noised to t (SDEdit);
    every step fits the render of one buffer view to its target (pixel MSE), and every `refresh_every`
    steps one view's target is made anew from the current scene, t falling from t_start to t_end (an
    iterative dataset update); then `polish_steps` score-distillation steps at low noise. Off by default;
    the `refined` preset (what the latent world prior runs) turns both on after 400 score-distillation
    steps: on that prior it draws the car's yellow as bands along its sides where score distillation
    alone draws patches, and the yardstick rated it nearer the world than `short` on 23 of 30 runs of
    chosen and drawn prompts (research log, 2026-12-05 (last), (stripes) and (refined))."""

    steps: int = 0  # steps after `steps` score-distillation ones; 0: no refinement
    views: int = 8  # buffer views, at evenly spaced azimuths (random offset), random elevation, distance and fov
    refresh_every: int = 30  # steps between two refreshes; each makes one view's target anew
    t_start: int = 400  # the noise level of the first targets, falling linearly to t_end at the last step
    t_end: int = 100
    ddim_steps: int = 5  # DDIM steps from t to the clean image, with guidance.cfg_scale
    lr_scale: float = 0.5  # the optimisers' learning rates are this times optim's (means: means_lr), fresh Adam state
    # Then `polish_steps` score-distillation steps at low noise: t annealed from polish_p_max to polish_p_min
    # (fractions of the prior's timesteps), fresh Adam state at optim's rates, no densification or pruning.
    # They take away the fit's streaks and keep its bands (research log, 2026-12-05 (stripes)).
    polish_steps: int = 0
    polish_p_max: float = 0.5
    polish_p_min: float = 0.02


@dataclass
class GenerateConfig:
    prompt: str = ""
    negative_prompt: str = ""
    prior: str = DEFAULT_PRIOR  # "embedded", "world", or a Stable Diffusion hub id / local diffusers folder
    preset: str = "default"
    steps: int = 1000
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = 10  # read losses back from the device only every N steps
    turntable_frames: int = TURNTABLE_FRAMES  # turntable.mp4 (.gif without the video extra) at the end; 0: none
    checkpoint_every: int = 250  # steps between checkpoints (0: only at the end and on Ctrl-C/SIGTERM)
    cuda_graphs: bool = True  # replay the no-grad UNet calls from captured CUDA graphs (CUDA only)
    # What encodes renders for a latent prior: vae, its VAE's encoder; vae_tiny, the folder's vae_tiny/ (a
    # diffusers AutoencoderTiny whose encoder stands in for the VAE's, about 4x cheaper on a CPU:
    # examples/train_world_prior.py tiny distils one); auto: vae_tiny where the folder has one, else vae.
    # The world prior ships none (research log, 2026-12-05 (evening): one trained on a CPU lost the castle).
    prior_encoder: Literal["auto", "vae", "vae_tiny"] = "auto"
    # CPU threads; 0: chosen at the start from the cores that other work leaves free (OMP_NUM_THREADS,
    # when set, is used instead); metrics.json and the checkpoint record the number used, and --resume
    # uses it again.
    cpu_threads: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    @property
    def total_steps(self) -> int:
        """Score-distillation steps, then refinement and polish steps: what the progress bar counts."""
        return self.polish_start + self.refine.polish_steps

    @property
    def polish_start(self) -> int:
        """The step the polish after the refinement begins at (RefineConfig.polish_steps)."""
        return self.steps + self.refine.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerateConfig":
        return _from_dict(cls, data)


def make_config(prompt: str, preset: str = "auto", **overrides: Any) -> GenerateConfig:
    """Defaults, then the preset, then `overrides` (keys `steps` or dotted `guidance.method`). Preset
    "auto": `refined` for the latent world prior (presets.AUTO_PRESETS), `default` for the pixel prior,
    `stable-diffusion` for a Stable Diffusion prior.

    Raises GsdiError with a one-line message on an unknown preset/key or an invalid value.
    """
    given = {k.replace("__", "."): v for k, v in overrides.items() if v is not None}  # None: not given
    prior = given.get("prior", DEFAULT_PRIOR)
    if preset == "auto":
        preset = AUTO_PRESETS.get(prior, "default" if is_world_prior(prior) else "stable-diffusion")
    if preset not in PRESETS:
        raise GsdiError(f"unknown preset {preset!r}; choose auto or one of: {', '.join(PRESETS)}")
    config = GenerateConfig(prompt=prompt, preset=preset)
    recipe = PRESETS[preset]
    given.setdefault("guidance.method", recipe.get("guidance.method", "auto"))
    # Perp-Neg: on for Stable Diffusion (the paper's 3D runs use it), off for the world's priors (README and docs/results.md, Guidance)
    given.setdefault("guidance.perp_neg", recipe.get("guidance.perp_neg", not is_world_prior(prior)))
    given.setdefault("camera.fov_range", prior_fov_range(prior))  # its random views framed as the views it was trained on
    for key, value in {**recipe, **given}.items():
        _set(config, key, value)
    resolve_auto_method(config)
    validate(config)
    return config


def resolve_auto_method(config: GenerateConfig) -> None:
    """`--guidance auto`: SDI for Stable Diffusion; SDS with the annealed t schedule for the world's
    priors (SDS beats SDI on both, the embedded and the latent one: docs/results.md, Guidance). Then the "auto" t schedule. config.json
    records both resolved."""
    g = config.guidance
    if g.method == "auto" and is_world_prior(config.prior):
        g.method = "sds"
        if g.t_schedule == "auto":
            g.t_schedule = "anneal"
    elif g.method == "auto":
        g.method = "sdi"
    g.t_schedule = g.resolved_t_schedule


WORLD_PRIORS = ("world", "embedded")  # shipped in the package, by name: the latent and the pixel prior of gsdi's world
WORLD_ZOOM = 1.5  # the latent world prior ("world") saw the training orbits framed this much closer (its MODEL_CARD.md)


def prior_fov_range(prior: str) -> tuple[float, float]:
    """The training orbits' field-of-view range (degrees) that frames objects as `prior` saw them."""
    return zoomed_fov(ORBIT_FOV, WORLD_ZOOM) if prior == "world" else ORBIT_FOV


def is_world_prior(name: str) -> bool:
    """Whether `name` is a prior of gsdi's world (its language, its presets, its yardstick): a shipped
    one by name or a folder of the pixel prior."""
    from pathlib import Path

    return name in WORLD_PRIORS or (Path(name).expanduser() / "gsdi_embedded.json").is_file()


def validate(config: GenerateConfig) -> None:
    """Check values a user can get wrong; raise GsdiError naming the option."""
    if not config.prompt.strip():
        raise GsdiError("the prompt is empty; say what to generate, e.g. gsdi generate \"a castle\"")
    checks = [
        (config.steps >= 1, f"--steps must be at least 1 (got {config.steps})"),
        (config.seed >= 0, f"--seed must be non-negative (got {config.seed})"),
        (config.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda (got {config.device!r})"),
        (config.guidance.method in ("sdi", "sds", "ism"),
         f"--guidance must be auto, sdi, sds or ism (interval score matching, for comparison; got {config.guidance.method!r})"),
        (config.guidance.t_schedule in ("auto", "anneal", "random"), "t_schedule must be auto, anneal or random"),
        (config.guidance.cfg_form in ("standard", "reference"), "guidance.cfg_form must be standard or reference"),
        (config.guidance.prediction_timestep in ("scheduled", "inverted"),
         "guidance.prediction_timestep must be scheduled or inverted"),
        (config.render.backend in ("auto", "gsplat", "torch"), f"--renderer must be auto, gsplat or torch (got {config.render.backend!r})"),
        (0 <= config.scene.sh_degree <= 3, "sh_degree must be in 0..3"),
        (config.scene.num_points >= 1, "scene.num_points must be at least 1"),
        (config.camera.views_per_step >= 1, "camera.views_per_step must be at least 1"),
        (config.camera.view_dependent_prompt or not config.guidance.perp_neg,
         "Perp-Neg needs view-dependent prompts (camera.view_dependent_prompt)"),
        (1 <= config.guidance.inversion_steps <= 1000, "guidance.inversion_steps must be in 1..1000"),
        (config.guidance.hold_steps >= 1, "guidance.hold_steps must be at least 1"),
        (0.0 <= config.guidance.p_min <= config.guidance.p_max <= 1.0, "need 0 <= p_min <= p_max <= 1"),
        (config.render.max_resolution >= 16, "render.max_resolution must be at least 16"),
        (config.render.preview_size >= 16, "render.preview_size must be at least 16"),
        (config.densify.max_gaussians >= config.scene.num_points, "densify.max_gaussians must be >= scene.num_points"),
        (0.0 <= config.densify.grow_quantile <= 1.0, "densify.grow_quantile must be in [0, 1]"),
        (config.log_every >= 1, "log_every must be at least 1"),
        (config.refine.steps >= 0, f"refine.steps must be 0 (no refinement) or more (got {config.refine.steps})"),
        (config.refine.views >= 1 and config.refine.refresh_every >= 1 and config.refine.ddim_steps >= 1,
         "refine.views, refine.refresh_every and refine.ddim_steps must be at least 1"),
        (0 <= config.refine.t_end <= config.refine.t_start <= 999, "need 0 <= refine.t_end <= refine.t_start <= 999"),
        (config.refine.lr_scale > 0, "refine.lr_scale must be positive"),
        (config.refine.polish_steps >= 0, f"refine.polish_steps must be 0 (no polish) or more (got {config.refine.polish_steps})"),
        (0.0 <= config.refine.polish_p_min <= config.refine.polish_p_max <= 1.0,
         "need 0 <= refine.polish_p_min <= refine.polish_p_max <= 1"),
        (config.optim.rate_scale > 0, "optim.rate_scale must be positive"),
        (config.prior_encoder in ("auto", "vae", "vae_tiny"), f"prior_encoder must be auto, vae or vae_tiny (got {config.prior_encoder!r})"),
        (config.cpu_threads >= 0, f"cpu_threads must be 0 (chosen from the free cores) or more (got {config.cpu_threads})"),
        (config.checkpoint_every >= 0, f"--checkpoint-every must be 0 (only at the end) or more (got {config.checkpoint_every})"),
    ]
    for ok, message in checks:
        if not ok:
            raise GsdiError(message)


def _set(config: GenerateConfig, key: str, value: Any) -> None:
    *path, name = key.split(".")
    target: Any = config
    for part in path:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise GsdiError(f"unknown config key {key!r}")
        target = getattr(target, part)
    if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
        raise GsdiError(f"unknown config key {key!r}")
    current = getattr(target, name)
    if dataclasses.is_dataclass(current):
        raise GsdiError(f"config key {key!r} names a section; set one of its fields")
    setattr(target, name, _coerce(current, value, key))


def _coerce(current: Any, value: Any, key: str) -> Any:
    """Give `value` the type of the default it replaces (JSON and the CLI hand over lists/strings)."""
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(current, tuple):
            if isinstance(value, str):  # --set camera.fov_range=30,50 (or [30,50], (30, 50))
                value = value.strip("[]() ").split(",")
            return tuple(type(c)(v) for c, v in zip(current, value, strict=True))
        return type(current)(value)
    except (TypeError, ValueError):
        raise GsdiError(f"bad value for {key}: {value!r}") from None


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
