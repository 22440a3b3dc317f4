"""Region masks from face landmarks: face, eyes, mouth (DESIGN.md section 2, our choice).

The regions are those of :mod:`fg3dgs.facemesh` (the same definition the synthetic subject's
truth uses): mediapipe's mesh triangles classified as face skin, eyes (openings and the first
ring of lid) or mouth (inside the outer lip contour), with the eye and mouth openings filled.
They are drawn with the project's triangle rasterizer, nearer triangles in front.
"""

from __future__ import annotations

import numpy as np

from ..facemesh import LABEL_EYES, LABEL_FACE, LABEL_MOUTH, region_mesh, triangle_regions
from ..synth.raster import render


class RegionMasker:
    """Draws label maps for one clip; triangle regions are judged once on reference landmarks
    (e.g. the clip's median face) so a triangle's region never flickers between frames."""

    def __init__(self, reference2d: np.ndarray):
        _, self.tris, labels = region_mesh(reference2d)
        n_mesh = len(triangle_regions(reference2d))
        self.labels = labels
        self.n_mesh = n_mesh

    def __call__(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """[H, W] uint8 labels (0 none, 1 face, 2 eyes, 3 mouth) for landmarks [478, 3]."""
        pts, _, _ = region_mesh(points)
        z = np.concatenate([points[:, 2], points[:, 2].mean(keepdims=True)]) \
            if points.shape[1] > 2 else np.zeros(len(pts))
        depth = z - z.min() + 1000.0                     # positive; order as mediapipe's z
        _, _, lab = render(pts, depth, self.tris, np.zeros((len(pts), 2)),
                           np.zeros((len(pts), 3), np.float32), np.zeros(len(self.tris), bool),
                           self.labels, np.zeros((1, 1, 3), np.float32), width, height)
        return lab


def masks_from_labels(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"face": labels == LABEL_FACE, "eyes": labels == LABEL_EYES,
            "mouth": labels == LABEL_MOUTH}
