"""Measuring a generated scene against the world: the yardstick examples/eval_world.py reports.

For a prompt, world instances of it (fixed seeds) are rendered from held-out views (`eval_cameras`:
8 azimuths x 2 elevations, not the training orbits), and so is the generated scene. Per scene:
- `fidelity_kid`: the kernel inception distance (KID, unbiased; torchmetrics) between the scene's
  views and REFERENCE_INSTANCES instances' renders from the same views, in the features of the
  world critic (gsdi/eval/critic.py), which is trained to see blur, noise, speckle, haze and
  removed parts. Lower is better; 0 is the world itself.
- `sharpness`: the critic's mean probability that a view is a sharp, whole world render (the
  world's CLIP-IQA "sharp photo" vs "blurry photo"). Higher is better.
- `compare`: best-instance PSNR (it rewards a blurry average of the instances: layout and colour
  only), silhouette IoU, front/back correctness, haze and size against the best-matching instance.
The 2D reference (`ddim_reference`): the prior's own DDIM samples of the prompt, scored the same
way against world renders from the cameras whose view words they were asked for. The embedded prior
was trained with grain (noise of std 0.1 in model space on every image), so a DDIM sample carries
grain that is not detail: the reference stops sampling where the schedule's noise is DENOISE_RATIO
times larger than the grain and takes the prior's clean prediction x0 there.
The validation of these measures on degraded world renders is examples/validate_yardstick.py.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from gsdi.cameras import Cameras, orbit_cameras, sample_orbits
from gsdi.eval.critic import Critic
from gsdi.eval.recogniser import to_input
from gsdi.world.language import Prompt
from gsdi.world.objects import PATTERN_SHARE, pattern_averaged, pattern_shifted, sample_object
from gsdi.world.render import pad_objects, render_objects

AZIMUTHS = (0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0)
ELEVATIONS = (5.0, 30.0)
EVAL_DISTANCE, EVAL_FOV = 1.8, 55.0
REFERENCE_SEED = 1000  # the world's reference instances of a prompt: seeds 1000, 1001, ...
REFERENCE_INSTANCES = 32  # instances in a KID reference set (x 16 views)
DENOISE_RATIO = 0.3  # stop DDIM where sqrt((1 - abar) / abar) falls below this: 3x the prior's grain
KID_SUBSETS = 100


def eval_cameras(size: int) -> Cameras:
    """The held-out views: AZIMUTHS at each of ELEVATIONS (elevation-major), distance 1.8, fov 55."""
    az = torch.tensor([a for _ in ELEVATIONS for a in AZIMUTHS])
    el = torch.tensor([e for e in ELEVATIONS for _ in AZIMUTHS])
    n = az.shape[0]
    return orbit_cameras(az, el, torch.full((n,), EVAL_DISTANCE), torch.full((n,), EVAL_FOV), size, size)


def reference_objects(spec: Prompt, count: int, first_seed: int = REFERENCE_SEED) -> list[Tensor]:
    """The world's instances of a prompt: primitives of seeds first_seed, first_seed + 1, ..."""
    return [sample_object(spec.category, spec.colour, first_seed + m, spec.pattern, spec.pattern_colour)[0]
            for m in range(count)]


def pattern_conditions(spec: Prompt, held: list[Tensor], first_seed: int, cams: Cameras, device: str | torch.device,
                       generator: torch.Generator) -> dict[tuple[str, float], tuple[Tensor, Tensor]]:
    """A patterned prompt's instances `held` (seeds first_seed, first_seed + 1, ...) changed the ways a
    method that does not keep one pattern changes them, each as render_instances' (RGB, alpha):
    its phase scrambled between views (view v from one of two copies whose patterns are shifted by
    random phases, by v's parity), the pattern averaged into its mean colour, the plain object in
    its own colour. The validations of the pattern measure and of the pattern critic use them."""
    assert spec.pattern is not None, f"needs a patterned prompt: {spec}"
    copies = [render_instances([pattern_shifted(p, generator) for p in held], cams, device) for _ in range(2)]
    even = (torch.arange(len(cams)) % 2 == 0).view(1, -1, 1, 1, 1)
    plain = reference_objects(Prompt(spec.category, spec.colour), len(held), first_seed)
    return {("phase scrambled between views", 0.0): tuple(torch.where(even, a, b) for a, b in zip(*copies)),
            ("pattern averaged into its mean colour", PATTERN_SHARE): render_instances([pattern_averaged(p) for p in held], cams, device),
            ("plain, the object's own colour", 0.0): render_instances(plain, cams, device)}


