"""The generation loop: text -> 3D Gaussians by score distillation (SDI or SDS).

Read `Generation.advance` top to bottom for one step: sample cameras -> render -> encode -> pick t ->
guidance loss (+ the late opacity penalty) -> backward -> (skip if not finite) -> optimizer step ->
densify and remove faint Gaussians -> (log). Each line
calls a module that does one job. `run` drives the steps with a progress bar, checkpoints
(gsdi.checkpoint), Ctrl-C/SIGTERM handling and the outputs; `resume_run` continues a checkpoint.
"""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

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
    resume: str | Path | None = None,
    progress: bool = True,
    on_log: "Callable[[Generation], None] | None" = None,
    **overrides: Any,
) -> GenerateResult:
    """Generate a scene for `prompt` into folder `out` (scene.ply, config.json, preview.png, metrics.json).

    Either give `config`, or a prompt with a preset and overrides (`steps=200`, `guidance__method="sds"`
    or {"guidance.method": "sds"} via **). `resume=DIR` continues DIR's checkpoint instead (its
    settings come from the checkpoint). `on_log(generation)` is called at every logged step (the
    live viewer uses it). Raises GsdiError on user mistakes, Interrupted on SIGINT/SIGTERM
    (after saving a checkpoint and the current scene.ply).
    """
    if resume is not None:
        return resume_run(Path(resume), progress, on_log)
    if config is None:
        config = make_config(prompt or "", preset, **overrides)
    out = Path(out) if out is not None else default_output_dir(config.prompt)
    check_output_dir(out, force)  # everything that can be refused is refused before a byte is written:
    gen = Generation(config)  # the prior loads and reads every prompt the run will use
    before = set(out.iterdir()) if out.is_dir() else None
    prepare_output_dir(out, force)
    try:
        return run(config, out, progress, gen=gen, on_log=on_log)
    except Interrupted:
        raise  # a checkpoint was saved: keep it for --resume
    except BaseException:
        if gen.step <= 1:  # failed before a first step was done: leave the folder as it was
            remove_new_files(out, before)
        raise


def remove_new_files(out: Path, before: "set[Path] | None") -> None:
    """Delete what this run added to `out` (and `out` itself if this run created it)."""
    import shutil

    for path in out.iterdir():
        if before is None or path not in before:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if before is None:
        out.rmdir()


