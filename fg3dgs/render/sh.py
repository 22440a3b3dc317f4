"""Real spherical harmonics (degree 0..3) as used by 3D Gaussian Splatting.

The basis, its ordering and its signs follow the convention of the original 3DGS code, which
gsplat also uses, so that SH coefficients trained with either backend mean the same colour.
"""

from __future__ import annotations

import functools

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


# The basis of degree <= 3 as polynomials in the unit direction (x, y, z): for each function
# after the constant Y_0, its monomials (sorted axis letters) and their coefficients. The fast
# path evaluates the monomials of the direction (each one a lower one times an axis) and maps
# them to the basis with one matrix product: about ten kernels forward, against some fifty for
# the function-by-function form, which matters where a training step is bound by launches.
_SH_POLYNOMIALS = (
    {"y": -SH_C1}, {"z": SH_C1}, {"x": -SH_C1},
    {"xy": SH_C2[0]}, {"yz": SH_C2[1]}, {"zz": 2 * SH_C2[2], "xx": -SH_C2[2], "yy": -SH_C2[2]},
    {"xz": SH_C2[3]}, {"xx": SH_C2[4], "yy": -SH_C2[4]},
    {"xxy": 3 * SH_C3[0], "yyy": -SH_C3[0]}, {"xyz": SH_C3[1]},
    {"yzz": 4 * SH_C3[2], "xxy": -SH_C3[2], "yyy": -SH_C3[2]},
    {"zzz": 2 * SH_C3[3], "xxz": -3 * SH_C3[3], "yyz": -3 * SH_C3[3]},
    {"xzz": 4 * SH_C3[4], "xxx": -SH_C3[4], "xyy": -SH_C3[4]},
    {"xxz": SH_C3[5], "yyz": -SH_C3[5]}, {"xxx": SH_C3[6], "xyy": -3 * SH_C3[6]},
)
_MONOMIALS = (("x", "y", "z"), ("xx", "yy", "zz", "xy", "yz", "xz"),
              ("xxx", "yyy", "zzz", "xxy", "xxz", "xyy", "yyz", "xzz", "yzz", "xyz"))


@functools.lru_cache(maxsize=16)
def _monomial_plan(degree: int, device: torch.device, dtype: torch.dtype):
    """Per degree k >= 2, the (lower monomial, axis) indices whose product gives each
    monomial of degree k; and (weight [(degree + 1)^2, M], bias [(degree + 1)^2]), the linear
    map from all M monomials up to ``degree`` to the basis (Y_0 is the bias). Cached per
    device: a fresh upload on every call would make the CPU wait for the GPU."""
    steps = []
    for k in range(1, degree):
        lower = _MONOMIALS[k - 1]
        pairs = [(lower.index(m[:-1]), "xyz".index(m[-1])) for m in _MONOMIALS[k]]
        steps.append(tuple(torch.tensor(ix, device=device) for ix in zip(*pairs)))
    order = [m for ms in _MONOMIALS[:degree] for m in ms]
    weight = torch.zeros(num_sh_bases(degree), len(order), dtype=torch.float64)
    for j, poly in enumerate(_SH_POLYNOMIALS[:num_sh_bases(degree) - 1], start=1):
        for mono, coeff in poly.items():
            weight[j, order.index("".join(sorted(mono)))] += coeff
    bias = torch.zeros(num_sh_bases(degree), dtype=torch.float64)
    bias[0] = SH_C0
    return steps, weight.to(device=device, dtype=dtype), bias.to(device=device, dtype=dtype)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """SH basis functions evaluated at unit directions.

    Args:
        degree: 0..3.
        dirs: [..., 3] directions (normalised here).
    Returns:
        [..., (degree + 1)^2] basis values (:func:`sh_basis_reference`'s, as polynomials).
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree must be 0..3, got {degree}")
    if degree == 0:
        return torch.full((*dirs.shape[:-1], 1), SH_C0, dtype=dirs.dtype, device=dirs.device)
    d = dirs / torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)
    steps, weight, bias = _monomial_plan(degree, dirs.device, dirs.dtype)
    parts = [d]
    for lower, axis in steps:
        parts.append(parts[-1].index_select(-1, lower) * d.index_select(-1, axis))
    mono = torch.cat(parts, -1) if len(parts) > 1 else d           # [..., M]
    return torch.nn.functional.linear(mono, weight, bias)


def sh_basis_reference(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """SH basis functions evaluated at unit directions, one formula per function: the
    slow, obviously correct form :func:`sh_basis` is tested against.

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
