"""Meshes from splats (TSDF fusion with open3d) and floater removal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gsdi.cli import main
from conftest import small_scene
from gsdi.formats import read_ply, write_ply

def ball_scene(n: int = 4000, seed: int = 0, floaters: int = 0) -> dict[str, torch.Tensor]:
    """Opaque red Gaussians on a sphere of radius 0.3 (plus optional far-away floaters)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1) * 0.3
    if floaters:
        d = torch.cat([d, torch.randn(floaters, 3, generator=g) * 0.05 + torch.tensor([0.9, 0.0, 0.0])])
    m = d.shape[0]
    red = (torch.tensor([0.9, 0.15, 0.1]) - 0.5) / 0.28209479177387814
    return {"means": d, "scales": torch.full((m, 3), np.log(0.02)), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(m, 1),
            "opacities": torch.full((m,), 4.0), "sh0": red.repeat(m, 1, 1), "shN": torch.zeros(m, 0, 3)}


@pytest.mark.mesh  # needs open3d itself
def test_mesh_of_a_sphere_has_its_area_and_colour(tmp_path, capsys):
    import open3d as o3d

    write_ply(tmp_path / "ball.ply", ball_scene())
    main(["export", str(tmp_path / "ball.ply"), "--format", "mesh-ply", "--out", str(tmp_path / "ball.mesh.ply")])
    assert "triangles" in capsys.readouterr().out
    mesh = o3d.io.read_triangle_mesh(str(tmp_path / "ball.mesh.ply"))
    area = mesh.get_surface_area()
    # The splats' surface sits a bit outside r = 0.3 (Gaussians of std 0.02): area of r ~ 0.3-0.34.
    assert 4 * np.pi * 0.28**2 < area < 4 * np.pi * 0.36**2, area
    colours = np.asarray(mesh.vertex_colors)
    assert len(colours) > 100 and colours[:, 0].mean() > 0.6 and colours[:, 1].mean() < 0.35
    assert len(mesh.cluster_connected_triangles()[2]) == 1  # one component after cleaning


@pytest.mark.mesh  # needs open3d itself
@pytest.mark.parametrize("fmt", ["mesh-obj", "mesh-glb"])
def test_mesh_formats_are_written(tmp_path, fmt, capsys):
    import open3d as o3d

    write_ply(tmp_path / "ball.ply", ball_scene(n=2000))
    main(["export", str(tmp_path / "ball.ply"), "--format", fmt, "--voxel", "0.02"])
    path = tmp_path / ("ball.mesh." + fmt.split("-")[1])
    assert path.stat().st_size > 1000
    if fmt == "mesh-obj":
        assert len(o3d.io.read_triangle_mesh(str(path)).triangles) > 100
    else:  # glTF binary, read with its spec: 12-byte header "glTF", then a JSON chunk naming the accessors
        import json
        import struct

        data = path.read_bytes()
        magic, version, length = struct.unpack("<4sII", data[:12])
        assert magic == b"glTF" and version == 2 and length == len(data)
        chunk_length, chunk_type = struct.unpack("<I4s", data[12:20])
        gltf = json.loads(data[20:20 + chunk_length])
        primitive = gltf["meshes"][0]["primitives"][0]
        assert gltf["accessors"][primitive["indices"]]["count"] > 300  # > 100 triangles
        assert "COLOR_0" in primitive["attributes"]


@pytest.mark.mesh  # needs open3d itself
def test_clean_removes_floaters(tmp_path, capsys):
    write_ply(tmp_path / "f.ply", ball_scene(n=3000, floaters=8))
    main(["export", str(tmp_path / "f.ply"), "--format", "ply", "--clean", "--out", str(tmp_path / "c.ply")])
    assert "floaters removed" in capsys.readouterr().out
    cleaned = read_ply(tmp_path / "c.ply")
    assert cleaned["means"].norm(dim=1).max() < 0.5  # the cluster at x = 0.9 is gone
    assert cleaned["means"].shape[0] > 2900  # the sphere is kept


