"""Many prompts, one folder each, sharded over processes started by torchrun (one per GPU).

A prompt list is a text file, one prompt per line; `#` starts a comment; a line may end with
`| key=value ...` options (seed, preset, steps, guidance, negative):

    a red castle
    a blue car | seed=3 preset=preview
    # skipped

Rank r of W takes the jobs i with i % W == r (deterministic, no coordinator). A job whose folder
already holds scene.ply is finished and skipped, so a rerun resumes; a job that fails writes its
error to status.json and the rank goes on. Rank 0 writes index.json and index.html (a gallery)
once every rank is done. Without torchrun it is one process doing every job.
"""

from __future__ import annotations

import html
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gsdi.config import OPTION_KEYS, GenerateConfig, is_world_prior, make_config
from gsdi.errors import GsdiError
from gsdi.outputs import METRICS, PREVIEW, SCENE, TURNTABLE, slug

if TYPE_CHECKING:
    from gsdi.step import Generation

LINE_OPTIONS = ("seed", "preset", "steps", "guidance", "negative")  # a line's key=value (config.OPTION_KEYS)
STATUS_FILE = "status.json"


@dataclass
class Job:
    index: int  # position in the list (0-based, comments and blank lines not counted)
    line: int  # line number in the file (1-based), for messages
    prompt: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        return f"{self.index:04d}-{slug(self.prompt)}"


def read_prompt_list(path: Path) -> list[Job]:
    """Parse a prompt list; GsdiError (with the line number) on a malformed line or an empty list."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GsdiError(f"cannot read prompt list {path}: {getattr(error, 'strerror', None) or error}") from None
    jobs: list[Job] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        prompt, _, rest = line.partition("|")
        options = {}
        for item in rest.split():
            key, eq, value = item.partition("=")
            if not eq or key not in LINE_OPTIONS or not value:
                raise GsdiError(f"{path}:{number}: bad option {item!r}; use key=value with key one of {', '.join(LINE_OPTIONS)}")
            options[key] = value
        if not prompt.strip():
            raise GsdiError(f"{path}:{number}: the prompt before '|' is empty")
        jobs.append(Job(len(jobs), number, prompt.strip(), options))
    if not jobs:
        raise GsdiError(f"prompt list {path} has no prompts (one per line; '#' starts a comment)")
    return jobs


def job_config(job: Job, defaults: dict[str, Any]) -> GenerateConfig:
    """The job's config: batch-wide defaults, then the line's own options (GsdiError names the line)."""
    overrides = dict(defaults)
    preset = overrides.pop("preset", "auto")
    for key, value in job.options.items():
        if key == "preset":
            preset = value
        else:
            overrides[OPTION_KEYS[key]] = value
    try:
        config = make_config(job.prompt, preset, **overrides)
        if is_world_prior(config.prior):  # its words, now, not when the line's turn comes
            from gsdi.world.language import parse

            for text in filter(None, (config.prompt, config.negative_prompt)):
                parse(text)
        return config
    except GsdiError as error:
        raise GsdiError(f"line {job.line} ({job.prompt!r}): {error}") from None


def is_finished(folder: Path) -> bool:
    """Whether a job's folder holds a finished run: metrics.json is the run's last file (an interrupted or
    killed run may have left a scene.ply, but never metrics.json)."""
    return (folder / METRICS).is_file() and (folder / SCENE).is_file()


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; joins a gloo group (only barriers are needed)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def run_batch(prompts: Path, out: Path, defaults: dict[str, Any], progress: bool = True,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run this rank's share of the list into out/<job folder>; rank 0 returns (and writes) the index."""
    jobs = read_prompt_list(prompts)
    configs = [job_config(job, defaults) for job in jobs]  # every line is checked before any work
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GsdiError(f"cannot create --out {out}: {error.strerror or error}") from None
    dist = Distributed.from_environment()
    try:
        device_override = _bind_device(dist, defaults.get("device", "auto"))
        mine = [i for i in range(len(jobs)) if i % dist.world_size == dist.rank]
        priors: dict[tuple, Any] = {}
        for n, i in enumerate(mine, start=1):
            job, config = jobs[i], configs[i]
            if device_override:
                config.device = device_override
            folder = out / job.folder_name
            where = f"[rank {dist.rank}/{dist.world_size}] " if dist.world_size > 1 else ""
            if is_finished(folder):
                echo(f"{where}{n}/{len(mine)} {job.prompt!r}: already done, skipped")
                continue
            status = _run_job(job, config, folder, priors, progress and dist.world_size == 1)
            echo(f"{where}{n}/{len(mine)} {job.prompt!r}: {status['status']} in {status['seconds']:.1f} s"
                 + (f" ({status['error']})" if status["status"] == "failed" else ""))
        dist.barrier()
        index = write_index(out, jobs) if dist.rank == 0 else {}
        dist.barrier()
        return index
    finally:
        dist.close()