def resume_run(out: Path, progress: bool = True, on_log=None) -> GenerateResult:
    """Continue the generation whose checkpoint is in `out` to the end of its schedule."""
    from gsdi.checkpoint import read_checkpoint, restore
    from gsdi.config import validate

    meta, tensors = read_checkpoint(out)
    config = GenerateConfig.from_dict(meta["config"])
    validate(config)
    if meta["step"] >= config.steps:
        raise GsdiError(f"the generation in {out} already finished its {config.steps} steps; nothing to resume")
    gen = Generation(config)
    restore(gen, meta, tensors)
    gen.history, gen.seconds = list(meta.get("history", [])), float(meta.get("seconds", 0.0))
    return run(config, out, progress, gen=gen, on_log=on_log)


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint and the current scene.ply were saved first."""

    def __init__(self, signum: int, step: int, total: int, out: Path):
        self.signum, self.step, self.total, self.out = signum, step, total, out
        self.exit_code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} at step {step}/{total}: saved {out / 'checkpoint.safetensors'} "
                         f"and {out / 'scene.ply'}; continue with: gsdi generate --resume {out}")


class StopSignals:
    """While active, SIGINT/SIGTERM only set `received`; the loop stops at the end of the step."""

    def __init__(self):
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run(config: GenerateConfig, out: Path, progress: bool = True, prior=None, gen: "Generation | None" = None,
        on_log: "Callable[[Generation], None] | None" = None) -> GenerateResult:
    """The whole generation into the prepared folder `out`; `prior` shares an already loaded prior,
    `gen` continues a restored one. Checkpoints every `config.checkpoint_every` steps and at the end."""
    import torch

    from gsdi.checkpoint import save_checkpoint
    from gsdi.export import write_ply

    gen = gen or Generation(config, prior=prior)
    if gen.step == 0:
        write_json(out / "config.json", {"gsdi_version": __version__, **config.to_dict()})
    if gen.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(gen.device)

    def checkpoint() -> None:
        save_checkpoint(gen, out, {"history": gen.history, "seconds": gen.seconds})

    with StopSignals() as stop, StepProgress(config.steps, enabled=progress, start=gen.step) as bar:
        if gen.device.type == "cpu" and gen.step == 0:
            bar.note(gen.threads_note)
            bar.note(expected_cpu_time(config))
        while gen.step < config.steps:
            start = time.perf_counter()
            try:
                record = gen.advance()
            except torch.cuda.OutOfMemoryError:
                gen.optimizers_zero_grad()
                raise GsdiError(out_of_memory_advice(config, gen.device)) from None
            except NonFiniteError as error:
                checkpoint()
                raise GsdiError(f"{error} (a checkpoint of step {gen.step} is in {out})") from None
            gen.seconds += time.perf_counter() - start
            bar.update(gen.step, record)
            if record is not None:
                gen.history.append(record)
                if on_log is not None:
                    on_log(gen)
            if stop.received is not None:
                checkpoint()
                write_ply(out / "scene.ply", gen.params)
                raise Interrupted(stop.received, gen.step, config.steps, out)
            if config.checkpoint_every and gen.step % config.checkpoint_every == 0 and gen.step < config.steps:
                checkpoint()
    checkpoint()
    return write_outputs(gen, out)


def write_outputs(gen: "Generation", out: Path) -> GenerateResult:
    """scene.ply, preview.png, turntable.mp4 (or .gif) and metrics.json of a finished generation."""
    import torch

    from gsdi.export import image_grid, write_ply, write_png

    config = gen.config
    peak = torch.cuda.max_memory_allocated(gen.device) / 2**20 if gen.device.type == "cuda" else None
    write_ply(out / "scene.ply", gen.params)
    write_png(out / "preview.png", image_grid(gen.preview_views(config.render.preview_size), 4))
    turntable = None
    if config.turntable_frames > 0:
        from gsdi.turntable import write_turntable

        turntable = write_turntable(dict(gen.params.items()), out / "turntable.mp4", frames=config.turntable_frames,
                                    size=config.render.preview_size, elevation=config.camera.eval_elevation,
                                    fov=config.camera.eval_fov, backend=gen.backend).name
    result = GenerateResult(out, config, gen.num_gaussians, gen.seconds, 1000 * gen.seconds / config.steps, peak,
                            gen.history)
    write_json(out / "metrics.json", {
        "device": torch.cuda.get_device_name(gen.device) if gen.device.type == "cuda" else "cpu",
        "renderer": gen.backend, "render_size": gen.size, "prior_image_size": gen.prior.image_size,
        "cuda_graphs": gen.prior.runner.graphs, "steps": config.steps, "seconds": gen.seconds,
        "ms_per_step": result.ms_per_step, "peak_memory_mb": peak, "num_gaussians": result.num_gaussians,
        "skipped_steps": gen.skipped_steps, "turntable": turntable, "history": gen.history,
    })
    return result


def expected_cpu_time(config: GenerateConfig) -> str | None:
    """What this preset measured on 2 CPU cores (embedded prior, the preset's steps), or None."""
    from gsdi.config import CPU_SECONDS, PRESETS, is_embedded_prior

    seconds = CPU_SECONDS.get((config.preset, config.guidance.method))
    if seconds is None or not is_embedded_prior(config.prior):
        return None
    seconds *= config.steps / PRESETS[config.preset].get("steps", GenerateConfig.steps)
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return f"CPU: {config.preset} ({config.guidance.method}, {config.steps} steps): about {took} on 2 cores; ETA below"


def out_of_memory_advice(config: GenerateConfig, device: "torch.device") -> str:
    import torch

    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return (f"the GPU ran out of memory ({total:.0f} GiB card); lower what a step holds: --preset preview, "
            f"--set render.max_resolution=256 (now {config.render.max_resolution}), "
            f"--set densify.max_gaussians={config.densify.max_gaussians // 2} (now {config.densify.max_gaussians}), "
            f"--set camera.views_per_step=1 (now {config.camera.views_per_step}); or close other GPU programs")


MAX_BAD_STEPS_IN_A_ROW = 10


class NonFiniteError(GsdiError):
    """The optimisation keeps producing NaN/inf; raised after MAX_BAD_STEPS_IN_A_ROW skipped steps."""


class Generation:
    """The state of one generation between steps, and the step itself.

    `advance()` runs one step: sample cameras -> render -> encode -> pick t -> guidance loss ->
    backward -> optimizer step -> densify; every `log_every` steps it returns a record (the only
    point the loop reads values back from the device). `prior` may be passed in to share one.
    """

    def __init__(self, config: GenerateConfig, prior=None):
        import torch

        from gsdi.cameras import VIEW_WORDS
        from gsdi.densify import Densifier
        from gsdi.guidance import Rng
        from gsdi.priors import load_prior, view_prompts
        from gsdi.render import resolve_backend
        from gsdi.scene import init_params, make_optimizers

        self.config = config
        self.device = resolve_device(config.device)
        self.threads_note = None
        if self.device.type == "cpu":
            if config.cpu_threads == 0:
                config.cpu_threads, self.threads_note = choose_cpu_threads()
            torch.set_num_threads(config.cpu_threads)
        self.backend = resolve_backend(config.render.backend, self.device)
        self.rng = Rng.seeded(config.seed, self.device)
        torch.manual_seed(config.seed)  # gsplat's densification samples from torch's global generators
        self.prior = prior if prior is not None else load_prior(config.prior, self.device, config.cuda_graphs)
        prompts = [config.prompt, config.negative_prompt]
        if config.camera.view_dependent_prompt:
            prompts += view_prompts(config.prompt, VIEW_WORDS)
        self.prior.text_embeddings(prompts)  # a prompt the prior cannot read fails now, before any output
        self.size = min(self.prior.image_size, config.render.max_resolution)
        self.params = init_params(config.scene, self.rng.host, self.device)
        self.optimizers = make_optimizers(self.params, config.optim)
        self.densifier = Densifier(config.densify, config.steps, config.scene.init_radius, self.params, self.optimizers)
        self.step = 0
        self.seconds = 0.0  # time spent in steps (over every resumed part)
        self.history: list[dict[str, Any]] = []
        self.skipped_steps = 0  # steps whose loss or gradient was not finite (not applied)
        self.bad_in_a_row = 0
        self._torch = torch

    @property
    def num_gaussians(self) -> int:
        return self.params["means"].shape[0]

    def advance(self) -> dict[str, Any] | None:
        from gsdi.cameras import sample_orbits
        from gsdi.guidance import guidance_loss, timestep
        from gsdi.priors import text_cond
        from gsdi.priors.perp_neg import perp_neg_text
        from gsdi.render import render
        from gsdi.scene import update_learning_rates

        config, cam, gcfg, prior, step = self.config, self.config.camera, self.config.guidance, self.prior, self.step
        B, T = cam.views_per_step, prior.alphas_cumprod.shape[0]
        cameras = sample_orbits(B, self.size, self.size, self.rng.host, cam.radius_range, cam.fov_range, cam.elevation_range)
        rendered = render(self.params, cameras, config.render.background, self.backend)
        self.densifier.pre_backward(self.params, self.optimizers, step, rendered.meta)
        x0 = prior.encode(to_prior_input(rendered.rgb, prior.image_size), generator=self.rng.device)
        if gcfg.perp_neg:
            text = perp_neg_text(prior, config.prompt, config.negative_prompt, cameras.azimuth, cameras.elevation)
        else:
            words = cameras.view_words() if cam.view_dependent_prompt else None
            text = text_cond(prior, config.prompt, config.negative_prompt, words, B)
        t = timestep(step, config.steps, gcfg, T, self.rng)
        guided = guidance_loss(prior, x0, text, t, gcfg, self.rng)
        x0.retain_grad()
        loss = guided.loss + self.densifier.opacity_penalty(self.params, step)
        loss.backward()
        self.step = step + 1
        if not self._finite(loss):
            self.skipped_steps += 1
            self.bad_in_a_row += 1
            self.optimizers_zero_grad()
            if self.bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
                raise NonFiniteError(
                    f"the loss or its gradient was not finite {self.bad_in_a_row} steps in a row (last at step {self.step}); "
                    "lower the learning rates or the CFG scale, or try another --seed")
            return None
        self.bad_in_a_row = 0
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        update_learning_rates(self.optimizers, step + 1, config.steps, config.optim)
        self.densifier.post_backward(self.params, self.optimizers, step, rendered.meta)
        self.densifier.clean(self.params, self.optimizers, step)
        if self.step % config.log_every and self.step != config.steps:
            return None
        return {"step": self.step, "t": guided.t, "t_noisy": guided.t_noisy, "loss": guided.loss.item(),
                "grad_x0": x0.grad.norm().item(), "gaussians": self.num_gaussians}

    def optimizers_zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def _finite(self, loss: "torch.Tensor") -> bool:
        """Whether the loss and every parameter gradient are finite (one host sync a step)."""
        torch = self._torch
        checks = [torch.isfinite(loss).all()]
        checks += [torch.isfinite(p.grad).all() for p in self.params.values() if p.grad is not None]
        return bool(torch.stack(checks).all())

    def preview_views(self, size: int | None = None) -> "torch.Tensor":
        """[V, S, S, 3] renders around the scene, framed to its bounds (what preview.png shows); S: the
        training render size unless given."""
        from gsdi.turntable import render_orbit

        cam = self.config.camera
        return render_orbit(dict(self.params.items()), cam.eval_views, size or self.size, cam.eval_elevation,
                            fov=cam.eval_fov, backend=self.backend, background=self.config.render.background)


def choose_cpu_threads() -> tuple[int, str | None]:
    """Threads for a CPU run and, when fewer than the cores, a line saying why: OMP_NUM_THREADS if set,
    else the cores this process may use less the load other work puts on them (1-minute load average),
    at least 1. Two threads on two cores that other work keeps busy run several times slower than one."""
    import os

    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"])), None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    threads = max(1, min(cores, round(cores - load)))
    if threads == cores:
        return threads, None
    return threads, (f"CPU: other work keeps {load:.1f} of {cores} cores busy: using {threads} thread"
                     f"{'s' if threads > 1 else ''} (choose with OMP_NUM_THREADS=N or --set cpu_threads=N)")


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


def check_output_dir(out: Path, force: bool = False) -> None:
    """Refuse an `out` that is a file, or holds earlier outputs unless `force`; writes nothing."""
    if out.exists() and not out.is_dir():
        raise GsdiError(f"--out {out} exists and is not a folder")
    if not force and out.is_dir() and any(out.iterdir()):
        what = "a generation" if (out / "scene.ply").exists() or (out / "config.json").exists() else "files"
        hint = f", --resume {out} to continue its checkpoint" if (out / "checkpoint.safetensors").exists() else ""
        raise GsdiError(f"--out {out} already exists and holds {what}; pass --force to overwrite gsdi's files there"
                        f"{hint}, or choose another folder")


def prepare_output_dir(out: Path, force: bool = False) -> Path:
    """check_output_dir, then create `out` and check it is writable."""
    check_output_dir(out, force)
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
    """A progress bar that fits 80 columns: steps, bar, rate, ETA (from the first step on), and t, loss
    and Gaussian count of the last logged step; silent when disabled. When the output is a file or a
    pipe rather than a terminal, a plain line every LINE_EVERY of the run instead. `console` is for tests."""

    LINE_EVERY = 0.05

    def __init__(self, total: int, enabled: bool = True, start: int = 0, console=None):
        self.total, self.enabled, self.progress, self.task, self.first = total, enabled, None, None, start
        self.console = console
        self.next_line = start + max(1, round(total * self.LINE_EVERY))
        self.last = {"t": "-", "loss": "-", "gaussians": "-"}

    def __enter__(self) -> "StepProgress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("{task.completed}/{task.total}"), BarColumn(bar_width=16),
                TextColumn("{task.fields[rate]}"), TextColumn("eta {task.fields[eta]}"),
                TextColumn("t={task.fields[t]} loss={task.fields[loss]} N={task.fields[gaussians]}"),
                console=self.console,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("generate", total=self.total, completed=self.first,
                                               t="-", loss="-", gaussians="-", rate="-", eta="-")
            self.start = time.perf_counter()
        return self

    def note(self, text: str | None) -> None:
        """A line above the bar (nothing when disabled or `text` is None)."""
        if self.progress is not None and text:
            self.progress.console.print(text)

    def update(self, step: int, record: "dict[str, Any] | None" = None) -> None:
        """After every step; `record` (t, loss, gaussians) when the step was logged."""
        if self.progress is None:
            return
        done, elapsed = step - self.first, time.perf_counter() - self.start
        fields = {"rate": rate_text(done, elapsed), "eta": clock(elapsed / max(done, 1) * (self.total - step))}
        if record is not None:
            self.last = {"t": record["t"], "loss": f"{record['loss']:.3g}", "gaussians": record["gaussians"]}
        fields.update(self.last)
        self.progress.update(self.task, completed=step, **fields)
        if not self.progress.console.is_terminal and (step >= self.next_line or step == self.total):
            self.next_line = step + max(1, round(self.total * self.LINE_EVERY))
            self.progress.console.print(
                f"step {step}/{self.total} ({100 * step / self.total:.0f}%) {fields['rate']} eta {fields['eta']} "
                f"t={self.last['t']} loss={self.last['loss']} N={self.last['gaussians']}", highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def rate_text(steps: int, seconds: float) -> str:
    """'12.3 it/s' or, below one step a second, '1.9 s/it'."""
    if steps <= 0 or seconds <= 0:
        return "-"
    per_second = steps / seconds
    return f"{per_second:.1f} it/s" if per_second >= 1 else f"{1 / per_second:.1f} s/it"


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
