"""Checkpoint files: one safetensors file, written atomically, no pickle.

A checkpoint holds a generation's `state_dict()` (gsdi/step.py): its tensors, and in the file's
metadata a JSON document with the rest (step, the whole config, densifier scalars, logged history)
plus the format and gsdi's version. Writing goes to a temporary file in the same folder, is fsynced,
then renamed over the old one, so a checkpoint on disk is always complete. `gsdi generate --resume
DIR` loads it and continues to the same result an uninterrupted run with the same seed gives
(tests/test_reliability.py, tests/test_run.py, tests/test_step.py, on CPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gsdi.errors import GsdiError
from gsdi.outputs import CHECKPOINT, write_atomically
from gsdi.version import __version__

FORMAT = "gsdi-checkpoint-1"


def write_checkpoint(folder: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write tensors and meta to folder/checkpoint.safetensors atomically (the previous checkpoint stays
    whole until the new one is: a run killed while writing resumes from the last complete one; a full
    disk is a GsdiError that keeps it); returns the path."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT
    document = {"format": FORMAT, "gsdi_version": __version__, **meta}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata={"gsdi": json.dumps(document)}))
    return path


def read_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors on CPU, meta) of folder's checkpoint, the halves in write_checkpoint's order; GsdiError
    if missing or damaged."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        raise GsdiError(f"nothing to resume in {folder}: it has no {CHECKPOINT} "
                        "(checkpoints are written every --checkpoint-every steps and on Ctrl-C)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["gsdi"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise GsdiError(f"the checkpoint {path} is damaged ({str(error).splitlines()[0][:160]}); "
                        "start again without --resume") from None
    if meta.get("format") != FORMAT:
        raise GsdiError(f"{path} is not a gsdi checkpoint of a format this version reads ({FORMAT})")
    return tensors, meta
