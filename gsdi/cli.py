"""The `gsdi` command. The only place that turns GsdiError into a one-line message and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from gsdi.errors import GsdiError

app = typer.Typer(
    help="gsdi: text to 3D Gaussian splats with SDI guidance (Score Distillation via Reparametrized DDIM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Text to 3D Gaussian splats. Run `gsdi generate --help` to start."""


@app.command()
def generate(
    prompt: str = typer.Argument(..., help='What to make, e.g. "a castle".'),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: outputs/<prompt>). Gets scene.ply, config.json, preview.png, metrics.json."),
    guidance: str = typer.Option("sdi", help="sdi (DDIM-inverted noise, sharp) or sds (random noise, the classic baseline)."),
    prior: Optional[str] = typer.Option(None, help="Diffusion prior: embedded (default: the small world model shipped with gsdi, works offline; prompts like \"a red castle\"), a Stable Diffusion hub id such as stabilityai/stable-diffusion-2-1-base, or a local diffusers folder."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps (default: from the preset)."),
    seed: int = typer.Option(0, help="Random seed; the same seed and settings give the same result."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu or cuda."),
    preset: str = typer.Option("default", help="preview (fast, rough) or default."),
    negative: str = typer.Option("", help="Negative prompt for classifier-free guidance."),
    renderer: str = typer.Option("auto", help="auto (gsplat on CUDA, built-in torch renderer elsewhere), gsplat or torch."),
    force: bool = typer.Option(False, "--force", help="Overwrite an earlier generation in --out."),
    eager: bool = typer.Option(False, "--eager", help="Run the UNet eagerly instead of from captured CUDA graphs (slower; for debugging)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a 3D Gaussian splat scene from a text prompt."""
    from gsdi.generate import generate as run_generate

    overrides = {"steps": steps, "seed": seed, "device": device, "negative_prompt": negative,
                 "guidance.method": guidance, "render.backend": renderer, "prior": prior,
                 "cuda_graphs": False if eager else None}
    result = run_generate(prompt, out=out, preset=preset, force=force, progress=not quiet, **overrides)
    typer.echo(f"wrote {result.ply} ({result.num_gaussians} Gaussians, {result.ms_per_step:.0f} ms/step) "
               f"and {result.preview}")


@app.command()
def batch(
    prompts: Path = typer.Argument(..., help="Text file, one prompt per line; '#' comments; optional '| seed=3 preset=preview steps=.. guidance=.. negative=..'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for one subfolder per prompt plus index.json and index.html."),
    preset: str = typer.Option("default", help="Preset for lines that name none: preview or default."),
    guidance: Optional[str] = typer.Option(None, help="sdi or sds for lines that name none (default sdi)."),
    prior: Optional[str] = typer.Option(None, help="Diffusion prior for every prompt (see gsdi generate --help)."),
    steps: Optional[int] = typer.Option(None, help="Steps for lines that name none (default: the preset's)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda; under torchrun each rank takes GPU LOCAL_RANK."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Generate every prompt of a list; shard over GPUs with `torchrun --nproc-per-node N $(which gsdi) batch ...`.

    Finished prompts (folder with scene.ply) are skipped, so rerunning resumes; a failing prompt is
    recorded in index.json and the others go on.
    """
    from gsdi.batch import run_batch

    defaults = {"preset": preset, "guidance.method": guidance, "prior": prior, "steps": steps, "device": device}
    index = run_batch(prompts, out, defaults, progress=not quiet, echo=typer.echo)
    if index:
        typer.echo(f"{index['done']} of {index['total']} done, {index['failed']} failed: {out / 'index.html'}")
        if index["failed"]:
            raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes print one line and exit 2."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except GsdiError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:  # click's own usage errors
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(1)
        raise
