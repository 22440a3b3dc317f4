"""Expression per frame from landmarks: openness of each eye and brow raise, per clip.

Raw measures are scale-free (divided by eye width or inter-ocular distance); the clip then
normalises them so that 1 is the subject's ordinary open eye and the brow's 0 is its ordinary
height, which makes them comparable across subjects for the expression encoder.
"""

from __future__ import annotations

import numpy as np

from ..landmark_schemes import scheme_for

EXPRESSION_NAMES = ("eye_open_right", "eye_open_left", "brow_raise")


def raw_expression(points: np.ndarray) -> np.ndarray:
    """[F, 3] from landmarks [F, P, 2+] (478 or 68 points): mean lid gap / eye width per
    eye, brow height above the eye line / IOD."""
    scheme = scheme_for(points)
    p = np.asarray(points, np.float64)[..., :2]
    out = []
    for eye in scheme.eyes:
        gap = np.linalg.norm(p[:, list(eye.upper)] - p[:, list(eye.lower)], axis=-1).mean(1)
        out.append(gap / np.linalg.norm(p[:, eye.outer] - p[:, eye.inner], axis=-1))
    centres = [p[:, [e.outer, e.inner]].mean(1) for e in scheme.eyes]
    iod = np.linalg.norm(centres[0] - centres[1], axis=-1)
    brow = 0.0
    for ids, c in zip(scheme.brows, centres):
        brow = brow + np.linalg.norm(p[:, list(ids)].mean(1) - c, axis=-1)
    out.append(brow / (2 * iod))
    return np.stack(out, axis=-1)


def normalise_expression(raw: np.ndarray) -> np.ndarray:
    """Per clip: eyes divided by their 90th percentile (1 = open, 0 = shut, clipped to
    [0, 1.5]); brow centred on its median and scaled by its 5-95 % range."""
    out = np.empty_like(raw, dtype=np.float32)
    for k in range(2):
        out[:, k] = np.clip(raw[:, k] / max(np.percentile(raw[:, k], 90), 1e-6), 0, 1.5)
    b = raw[:, 2]
    spread = np.percentile(b, 95) - np.percentile(b, 5)
    out[:, 2] = (b - np.median(b)) / max(spread, 1e-3)
    return out
