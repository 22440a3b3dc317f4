"""Slow, obviously correct brute-force rasterizer in pure PyTorch (for tests only).

Every Gaussian is evaluated at every pixel: memory is N x H x W, so keep scenes small. It
follows the same rules as gsplat 1.5's classic mode, written out plainly and independently of
the fast backends (one camera at a time, explicit matrices, autograd for gradients):

- covariance R S S^T R^T from the normalised quaternion; camera-space covariance W Sigma W^T;
- Jacobian of the pinhole projection at (tx, ty, z) where x/z and y/z are clamped to the field
  of view widened by 30 % of its half-tangent; 2D covariance J Sigma_c J^T + 0.3 I;
- culled: z < 0.01, det <= 0, opacity < 1/255;
- pixel centres at (x + 0.5, y + 0.5); sigma = 0.5 d^T Sigma2d^-1 d with d = mean2d - pixel;
  alpha = min(0.999, opacity exp(-sigma)), skipped when sigma < 0 or alpha < 1/255;
- front to back by camera-space depth; a pixel stops at the Gaussian that would bring its
  transmittance to 1e-4 or below, without it;
- SH colours clamp_min(SH(mean - camera centre) + 0.5, 0); background times the remaining
  transmittance.
"""

from __future__ import annotations

import torch

from .sh import sh_to_rgb


def _rotation(q: torch.Tensor) -> torch.Tensor:
    """[N, 4] (w, x, y, z) -> [N, 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    rows = [
        [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * x * z + 2 * w * y],
        [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
        [2 * x * z - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _render_one(means, quats, scales, opacities, colors, viewmat, K, width, height,
                background):
    """One camera. colors [N, 3]; returns rgb [H, W, 3], alpha [H, W, 1]."""
    dtype = means.dtype
    N = means.shape[0]
    Rw, tw = viewmat[:3, :3], viewmat[:3, 3]
    p_cam = means @ Rw.T + tw                                        # [N, 3]
    Rg = _rotation(quats)
    S = torch.diag_embed(scales)
    cov = Rg @ S @ S @ Rg.transpose(1, 2)                            # [N, 3, 3]
    cov_cam = Rw @ cov @ Rw.T

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = p_cam[:, 0], p_cam[:, 1], p_cam[:, 2]
    visible = (z >= 0.01) & (opacities >= 1.0 / 255.0)
    z_safe = torch.where(visible, z, torch.ones_like(z))
    half_tan_x = 0.5 * width / fx
    half_tan_y = 0.5 * height / fy
    u = torch.minimum(torch.maximum(x / z_safe, -(cx / fx + 0.3 * half_tan_x)),
                      (width - cx) / fx + 0.3 * half_tan_x)
    v = torch.minimum(torch.maximum(y / z_safe, -(cy / fy + 0.3 * half_tan_y)),
                      (height - cy) / fy + 0.3 * half_tan_y)
    J = torch.zeros(N, 2, 3, dtype=dtype)
    J[:, 0, 0] = fx / z_safe
    J[:, 0, 2] = -fx * (u * z_safe) / z_safe ** 2
    J[:, 1, 1] = fy / z_safe
    J[:, 1, 2] = -fy * (v * z_safe) / z_safe ** 2
    cov2d = J @ cov_cam @ J.transpose(1, 2) + 0.3 * torch.eye(2, dtype=dtype)
    det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
    visible = visible & (det > 0)
    cov2d = torch.where(visible[:, None, None], cov2d, torch.eye(2, dtype=dtype))
    conic = torch.linalg.inv(cov2d)                                  # [N, 2, 2]
    mean2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)

    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype) + 0.5,
                            torch.arange(width, dtype=dtype) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2)               # [P, 2]
    d = mean2d[:, None, :] - pix[None]                               # [N, P, 2]
    sigma = 0.5 * torch.einsum("npi,nij,npj->np", d, conic, d)
    alpha = torch.clamp(opacities[:, None] * torch.exp(-sigma), max=0.999)
    used = visible[:, None] & (sigma >= 0) & (alpha >= 1.0 / 255.0)
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))

    order = torch.sort(torch.where(visible, z, torch.full_like(z, float("inf"))),
                       stable=True).indices
    alpha, col = alpha[order], colors[order]
    T_after = torch.cumprod(1.0 - alpha, dim=0)                      # [N, P]
    T_before = torch.cat([torch.ones_like(T_after[:1]), T_after[:-1]], dim=0)
    kept = T_after > 1e-4     # T only decreases: from the stopping Gaussian on, all are out
    weight = alpha * T_before * kept
    T_final = torch.prod(torch.where(kept, 1.0 - alpha, torch.ones_like(alpha)), dim=0)
    rgb = weight.T @ col + T_final[:, None] * background[None]
    return rgb.reshape(height, width, 3), (1.0 - T_final).reshape(height, width, 1)


def rasterize_reference(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                        sh_degree=None, background=None):
    """Brute-force rasterization with the semantics of :func:`fg3dgs.render.rasterize`.

    Args:
        means [N, 3], quats [N, 4], scales [N, 3], opacities [N]; colors [N, 3], or SH
        coefficients [N, K, 3] with ``sh_degree``; viewmats [C, 4, 4], Ks [C, 3, 3];
        background [3] or [C, 3] or None (black). Any float dtype (float64 recommended).
    Returns:
        rgb [C, H, W, 3], alpha [C, H, W, 1].
    """
    C = viewmats.shape[0]
    if background is None:
        background = torch.zeros(3, dtype=means.dtype)
    background = background.expand(C, 3)
    rgbs, alphas = [], []
    for c in range(C):
        if sh_degree is None:
            col = colors
        else:
            centre = torch.linalg.inv(viewmats[c])[:3, 3]
            col = sh_to_rgb(sh_degree, means - centre, colors)
        if means.shape[0] == 0:
            rgbs.append(background[c].expand(height, width, 3).clone())
            alphas.append(torch.zeros(height, width, 1, dtype=means.dtype))
            continue
        rgb, alpha = _render_one(means, quats, scales, opacities, col, viewmats[c], Ks[c],
                                 width, height, background[c])
        rgbs.append(rgb)
        alphas.append(alpha)
    return torch.stack(rgbs), torch.stack(alphas)
