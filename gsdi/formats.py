"""The splat file formats: standard 3DGS .ply (the INRIA layout every splat viewer reads), .splat,
PlayCanvas's compressed .ply, Niantic's .spz (through gsply) and PlayCanvas's .sog (through
splat-transform), written and read back safely.

Per vertex, float32: x y z, nx ny nz (zeros), f_dc_0..2, f_rest_* (SH bands above 0, channel-major
as INRIA writes them), opacity (logit), scale_0..2 (log), rot_0..3 (quaternion wxyz). Axes as in
`gsdi.cameras`: -Y up, front towards +Z.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsdi.errors import GsdiError
from gsdi.kernels.projection import SH_C0

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


def write_ply(path: str | Path, params: dict[str, Tensor]) -> int:
    """Write Gaussians (raw parameters as in gsdi.scene) to a binary little-endian .ply."""
    from plyfile import PlyData, PlyElement

    p = {k: params[k].detach().float().cpu().numpy() for k in PARAM_NAMES}
    N = p["means"].shape[0]
    f_rest = p["shN"].transpose(0, 2, 1).reshape(N, -1)  # [N, 3 * (K - 1)], channel-major
    columns = [
        ("x", p["means"][:, 0]), ("y", p["means"][:, 1]), ("z", p["means"][:, 2]),
        ("nx", np.zeros(N)), ("ny", np.zeros(N)), ("nz", np.zeros(N)),
        *[(f"f_dc_{i}", p["sh0"][:, 0, i]) for i in range(3)],
        *[(f"f_rest_{i}", f_rest[:, i]) for i in range(f_rest.shape[1])],
        ("opacity", p["opacities"].reshape(N)),
        *[(f"scale_{i}", p["scales"][:, i]) for i in range(3)],
        *[(f"rot_{i}", p["quats"][:, i]) for i in range(4)],
    ]
    vertex = np.empty(N, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        vertex[name] = values
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(path))
    return N


def pad_sh(params: dict[str, Tensor], degree: int) -> dict[str, Tensor]:
    """The same scene with SH bands up to `degree` (zeros above the scene's own, which renders the
    same): for loaders that expect a fixed degree, such as INRIA's reference code (degree 3, 45 f_rest)."""
    N, K = params["shN"].shape[0], params["shN"].shape[1] + 1
    want = (degree + 1) ** 2
    if not 0 <= degree <= 3:
        raise GsdiError(f"--sh-degree must be 0, 1, 2 or 3 (got {degree})")
    if want < K:
        raise GsdiError(f"the scene has SH degree {math.isqrt(K) - 1}; --sh-degree {degree} would drop bands")
    pad = params["shN"].new_zeros(N, want - K, 3)
    return {**params, "shN": torch.cat([params["shN"], pad], dim=1)}


# --- reading: our own header parser, so sizes are checked before anything is allocated ------------

MAX_HEADER_BYTES = 1 << 16
PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
             "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
             "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8"}
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3")


