"""Checkpoints of a running generation: one safetensors file, written atomically, no pickle.

The file holds every tensor a step depends on (Gaussian parameters, each Adam's moments and step
count, the densifier's accumulators, the random generators' states, gsdi's and torch's global ones) and, in its metadata, a JSON
document with the rest (step, the whole config, densifier scalars, logged history, gsdi version).
Writing goes to a temporary file in the same folder, is fsynced, then renamed over the old one, so
a checkpoint on disk is always complete. `gsdi generate --resume DIR` loads it and continues to the
same result an uninterrupted run with the same seed gives (tests/test_reliability.py, on CPU).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gsdi.errors import GsdiError

if TYPE_CHECKING:
    from gsdi.generate import Generation

CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT = "gsdi-checkpoint-1"


def save_checkpoint(gen: "Generation", folder: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write gen's full state to folder/checkpoint.safetensors atomically; returns the path."""
    import torch
    from safetensors.torch import save_file

    from gsdi import __version__

    tensors: dict[str, torch.Tensor] = {f"params.{k}": v.detach() for k, v in gen.params.items()}
    for name, optimizer in gen.optimizers.items():
        (param,) = optimizer.param_groups[0]["params"]
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"optim.{name}.{key}"] = torch.as_tensor(value)
    scalars = {}
    for key, value in gen.densifier.state.items():
        if torch.is_tensor(value):
            tensors[f"densify.{key}"] = value
        else:
            scalars[key] = value
    tensors["rng.host"] = gen.rng.host.get_state()
    tensors["rng.device"] = gen.rng.device.get_state()
    tensors["rng.torch_cpu"] = torch.get_rng_state()  # gsplat's densification draws from the global RNGs
    if gen.device.type == "cuda":
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state(gen.device)
    meta = {
        "format": FORMAT, "gsdi_version": __version__, "step": gen.step, "config": gen.config.to_dict(),
        "densify_scalars": scalars, "grow_grad2d": gen.densifier.strategy.grow_grad2d,
        "skipped_steps": gen.skipped_steps, **(extra or {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    tmp = folder / (CHECKPOINT_FILE + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata={"gsdi": json.dumps(meta)})
    fsync_replace(tmp, path)
    return path


def fsync_replace(tmp: Path, path: Path) -> None:
    """Flush tmp to disk and rename it over path (atomic on POSIX), then flush the folder entry."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems do not fsync folders
        pass


def read_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, tensors on CPU) of folder's checkpoint; GsdiError if missing or damaged."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise GsdiError(f"nothing to resume in {folder}: it has no {CHECKPOINT_FILE} "
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
    return meta, tensors


def restore(gen: "Generation", meta: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Put a checkpoint's state into a Generation built from the same config."""
    import torch

    from gsdi.densify import Densifier
    from gsdi.scene import make_optimizers, update_learning_rates

    device = gen.device
    gen.params = torch.nn.ParameterDict({
        key[len("params."):]: torch.nn.Parameter(value.to(device))
        for key, value in tensors.items() if key.startswith("params.")
    })
    gen.optimizers = make_optimizers(gen.params, gen.config.optim)
    for name, optimizer in gen.optimizers.items():
        (param,) = optimizer.param_groups[0]["params"]
        prefix = f"optim.{name}."
        state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        if state:
            optimizer.state[param] = {k: (v if k == "step" else v.to(device)) for k, v in state.items()}
    gen.densifier = Densifier(gen.config.densify, gen.config.steps, gen.config.scene.init_radius,
                              gen.params, gen.optimizers)
    gen.densifier.state.update(meta["densify_scalars"])
    gen.densifier.state.update({key[len("densify."):]: value.to(device) for key, value in tensors.items()
                                if key.startswith("densify.")})
    gen.densifier.strategy.grow_grad2d = meta["grow_grad2d"]
    gen.rng.host.set_state(tensors["rng.host"])
    gen.rng.device.set_state(tensors["rng.device"])
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if device.type == "cuda" and "rng.torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.torch_cuda"], device)
    gen.step = int(meta["step"])
    gen.skipped_steps = int(meta.get("skipped_steps", 0))
    update_learning_rates(gen.optimizers, gen.step, gen.config.steps, gen.config.optim)
