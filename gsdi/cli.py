"""The `gsdi` command. The only place that turns GsdiError into a one-line message and exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from gsdi.config import OPTION_KEYS, TURNTABLE_FRAMES, CameraConfig, RenderConfig
from gsdi.errors import GsdiError

app = typer.Typer(
    help="gsdi: text to 3D Gaussian splats with SDI guidance (Score Distillation via Reparametrized DDIM).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: wraps cleanly at 80 columns, never cuts words
)


def _print_version(value: bool) -> None:
    if value:
        from gsdi.version import __version__

        typer.echo(f"gsdi {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print gsdi's version and exit."),
) -> None:
    """Text to 3D Gaussian splats. Run `gsdi generate --help` to start."""


@app.command()
def generate(
    prompt: Optional[str] = typer.Argument(None, help='What to make, e.g. "a red castle". A trailing ", front view" (or side, back, overhead) is replaced by each camera\'s own view. Not needed with --resume.'),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: outputs/<prompt>): scene.ply, preview.png, turntable.mp4, config.json, metrics.json, checkpoint.safetensors."),
    guidance: str = typer.Option("auto", help="sdi (noise from DDIM inversion of the render), sds (random noise) or auto: sds with annealed t on the world's priors (nearer the world than sdi on both, at equal steps and at equal time: sdi's step costs about 1.5x sds's on a GPU, 2.7x on 2 CPU cores), sdi on Stable Diffusion (README and docs/results.md, Guidance)."),
    prior: Optional[str] = typer.Option(None, help="embedded (default: gsdi's small world model, offline), world (the same world in Stable Diffusion's format, 128 px, knows patterns: \"a blue car with yellow stripes\"; slower), a Stable Diffusion hub id or a local diffusers folder."),
    steps: Optional[int] = typer.Option(None, help="Score-distillation steps (default: from the preset); refinement steps after them (600 in the refined preset, else none) are --set refine.steps=N, and a low-noise polish after those --set refine.polish_steps=N (README, Guidance)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default 0). The same seed and settings give the same result on the same machine with the same CPU thread count or GPU (floating-point sums differ between thread counts and processors); metrics.json records the thread count used: pin it with --set cpu_threads=N or OMP_NUM_THREADS=N."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu or cuda."),
    preset: str = typer.Option("auto", help="auto (refined for --prior world, default for the built-in pixel prior, stable-diffusion for a Stable Diffusion prior), default (1000 steps), short (the default's run in 700 steps with larger steps), refined (400 score-distillation steps with larger steps, then 600 refinement and 200 polish steps), preview (300 steps, renders at 256²), long (1500 steps) or stable-diffusion (the paper's SDI settings, 1200 steps); README, What to expect."),
    negative: str = typer.Option("", help="Negative prompt (classifier-free guidance)."),
    perp_neg: Optional[bool] = typer.Option(None, "--perp-neg/--no-perp-neg", help="Perp-Neg: the other views' prompts as negatives, against objects with a front on every side. Default: on for Stable Diffusion (adds about 20% to a step), off for the world's priors (it scores lower on the embedded one; docs/results.md, Guidance)."),
    renderer: str = typer.Option("auto", help="auto (gsplat on CUDA, gsdi's torch renderer elsewhere), gsplat or torch."),
    force: bool = typer.Option(False, "--force", help="Write into an --out that holds files (gsdi's files there are replaced)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted generation in this folder (settings from its checkpoint)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints (default 250; 0: at the end only). Ctrl-C always saves one."),
    settings: Optional[list[str]] = typer.Option(None, "--set", help="Any config value as key=value, e.g. --set render.max_resolution=256; the keys are those of a run's config.json. Repeatable."),
    turntable: bool = typer.Option(True, "--turntable/--no-turntable", help="Write turntable.mp4 (or .gif without imageio-ffmpeg) at the end."),
    view: bool = typer.Option(False, "--view", help="Watch it train in the browser (viser); the result stays shown until Ctrl-C."),
    port: int = typer.Option(8080, help="Port of the --view page."),
    eager: bool = typer.Option(False, "--eager", help="CUDA: run the UNet eagerly, not from captured graphs (slower; debugging)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a 3D Gaussian splat scene from a text prompt.

    Ctrl-C saves a checkpoint and the current scene.ply; `gsdi generate --resume DIR` continues it.
    """
    from gsdi.run import generate as run_generate

    on_log = None
    if view:
        from gsdi.viewer import address, show, start_server

        server = start_server(port)
        typer.echo(f"live view at {address(server)}")
        on_log = lambda gen: show(server, dict(gen.params.items()))  # noqa: E731
    if resume is not None:
        given = {"a prompt": prompt is not None, "--out": out is not None, "--set": bool(settings),
                 "--steps": steps is not None, "--seed": seed is not None, "--preset": preset != "auto",
                 "--guidance": guidance != "auto", "--prior": prior is not None, "--device": device != "auto",
                 "--negative": negative != "", "--perp-neg/--no-perp-neg": perp_neg is not None,
                 "--renderer": renderer != "auto", "--checkpoint-every": checkpoint_every is not None,
                 "--no-turntable": not turntable, "--eager": eager, "--force": force}
        if any(given.values()):
            raise GsdiError(f"--resume continues with the checkpoint's own settings; drop {', '.join(k for k, v in given.items() if v)} "
                            "(or start a new run with --force)")
        result = run_generate(resume=resume, progress=not quiet, on_log=on_log)
    else:
        if prompt is None:
            raise GsdiError('say what to generate, e.g. gsdi generate "a red castle" (or --resume DIR)')
        flags = {"steps": steps, "seed": seed, "device": device, "negative": negative, "guidance": guidance,
                 "renderer": renderer, "prior": prior, "perp_neg": perp_neg, "checkpoint_every": checkpoint_every}
        overrides = {**{OPTION_KEYS[flag]: value for flag, value in flags.items()},
                     "turntable_frames": None if turntable else 0, "cuda_graphs": False if eager else None,
                     **parse_settings(settings or [])}
        result = run_generate(prompt, out=out, preset=preset, force=force, progress=not quiet, on_log=on_log, **overrides)
    typer.echo(f"wrote {result.ply} ({result.num_gaussians} Gaussians, {result.ms_per_step:.0f} ms/step) "
               f"and {result.preview}")
    if view:
        from gsdi.formats import read_ply

        show(server, read_ply(result.ply))
        typer.echo(f"the finished scene stays at {address(server)}; Ctrl-C to quit")
        serve_until_interrupted(server)