def read_ply_elements(path: str | Path) -> dict[str, np.ndarray]:
    """Every element of a binary little-endian PLY with scalar properties, as numpy record arrays.

    The header is parsed first (at most 64 KiB); element counts times record sizes must add up to
    exactly the bytes after the header before anything is read, so a damaged or hostile header
    cannot make us allocate. Any problem is a GsdiError naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(MAX_HEADER_BYTES)
            end = head.find(b"end_header\n")
            if not head.startswith(b"ply\n") and not head.startswith(b"ply\r\n"):
                raise GsdiError(f"{path} is not a PLY file (it does not start with 'ply')")
            if end < 0:
                raise GsdiError(f"{path}: no end_header in the first {MAX_HEADER_BYTES} bytes; the header is damaged")
            elements = _parse_header(path, head[:end].decode("ascii", errors="replace"))
            body = size - (end + len(b"end_header\n"))
            needed = sum(count * dtype.itemsize for _, count, dtype in elements)
            if needed != body:
                what = "truncated" if needed > body else "longer than its header says"
                raise GsdiError(f"{path} is {what}: the header describes {needed} bytes of data, the file has {body}")
            handle.seek(end + len(b"end_header\n"))
            return {name: np.frombuffer(handle.read(count * dtype.itemsize), dtype=dtype, count=count)
                    for name, count, dtype in elements}
    except OSError as error:
        raise GsdiError(f"cannot read {path}: {error.strerror or error}") from None


def _parse_header(path: Path, header: str) -> list[tuple[str, int, np.dtype]]:
    elements: list[tuple[str, int, list]] = []
    lines = [line.strip() for line in header.splitlines()[1:]]
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if words[1:2] != ["binary_little_endian"]:
                raise GsdiError(f"{path}: PLY format {' '.join(words[1:])!r} is not supported; "
                                "gsdi reads binary_little_endian splat files")
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and len(words) == 3 and words[1] in PLY_TYPES and elements:
            elements[-1][2].append((words[2], PLY_TYPES[words[1]]))
        elif words[0] == "property" and len(words) > 1 and words[1] == "list":
            raise GsdiError(f"{path}: list properties (meshes) are not splats")
        else:
            raise GsdiError(f"{path}: cannot parse the PLY header line {line[:80]!r}")
    if not any(line.split()[:1] == ["format"] for line in lines):
        raise GsdiError(f"{path}: the PLY header has no format line")
    try:
        return [(name, count, np.dtype(props)) for name, count, props in elements]
    except (TypeError, ValueError) as error:  # e.g. a property name given twice
        raise GsdiError(f"{path}: bad PLY properties ({error})") from None


def read_ply(path: str | Path) -> dict[str, Tensor]:
    """Read a 3DGS .ply back into raw parameters (means, scales, quats, opacities, sh0, shN).

    GsdiError for anything that is not a finite, non-empty 3DGS splat file.
    """
    elements = read_ply_elements(path)
    if "vertex" not in elements:
        raise GsdiError(f"{path} has no 'vertex' element: not a Gaussian splat .ply")
    if "chunk" in elements:
        raise GsdiError(f"{path} is a compressed (SuperSplat) .ply; read it with read_compressed_ply")
    vertex = elements["vertex"]
    names = set(vertex.dtype.names or ())
    if missing := [k for k in REQUIRED if k not in names]:
        raise GsdiError(f"{path} is not a 3DGS .ply: missing properties {', '.join(missing)}")
    n_rest = len([n for n in names if n.startswith("f_rest_")])
    degree = int(round(math.sqrt(n_rest / 3 + 1))) - 1
    if 3 * ((degree + 1) ** 2 - 1) != n_rest or any(f"f_rest_{i}" not in names for i in range(n_rest)):
        raise GsdiError(f"{path}: {n_rest} f_rest_* properties is not 3 * ((d+1)^2 - 1) for any SH degree d")
    N = len(vertex)
    if N == 0:
        raise GsdiError(f"{path} holds zero Gaussians")

    def cols(*keys: str) -> Tensor:
        return torch.from_numpy(np.stack([vertex[k].astype(np.float32) for k in keys], axis=-1))

    shN = cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else torch.zeros(N, 0)
    params = {
        "means": cols("x", "y", "z"),
        "scales": cols("scale_0", "scale_1", "scale_2"),
        "quats": cols("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacities": cols("opacity")[:, 0],
        "sh0": cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
        "shN": shN.reshape(N, 3, -1).transpose(1, 2).contiguous(),
    }
    bad = ~finite_rows(params)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise GsdiError(f"{path}: {int(bad.sum())} of {N} Gaussians hold NaN or infinite values (first: row {first}); "
                        "the file is damaged")
    if (params["quats"].norm(dim=1) == 0).any():
        raise GsdiError(f"{path}: some Gaussians have an all-zero rotation quaternion; the file is damaged")
    return params


# --- orientation ----------------------------------------------------------------------------------

# Sign of each SH basis function (gsplat's order, bands 1-3) under (x, y, z) -> (x, -y, -z).
_FLIP_SIGNS = [-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1]


def flip_y_up(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rotate a scene 180 degrees about X: gsdi's -Y-up (INRIA/COLMAP) axes -> +Y up, front -Z
    (three.js / glTF viewers). Means, rotations and view-dependent SH bands all turn with it."""
    w, x, y, z = params["quats"].unbind(-1)
    K = params["shN"].shape[1]
    signs = torch.tensor(_FLIP_SIGNS[:K], dtype=params["shN"].dtype)
    return {**params,
            "means": params["means"] * torch.tensor([1.0, -1.0, -1.0]),
            "quats": torch.stack([-x, w, -z, y], dim=-1),
            "shN": params["shN"] * signs[:, None]}


# --- other formats ----------------------------------------------------------------------------------

def finite_rows(params: dict[str, Tensor]) -> Tensor:
    """[N] bool: Gaussians whose every parameter is finite (gsplat's exporter drops all rows if one
    opacity is NaN, so we filter before calling it)."""
    N = params["means"].shape[0]
    return torch.stack([torch.isfinite(params[k].reshape(N, -1)).all(dim=1) for k in PARAM_NAMES]).all(dim=0)


