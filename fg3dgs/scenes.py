"""Synthetic Gaussian scenes: the head-like benchmark scene.

World space is the canonical head space (docs/design.md): OpenCV axes, x right, y down,
z away from the viewer; the face looks towards -z, where the camera sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Camera:
    """A pinhole camera: viewmat [4, 4] world-to-camera (OpenCV), K [3, 3], image size."""

    viewmat: torch.Tensor
    K: torch.Tensor
    width: int
    height: int


@dataclass
class GaussianScene:
    """Activated Gaussian parameters. colors is [N, 3] RGB or [N, K, 3] SH (see sh_degree)."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    sh_degree: int | None = None

    def __len__(self) -> int:
        return self.means.shape[0]

    def requires_grad_(self, flag: bool = True) -> GaussianScene:
        for t in (self.means, self.quats, self.scales, self.opacities, self.colors):
            t.requires_grad_(flag)
        return self


# Head-sized ellipsoid (metres) and viewing set-up of the benchmark scene.
HEAD_RADII = (0.085, 0.115, 0.100)
VIEW_DISTANCE = 0.55
FOCAL_PER_WIDTH = 1.2


def frontal_camera(size: int, distance: float = VIEW_DISTANCE,
                   focal_per_width: float = FOCAL_PER_WIDTH, yaw_deg: float = 0.0) -> Camera:
    """Square camera looking at the origin from ``distance`` in front of the face.

    ``yaw_deg`` turns the camera around the head's vertical (y) axis.
    """
    yaw = math.radians(yaw_deg)
    # Camera-to-world rotation: turn about y; camera centre at -distance along its view axis.
    R_c2w = torch.tensor([[math.cos(yaw), 0.0, math.sin(yaw)],
                          [0.0, 1.0, 0.0],
                          [-math.sin(yaw), 0.0, math.cos(yaw)]])
    centre = R_c2w @ torch.tensor([0.0, 0.0, -distance])
    viewmat = torch.eye(4)
    viewmat[:3, :3] = R_c2w.T
    viewmat[:3, 3] = -R_c2w.T @ centre
    f = focal_per_width * size
    K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
    return Camera(viewmat, K, size, size)


def _ellipsoid_points(n: int, radii, jitter: float, gen: torch.Generator) -> torch.Tensor:
    """n points spread over an ellipsoid's surface with relative radial jitter; [n, 3]."""
    d = torch.randn(n, 3, generator=gen)
    d = d / d.norm(dim=-1, keepdim=True)
    r = 1.0 + jitter * (2.0 * torch.rand(n, 1, generator=gen) - 1.0)
    return d * torch.tensor(radii) * r


def _random_quats(n: int, gen: torch.Generator) -> torch.Tensor:
    q = torch.randn(n, 4, generator=gen)
    return q / q.norm(dim=-1, keepdim=True)


def head_scene(n: int, seed: int = 0) -> GaussianScene:
    """The benchmark scene: n Gaussians over a head-sized ellipsoid (radii 8.5, 11.5, 10 cm,
    3 % radial jitter), scales log-uniform in 1-8 mm, opacities uniform in 0.3-1, random
    rotations and colours."""
    gen = torch.Generator().manual_seed(seed)
    means = _ellipsoid_points(n, HEAD_RADII, 0.03, gen)
    log_s = torch.empty(n, 3).uniform_(math.log(1e-3), math.log(8e-3), generator=gen)
    return GaussianScene(
        means=means,
        quats=_random_quats(n, gen),
        scales=log_s.exp(),
        opacities=torch.empty(n).uniform_(0.3, 1.0, generator=gen),
        colors=torch.rand(n, 3, generator=gen),
    )