def _bind_device(dist: Distributed, device: str) -> str | None:
    """Under torchrun on GPUs each rank takes the GPU of its local rank."""
    if dist.world_size == 1 or device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.set_device(dist.local_rank % torch.cuda.device_count())
    return "cuda"


def _run_job(job: Job, config: GenerateConfig, folder: Path, priors: dict, progress: bool) -> dict[str, Any]:
    from gsdi.device import resolve_device
    from gsdi.outputs import prepare_output_dir, write_json
    from gsdi.priors import load_prior
    from gsdi.run import Interrupted, run

    start = time.perf_counter()
    status: dict[str, Any] = {"index": job.index, "prompt": job.prompt, "options": job.options}
    try:
        prepare_output_dir(folder, force=True)  # a folder without metrics.json holds only an unfinished run
        key = (config.prior, config.device, config.cuda_graphs, config.prior_encoder)
        if key not in priors:
            priors[key] = load_prior(config.prior, resolve_device(config.device), config.cuda_graphs, config.prior_encoder)
        result = run(config, folder, progress=progress, prior=priors[key], gen=_stopped_run(config, folder, priors[key]))
        status.update(status="done", num_gaussians=result.num_gaussians, ms_per_step=result.ms_per_step)
    except GsdiError as error:
        status.update(status="failed", error=str(error))
    except Interrupted:  # Ctrl-C / SIGTERM stops the batch; a rerun does this prompt again
        raise
    except Exception as error:  # one broken prompt must not stop the others; the traceback is kept
        status.update(status="failed", error=f"internal error: {type(error).__name__}: {error}",
                      traceback=traceback.format_exc())
    status["seconds"] = time.perf_counter() - start
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / STATUS_FILE, status)
    except OSError:
        pass
    return status


def _stopped_run(config: GenerateConfig, folder: Path, prior: Any) -> "Generation | None":
    """The generation a stopped or killed earlier run of this same job left a checkpoint of, restored to
    go on from there (None: start afresh)."""
    from gsdi.checkpoint import read_checkpoint
    from gsdi.outputs import CHECKPOINT
    from gsdi.run import restored

    if not (folder / CHECKPOINT).is_file():
        return None
    try:
        tensors, meta = read_checkpoint(folder)
    except GsdiError:  # damaged: start again
        return None
    if GenerateConfig.from_dict(meta["config"]).to_dict() != config.to_dict() or meta["step"] >= config.total_steps:
        return None
    return restored(config, tensors, meta, prior)


def write_index(out: Path, jobs: list[Job]) -> dict[str, Any]:
    """index.json (every job's status) and index.html (a gallery of the previews)."""
    entries = []
    for job in jobs:
        folder = out / job.folder_name
        try:
            status = json.loads((folder / STATUS_FILE).read_text())
        except (OSError, ValueError):
            status = {}
        state = "done" if is_finished(folder) else status.get("status", "missing")  # a finished folder wins
        entry = {"index": job.index, "prompt": job.prompt, "options": job.options, "folder": job.folder_name,
                 "status": state, "seconds": status.get("seconds"), "error": status.get("error")}
        for name in (SCENE, PREVIEW, TURNTABLE, Path(TURNTABLE).with_suffix(".gif").name):
            if (folder / name).is_file():
                entry[name.split(".")[0]] = f"{job.folder_name}/{name}"
        entries.append(entry)
    index = {"jobs": entries, "done": sum(e["status"] == "done" for e in entries),
             "failed": sum(e["status"] == "failed" for e in entries), "total": len(entries)}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "index.html").write_text(gallery_html(index))
    return index


def gallery_html(index: dict[str, Any]) -> str:
    cards = []
    for e in index["jobs"]:
        media = ""
        if "turntable" in e:
            src = html.escape(e["turntable"])
            media = (f'<video src="{src}" autoplay loop muted></video>' if src.endswith(".mp4")
                     else f'<img src="{src}" alt="">')
        elif "preview" in e:
            media = f'<img src="{html.escape(e["preview"])}" alt="">'
        detail = html.escape(e["error"] or "") if e["status"] == "failed" else (
            f'<a href="{html.escape(e["scene"])}">scene.ply</a>' if "scene" in e else "")
        cards.append(f'<figure class="{e["status"]}">{media}<figcaption><b>{html.escape(e["prompt"])}</b>'
                     f'<br>{e["status"]} {detail}</figcaption></figure>')
    return ("<!doctype html><meta charset=utf-8><title>gsdi batch</title><style>"
            "body{font-family:sans-serif}figure{display:inline-block;width:420px;margin:8px;vertical-align:top}"
            "img,video{width:100%}.failed{color:#a00}</style>"
            f"<h1>gsdi batch: {index['done']} done, {index['failed']} failed, {index['total']} prompts</h1>\n"
            + "\n".join(cards) + "\n")