def write_splat(path: str | Path, params: dict[str, Tensor]) -> int:
    """antimatter15's .splat: 32 bytes a Gaussian (position, scale as float32 x3; RGBA and rotation as
    uint8 x4), sorted by gsplat's exporter; rows with NaN are dropped. Returns the count written."""
    return _gsplat_export(path, params, "splat")


def write_compressed_ply(path: str | Path, params: dict[str, Tensor]) -> int:
    """PlayCanvas's compressed .ply, as SuperSplat reads it (chunks of 256 with quantised
    position/rotation/scale/colour, then the SH bands as bytes); returns the count written: rows
    with NaN and Gaussians of opacity <= 1/255 (zero at 8 bits) are left out. At SH degree 0 the file has no
    `sh` element, as PlayCanvas's own writer leaves it out (its reader refuses an element without properties)."""
    return _gsplat_export(path, params, "ply_compressed")


def drop_empty_elements(data: bytes) -> bytes:
    """A binary PLY with the header's elements that have no properties removed (they hold no bytes)."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].split(b"\n")
    kept = [line for i, line in enumerate(lines)
            if not (line.startswith(b"element ") and not lines[i + 1].startswith(b"property "))]
    return b"\n".join(kept) + data[end:]


def _gsplat_export(path, params, fmt: str) -> int:
    from gsplat import export_splats

    keep = finite_rows(params)
    p = {k: params[k].detach().float().cpu()[keep] for k in PARAM_NAMES}
    if p["means"].shape[0] == 0:
        raise GsdiError("no finite Gaussians to export")
    data = export_splats(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"], p["shN"], format=fmt)
    count = len(data) // SPLAT_RECORD.itemsize
    if fmt == "ply_compressed":  # gsplat leaves out Gaussians of opacity <= 1/255 (invisible at 8 bits)
        data = drop_empty_elements(data)
        count = int(re.search(rb"element vertex (\d+)", data[:MAX_HEADER_BYTES]).group(1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return count


SPLAT_RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def read_splat(path: str | Path) -> dict[str, Tensor]:
    """A .splat back into raw parameters (lossy: colours and opacity 8-bit, rotation 8-bit, no SH bands)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or size % SPLAT_RECORD.itemsize:
        raise GsdiError(f"{path} is not a .splat file: {size} bytes is not a positive multiple of 32")
    rec = np.fromfile(path, dtype=SPLAT_RECORD)
    rgba = torch.from_numpy(rec["rgba"].astype(np.float32) / 255)
    quats = torch.from_numpy((rec["rot"].astype(np.float32) - 128) / 128)
    scales = torch.from_numpy(rec["scale"].astype(np.float32))
    if not (torch.isfinite(scales).all() and (scales > 0).all() and np.isfinite(rec["position"]).all()):
        raise GsdiError(f"{path}: non-finite or non-positive values; the file is damaged")
    opacity = rgba[:, 3].clamp(1e-4, 1 - 1e-4)
    return {"means": torch.from_numpy(rec["position"].copy()), "scales": scales.log(), "quats": quats,
            "opacities": torch.log(opacity / (1 - opacity)), "sh0": ((rgba[:, :3] - 0.5) / SH_C0)[:, None, :],
            "shN": torch.zeros(len(rec), 0, 3)}


def read_compressed_ply(path: str | Path) -> dict[str, Tensor]:
    """SuperSplat's compressed .ply back into raw parameters (decoding gsplat's packing)."""
    el = read_ply_elements(path)
    if not {"chunk", "vertex"} <= set(el):
        raise GsdiError(f"{path} is not a compressed splat .ply (needs 'chunk' and 'vertex' elements)")
    chunk, vertex = el["chunk"], el["vertex"]
    N = len(vertex)
    if N == 0 or len(chunk) != (N + 255) // 256:
        raise GsdiError(f"{path}: {len(chunk)} chunks do not fit {N} Gaussians of 256 a chunk")
    owner = np.arange(N) // 256

    def bounds(prefix: str, keys: str) -> tuple[np.ndarray, np.ndarray]:
        lo = np.stack([chunk[f"min_{prefix}{k}"] for k in keys], -1)[owner]
        hi = np.stack([chunk[f"max_{prefix}{k}"] for k in keys], -1)[owner]
        return lo, hi

    def unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
        return ((v.astype(np.int64) >> shift) & ((1 << bits) - 1)) / ((1 << bits) - 1)

    def p111011(v: np.ndarray) -> np.ndarray:
        return np.stack([unorm(v, 21, 11), unorm(v, 11, 10), unorm(v, 0, 11)], -1)

    lo, hi = bounds("", "xyz")
    means = lo + (hi - lo) * p111011(vertex["packed_position"])
    lo, hi = bounds("scale_", "xyz")
    scales = lo + (hi - lo) * p111011(vertex["packed_scale"])
    c = vertex["packed_color"]
    lo, hi = bounds("", "rgb")
    rgb = lo + (hi - lo) * np.stack([unorm(c, 24, 8), unorm(c, 16, 8), unorm(c, 8, 8)], -1)
    alpha = np.clip(unorm(c, 0, 8), 1e-4, 1 - 1e-4)
    r = vertex["packed_rotation"].astype(np.int64)
    rest = np.stack([unorm(r, 20, 10), unorm(r, 10, 10), unorm(r, 0, 10)], -1)
    rest = (rest - 0.5) * math.sqrt(2)
    largest = (r >> 30) & 3
    quats = np.zeros((N, 4))
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(quats, others, rest, axis=1)
    np.put_along_axis(quats, largest[:, None], np.sqrt(np.clip(1 - (rest**2).sum(1), 0, 1))[:, None], axis=1)
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {"means": f(means), "scales": f(scales), "quats": f(quats), "opacities": f(np.log(alpha / (1 - alpha))),
            "sh0": ((f(rgb) - 0.5) / SH_C0)[:, None, :], "shN": torch.zeros(N, 0, 3)}