@pytest.mark.mesh  # needs open3d itself
def test_meshes_are_y_up_by_default_and_splats_keep_gsdi_axes(tmp_path, capsys):
    """A ball with a mast pointing up (gsdi's up is -Y): in glTF (+Y up by its spec) and OBJ the mast
    must point to +Y; --y-down keeps gsdi's axes; splat formats keep them by default."""
    import json
    import struct

    import open3d as o3d

    scene = ball_scene(n=3000)
    mast = torch.zeros(200, 3)
    mast[:, 1] = -torch.linspace(0.3, 0.6, 200)  # up, in gsdi's axes
    scene = {k: torch.cat([v, v[:200]]) for k, v in scene.items()}
    scene["means"][-200:] = mast
    write_ply(tmp_path / "m.ply", scene)
    main(["export", str(tmp_path / "m.ply"), "--format", "mesh-glb", "--voxel", "0.02"])
    data = (tmp_path / "m.mesh.glb").read_bytes()
    length = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20:20 + length])
    position = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert position["max"][1] > 0.5 and position["min"][1] > -0.4, (position["min"], position["max"])
    for flag, sign in (([], 1), (["--y-down"], -1)):
        main(["export", str(tmp_path / "m.ply"), "--format", "mesh-obj", "--voxel", "0.02", "--force", *flag])
        y = np.asarray(o3d.io.read_triangle_mesh(str(tmp_path / "m.mesh.obj")).vertices)[:, 1]
        assert sign * y.max() > 0.5 if sign > 0 else y.min() < -0.5
    main(["export", str(tmp_path / "m.ply"), "--format", "ply", "--out", str(tmp_path / "same.ply")])
    assert torch.equal(read_ply(tmp_path / "same.ply")["means"], read_ply(tmp_path / "m.ply")["means"])


def open3d_import_fails(monkeypatch, message: str) -> None:
    """`import open3d` raises ImportError(message) for the rest of the test."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "open3d":
            raise ImportError(message)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_without_open3d_the_mesh_commands_name_the_readme_install(monkeypatch):
    from gsdi import mesh
    from gsdi.errors import GsdiError

    open3d_import_fails(monkeypatch, "No module named 'open3d'")
    with pytest.raises(GsdiError) as info:
        mesh.clean_splats(small_scene())
    assert "--clean" in str(info.value) and 'pip install ".[mesh]"' in str(info.value)


def test_a_missing_system_library_for_open3d_is_named(monkeypatch):
    from gsdi.errors import GsdiError
    from gsdi.mesh import open3d

    open3d_import_fails(monkeypatch, "libusb-1.0.so.0: cannot open shared object file: No such file or directory")
    with pytest.raises(GsdiError, match="system library libusb-1.0.so.0 is missing; install libusb-1.0-0"):
        open3d()


GLTF_VALIDATOR = Path(os.environ.get("GLTF_VALIDATOR_DIR", "")) / "node_modules" / "gltf-validator"


@pytest.mark.mesh  # needs open3d itself
def test_a_large_glb_is_valid_for_the_khronos_validator_and_reads_back(tmp_path, capsys):
    """Over 21845 triangles (open3d writes 3 indices a triangle as 16-bit numbers, which overflowed): the
    Khronos glTF validator finds no error, trimesh and open3d read back the same triangles and colours."""
    import open3d as o3d
    import trimesh

    write_ply(tmp_path / "ball.ply", ball_scene(n=20000))
    main(["export", str(tmp_path / "ball.ply"), "--format", "mesh-glb"])
    out, err = capsys.readouterr()
    assert "meshing: 48/48 views fused" in err, err
    path = tmp_path / "ball.mesh.glb"
    triangles = int(out.split(" vertices, ")[1].split(" triangles")[0])
    assert triangles > 65535 // 3, out
    mesh = trimesh.load(str(path), force="mesh")
    assert len(mesh.faces) == triangles
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].mean(0) / 255
    assert colours[0] > 0.6 and colours[1] < 0.35, colours  # the ball's red
    assert len(o3d.io.read_triangle_mesh(str(path)).triangles) == triangles
    node = shutil.which("node")
    if node is None or not GLTF_VALIDATOR.is_dir():
        pytest.skip("needs node and the Khronos validator: npm install gltf-validator, then GLTF_VALIDATOR_DIR=that folder")
    script = ("const v = require(process.argv[1]); const fs = require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2]))).then(r => console.log(JSON.stringify("
              "{errors: r.issues.numErrors, messages: r.issues.messages.filter(m => m.severity === 0).map(m => m.code)})))")
    report = subprocess.run([node, "-e", script, str(GLTF_VALIDATOR), str(path)], capture_output=True, text=True, timeout=120)
    assert json.loads(report.stdout) == {"errors": 0, "messages": []}, report.stdout + report.stderr
