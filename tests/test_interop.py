"""gsdi's splat files read by the tools people look at splats with.

PlayCanvas splat-transform 3.7 (the converter behind SuperSplat; node) reads every splat format gsdi
writes: .ply, .splat, the compressed .ply, .spz and .sog; gsply (Python) reads .ply, the compressed
.ply and .spz; an INRIA-style loader (the
reference 3DGS code's `load_ply`, which insists on 45 f_rest fields at its SH degree 3) reads the
export padded with `--sh-degree 3`. Each reader's count, bounds, colours and opacities must be gsdi's.
"""

from __future__ import annotations

import csv
import shutil
import subprocess

import numpy as np
import pytest
import torch

from gsdi.cli import main
from gsdi.formats import pad_sh, read_any, read_ply, write_compressed_ply, write_ply, write_sog, write_splat, write_spz
from gsdi.kernels.projection import SH_C0

SPLAT_TRANSFORM = shutil.which("splat-transform")
needs_splat_transform = pytest.mark.skipif(
    SPLAT_TRANSFORM is None,
    reason="needs PlayCanvas splat-transform on PATH (node 18+: npm install -g @playcanvas/splat-transform@3.7.0)")


@pytest.fixture(scope="module")
def scene():
    """700 Gaussians (three chunks of the compressed format), SH degree 0, values like a generation's."""
    g = torch.Generator().manual_seed(0)
    N = 700
    quats = torch.randn(N, 4, generator=g)
    return {"means": torch.rand(N, 3, generator=g) - 0.5, "scales": -4.5 + 0.5 * torch.randn(N, 3, generator=g),
            "quats": quats / quats.norm(dim=-1, keepdim=True), "opacities": 2 * torch.randn(N, generator=g),
            "sh0": 0.8 * torch.randn(N, 1, 3, generator=g), "shN": torch.zeros(N, 0, 3)}


@pytest.fixture(scope="module")
def files(scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("interop")
    paths = {"ply": folder / "scene.ply", "splat": folder / "scene.splat", "ply-compressed": folder / "scene.compressed.ply",
             "spz": folder / "scene.spz", "sog": folder / "scene.sog"}
    write_ply(paths["ply"], scene)
    write_splat(paths["splat"], scene)
    assert write_compressed_ply(paths["ply-compressed"], scene) == int((torch.sigmoid(scene["opacities"]) > 1 / 255).sum())
    assert write_spz(paths["spz"], scene) == 700
    if SPLAT_TRANSFORM is not None:
        assert write_sog(paths["sog"], scene) == 700
    return paths


def assert_same_scene(scene, means, rgb, opacity, fmt: str) -> None:
    """A reader's means [N, 3], colours [N, 3] (0.5 + SH_C0 * f_dc) and opacities [N] (in [0, 1]) against
    gsdi's, row order aside: the formats sort and quantise (8-bit colour and opacity in .splat, the
    compressed .ply and .spz, 11/10/11-bit positions per chunk of 256 in the compressed .ply, 12
    fractional bits of position in .spz; .sog keeps 16-bit positions (log-scaled) and a palette of
    colours)."""
    keep = torch.ones(scene["means"].shape[0], dtype=torch.bool)
    if fmt == "ply-compressed":  # it leaves out what 8 bits of opacity make invisible
        keep = torch.sigmoid(scene["opacities"]) > 1 / 255
    want_means = scene["means"][keep].numpy()
    want_rgb = (0.5 + SH_C0 * scene["sh0"][keep, 0]).numpy()
    want_opacity = torch.sigmoid(scene["opacities"][keep]).numpy()
    assert means.shape == want_means.shape, (fmt, means.shape)
    tol_pos = {"ply": 1e-6, "splat": 1e-6, "ply-compressed": 1e-3, "spz": 1e-3, "sog": 1e-3}[fmt]
    np.testing.assert_allclose(means.min(0), want_means.min(0), atol=tol_pos, err_msg=fmt)
    np.testing.assert_allclose(means.max(0), want_means.max(0), atol=tol_pos, err_msg=fmt)
    tol = {"ply": 1e-5, "sog": 0.06}.get(fmt, 1.0 / 255 + 1e-4)  # .sog: 256 palette values a channel, sparse in the tails
    if fmt in ("splat", "sog"):  # .splat stores 8-bit RGB in [0, 1]; .sog's palette spans the visible colours
        want_rgb = want_rgb.clip(0, 1)
        rgb = rgb.clip(0, 1)
    np.testing.assert_allclose(np.sort(rgb, axis=0), np.sort(want_rgb, axis=0), atol=tol, err_msg=fmt)
    assert np.abs(np.sort(rgb, axis=0) - np.sort(want_rgb, axis=0)).mean() < 0.005, fmt
    np.testing.assert_allclose(np.sort(opacity), np.sort(want_opacity), atol=tol, err_msg=fmt)


def read_csv(path) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64)
    return {name: values[:, i] for i, name in enumerate(header)}


