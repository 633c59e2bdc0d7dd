"""The run of a generation: the loop around the steps, Ctrl-C/SIGTERM, checkpoints, resume, outputs.

`generate()` checks the prompt and the folder, builds a `Generation` (gsdi/step.py: the algorithm,
one step at a time) and `run`s it: steps with a progress bar (gsdi/progress.py), a checkpoint every
`checkpoint_every` steps and on a stop signal (gsdi/checkpoint.py), then scene.ply, preview.png,
the turntable and metrics.json (file names in gsdi/outputs.py). `resume_run` continues a checkpoint.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gsdi.config import GenerateConfig, make_config
from gsdi.errors import GsdiError
from gsdi.outputs import (CHECKPOINT, CONFIG, METRICS, PREVIEW, SCENE, TURNTABLE, check_output_dir, default_output_dir,
                          prepare_output_dir, remove_new_files, write_atomically, write_json)
from gsdi.progress import StepProgress
from gsdi.version import __version__

if TYPE_CHECKING:
    import torch

    from gsdi.step import Generation


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
        return self.out / SCENE

    @property
    def preview(self) -> Path:
        return self.out / PREVIEW


def generate(
    prompt: str | None = None,
    *,
    config: GenerateConfig | None = None,
    out: str | Path | None = None,
    preset: str = "auto",
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
    from gsdi.step import Generation

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


def resume_run(out: Path, progress: bool = True, on_log=None) -> GenerateResult:
    """Continue the generation whose checkpoint is in `out` to the end of its schedule."""
    from gsdi.checkpoint import read_checkpoint
    from gsdi.config import validate

    tensors, meta = read_checkpoint(out)
    config = GenerateConfig.from_dict(meta["config"])
    validate(config)
    if meta["step"] >= config.total_steps:
        raise GsdiError(f"the generation in {out} already finished its {config.total_steps} steps; nothing to resume")
    return run(config, out, progress, gen=restored(config, tensors, meta), on_log=on_log)


def restored(config: GenerateConfig, tensors: dict, meta: dict, prior=None) -> "Generation":
    """A Generation of `config` at a checkpoint's state (read_checkpoint's halves), on the CPU thread
    count the run began with; `prior` shares a loaded one."""
    from gsdi.step import Generation

    gen = Generation(config, prior=prior, cpu_threads=meta.get("cpu_threads"))
    gen.load_state_dict(tensors, meta)
    return gen


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint and the current scene.ply were saved first."""

    def __init__(self, signum: int, step: int, total: int, out: Path):
        self.signum, self.step, self.total, self.out = signum, step, total, out
        self.exit_code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} at step {step}/{total}: saved {out / CHECKPOINT} "
                         f"and {out / SCENE}; continue with: gsdi generate --resume {out}")


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

    from gsdi.checkpoint import write_checkpoint
    from gsdi.step import Generation, NonFiniteError

    gen = gen or Generation(config, prior=prior)
    if gen.step == 0:
        write_json(out / CONFIG, {"gsdi_version": __version__, **config.to_dict()})
    if gen.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(gen.device)

    def checkpoint() -> None:
        write_checkpoint(out, *gen.state_dict())
        saved.append(gen.step)

    saved: list[int] = []  # the steps checkpointed in this run

    with StopSignals() as stop, StepProgress(config.total_steps, enabled=progress, start=gen.step) as bar:
        if gen.device.type == "cpu" and gen.step == 0:
            bar.note(gen.threads_note)
            bar.note(expected_cpu_time(config))
        if gen.step > 0:
            bar.note(f"resuming at step {gen.step} of {config.total_steps}")
        while gen.step < config.total_steps:
            start = time.perf_counter()
            try:
                record = gen.advance()
            except torch.cuda.OutOfMemoryError:
                gen.optimizers_zero_grad()
                kept = f"; the checkpoint of step {saved[-1]} is kept: gsdi generate --resume {out}" if saved else ""
                raise GsdiError(out_of_memory_advice(config, gen.device) + kept) from None
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
                write_scene(out, gen.params)
                raise Interrupted(stop.received, gen.step, config.total_steps, out)
            if config.checkpoint_every and gen.step % config.checkpoint_every == 0 and gen.step < config.total_steps:
                checkpoint()
    checkpoint()
    return write_outputs(gen, out)