SPLAT_TRANSFORM_HINT = "node 18+ and npm install -g @playcanvas/splat-transform@3.7.0"


def write_spz(path: str | Path, params: dict[str, Tensor]) -> int:
    """Niantic's .spz (gzip container, version 3, which every SPZ reader takes) through gsply, a kept
    reader and writer of the format; rows with NaN are dropped. Returns the count written."""
    import gsply

    p = {k: v[finite_rows(params)].detach().float().cpu().numpy() for k, v in params.items() if k in PARAM_NAMES}
    data = gsply.GSData(means=p["means"], scales=p["scales"], quats=p["quats"], opacities=p["opacities"],
                        sh0=p["sh0"][:, 0], shN=p["shN"])
    gsply.write_spz(str(path), data, version=3)
    return p["means"].shape[0]


def read_spz(path: str | Path) -> dict[str, Tensor]:
    """A .spz file (through gsply) in gsdi's parameter layout."""
    import gsply

    try:
        data = gsply.read_spz(str(path))
    except Exception as error:  # gsply raises several types for a damaged file
        raise GsdiError(f"{path} is not a readable .spz file ({str(error).splitlines()[0][:160]})") from None
    N = data.means.shape[0]
    shN = torch.zeros(N, 0, 3) if data.shN is None else torch.as_tensor(np.asarray(data.shN, np.float32)).reshape(N, -1, 3)
    return {"means": torch.as_tensor(np.asarray(data.means, np.float32)), "scales": torch.as_tensor(np.asarray(data.scales, np.float32)),
            "quats": torch.as_tensor(np.asarray(data.quats, np.float32)), "opacities": torch.as_tensor(np.asarray(data.opacities, np.float32)).reshape(N),
            "sh0": torch.as_tensor(np.asarray(data.sh0, np.float32)).reshape(N, 1, 3), "shN": shN}


def write_sog(path: str | Path, params: dict[str, Tensor]) -> int:
    """PlayCanvas's .sog (SuperSplat's default: WebP textures with a palette of SH) through PlayCanvas
    splat-transform, the format's own converter (node; no Python writer exists): gsdi writes a .ply
    and splat-transform encodes it, on the CPU. Returns the count written."""
    import shutil
    import subprocess
    import tempfile

    tool = shutil.which("splat-transform")
    if tool is None:
        raise GsdiError(f"--format sog is written by PlayCanvas splat-transform, which is not on PATH; install it: {SPLAT_TRANSFORM_HINT}")
    with tempfile.TemporaryDirectory() as folder:
        ply = Path(folder) / "scene.ply"
        count = write_ply(ply, {k: v[finite_rows(params)] for k, v in params.items()})
        proc = subprocess.run([tool, "-q", "-w", "-g", "cpu", str(ply), str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}").splitlines()[-1]
        raise GsdiError(f"splat-transform could not write {path}: {reason[:200]}")
    return count


def read_any(path: str | Path) -> dict[str, Tensor]:
    """A splat scene from .ply (standard or compressed), .splat or .spz, by content."""
    path = Path(path)
    if not path.is_file():
        raise GsdiError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    if path.suffix.lower() == ".splat":
        return read_splat(path)
    if path.suffix.lower() == ".spz":
        return read_spz(path)
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    if b"element chunk" in head.split(b"end_header")[0]:
        return read_compressed_ply(path)
    return read_ply(path)
