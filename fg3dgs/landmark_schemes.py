"""Landmark layouts: mediapipe's 478-point face mesh and the iBUG 68-point layout.

Everything downstream of the landmark tracker (crop, pose, masks, expression, smoothing, the
LMD metric) asks a :class:`LandmarkScheme` for the indices it needs, so both landmarkers feed
the same pipeline. ``MEDIAPIPE_TO_IBUG68`` names, for each of the 68 iBUG points, the mesh
vertex at the same facial feature (jaw line, brows, nose, eye corners and lids, lip
contours); it converts a mediapipe track into the 68-point layout, which the field's LMD
metric uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# iBUG 68 order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59,
# inner lips 60-67. Subject's right side first (image left for a frontal face).
MEDIAPIPE_TO_IBUG68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,                                      # brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,                                                # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,                          # eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,                                # lips
    78, 82, 13, 312, 308, 317, 14, 87,                                                  # inner
])


@dataclass(frozen=True)
class Eye:
    """Indices of one eye: upper and lower lid points (paired), outer and inner corner."""

    upper: tuple[int, ...]
    lower: tuple[int, ...]
    outer: int
    inner: int


@dataclass(frozen=True)
class LandmarkScheme:
    """Where the features of a landmark layout are.

    ``rigid``: points that move with the skull only (pose fitting); ``fast``: lips and lids,
    which get lighter temporal smoothing; ``forehead`` is None where the layout has no
    forehead point (the face height is then extrapolated from nasion to chin).
    """

    name: str
    n_points: int
    chin: int
    nasion: int
    forehead: int | None
    eyes: tuple[Eye, Eye]                       # subject's right, left
    brows: tuple[tuple[int, ...], tuple[int, ...]]
    rigid: tuple[int, ...]
    fast: tuple[int, ...]
    outer_lips: tuple[int, ...]
    inner_lips: tuple[int, ...]
    jaw: tuple[int, ...]                        # 17 points, subject's right ear to left

    @cached_property
    def fast_mask(self) -> np.ndarray:
        m = np.zeros(self.n_points, bool)
        m[list(self.fast)] = True
        return m

    def face_height(self, points: np.ndarray) -> np.ndarray:
        """Forehead-to-chin distance [...] of landmarks [..., P, 2+]."""
        p = np.asarray(points, np.float64)[..., :2]
        if self.forehead is not None:
            return np.linalg.norm(p[..., self.chin, :] - p[..., self.forehead, :], axis=-1)
        # The nasion sits about 0.7 of the way from chin to the top of the forehead oval.
        return np.linalg.norm(p[..., self.chin, :] - p[..., self.nasion, :], axis=-1) / 0.7

    def mouth_points(self, points: np.ndarray) -> np.ndarray:
        """[..., 20, C] the lip contours (outer then inner), as LMD compares them."""
        return np.asarray(points)[..., list(self.outer_lips) + list(self.inner_lips), :]


def _mediapipe() -> LandmarkScheme:
    from mediapipe.python.solutions import face_mesh_connections as C

    fast = sorted({a for e in C.FACEMESH_LIPS | C.FACEMESH_LEFT_EYE | C.FACEMESH_RIGHT_EYE
                   for a in e})
    m = MEDIAPIPE_TO_IBUG68
    return LandmarkScheme(
        name="mediapipe-478", n_points=478, chin=152, nasion=168, forehead=10,
        eyes=(Eye((159,), (145,), 33, 133), Eye((386,), (374,), 263, 362)),
        brows=((105, 66, 107), (334, 296, 336)),
        rigid=tuple(sorted({
            10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 19, 94, 2,        # forehead, nose
            109, 338, 67, 297, 108, 337, 69, 299, 104, 333,             # forehead
            33, 133, 263, 362, 130, 359, 243, 463,                      # eye corners
            116, 345, 123, 352, 117, 346, 118, 347, 50, 280, 101, 330,  # cheekbones
            98, 327, 129, 358, 102, 331, 48, 278, 64, 294, 49, 279,     # nose sides
            114, 343, 217, 437, 126, 355, 198, 420, 236, 456,           # nose bridge sides
        })),
        fast=tuple(fast), outer_lips=tuple(int(i) for i in m[48:60]),
        inner_lips=tuple(int(i) for i in m[60:68]), jaw=tuple(int(i) for i in m[0:17]))


IBUG68 = LandmarkScheme(
    name="ibug-68", n_points=68, chin=8, nasion=27, forehead=None,
    eyes=(Eye((37, 38), (41, 40), 36, 39), Eye((44, 43), (46, 47), 45, 42)),
    brows=((18, 19, 20), (23, 24, 25)),
    # Nose and eye corners; the jaw points are on the silhouette and slide with yaw.
    rigid=tuple(range(27, 36)) + (36, 39, 42, 45),
    fast=tuple(range(36, 48)) + tuple(range(48, 68)),
    outer_lips=tuple(range(48, 60)), inner_lips=tuple(range(60, 68)), jaw=tuple(range(17)))

_SCHEMES: dict[str, LandmarkScheme] = {}


def get_scheme(name: str) -> LandmarkScheme:
    """The scheme called ``name`` ("mediapipe-478" or "ibug-68")."""
    if name == IBUG68.name:
        return IBUG68
    if name == "mediapipe-478":
        if name not in _SCHEMES:
            _SCHEMES[name] = _mediapipe()
        return _SCHEMES[name]
    raise ValueError(f"unknown landmark scheme {name!r}; known: mediapipe-478, ibug-68")


def scheme_for(points: np.ndarray) -> LandmarkScheme:
    """The scheme of landmarks [..., P, C] from their count P."""
    n = np.asarray(points).shape[-2]
    for name in ("mediapipe-478", "ibug-68"):
        if get_scheme(name).n_points == n:
            return get_scheme(name)
    raise ValueError(f"landmarks with {n} points match no known layout (478 or 68)")


def to_ibug68(points: np.ndarray) -> np.ndarray:
    """Mediapipe landmarks [..., 478, C] -> [..., 68, C] in the iBUG layout."""
    return np.asarray(points)[..., MEDIAPIPE_TO_IBUG68, :]
