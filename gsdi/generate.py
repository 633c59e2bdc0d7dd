"""The generation loop: text -> 3D Gaussians by score distillation (SDI or SDS).

Read `run` top to bottom: sample cameras -> render -> encode -> pick t -> guidance loss ->
backward -> optimizer step -> densify -> (log). Each line calls a module that does one job.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsdi import __version__
from gsdi.config import GenerateConfig, make_config
from gsdi.errors import GsdiError

if TYPE_CHECKING:
    import torch



@dataclass
class GenerateResult:
    out: Path  # the output folder
    config: GenerateConfig
    num_gaussians: int
    seconds: float  # the optimisation loop alone (no loading, no export)
    ms_per_step: float
    peak_memory_mb: float | None  # CUDA only
    history: list[dict[str, Any]] = field(default_factory=list)  # logged steps: t, t_noisy, loss, grad_x0 (|dloss/dx0|), gaussians

    @property
    def ply(self) -> Path:
        return self.out / "scene.ply"

    @property
    def preview(self) -> Path:
        return self.out / "preview.png"


def generate(
    prompt: str | None = None,
    *,
    config: GenerateConfig | None = None,
    out: str | Path | None = None,
    preset: str = "default",
    force: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> GenerateResult:
    """Generate a scene for `prompt` into folder `out` (scene.ply, config.json, preview.png, metrics.json).

    Either give `config`, or a prompt with a preset and overrides (`steps=200`, `guidance__method="sds"`
    or {"guidance.method": "sds"} via **). Raises GsdiError on user mistakes.
    """
    if config is None:
        config = make_config(prompt or "", preset, **overrides)
    out = prepare_output_dir(Path(out) if out is not None else default_output_dir(config.prompt), force)
    return run(config, out, progress)


def run(config: GenerateConfig, out: Path, progress: bool = True, prior=None) -> GenerateResult:
    """The whole generation into the prepared folder `out`; `prior` shares an already loaded prior."""
    import torch

    from gsdi.export import image_grid, write_ply, write_png

    gen = Generation(config, prior=prior)
    write_json(out / "config.json", {"gsdi_version": __version__, **config.to_dict()})
    history: list[dict[str, Any]] = []
    if gen.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(gen.device)
    start = time.perf_counter()
    with StepProgress(config.steps, enabled=progress) as bar:
        while gen.step < config.steps:
            record = gen.advance()
            if record is not None:
                history.append(record)
                bar.update(gen.step, record)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(gen.device) / 2**20 if gen.device.type == "cuda" else None

    write_ply(out / "scene.ply", gen.params)
    write_png(out / "preview.png", image_grid(gen.eval_views(), 4))
    result = GenerateResult(out, config, gen.num_gaussians, seconds, 1000 * seconds / config.steps, peak, history)
    write_json(out / "metrics.json", {
        "device": torch.cuda.get_device_name(gen.device) if gen.device.type == "cuda" else "cpu",
        "renderer": gen.backend, "render_size": gen.size, "prior_image_size": gen.prior.image_size,
        "cuda_graphs": gen.prior.runner.graphs, "steps": config.steps, "seconds": seconds,
        "ms_per_step": result.ms_per_step, "peak_memory_mb": peak, "num_gaussians": result.num_gaussians,
        "history": history,
    })
    return result


class Generation:
    """The state of one generation between steps, and the step itself.

    `advance()` runs one step: sample cameras -> render -> encode -> pick t -> guidance loss ->
    backward -> optimizer step -> densify; every `log_every` steps it returns a record (the only
    point the loop reads values back from the device). `prior` may be passed in to share one.
    """

    def __init__(self, config: GenerateConfig, prior=None):
        import torch

        from gsdi.densify import Densifier
        from gsdi.guidance import Rng
        from gsdi.priors import load_prior
        from gsdi.render import resolve_backend
        from gsdi.scene import init_params, make_optimizers

        self.config = config
        self.device = resolve_device(config.device)
        self.backend = resolve_backend(config.render.backend, self.device)
        self.rng = Rng.seeded(config.seed, self.device)
        self.prior = prior if prior is not None else load_prior(config.prior, self.device, config.cuda_graphs)
        self.prior.text_embeddings([config.prompt, config.negative_prompt])  # a prompt the prior cannot read fails now
        self.size = min(self.prior.image_size, config.render.max_resolution)
        self.params = init_params(config.scene, self.rng.host, self.device)
        self.optimizers = make_optimizers(self.params, config.optim)
        self.densifier = Densifier(config.densify, config.steps, config.scene.init_radius, self.params, self.optimizers)
        self.step = 0
        self._torch = torch

    @property
    def num_gaussians(self) -> int:
        return self.params["means"].shape[0]

    def advance(self) -> dict[str, Any] | None:
        from gsdi.cameras import sample_orbits
        from gsdi.guidance import guidance_loss, timestep
        from gsdi.priors import text_cond
        from gsdi.render import render
        from gsdi.scene import update_learning_rates

        config, cam, gcfg, prior, step = self.config, self.config.camera, self.config.guidance, self.prior, self.step
        B, T = cam.views_per_step, prior.alphas_cumprod.shape[0]
        cameras = sample_orbits(B, self.size, self.size, self.rng.host, cam.radius_range, cam.fov_range, cam.elevation_range)
        rendered = render(self.params, cameras, config.render.background, self.backend)
        self.densifier.pre_backward(self.params, self.optimizers, step, rendered.meta)
        x0 = prior.encode(to_prior_input(rendered.rgb, prior.image_size), generator=self.rng.device)
        words = cameras.view_words() if cam.view_dependent_prompt else None
        text = text_cond(prior, config.prompt, config.negative_prompt, words, B)
        t = timestep(step, config.steps, gcfg, T, self.rng)
        guided = guidance_loss(prior, x0, text, t, gcfg, self.rng)
        x0.retain_grad()
        guided.loss.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        update_learning_rates(self.optimizers, step + 1, config.steps, config.optim)
        self.densifier.post_backward(self.params, self.optimizers, step, rendered.meta)
        self.step = step + 1
        if self.step % config.log_every and self.step != config.steps:
            return None
        return {"step": self.step, "t": guided.t, "t_noisy": guided.t_noisy, "loss": guided.loss.item(),
                "grad_x0": x0.grad.norm().item(), "gaussians": self.num_gaussians}

    def eval_views(self) -> "torch.Tensor":
        """[V, H, W, 3] renders from the fixed evaluation orbit (what preview.png shows)."""
        from gsdi.cameras import eval_orbits
        from gsdi.render import render

        cam = self.config.camera
        with self._torch.no_grad():
            views = eval_orbits(cam.eval_views, self.size, self.size, cam.eval_radius, cam.eval_fov, cam.eval_elevation)
            return render(self.params, views, self.config.render.background, self.backend).rgb


def to_prior_input(rgb: "torch.Tensor", size: int) -> "torch.Tensor":
    """Renders [B, H, W, 3] -> [B, 3, size, size] (bilinear resize when H != size)."""
    import torch.nn.functional as F

    images = rgb.permute(0, 3, 1, 2)
    if images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def resolve_device(name: str) -> "torch.device":
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GsdiError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def default_output_dir(prompt: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "scene"
    return Path("outputs") / slug


def prepare_output_dir(out: Path, force: bool = False) -> Path:
    """Create `out` and check it is writable; refuse to overwrite earlier outputs unless `force`."""
    if out.exists() and not out.is_dir():
        raise GsdiError(f"--out {out} exists and is not a folder")
    if not force and (out / "scene.ply").exists():
        raise GsdiError(f"--out {out} already holds a generation; pass --force to overwrite it or choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".gsdi-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise GsdiError(f"cannot write to --out {out}: {error.strerror or error}") from None
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


class StepProgress:
    """A rich progress bar showing step, t, loss, Gaussian count and it/s; silent when disabled."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.progress, self.task = total, enabled, None, None

    def __enter__(self) -> "StepProgress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(),
                TextColumn("t={task.fields[t]} loss={task.fields[loss]} gaussians={task.fields[gaussians]}"),
                TextColumn("{task.fields[rate]} it/s"), TimeRemainingColumn(),
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("generate", total=self.total, t="-", loss="-", gaussians="-", rate="-")
            self.start = time.perf_counter()
        return self

    def update(self, step: int, record: dict[str, Any]) -> None:
        if self.progress is not None:
            rate = step / max(time.perf_counter() - self.start, 1e-9)
            self.progress.update(self.task, completed=step, t=record["t"], loss=f"{record['loss']:.4g}",
                                 gaussians=record["gaussians"], rate=f"{rate:.2f}")

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