def render_instances(objects: list[Tensor], cams: Cameras, device: str | torch.device = "cpu",
                     batch: int | None = None) -> tuple[Tensor, Tensor]:
    """Each object from every camera: RGB [M, V, H, W, 3] and alpha [M, V, H, W, 1], on the CPU;
    `batch` (object, camera) pairs a render call (default: 16 on the CPU, where small calls are
    faster, 2048 on a GPU, where launches are the cost)."""
    M, V = len(objects), len(cams)
    batch = batch or (16 if torch.device(device).type == "cpu" else 2048)
    prims = pad_objects(objects)  # [M, P, PRIMITIVE_FIELDS]
    rgb, alpha = [], []
    for start in range(0, M * V, batch):
        pairs = torch.arange(start, min(start + batch, M * V))
        r, a = render_objects(prims[pairs // V].to(device), cams.take(pairs % V))
        rgb.append(r.cpu())
        alpha.append(a.cpu())
    return torch.cat(rgb).unflatten(0, (M, V)), torch.cat(alpha).unflatten(0, (M, V))


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR of [V, H, W, 3] in [0, 1]."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def compare(scene_rgb: Tensor, scene_alpha: Tensor, inst_rgb: Tensor, inst_alpha: Tensor) -> dict:
    """Scene views [V, H, W, *] against instances [M, V, H, W, *] from the eval cameras: best-instance
    PSNR, silhouette IoU, front/back correctness, haze (alpha outside) and size (area ratio)."""
    V = scene_rgb.shape[0]
    assert inst_rgb.shape[1] == V and scene_alpha.shape[0] == V, (scene_rgb.shape, inst_rgb.shape)
    per_instance = torch.stack([psnr(scene_rgb, inst_rgb[m]).mean() for m in range(inst_rgb.shape[0])])
    best = int(per_instance.argmax())
    a, b = scene_alpha[..., 0] > 0.5, inst_alpha[best][..., 0] > 0.5
    iou = float((a & b).sum() / (a | b).sum().clamp_min(1))
    front, back = AZIMUTHS.index(0.0), AZIMUTHS.index(180.0)
    f_gen, b_gen = scene_rgb[[front, back]]
    f_ref, b_ref = inst_rgb[best][[front, back]]
    straight = psnr(f_gen[None], f_ref[None]) + psnr(b_gen[None], b_ref[None])
    swapped = psnr(f_gen[None], b_ref[None]) + psnr(b_gen[None], f_ref[None])
    # Haze: the share of the scene's rendered alpha that falls outside the matched instance's
    # silhouette grown by 2 pixels (so edges do not count), and the share of it that is faint (< 0.5).
    grown = F.max_pool2d(b[:, None].float(), 5, stride=1, padding=2)[:, 0] > 0
    alpha = scene_alpha[..., 0]
    outside = alpha * ~grown
    return {"best_instance_psnr": round(float(per_instance[best]), 2), "silhouette_iou": round(iou, 3),
            "front_back_correct": int(straight.item() > swapped.item()), "best_instance": best,
            "alpha_outside": round(float(outside.sum() / alpha.sum().clamp_min(1e-6)), 4),
            "faint_alpha_outside": round(float((outside * (alpha < 0.5)).sum() / alpha.sum().clamp_min(1e-6)), 4),
            # Size: the scene's silhouette area over the matched instance's (1: the world's framing).
            "area_ratio": round(float(a.sum() / b.sum().clamp_min(1)), 3)}


@torch.no_grad()
def critic_features(critic: Critic, views: Tensor, batch: int = 512) -> Tensor:
    """Views [N, H, W, 3] in [0, 1] -> the critic's features [N, 256] over their RMS on clean renders
    (critic.json's feature_rms, so that KID comes in the usual units), float64 on the CPU."""
    device = next(critic.parameters()).device
    chunks = [critic.features(to_input(views[i:i + batch], critic.size).to(device)) / critic.feature_rms
              for i in range(0, views.shape[0], batch)]
    return torch.cat(chunks).double().cpu()


def kid(fake: Tensor, real: Tensor, seed: int = 0) -> float:
    """Unbiased KID (torchmetrics, cubic polynomial kernel) between feature sets [N, D] and [M, D]
    (the features are given, so torchmetrics' feature network is the identity); KID_SUBSETS subsets
    of min(N, M) rows drawn with `seed`, so the same inputs always give the same value."""
    assert fake.dim() == real.dim() == 2 and fake.shape[1] == real.shape[1], (fake.shape, real.shape)
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features": they are a few hundred rows
        metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=KID_SUBSETS,
                                         subset_size=min(fake.shape[0], real.shape[0]))
        metric.update(real, real=True)
        metric.update(fake, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, _ = metric.compute()
    return float(mean)


@torch.no_grad()
def sharpness(critic: Critic, views: Tensor) -> float:
    """The critic's mean probability over views [N, H, W, 3] that a view is a sharp, whole world render."""
    x = to_input(views, critic.size).to(next(critic.parameters()).device)
    return float(torch.sigmoid(critic(x)["quality"]).mean())


class Yardstick:
    """Fidelity (KID) and sharpness of view sets against a prompt's world instances, with cached references."""

    def __init__(self, critic: Critic, size: int = 64, instances: int = REFERENCE_INSTANCES,
                 render_device: str | torch.device = "cpu"):
        self.critic, self.size, self.instances, self.device = critic, size, instances, render_device
        self.cams = eval_cameras(size)
        self._reference: dict[tuple, Tensor] = {}

    def reference_features(self, spec: Prompt, cams: Cameras | None = None, key: str = "eval") -> Tensor:
        """Features [instances x V, 256] of the prompt's reference instances seen by `cams` (default: the eval views)."""
        cache = (spec.category, spec.colour, spec.pattern, spec.pattern_colour, key)
        if cache not in self._reference:
            rgb, _ = render_instances(reference_objects(spec, self.instances), cams or self.cams, self.device)
            self._reference[cache] = critic_features(self.critic, rgb.flatten(0, 1))
        return self._reference[cache]

    def score(self, spec: Prompt, views: Tensor, cams: Cameras | None = None, key: str = "eval") -> dict:
        """{"fidelity_kid", "sharpness"} of views [V, H, W, 3] seen by `cams` (default: the eval views)."""
        fake = critic_features(self.critic, views)
        return {"fidelity_kid": round(kid(fake, self.reference_features(spec, cams, key)), 5),
                "sharpness": round(sharpness(self.critic, views), 4)}

    def ddim_cameras(self, seed: int = 0, views: int = 16, fov_range: tuple[float, float] | None = None) -> Cameras:
        """The random training orbits whose view words the DDIM reference asks for (drawn with `seed`;
        `fov_range`: the framing the prior was trained on, gsdi.config.prior_fov_range; None: the orbits')."""
        return sample_orbits(views, self.size, self.size, torch.Generator().manual_seed(seed), fov_range=fov_range)

    @staticmethod
    def orbits_key(seed: int = 0, views: int = 16, fov_range: tuple[float, float] | None = None) -> str:
        """The reference cache's key for views seen by ddim_cameras(seed, views, fov_range)."""
        return f"orbits-{seed}-{views}-{fov_range}"

    def ddim(self, prior, prompt: str, spec: Prompt, seed: int = 0, views: int = 16,
             denoise_ratio: float | None = DENOISE_RATIO,
             fov_range: tuple[float, float] | None = None) -> tuple[dict, Tensor]:
        """The 2D reference: `views` DDIM samples of the prompt with the view words of ddim_cameras(seed),
        scored against the instances seen from those cameras (framed by `fov_range`, as the prior saw its
        views) -> ({"ddim_fidelity_kid", "ddim_sharpness"}, samples [views, S, S, 3])."""
        cams = self.ddim_cameras(seed, views, fov_range)
        samples = ddim_reference(prior, prompt, cams.view_words(), seed, denoise_ratio=denoise_ratio).cpu()
        scored = self.score(spec, samples, cams, key=self.orbits_key(seed, views, fov_range))
        return {"ddim_fidelity_kid": scored["fidelity_kid"], "ddim_sharpness": scored["sharpness"]}, samples


@torch.no_grad()
def ddim_reference(prior, prompt: str, view_words: list[str], seed: int, steps: int = 50, scale: float = 7.5,
                   denoise_ratio: float | None = DENOISE_RATIO) -> Tensor:
    """DDIM samples [len(view_words), S, S, 3] of "{prompt}, {word} view" (CFG `scale`, `steps` steps);
    with `denoise_ratio`, the prior's x0 prediction at the last grid step whose noise-to-signal ratio
    sqrt((1 - abar) / abar) is at least that (None: sample down to the clean image)."""
    from gsdi.guidance.ddim import sample_prior
    from gsdi.prompts import TextCond, view_prompts

    n = len(view_words)
    text = TextCond(prior.text_embeddings(view_prompts(prompt, view_words)), prior.text_embeddings([""] * n))
    shape = prior.encode(torch.zeros(1, 3, prior.image_size, prior.image_size, device=prior.device)).shape[1:]
    z = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed)).to(prior.device)
    x = sample_prior(prior, text, z, steps, scale, stop_ratio=denoise_ratio)
    return prior.decode(x).clamp(0, 1).permute(0, 2, 3, 1)

