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
# them to the basis with one matrix product, and its backward differentiates the monomials
# with two more: about ten kernels each way, against some fifty forward and eighty backward
# for the function-by-function form. That matters where a training step is launch-bound.
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
# The monomials by degree (the constant first); each is its lower prefix times its last axis.
_MONOMIALS = (("",), ("x", "y", "z"), ("xx", "yy", "zz", "xy", "yz", "xz"),
              ("xxx", "yyy", "zzz", "xxy", "xxz", "xyy", "yyz", "xzz", "yzz", "xyz"))


@functools.lru_cache(maxsize=16)
def _monomial_plan(degree: int, device: torch.device, dtype: torch.dtype):
    """For the M monomials up to ``degree`` (the constant first, then by degree):

    - steps: per degree k = 2..degree, the (lower monomial, axis) indices whose products are
      the monomials of degree k;
    - weight [(degree + 1)^2, M]: the basis as a linear map of the monomials;
    - slope [M, 3 * L]: d monomial_j / d axis_a = sum_l slope[j, a * L + l] * monomial_l over
      the L monomials of degree < ``degree``.

    Cached per device: a fresh upload on every call would make the CPU wait for the GPU."""
    order = [m for ms in _MONOMIALS[:degree + 1] for m in ms]
    steps = []
    for k in range(2, degree + 1):
        pairs = [(_MONOMIALS[k - 1].index(m[:-1]), "xyz".index(m[-1])) for m in _MONOMIALS[k]]
        steps.append(tuple(torch.tensor(ix, device=device) for ix in zip(*pairs)))
    weight = torch.zeros(num_sh_bases(degree), len(order), dtype=torch.float64)
    weight[0, 0] = SH_C0
    for j, poly in enumerate(_SH_POLYNOMIALS[:num_sh_bases(degree) - 1], start=1):
        for mono, coeff in poly.items():
            weight[j, order.index("".join(sorted(mono)))] += coeff
    n_low = len(order) - len(_MONOMIALS[degree])
    slope = torch.zeros(len(order), 3, n_low, dtype=torch.float64)
    for j, mono in enumerate(order):
        for a, axis in enumerate("xyz"):
            if axis in mono:
                slope[j, a, order.index(mono.replace(axis, "", 1))] += mono.count(axis)
    return (steps, weight.to(device=device, dtype=dtype),
            slope.reshape(len(order), -1).to(device=device, dtype=dtype))


class _PolynomialBasis(torch.autograd.Function):
    """dirs [..., 3] -> basis [..., (degree + 1)^2], with the backward written out."""

    @staticmethod
    def forward(ctx, degree: int, dirs: torch.Tensor):
        norm = torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)
        d = dirs / norm
        steps, weight, _ = _monomial_plan(degree, dirs.device, dirs.dtype)
        parts = [torch.ones_like(norm), d]
        for lower, axis in steps:
            parts.append(parts[-1].index_select(-1, lower) * d.index_select(-1, axis))
        mono = torch.cat(parts, -1)                                     # [..., M]
        ctx.save_for_backward(d, norm, mono)
        ctx.degree = degree
        return mono @ weight.T

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        d, norm, mono = ctx.saved_tensors
        _, weight, slope = _monomial_plan(ctx.degree, d.device, d.dtype)
        n_low = slope.shape[1] // 3
        g_mono = grad @ weight                                          # [..., M]
        g_d = ((g_mono @ slope).unflatten(-1, (3, n_low)) * mono[..., None, :n_low]).sum(-1)
        # through d = dirs / |dirs|: the part of the gradient across the direction, / |dirs|
        g_dirs = (g_d - d * (d * g_d).sum(-1, keepdim=True)) / norm
        return None, g_dirs


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
    return _PolynomialBasis.apply(degree, dirs)


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