def serve_until_interrupted(server) -> None:
    import time

    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        server.stop()


FORMATS = {"ply": ".ply", "splat": ".splat", "ply-compressed": ".compressed.ply", "spz": ".spz", "sog": ".sog",
           "mesh-obj": ".mesh.obj", "mesh-ply": ".mesh.ply", "mesh-glb": ".mesh.glb"}


@app.command()
def info(scene: Path = typer.Argument(..., help="A splat scene: .ply (standard or compressed) or .splat, or a gsdi output folder (its scene.ply).")) -> None:
    """Count, bounds and colours of a splat scene.

    Also the SH degree, size on disk and opacities.
    """
    import torch

    from gsdi.formats import read_any
    from gsdi.scene import sh0_to_rgb, sh_degree_of

    if scene.is_dir():
        from gsdi.outputs import SCENE

        scene = scene / SCENE
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
    scene: Path = typer.Argument(..., help="The scene to convert (.ply, compressed .ply, .splat or .spz)."),
    format: str = typer.Option(..., "--format", "-f", help="ply (standard 3DGS), splat (web viewers), ply-compressed (PlayCanvas), spz (Niantic), sog (SuperSplat's current format; needs PlayCanvas splat-transform), or a coloured mesh: mesh-obj, mesh-ply, mesh-glb (the mesh extra)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: beside SCENE, named for the format: scene.splat, scene.compressed.ply, scene.mesh.glb and so on; a .ply from a .ply is scene.export.ply, or scene.sh3.ply with --sh-degree 3)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    sh_degree: Optional[int] = typer.Option(None, "--sh-degree", help="ply: write SH bands up to this degree, zeros above the scene's own (renders the same). Use 3 for loaders that expect INRIA's layout at degree 3 (45 f_rest fields), such as the reference 3DGS code."),
    clean: bool = typer.Option(False, "--clean", help="First drop floaters (outlier removal on the centres; needs open3d)."),
    voxel: float = typer.Option(0.01, help="Mesh formats: voxel size in world units (objects span about 1)."),
    y_up: Optional[bool] = typer.Option(None, "--y-up/--y-down", help="Up axis of the file. Default per format: +Y for meshes (glTF's rule), -Y for splats (what splat viewers expect)."),
) -> None:
    """Convert a splat scene for other viewers or to a mesh.

    Splat formats keep gsdi's axes (-Y up, front +Z, as INRIA/COLMAP captures); mesh formats are
    written +Y up, as glTF requires and mesh tools assume. --y-up / --y-down override either.
    """
    from gsdi.formats import read_any, write_compressed_ply, write_ply, write_sog, write_splat, write_spz

    if format not in FORMATS:
        raise GsdiError(f"unknown --format {format!r}; choose one of: {', '.join(FORMATS)}")
    if sh_degree is not None and format != "ply":
        raise GsdiError(f"--sh-degree applies to --format ply (the other formats store no or fixed SH bands), not {format}")
    if y_up is None:
        y_up = format.startswith("mesh-")
    params = read_any(scene)
    if sh_degree is not None:
        from gsdi.formats import pad_sh

        params = pad_sh(params, sh_degree)
    target = out or default_export_path(scene, format, sh_degree)
    if target.resolve() == scene.resolve():
        raise GsdiError(f"--out {target} is the input file; choose another name")
    if target.exists() and not force:
        raise GsdiError(f"{target} exists; pass --force to overwrite it")
    note = ""
    if y_up:
        from gsdi.formats import flip_y_up

        params = flip_y_up(params)
    if clean:
        from gsdi.mesh import clean_splats

        before = params["means"].shape[0]
        params = clean_splats(params)
        note = f", {before - params['means'].shape[0]} floaters removed"
    if format.startswith("mesh-"):
        from gsdi.mesh import VIEWS_PER_RING, splats_to_mesh, write_mesh

        def on_view(done: int, total: int) -> None:
            if done % VIEWS_PER_RING == 0:
                typer.echo(f"meshing: {done}/{total} views fused", err=True)

        mesh = splats_to_mesh(params, voxel=voxel, on_view=on_view)
        write_mesh(mesh, target)
        typer.echo(f"wrote {target} ({len(mesh.vertices)} vertices, {len(mesh.triangles)} triangles, "
                   f"area {mesh.get_surface_area():.3f}{note})")
        return
    writer = {"ply": write_ply, "splat": write_splat, "ply-compressed": write_compressed_ply, "spz": write_spz,
              "sog": write_sog}[format]
    count = writer(target, params)
    dropped = params["means"].shape[0] - count
    why = "non-finite or of opacity <= 1/255" if format == "ply-compressed" else "non-finite"
    typer.echo(f"wrote {target} ({count} Gaussians{f', {dropped} {why} left out' if dropped else ''}{note})")