def write_scene(out: Path, params) -> None:
    """out/scene.ply, written beside and renamed over the previous one (a full disk keeps that)."""
    from gsdi.formats import write_ply

    write_atomically(out / SCENE, lambda tmp: write_ply(tmp, params))


def preview_views(gen: "Generation", size: int) -> "torch.Tensor":
    """[V, size, size, 3] renders around the scene, framed to its bounds: what preview.png shows."""
    from gsdi.media import render_orbit

    cam = gen.config.camera
    return render_orbit(dict(gen.params.items()), cam.eval_views, size, cam.eval_elevation, fov=cam.eval_fov,
                        backend=gen.backend, background=gen.config.render.background)


def write_outputs(gen: "Generation", out: Path) -> GenerateResult:
    """scene.ply, preview.png, turntable.mp4 (or .gif) and metrics.json of a finished generation."""
    import torch

    from gsdi.media import image_grid, write_png

    config = gen.config
    peak = torch.cuda.max_memory_allocated(gen.device) / 2**20 if gen.device.type == "cuda" else None
    write_scene(out, gen.params)
    write_png(out / PREVIEW, image_grid(preview_views(gen, config.render.preview_size), 4))
    turntable = None
    if config.turntable_frames > 0:
        from gsdi.media import write_turntable

        turntable = write_turntable(dict(gen.params.items()), out / TURNTABLE, frames=config.turntable_frames,
                                    size=config.render.preview_size, elevation=config.camera.eval_elevation,
                                    fov=config.camera.eval_fov, backend=gen.backend).name
    result = GenerateResult(out, config, gen.num_gaussians, gen.seconds, 1000 * gen.seconds / config.total_steps, peak,
                            gen.history)
    write_json(out / METRICS, {
        "device": torch.cuda.get_device_name(gen.device) if gen.device.type == "cuda" else "cpu",
        "renderer": gen.backend, "render_size": gen.size, "prior_image_size": gen.prior.image_size,
        "cuda_graphs": gen.prior.runner.graphs, "steps": config.total_steps, "seconds": gen.seconds,
        "ms_per_step": result.ms_per_step, "peak_memory_mb": peak, "num_gaussians": result.num_gaussians,
        "skipped_steps": gen.skipped_steps, "cpu_threads": gen.cpu_threads, "turntable": turntable,
        "history": gen.history,
    })
    return result


def expected_cpu_time(config: GenerateConfig) -> str | None:
    """What this prior and preset measured on 2 CPU cores (at the preset's steps), or None."""
    from gsdi.presets import CPU_SECONDS

    seconds = CPU_SECONDS.get((config.prior, config.preset, config.guidance.method))
    if seconds is None:
        return None
    measured = make_config(config.prompt, config.preset, prior=config.prior)  # the preset as measured, all its stages
    seconds *= config.total_steps / measured.total_steps
    took = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return f"CPU: {config.preset} ({config.total_steps} steps) took about {took} on a 2-core AMD EPYC; ETA below"


def out_of_memory_advice(config: GenerateConfig, device: "torch.device") -> str:
    import torch

    card = f" ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB card)" if device.type == "cuda" else ""
    return (f"the GPU ran out of memory{card}; a new run can hold less a step: --preset preview, "
            f"--set render.max_resolution=256 (now {config.render.max_resolution}), "
            f"--set densify.max_gaussians={config.densify.max_gaussians // 2} (now {config.densify.max_gaussians}), "
            f"--set camera.views_per_step=1 (now {config.camera.views_per_step}); or close other GPU programs")
