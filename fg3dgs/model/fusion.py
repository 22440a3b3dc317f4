"""Stage 3 fusion: the region renders composited in image space (docs/design.md)."""

from __future__ import annotations

import torch
from torch import nn


class ColourCorrection(nn.Module):
    """A learnable affine colour map per region, applied to premultiplied colour:
    C' = C M^T + alpha b (identity at the start). Rasterizing is linear in the colours
    (C = sum_i w_i c_i, alpha = sum_i w_i), so the map applied to each Gaussian's colour
    with alpha 1 gives the same image: a render of N colours instead of H x W pixels."""

    def __init__(self):
        super().__init__()
        self.matrix = nn.Parameter(torch.eye(3))
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return rgb @ self.matrix.T + alpha * self.bias


def over(front_rgb, front_a, back_rgb, back_a):
    """Premultiplied 'over': [..., 3] and [..., 1] images."""
    return front_rgb + (1 - front_a) * back_rgb, front_a + (1 - front_a) * back_a


def fuse(renders: dict, canvas: torch.Tensor) -> torch.Tensor:
    """renders: region -> (rgb [..., H, W, 3] premultiplied, alpha [..., H, W, 1]);
    mouth over eyes, the face over both, all over the canvas (background plate + torso).
    A single "head" region (the --no-region-split ablation) goes straight over the canvas."""
    if "head" in renders:
        rgb, a = renders["head"]
    else:
        rgb, a = over(*renders["mouth"], *renders["eyes"])
        rgb, a = over(*renders["face"], rgb, a)
    return rgb + (1 - a) * canvas
