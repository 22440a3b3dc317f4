"""Region masks from face landmarks: face, eyes, mouth (DESIGN.md section 2, our choice).

The regions are those of :mod:`fg3dgs.facemesh` (the same definition the synthetic subject's
truth uses): mediapipe's mesh triangles classified as face skin, eyes (openings and the first
ring of lid) or mouth (inside the outer lip contour), with the eye and mouth openings filled.
They are drawn with the project's triangle rasterizer, nearer triangles in front.
"""

from __future__ import annotations

import numpy as np

from ..facemesh import LABEL_EYES, LABEL_FACE, LABEL_MOUTH, region_mesh, region_points
from ..synth.raster import render


class RegionMasker:
    """Draws label maps for one clip; triangle regions are judged once on reference landmarks
    (e.g. the clip's median face) so a triangle's region never flickers between frames."""

    def __init__(self, reference2d: np.ndarray):
        _, self.tris, self.labels = region_mesh(reference2d)
        self._uv = np.zeros((len(reference2d) + 1, 2))
        self._colors = np.zeros((len(reference2d) + 1, 3), np.float32)
        self._textured = np.zeros(len(self.tris), bool)
        self._texture = np.zeros((1, 1, 3), np.float32)

    def __call__(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """[H, W] uint8 labels (0 none, 1 face, 2 eyes, 3 mouth) for landmarks [478, 3]."""
        pts = region_points(points if points.shape[1] > 2 else
                            np.concatenate([points, np.zeros((len(points), 1))], 1))
        depth = pts[:, 2] - pts[:, 2].min() + 1000.0     # positive; order as mediapipe's z
        _, _, lab = render(pts[:, :2], depth, self.tris, self._uv, self._colors,
                           self._textured, self.labels, self._texture, width, height)
        return lab


def masks_from_labels(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"face": labels == LABEL_FACE, "eyes": labels == LABEL_EYES,
            "mouth": labels == LABEL_MOUTH}
