"""Mouth crops for the sync expert: the lower half of a square face box from landmarks.

The box spans the jaw line horizontally and brows to chin vertically, squared and widened by
``BOX_MARGIN`` (about where a face detector's box falls, as the expert was trained on). Crops
are sampled with ``grid_sample``, so the same code serves the dataset (numpy in, numpy out)
and the HRPA stage, where gradients flow from the expert back into the rendered frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..landmark_schemes import scheme_for, to_ibug68
from .expert import CROP_H, CROP_W, T_FRAMES

BOX_MARGIN = 1.1


def face_boxes(landmarks: np.ndarray) -> np.ndarray:
    """[N, P, 2+] landmarks (478 or 68 points, pixels) -> [N, 3] boxes (cx, cy, side)."""
    pts = np.asarray(landmarks, np.float64)[..., :2]
    if scheme_for(pts).n_points != 68:
        pts = to_ibug68(pts)
    x0, x1 = pts[:, 0:17, 0].min(1), pts[:, 0:17, 0].max(1)
    top, bottom = pts[:, 17:27, 1].min(1), pts[:, 8, 1]
    side = np.maximum(x1 - x0, bottom - top) * BOX_MARGIN
    return np.stack([(x0 + x1) / 2, (top + bottom) / 2, side], -1)


def smooth_boxes(boxes: np.ndarray, window: int = 5) -> np.ndarray:
    """Moving average of boxes [N, 3] over ``window`` frames (steadier crops over time)."""
    if len(boxes) < 2 or window < 2:
        return boxes
    k = np.ones(window) / window
    padded = np.pad(boxes, ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(3)], -1)


def mouth_regions(boxes: np.ndarray | torch.Tensor):
    """Face boxes [N, 3] (cx, cy, side) -> their lower halves [N, 4] (x0, y0, x1, y1)."""
    cx, cy, side = boxes[:, 0], boxes[:, 1], boxes[:, 2]
    stack = torch.stack if isinstance(boxes, torch.Tensor) else np.stack
    return stack([cx - side / 2, cy, cx + side / 2, cy + side / 2], -1)


def crop_regions(images: torch.Tensor, regions: torch.Tensor,
                 size: tuple[int, int] = (CROP_H, CROP_W)) -> torch.Tensor:
    """Images [N, C, H, W], regions [N, 4] (x0, y0, x1, y1; pixel edges) -> [N, C, h, w]
    bilinear samples of each region. Differentiable in ``images``; regions much larger
    than the output are average-pooled first (no aliasing)."""
    regions = torch.as_tensor(regions, dtype=images.dtype, device=images.device)
    k = int(max(1.0, float((regions[:, 2] - regions[:, 0]).min()) / size[1] / 1.5))
    if k > 1:
        images = F.avg_pool2d(images, k, ceil_mode=True)
        regions = regions / k
    H, W = images.shape[-2:]
    x0, y0, x1, y1 = regions.unbind(-1)
    theta = torch.zeros(len(regions), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = (x1 - x0) / W
    theta[:, 0, 2] = (x0 + x1) / W - 1
    theta[:, 1, 1] = (y1 - y0) / H
    theta[:, 1, 2] = (y0 + y1) / H - 1
    grid = F.affine_grid(theta, [len(regions), images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def mouth_crops(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, H, W] in [0, 1], face boxes [N, 3] -> crops [N, 3, 48, 96] of each
    box's lower half (the expert's input). Differentiable in ``images``."""
    boxes = torch.as_tensor(boxes, dtype=images.dtype, device=images.device)
    return crop_regions(images, mouth_regions(boxes))


def stack_windows(crops: torch.Tensor) -> torch.Tensor:
    """[B * 5, 3, 48, 96] crops of consecutive frames -> [B, 15, 48, 96] expert input."""
    return crops.reshape(-1, T_FRAMES * 3, CROP_H, CROP_W)