def default_export_path(scene: Path, format: str, sh_degree: int | None) -> Path:
    """Beside the scene, named for the format; never the scene itself."""
    stem = scene.name.split(".")[0]
    if sh_degree is not None:
        return scene.with_name(f"{stem}.sh{sh_degree}.ply")
    target = scene.with_name(stem + FORMATS[format])
    return target if target.resolve() != scene.resolve() else scene.with_name(f"{stem}.export{FORMATS[format]}")


@app.command()
def render(
    scene: Path = typer.Argument(..., help="The scene to render (.ply, compressed .ply or .splat)."),
    turntable: Optional[Path] = typer.Option(None, "--turntable", help="Write a turntable video: .mp4 (needs the video extra; a .gif without it, with a note) or .gif."),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Write a PNG grid of views around the object."),
    frames: int = typer.Option(TURNTABLE_FRAMES, help="Turntable frames (as gsdi generate writes)."),
    views: int = typer.Option(CameraConfig.eval_views, help="Views in the grid (as preview.png)."),
    elevation: float = typer.Option(CameraConfig.eval_elevation, help="Camera elevation in degrees (positive looks down)."),
    size: int = typer.Option(RenderConfig.preview_size, help="Image side in pixels."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu or cuda."),
) -> None:
    """Render a turntable and/or a grid of views (CPU or GPU).

    The views are framed to the scene's bounds, the same for every view.
    """
    from gsdi.device import resolve_device
    from gsdi.formats import read_any
    from gsdi.media import MP4_HINT, image_grid, render_orbit, write_png, write_turntable

    if turntable is None and grid is None:
        raise GsdiError("say what to write: --turntable out.mp4 and/or --grid views.png")
    dev = resolve_device(device)
    params = {k: v.to(dev) for k, v in read_any(scene).items()}
    if turntable is not None:
        written = write_turntable(params, turntable, frames=frames, size=size, elevation=elevation)
        if written.suffix != turntable.suffix:
            typer.echo(f"note: {MP4_HINT}", err=True)
        typer.echo(f"wrote {written} ({frames} frames)")
    if grid is not None:
        write_png(grid, image_grid(render_orbit(params, views, size, elevation), min(views, 4)))
        typer.echo(f"wrote {grid} ({views} views)")


@app.command()
def view(
    scene: Path = typer.Argument(..., help="The scene to show (.ply, compressed .ply or .splat)."),
    port: int = typer.Option(8080, help="Port of the viewer's web page."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: your network)."),
) -> None:
    """Open a splat scene in the browser (viser). Ctrl-C stops the viewer."""
    from gsdi.formats import read_any
    from gsdi.viewer import address, show, start_server

    params = read_any(scene)
    server = start_server(port, host)
    show(server, params)
    typer.echo(f"viewing {scene} ({params['means'].shape[0]} Gaussians) at {address(server)} (Ctrl-C to stop)")
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
    prompts: Path = typer.Argument(..., help="Text file: a prompt per line, '#' comments, optional '| seed=3 preset=preview steps=.. guidance=.. negative=..'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder: a subfolder per prompt, index.json, index.html."),
    preset: str = typer.Option("auto", help="Preset for lines that name none: auto, default, short, refined, preview, long or stable-diffusion."),
    guidance: Optional[str] = typer.Option(None, help="auto, sdi or sds for lines that name none (default auto)."),
    prior: Optional[str] = typer.Option(None, help="Diffusion prior for every prompt (see gsdi generate --help)."),
    steps: Optional[int] = typer.Option(None, help="Steps for lines that name none (default: the preset's)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda; under torchrun rank r takes GPU LOCAL_RANK."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Generate every prompt of a list, on one or several GPUs.

    Over GPUs: `torchrun --nproc-per-node N $(which gsdi) batch PROMPTS --out DIR`.

    Finished prompts (folder with scene.ply) are skipped, so rerunning resumes; a failing prompt is
    recorded in index.json and the others go on.
    """
    from gsdi.batch import run_batch

    flags = {"preset": preset, "guidance": guidance, "prior": prior, "steps": steps, "device": device}
    defaults = {OPTION_KEYS[flag]: value for flag, value in flags.items()}
    index = run_batch(prompts, out, defaults, progress=not quiet, echo=typer.echo)
    if index:
        typer.echo(f"{index['done']} of {index['total']} done, {index['failed']} failed: {out / 'index.html'}")
        if index["failed"]:
            raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes print one line and exit 2; an interrupted generation exits
    128 + signal after saving; anything unexpected exits 1 with the traceback written to a log file."""
    from gsdi.run import Interrupted

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
        usage, abort = click_exceptions()
        if isinstance(error, usage):  # click's own usage errors (an unknown option, a missing argument)
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, abort):
            sys.exit(1)
        log = write_error_log()
        typer.echo(f"internal error: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}\n"
                   f"this is a bug in gsdi; the traceback is in {log}", err=True)
        sys.exit(1)


def click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts) of click and of the copy of click that typer 0.2x carries (typer._click)."""
    import click

    usage, abort = [click.exceptions.ClickException], [click.exceptions.Abort]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        vendored = None
    for name, found in (("ClickException", usage), ("Abort", abort)):
        if hasattr(vendored, name):
            found.append(getattr(vendored, name))
    return tuple(usage), tuple(abort)


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
