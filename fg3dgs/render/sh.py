"""Real spherical harmonics (degree 0..3) as used by 3D Gaussian Splatting.

The basis, its ordering and its signs follow the convention of the original 3DGS code, which
gsplat also uses, so that SH coefficients trained with either backend mean the same colour.
"""

from __future__ import annotations

import torch

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
         -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per channel for ``degree``: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """SH basis functions evaluated at unit directions.

    Args:
        degree: 0..3.
        dirs: [..., 3] directions (normalised here).
    Returns:
        [..., (degree + 1)^2] basis values.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree must be 0..3, got {degree}")
    d = dirs / torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2.0 * zz - xx - yy),
                SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * xy * z,
                SH_C3[2] * y * (4.0 * zz - xx - yy),
                SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                SH_C3[4] * x * (4.0 * zz - xx - yy), SH_C3[5] * z * (xx - yy),
                SH_C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Evaluate SH colours.

    Args:
        degree: SH degree to evaluate; uses the first (degree + 1)^2 coefficients.
        dirs: [..., 3] viewing directions (from the camera centre to the Gaussian).
        coeffs: [..., K, 3] coefficients, K >= (degree + 1)^2.
    Returns:
        [..., 3] raw SH value (before the +0.5 offset and clamping the renderer applies).
    """
    basis = sh_basis(degree, dirs)  # [..., B]
    return (basis.unsqueeze(-1) * coeffs[..., : basis.shape[-1], :]).sum(dim=-2)


def sh_to_rgb(degree: int, dirs: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Renderer colour from SH: clamp_min(SH(dir) + 0.5, 0). Shapes as in :func:`eval_sh`."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """DC coefficient that renders ``rgb`` (inverse of degree-0 :func:`sh_to_rgb`)."""
    return (rgb - 0.5) / SH_C0
