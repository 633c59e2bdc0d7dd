"""Meshes and floater removal with open3d (the `mesh` extra).

`splats_to_mesh`: render RGB and expected depth of the splats from views all around the object,
fuse them into a TSDF volume (open3d's UniformTSDFVolume over the splats' bounds), extract a coloured triangle mesh and
clean it (largest connected component, degenerate and unreferenced parts removed).
`clean_splats`: statistical outlier removal on the Gaussians' centres (floaters).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from gsdi.errors import GsdiError

MESH_FORMATS = {"mesh-obj": ".obj", "mesh-ply": ".ply", "mesh-glb": ".glb"}
SYSTEM_PACKAGES = {"libusb-1.0": "libusb-1.0-0", "libGL": "libgl1", "libgomp": "libgomp1", "libX11": "libx11-6"}


EXTRA_HINT = "install the mesh extra: pip install \".[mesh]\" in gsdi's folder (README, Install)"


def open3d(purpose: str = "meshes") -> Any:
    """The open3d module, or a GsdiError that says what `purpose` needs and what is missing (the
    package, or a system library)."""
    try:
        import open3d as o3d
    except ImportError as error:
        missing = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", str(error))
        if missing:  # open3d is installed, but a system library it loads is not (libusb-1.0 on fresh Debian)
            package = SYSTEM_PACKAGES.get(missing.group(1).split(".so")[0], "the package that provides it")
            raise GsdiError(f"open3d is installed but the system library {missing.group(1)} is missing; "
                            f"install {package} (Debian/Ubuntu: sudo apt-get install {package})") from None
        raise GsdiError(f"{purpose} need open3d, which is not installed; {EXTRA_HINT}") from None
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


VIEWS_PER_RING, RINGS = 16, (-20.0, 15.0, 50.0)  # the views a mesh is fused from: azimuths x elevations


def rgbd_views(params: dict[str, Tensor], size: int = 256, azimuths: int = VIEWS_PER_RING,
               elevations: tuple[float, ...] = RINGS, distance: float = 2.2, fov: float = 50.0):
    """Yield (rgb [H,W,3] uint8, depth [H,W] float32 (0 = no surface), K [3,3], viewmat [4,4]) per view."""
    from gsdi.cameras import eval_orbits
    from gsdi.kernels import rasterization
    from gsdi.scene import activated, sh_degree_of

    g = activated({k: v.detach().float().cpu() for k, v in params.items()})
    sh_degree = sh_degree_of(params)
    for elevation in elevations:
        cams = eval_orbits(azimuths, size, size, distance, fov, elevation)
        with torch.no_grad():
            rgb, alpha, _ = rasterization(g.means, g.quats, g.scales, g.opacities, g.colors, cams.viewmats, cams.Ks,
                                          size, size, sh_degree=sh_degree, backgrounds=torch.ones(azimuths, 3))
            for c in range(azimuths):
                z = (g.means @ cams.viewmats[c, :3, :3].T + cams.viewmats[c, :3, 3])[:, 2:3]  # camera depth [N, 1]
                depth, a, _ = rasterization(g.means, g.quats, g.scales, g.opacities, z, cams.viewmats[c:c + 1],
                                            cams.Ks[c:c + 1], size, size, sh_degree=None)
                d = (depth[0, ..., 0] / a[0, ..., 0].clamp_min(1e-6)).numpy()
                d[a[0, ..., 0].numpy() < 0.5] = 0.0
                yield ((rgb[c].clamp(0, 1) * 255).round().to(torch.uint8).numpy(), d.astype(np.float32),
                       cams.Ks[c].numpy(), cams.viewmats[c].numpy())


def splats_to_mesh(params: dict[str, Tensor], voxel: float = 0.01, size: int = 256,
                   on_view: Callable[[int, int], None] | None = None) -> Any:
    """A cleaned, vertex-coloured open3d TriangleMesh fused from rendered RGB-D views of the splats;
    `on_view(done, total)` after each view is fused (progress)."""
    o3d = open3d()
    # A uniform grid over the splats' bounds (open3d 0.20's ScalableTSDFVolume extracts nothing on CPU here).
    half = float(params["means"].detach().abs().max()) + 8 * voxel
    resolution = int(np.ceil(2 * half / voxel))
    if resolution > 512:
        raise GsdiError(f"--voxel {voxel} over a scene {2 * half:.2f} wide needs a {resolution}^3 grid; use a larger --voxel")
    volume = o3d.pipelines.integration.UniformTSDFVolume(
        length=2 * half, resolution=resolution, sdf_trunc=4 * voxel,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8, origin=np.full((3, 1), -half))
    total = VIEWS_PER_RING * len(RINGS)
    for done, (rgb, depth, K, viewmat) in enumerate(rgbd_views(params, size), start=1):
        image = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(rgb)), o3d.geometry.Image(depth), depth_scale=1.0,
            depth_trunc=10.0, convert_rgb_to_intensity=False)
        intrinsic = o3d.camera.PinholeCameraIntrinsic(size, size, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        volume.integrate(image, intrinsic, viewmat.astype(np.float64))
        if on_view is not None:
            on_view(done, total)
    mesh = volume.extract_triangle_mesh()
    if len(mesh.triangles) == 0:
        raise GsdiError("the splats gave no surface to mesh (all views empty or transparent)")
    clusters, counts, _ = mesh.cluster_connected_triangles()
    clusters, counts = np.asarray(clusters), np.asarray(counts)
    mesh.remove_triangles_by_mask(clusters != counts.argmax())
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_vertices()
    mesh.remove_unreferenced_vertices()
    mesh.compute_vertex_normals()
    return mesh


def write_mesh(mesh: Any, path: str | Path) -> None:
    """.obj and .ply through open3d; .glb through trimesh, whose glTF is valid at any size (open3d 0.20
    writes indices as 16-bit whatever the vertex count: an invalid file above 65535 vertices, which
    the Khronos validator rejects and open3d itself cannot read back)."""
    o3d = open3d()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".glb":
        try:
            import trimesh
        except ImportError:
            raise GsdiError(f"a .glb mesh needs trimesh; {EXTRA_HINT}") from None
        colours = (np.asarray(mesh.vertex_colors) * 255).round().clip(0, 255).astype(np.uint8)
        trimesh.Trimesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.triangles),
                        vertex_normals=np.asarray(mesh.vertex_normals), vertex_colors=colours,
                        process=False).export(str(path))
        return
    if not o3d.io.write_triangle_mesh(str(path), mesh, write_vertex_colors=True):
        raise GsdiError(f"open3d could not write {path}")


def clean_splats(params: dict[str, Tensor], neighbours: int = 20, std_ratio: float = 2.0) -> dict[str, Tensor]:
    """Drop floaters: Gaussians whose mean distance to their neighbours is an outlier (open3d)."""
    o3d = open3d("--clean (floater removal) and meshes")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(params["means"].detach().double().cpu().numpy()))
    _, keep = cloud.remove_statistical_outlier(nb_neighbors=neighbours, std_ratio=std_ratio)
    index = torch.as_tensor(np.asarray(keep), dtype=torch.long)
    return {k: v[index] for k, v in params.items()}
