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
    prompt: Optional[str] = typer.Argument(None, help='What to make, e.g. "a castle". Not needed with --resume.'),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: outputs/<prompt>). Gets scene.ply, preview.png, turntable.mp4, config.json, metrics.json and checkpoint.safetensors."),
    guidance: str = typer.Option("auto", help="sdi (noise from DDIM inversion of the render, the paper's method), sds (random noise, the classic baseline) or auto: sdi for Stable Diffusion, sds with annealed t for the embedded prior (where SDI measurably does worse: docs/eval/findings.md)."),
    prior: Optional[str] = typer.Option(None, help="Diffusion prior: embedded (default: the small world model shipped with gsdi, works offline; prompts like \"a red castle\"), a Stable Diffusion hub id such as stabilityai/stable-diffusion-2-1-base, or a local diffusers folder."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps (default: from the preset)."),
    seed: int = typer.Option(0, help="Random seed; the same seed and settings give the same result."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu or cuda."),
    preset: str = typer.Option("default", help="preview (fast, rough) or default."),
    negative: str = typer.Option("", help="Negative prompt for classifier-free guidance."),
    renderer: str = typer.Option("auto", help="auto (gsplat on CUDA, built-in torch renderer elsewhere), gsplat or torch."),
    force: bool = typer.Option(False, "--force", help="Write into an --out that already holds files (gsdi's own files there are overwritten)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted generation in this folder from its checkpoint (its settings come from the checkpoint)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints (default 250; 0: only at the end). Ctrl-C and SIGTERM always save one."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Any config value as key=value, e.g. --set render.max_resolution=256 (see config.json of a run for the keys). Repeatable."),
    turntable: bool = typer.Option(True, "--turntable/--no-turntable", help="Write turntable.mp4 (a .gif without imageio-ffmpeg) at the end."),
    view: bool = typer.Option(False, "--view", help="Show the scene live in the browser (viser) while it trains, and the result afterwards until Ctrl-C."),
    port: int = typer.Option(8080, help="Port of the --view page."),
    eager: bool = typer.Option(False, "--eager", help="Run the UNet eagerly instead of from captured CUDA graphs (slower; for debugging)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a 3D Gaussian splat scene from a text prompt.

    Ctrl-C saves a checkpoint and the current scene.ply; `gsdi generate --resume DIR` continues it.
    """
    from gsdi.generate import generate as run_generate

    on_log = None
    if view:
        from gsdi.viewer import show, start_server

        server = start_server(port)
        typer.echo(f"live view at http://127.0.0.1:{port}")
        on_log = lambda gen: show(server, dict(gen.params.items()))  # noqa: E731
    if resume is not None:
        if prompt is not None or out is not None or settings:
            raise GsdiError("--resume takes the prompt, --out and settings from the checkpoint; give only --resume DIR")
        result = run_generate(resume=resume, progress=not quiet, on_log=on_log)
    else:
        if prompt is None:
            raise GsdiError('say what to generate, e.g. gsdi generate "a red castle" (or --resume DIR)')
        overrides = {"steps": steps, "seed": seed, "device": device, "negative_prompt": negative,
                     "guidance.method": guidance, "render.backend": renderer, "prior": prior,
                     "checkpoint_every": checkpoint_every, "turntable_frames": None if turntable else 0, "cuda_graphs": False if eager else None,
                     **parse_settings(settings or [])}
        result = run_generate(prompt, out=out, preset=preset, force=force, progress=not quiet, on_log=on_log, **overrides)
    typer.echo(f"wrote {result.ply} ({result.num_gaussians} Gaussians, {result.ms_per_step:.0f} ms/step) "
               f"and {result.preview}")
    if view:
        from gsdi.export import read_ply

        show(server, read_ply(result.ply))
        typer.echo(f"the finished scene stays at http://127.0.0.1:{port}; Ctrl-C to quit")
        serve_until_interrupted(server)


def serve_until_interrupted(server) -> None:
    import time

    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        server.stop()


FORMATS = {"ply": ".ply", "splat": ".splat", "ply-compressed": ".compressed.ply",
           "mesh-obj": ".mesh.obj", "mesh-ply": ".mesh.ply", "mesh-glb": ".mesh.glb"}


@app.command()
def info(scene: Path = typer.Argument(..., help="A splat scene: .ply (standard or compressed) or .splat.")) -> None:
    """Count, SH degree, bounds, size on disk and colours of a splat scene."""
    import torch

    from gsdi.export import read_any
    from gsdi.scene import sh0_to_rgb, sh_degree_of

    p = read_any(scene)
    N = p["means"].shape[0]
    degree = sh_degree_of(p)
    lo, hi = p["means"].min(0).values, p["means"].max(0).values
    rgb = sh0_to_rgb(p["sh0"][:, 0]).clamp(0, 1)
    opacity = torch.sigmoid(p["opacities"])
    weight = opacity / opacity.sum()
    mean_rgb = (rgb * weight[:, None]).sum(0)
    fmt = lambda v: "(" + ", ".join(f"{x:.3f}" for x in v.tolist()) + ")"  # noqa: E731
    typer.echo(f"{scene}\n  gaussians: {N}\n  sh degree: {degree}\n  size on disk: {scene.stat().st_size / 2**20:.2f} MiB"
               f"\n  bounds: min {fmt(lo)} max {fmt(hi)} (axes: -Y up, front +Z)"
               f"\n  opacity: mean {opacity.mean():.3f}, {int((opacity > 0.5).sum())} above 0.5"
               f"\n  colour (opacity-weighted mean RGB): {fmt(mean_rgb)}")


@app.command()
def export(
    scene: Path = typer.Argument(..., help="The scene to convert (.ply, compressed .ply or .splat)."),
    format: str = typer.Option(..., "--format", "-f", help="ply (standard 3DGS, SH kept), splat (antimatter15 web viewers, 32 bytes a Gaussian), ply-compressed (SuperSplat), or a coloured triangle mesh: mesh-obj, mesh-ply, mesh-glb (TSDF fusion of rendered views; needs open3d)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: beside SCENE with the format's extension)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    clean: bool = typer.Option(False, "--clean", help="First drop floaters: statistical outlier removal on the Gaussians' centres (needs open3d)."),
    voxel: float = typer.Option(0.01, help="Mesh formats: TSDF voxel size in world units (the object spans about 1)."),
    y_up: bool = typer.Option(False, "--y-up", help="Rotate 180 degrees about X so +Y is up (three.js / glTF style viewers); default keeps gsdi's -Y up (INRIA/COLMAP style, what most splat viewers expect)."),
) -> None:
    """Convert a splat scene for other viewers or to a mesh. Axes stay gsdi's (INRIA/COLMAP): -Y up, front +Z."""
    from gsdi.export import read_any, write_compressed_ply, write_ply, write_splat

    if format not in FORMATS:
        raise GsdiError(f"unknown --format {format!r}; choose one of: {', '.join(FORMATS)}")
    params = read_any(scene)
    target = out or scene.with_name(scene.name.split(".")[0] + FORMATS[format])
    if target.resolve() == scene.resolve():
        raise GsdiError(f"--out {target} is the input file; choose another name")
    if target.exists() and not force:
        raise GsdiError(f"{target} exists; pass --force to overwrite it")
    note = ""
    if y_up:
        from gsdi.export import flip_y_up

        params = flip_y_up(params)
    if clean:
        from gsdi.mesh import clean_splats

        before = params["means"].shape[0]
        params = clean_splats(params)
        note = f", {before - params['means'].shape[0]} floaters removed"
    if format.startswith("mesh-"):
        from gsdi.mesh import splats_to_mesh, write_mesh

        mesh = splats_to_mesh(params, voxel=voxel)
        write_mesh(mesh, target)
        typer.echo(f"wrote {target} ({len(mesh.vertices)} vertices, {len(mesh.triangles)} triangles, "
                   f"area {mesh.get_surface_area():.3f}{note})")
        return
    writer = {"ply": write_ply, "splat": write_splat, "ply-compressed": write_compressed_ply}[format]
    count = writer(target, params)
    dropped = params["means"].shape[0] - count
    typer.echo(f"wrote {target} ({count} Gaussians{f', {dropped} non-finite dropped' if dropped else ''}{note})")


@app.command()
def render(
    scene: Path = typer.Argument(..., help="The scene to render (.ply, compressed .ply or .splat)."),
    turntable: Optional[Path] = typer.Option(None, "--turntable", help="Write a turntable video: .mp4 (needs imageio-ffmpeg; else a .gif is written) or .gif."),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Write a PNG grid of views around the object."),
    frames: int = typer.Option(48, help="Turntable frames (or grid views)."),
    elevation: float = typer.Option(15.0, help="Camera elevation in degrees (positive looks down)."),
    size: int = typer.Option(256, help="Image side in pixels."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu or cuda."),
) -> None:
    """Render a turntable video and/or a grid of views of a splat scene (CPU or GPU)."""
    from gsdi.export import image_grid, read_any, write_png
    from gsdi.generate import resolve_device
    from gsdi.turntable import render_orbit, write_turntable

    if turntable is None and grid is None:
        raise GsdiError("say what to write: --turntable out.mp4 and/or --grid views.png")
    dev = resolve_device(device)
    params = {k: v.to(dev) for k, v in read_any(scene).items()}
    if turntable is not None:
        written = write_turntable(params, turntable, frames=frames, size=size, elevation=elevation)
        typer.echo(f"wrote {written} ({frames} frames)")
    if grid is not None:
        write_png(grid, image_grid(render_orbit(params, frames, size, elevation), min(frames, 8)))
        typer.echo(f"wrote {grid} ({frames} views)")


@app.command()
def view(
    scene: Path = typer.Argument(..., help="The scene to show (.ply, compressed .ply or .splat)."),
    port: int = typer.Option(8080, help="Port of the viewer's web page."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 to share on your network)."),
) -> None:
    """Open a splat scene in the browser (viser). Ctrl-C stops the viewer."""
    from gsdi.export import read_any
    from gsdi.viewer import show, start_server

    params = read_any(scene)
    server = start_server(port, host)
    show(server, params)
    typer.echo(f"viewing {scene} ({params['means'].shape[0]} Gaussians) at http://{host}:{port} (Ctrl-C to stop)")
    serve_until_interrupted(server)


def parse_settings(items: list[str]) -> dict[str, str]:
    """--set key=value pairs -> {key: value}; the config coerces and checks the values."""
    settings = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise GsdiError(f"--set takes key=value, e.g. --set render.max_resolution=256 (got {item!r})")
        settings[key.strip()] = value.strip()
    return settings


@app.command()
def batch(
    prompts: Path = typer.Argument(..., help="Text file, one prompt per line; '#' comments; optional '| seed=3 preset=preview steps=.. guidance=.. negative=..'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for one subfolder per prompt plus index.json and index.html."),
    preset: str = typer.Option("default", help="Preset for lines that name none: preview or default."),
    guidance: Optional[str] = typer.Option(None, help="auto, sdi or sds for lines that name none (default auto: see gsdi generate --help)."),
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
    """Console entry point: user mistakes print one line and exit 2; an interrupted generation exits
    128 + signal after saving; anything unexpected exits 1 with the traceback written to a log file."""
    from gsdi.generate import Interrupted

    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except GsdiError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except Interrupted as stop:
        typer.echo(f"interrupted: {stop}", err=True)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as error:
        import click

        if isinstance(error, click.exceptions.ClickException):  # click's own usage errors
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(1)
        log = write_error_log()
        typer.echo(f"internal error: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}\n"
                   f"this is a bug in gsdi; the traceback is in {log}", err=True)
        sys.exit(1)


def write_error_log() -> Path:
    """Write the current exception's traceback to $XDG_CACHE_HOME/gsdi/logs (or the temp folder)."""
    import os
    import tempfile
    import time
    import traceback

    text = f"gsdi {sys.argv!r}\n" + traceback.format_exc()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gsdi" / "logs"
    for folder in (root, Path(tempfile.gettempdir()) / "gsdi-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    return Path("(could not write a log)")


if __name__ == "__main__":
    main()
