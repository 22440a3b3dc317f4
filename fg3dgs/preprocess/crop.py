"""One fixed square portrait crop per clip, and intrinsics that stay consistent with it."""

from __future__ import annotations

import numpy as np

from ..landmark_schemes import scheme_for


def portrait_crop(points: np.ndarray, framing: float = 2.1, drop: float = 0.18):
    """(x0, y0, side) in source pixels: a square around the face's whole range of motion.

    The side is ``framing`` face heights (forehead to chin, median over the clip) or the
    face's motion range plus one face height, whichever is larger; the centre sits ``drop``
    face heights below the landmarks' centre, to keep the neck and shoulders in frame.
    Args: points [F, P, 2+] landmarks in pixels (478 or 68 points).
    """
    p = np.asarray(points, np.float64)[..., :2]
    face_h = float(np.median(scheme_for(p).face_height(p)))
    lo, hi = p.reshape(-1, 2).min(0), p.reshape(-1, 2).max(0)
    centre = 0.5 * (lo + hi) + np.array([0.0, drop * face_h])
    side = max(framing * face_h, float((hi - lo).max()) + face_h)
    side = int(np.ceil(side / 2) * 2)
    x0, y0 = (np.round(centre - side / 2)).astype(int)
    return int(x0), int(y0), side


def crop_points(points: np.ndarray, crop, size: int) -> np.ndarray:
    """Landmarks [..., 2+] from source pixels to the resized crop (z scaled alike)."""
    x0, y0, side = crop
    s = size / side
    out = np.array(points, np.float64, copy=True)
    out[..., 0] = (out[..., 0] - x0) * s
    out[..., 1] = (out[..., 1] - y0) * s
    if out.shape[-1] > 2:
        out[..., 2] *= s
    return out.astype(np.float32)


def crop_intrinsics(K: np.ndarray, crop, size: int) -> np.ndarray:
    """Intrinsics of the resized crop, given those of the source frame."""
    x0, y0, side = crop
    s = size / side
    out = np.array(K, np.float64, copy=True)
    out[0, 0] *= s
    out[1, 1] *= s
    out[0, 2] = (out[0, 2] - x0) * s
    out[1, 2] = (out[1, 2] - y0) * s
    return out
