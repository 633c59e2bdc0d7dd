"""A generation's output folder: its file names, the folder name a prompt gets, and safe writes.

`gsdi generate`, `gsdi batch` and the checkpoints all write through here, so each name and rule has
one home: a folder is refused if it holds earlier outputs (unless forced), created and probed for
writing before anything else is written, and files that must never be half-written (checkpoints,
JSON) are written to a temporary file, flushed and renamed over the old one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from gsdi.errors import GsdiError

SCENE = "scene.ply"
PREVIEW = "preview.png"
TURNTABLE = "turntable.mp4"  # turntable.gif where the video extra is missing
CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.safetensors"
SLUG_LENGTH = 60


def slug(prompt: str) -> str:
    """A folder name for a prompt: lower-case words joined by '-', at most SLUG_LENGTH characters; a
    trailing view phrase, which each camera replaces, is left out ("a blue car, front view" -> a-blue-car)."""
    from gsdi.prompts import without_view

    return re.sub(r"[^a-z0-9]+", "-", without_view(prompt).lower()).strip("-")[:SLUG_LENGTH] or "scene"


def default_output_dir(prompt: str) -> Path:
    return Path("outputs") / slug(prompt)


def check_output_dir(out: Path, force: bool = False) -> None:
    """Refuse an `out` that is a file, or holds earlier outputs unless `force`; writes nothing."""
    if out.exists() and not out.is_dir():
        raise GsdiError(f"--out {out} exists and is not a folder")
    if not force and out.is_dir() and any(out.iterdir()):
        what = "a generation" if (out / SCENE).exists() or (out / CONFIG).exists() else "files"
        hint = f", --resume {out} to continue its checkpoint" if (out / CHECKPOINT).exists() else ""
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


def remove_new_files(out: Path, before: "set[Path] | None") -> None:
    """Delete what a run added to `out` (and `out` itself if the run created it: `before` None)."""
    import shutil

    for path in out.iterdir():
        if before is None or path not in before:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if before is None:
        out.rmdir()


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp)` beside `path`, then rename it over `path`: a reader sees the old file or the new one,
    never half of one. On OSError (a full disk, a lost mount) the half-written tmp is removed, the
    previous file stays as it was, and a GsdiError says so in one line."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # as an ordinary new file (some writers create theirs 0600)
        os.replace(tmp, path)  # atomic on POSIX
        _fsync_folder(path.parent)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        raise GsdiError(f"could not write {path} ({error.strerror or error}){kept}") from None


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk, where the filesystem allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems do not fsync folders
        pass
