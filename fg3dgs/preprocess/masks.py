"""Region masks from face landmarks: face, eyes, mouth (docs/design.md, our choice).

The regions are those of :mod:`fg3dgs.facemesh` (the same definition the synthetic subject's
truth uses): mediapipe's mesh triangles classified as face skin, eyes (openings and the first
ring of lid) or mouth (inside the outer lip contour), with the eye and mouth openings filled.
They are drawn with the project's triangle rasterizer, nearer triangles in front.

The 68-point iBUG layout (face-alignment) has no mesh; :class:`PolygonMasker` fills polygons
instead: the face is the jaw line closed over the brows raised to the hairline, the eyes are
the eye contours widened to take in the lids, the mouth the outer lip contour.
"""

from __future__ import annotations

import numpy as np

from ..facemesh import LABEL_EYES, LABEL_FACE, LABEL_MOUTH, mesh_loops, region_mesh, region_points
from ..landmark_schemes import IBUG68, scheme_for
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


class PolygonMasker:
    """Label maps from 68 iBUG landmarks (see the module note)."""

    FOREHEAD = 0.22   # top of the face region above the brows, in nasion-to-chin lengths
    LID_WIDEN = (1.05, 1.4)   # eye polygon scaled about its centre (along, across the eye)

    def __call__(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """[H, W] uint8 labels (0 none, 1 face, 2 eyes, 3 mouth) for landmarks [68, 2+]."""
        import cv2

        p = np.asarray(points, np.float64)[:, :2]
        up = p[IBUG68.nasion] - p[IBUG68.chin]
        lift = self.FOREHEAD * up
        brows = p[17:27][::-1] + lift
        lab = np.zeros((height, width), np.uint8)

        def fill(poly, value):
            cv2.fillPoly(lab, [np.round(poly * 16).astype(np.int32)], int(value),
                         lineType=cv2.LINE_8, shift=4)

        fill(np.concatenate([p[0:17], brows]), LABEL_FACE)
        for eye in (p[36:42], p[42:48]):
            c = eye.mean(0)
            ax = eye[3] - eye[0]
            ax /= max(np.linalg.norm(ax), 1e-9)
            normal = np.array([-ax[1], ax[0]])
            d = eye - c
            fill(c + np.outer(d @ ax, ax) * self.LID_WIDEN[0]
                 + np.outer(d @ normal, normal) * self.LID_WIDEN[1], LABEL_EYES)
        fill(p[48:60], LABEL_MOUTH)
        return lab


def inner_lip_loop(n_points: int) -> list[int]:
    """The landmark indices of the inner lip contour, in order around the mouth, for a
    layout of ``n_points`` (the mesh's mouth hole for mediapipe's 478, 60-67 for iBUG 68)."""
    if scheme_for(np.zeros((n_points, 2))) is IBUG68:
        return list(IBUG68.inner_lips)
    return mesh_loops()["mouth"]


def mouth_interior(loops: np.ndarray, size: int, grow: float = 1.5) -> np.ndarray:
    """[B, size, size] bool: inside each inner lip contour ``loops`` [B, L, 2] (pixels of a
    ``size`` image), grown by ``grow`` px so the lips' inner edge counts. The mouth's inside
    (teeth, tongue, the dark) is where an under-opened or blurred mouth errs most; the
    trainer weights it (``TrainConfig.mouth_interior``). A closed mouth leaves the thin band
    along the lips' meeting line."""
    import cv2

    out = np.zeros((len(loops), size, size), np.uint8)
    r = max(int(np.ceil(grow)), 0)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    for k, loop in enumerate(np.asarray(loops, np.float64)):
        cv2.fillPoly(out[k], [np.round(loop * 16).astype(np.int32)], 1, lineType=cv2.LINE_8,
                     shift=4)
        if r:
            out[k] = cv2.dilate(out[k], disk)
    return out.astype(bool)


TEETH_MIN_VALUE, TEETH_MAX_SATURATION = 0.75, 0.15    # HSV: near-white inside the lips


def teeth(images: np.ndarray, loops: np.ndarray) -> np.ndarray:
    """[B, H, W] bool: the teeth of frames ``images`` [B, H, W, 3] (float in [0, 1] or uint8)
    with inner lip contours ``loops`` [B, L, 2]: the near-white pixels (HSV value >= 0.75,
    saturation <= 0.15) inside the lips, where the lips, the tongue and the dark of the
    mouth are coloured or dark. (Upper and lower teeth are not told apart: a slightly open
    mouth shows the upper ones on both sides of any line through the lips.)"""
    import cv2

    imgs = np.asarray(images)
    if imgs.dtype != np.uint8:
        imgs = (np.clip(imgs, 0, 1) * 255).round().astype(np.uint8)
    inside = mouth_interior(loops, imgs.shape[1], grow=0)
    hsv = np.stack([cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2HSV) for im in imgs])
    white = (hsv[..., 2] >= TEETH_MIN_VALUE * 255) & (hsv[..., 1] <= TEETH_MAX_SATURATION * 255)
    return inside & white


def make_masker(reference: np.ndarray):
    """The masker for a clip's landmark layout, given reference landmarks [P, 2+]."""
    if scheme_for(reference) is IBUG68:
        return PolygonMasker()
    return RegionMasker(reference)


def masks_from_labels(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"face": labels == LABEL_FACE, "eyes": labels == LABEL_EYES,
            "mouth": labels == LABEL_MOUTH}
