"""Projection of 3D Gaussians to 2D (EWA splatting), as gsplat's fused CUDA projection does it.

Plain torch and differentiable by autograd. Conventions follow gsplat 1.5: quaternions wxyz,
world-to-camera OpenCV viewmats, pixel centres at +0.5, eps2d blur, opacity-aware 3.33-sigma radii.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """Covariances [N,3,3] = R S S R^T from quaternions [N,4] (wxyz, any norm) and scales [N,3]."""
    assert quats.shape[-1] == 4 and scales.shape[-1] == 3, (quats.shape, scales.shape)
    w, x, y, z = torch.unbind(quats / quats.norm(dim=-1, keepdim=True), dim=-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [N, 3]
    covars: Tensor,  # [N, 3, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns radii [C,N,2] int32 (0 = culled), means2d [C,N,2], depths [C,N], conics [C,N,3]."""
    N, C = means.shape[0], viewmats.shape[0]
    assert means.shape == (N, 3) and covars.shape == (N, 3, 3) and opacities.shape == (N,)
    assert viewmats.shape == (C, 4, 4) and Ks.shape == (C, 3, 3), (viewmats.shape, Ks.shape)
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # [C, N, 3, 3]
    tx, ty, tz = torch.unbind(means_c, dim=-1)  # [C, N]
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # The Jacobian is evaluated at a point clamped to 1.3x the frustum, as gsplat does.
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    jx = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    jy = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * jx / tz**2, zero, fy / tz, -fy * jy / tz**2], dim=-1).reshape(C, N, 2, 3)
    covars2d = J @ covars_c @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)  # [C, N, 2]

    a, b, c = covars2d[..., 0, 0], 0.5 * (covars2d[..., 0, 1] + covars2d[..., 1, 0]), covars2d[..., 1, 1]
    det = a * c - b * b
    conics = torch.stack([c, -b, a], dim=-1) / det.clamp_min(1e-10)[..., None]  # [C, N, 3]

    with torch.no_grad():
        opac = opacities.detach().expand(C, N)
        extend = torch.clamp(torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)), max=3.33)
        radius = torch.stack([torch.ceil(extend * a.sqrt()), torch.ceil(extend * c.sqrt())], dim=-1)
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane) & (opac >= ALPHA_THRESHOLD)
        valid &= (radius > radius_clip).any(dim=-1)
        m = means2d.detach()
        valid &= (m[..., 0] + radius[..., 0] > 0) & (m[..., 0] - radius[..., 0] < width)
        valid &= (m[..., 1] + radius[..., 1] > 0) & (m[..., 1] - radius[..., 1] < height)
        radii = torch.where(valid[..., None], radius, torch.zeros_like(radius)).int()
    return radii, means2d, tz, conics


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate real SH of `degree` (0..3) in directions [..., 3] with coefficients [..., K, 3] -> [..., 3]."""
    assert 0 <= degree <= 3 and coeffs.shape[-2] >= (degree + 1) ** 2, (degree, coeffs.shape)
    assert dirs.shape[-1] == 3 and dirs.shape[:-1] == coeffs.shape[:-2], (dirs.shape, coeffs.shape)
    result = SH_C0 * coeffs[..., 0, :]
    if degree == 0:
        return result
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    x, y, z = (d[..., i : i + 1] for i in range(3))
    sh = [coeffs[..., i, :] for i in range((degree + 1) ** 2)]
    result = result - SH_C1 * y * sh[1] + SH_C1 * z * sh[2] - SH_C1 * x * sh[3]
    if degree == 1:
        return result
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    result = (
        result + SH_C2[0] * xy * sh[4] + SH_C2[1] * yz * sh[5] + SH_C2[2] * (2 * zz - xx - yy) * sh[6]
        + SH_C2[3] * xz * sh[7] + SH_C2[4] * (xx - yy) * sh[8]
    )
    if degree == 2:
        return result
    return (
        result + SH_C3[0] * y * (3 * xx - yy) * sh[9] + SH_C3[1] * xy * z * sh[10]
        + SH_C3[2] * y * (4 * zz - xx - yy) * sh[11] + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[12]
        + SH_C3[4] * x * (4 * zz - xx - yy) * sh[13] + SH_C3[5] * z * (xx - yy) * sh[14]
        + SH_C3[6] * x * (xx - 3 * yy) * sh[15]
    )
