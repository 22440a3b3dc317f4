"""Constants and result type of the EWA projection of 3D Gaussians to the image plane.

The projection is the classic-mode one of gsplat 1.5 (`fully_fused_projection` with a pinhole
camera): covariance R S S^T R^T from a normalised quaternion, the perspective Jacobian with x/z
and y/z clamped to the field of view widened by 30 %, 0.3 px^2 added to the 2D covariance,
Gaussians nearer than the near plane, with a non-positive determinant or an opacity under 1/255
culled. On top of gsplat's per-axis radii the CPU backend computes the tight pixel box of the
ellipse where alpha can reach 1/255, to skip pixels. Its kernels are in ``cpu/``; the
independent brute-force version is in ``reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Rasterization constants shared by every backend (gsplat 1.5, classic mode).
ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
TRANSMITTANCE_MIN = 1e-4
EPS2D = 0.3
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
FOV_MARGIN = 0.3
RADIUS_EXTEND = 3.33


@dataclass
class Projection:
    """Per-camera 2D Gaussians. C cameras, N Gaussians.

    means2d [C, N, 2] and conics [C, N, 3] (upper triangle a, b, c of the inverse 2D covariance)
    are differentiable; the rest is not. ``valid`` [C, N] marks Gaussians that can touch a pixel;
    ``bbox`` [C, N, 4] int32 (x0, y0, x1, y1, inclusive) is the tight pixel box of the alpha
    >= 1/255 ellipse clipped to the image (empty where invalid); ``radii`` [C, N, 2] int32 is
    gsplat's per-axis radius, 0 where gsplat culls (it may keep a Gaussian whose box holds no
    pixel centre, which ``valid`` drops).
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    bbox: torch.Tensor
    valid: torch.Tensor