@needs_splat_transform
@pytest.mark.parametrize("fmt", ["ply", "splat", "ply-compressed", "spz", "sog"])
def test_splat_transform_reads_every_splat_format(files, scene, fmt, tmp_path):
    out = tmp_path / "read.csv"
    proc = subprocess.run([SPLAT_TRANSFORM, "-w", str(files[fmt]), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and out.is_file(), proc.stdout + proc.stderr
    columns = read_csv(out)
    means = np.stack([columns[k] for k in "xyz"], -1)
    rgb = np.stack([0.5 + SH_C0 * columns[f"f_dc_{i}"] for i in range(3)], -1)
    opacity = 1 / (1 + np.exp(-columns["opacity"]))
    assert_same_scene(scene, means, rgb, opacity, fmt)
    assert not any(k.startswith("f_rest_") for k in columns), "SH degree 0 has no f_rest columns"


@pytest.mark.filterwarnings("ignore:The TBB threading layer")  # numba (under gsply) on an older system TBB
@pytest.mark.parametrize("fmt", ["ply", "ply-compressed", "spz"])
def test_gsply_reads_ply_compressed_ply_and_spz(files, scene, fmt):
    import gsply

    data = gsply.read_spz(str(files[fmt])) if fmt == "spz" else gsply.plyread(str(files[fmt]))
    rgb = 0.5 + SH_C0 * np.asarray(data.sh0).reshape(-1, 3)
    opacity = 1 / (1 + np.exp(-np.asarray(data.opacities).reshape(-1)))
    assert_same_scene(scene, np.asarray(data.means), rgb, opacity, fmt)


def test_compressed_ply_has_no_empty_sh_element_at_degree_0(files):
    header = files["ply-compressed"].read_bytes().split(b"end_header")[0].decode()
    assert "element sh" not in header and "element chunk 3" in header and "element vertex 698" in header, header


def inria_load_ply(path, max_sh_degree: int = 3) -> dict[str, np.ndarray]:
    """What the reference 3DGS code's GaussianModel.load_ply does with a .ply (its checks and shapes)."""
    from plyfile import PlyData

    vertex = PlyData.read(str(path)).elements[0]
    xyz = np.stack([np.asarray(vertex[k]) for k in "xyz"], axis=1)
    features_dc = np.stack([np.asarray(vertex[f"f_dc_{i}"]) for i in range(3)], axis=1)[:, :, None]
    extra = sorted((p.name for p in vertex.properties if p.name.startswith("f_rest_")), key=lambda n: int(n.split("_")[-1]))
    assert len(extra) == 3 * (max_sh_degree + 1) ** 2 - 3, f"{len(extra)} f_rest fields for SH degree {max_sh_degree}"
    features_extra = np.stack([np.asarray(vertex[n]) for n in extra], axis=1)
    features_extra = features_extra.reshape(xyz.shape[0], 3, (max_sh_degree + 1) ** 2 - 1)
    return {"xyz": xyz, "features_dc": features_dc, "features_extra": features_extra,
            "opacity": np.asarray(vertex["opacity"]), "scale": np.stack([np.asarray(vertex[f"scale_{i}"]) for i in range(3)], 1),
            "rotation": np.stack([np.asarray(vertex[f"rot_{i}"]) for i in range(4)], 1)}


def test_sh_degree_3_export_reads_in_an_inria_style_loader_and_renders_the_same(files, scene, tmp_path):
    with pytest.raises(AssertionError, match="0 f_rest fields"):  # why the option exists
        inria_load_ply(files["ply"])
    padded = tmp_path / "scene.sh3.ply"
    main(["export", str(files["ply"]), "--format", "ply", "--sh-degree", "3", "--out", str(padded)])  # exits only on failure
    loaded = inria_load_ply(padded, 3)
    np.testing.assert_array_equal(loaded["xyz"], scene["means"].numpy())
    np.testing.assert_array_equal(loaded["features_dc"][:, :, 0], scene["sh0"][:, 0].numpy())
    np.testing.assert_array_equal(loaded["opacity"], scene["opacities"].numpy())
    assert loaded["features_extra"].shape == (700, 3, 15) and not loaded["features_extra"].any()

    from gsdi.cameras import eval_orbits
    from gsdi.render import render

    cams = eval_orbits(2, 32, 32, distance=1.5)
    before = render(scene, cams, (1.0, 1.0, 1.0), "torch").rgb
    after = render(read_ply(padded), cams, (1.0, 1.0, 1.0), "torch").rgb
    assert torch.allclose(before, after, atol=1e-6)
    with pytest.raises(Exception, match="would drop bands"):
        pad_sh(read_ply(padded), 1)



@pytest.mark.filterwarnings("ignore:The TBB threading layer")
def test_gsdi_reads_back_the_spz_it_writes(files, scene):
    back = read_any(files["spz"])
    assert back["means"].shape == (700, 3) and back["shN"].shape == (700, 0, 3)
    assert (back["means"] - scene["means"]).abs().max() < 1e-3
    assert (torch.sigmoid(back["opacities"]) - torch.sigmoid(scene["opacities"])).abs().max() < 1 / 255 + 1e-4
