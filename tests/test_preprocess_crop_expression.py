"""The clip crop with its intrinsics, and expression features."""

import numpy as np
import pytest

from fg3dgs.landmark_schemes import get_scheme
from fg3dgs.preprocess.crop import crop_intrinsics, crop_points, portrait_crop
from fg3dgs.preprocess.expression import normalise_expression, raw_expression


def _face(rng, F=50, centre=(300.0, 200.0), h=120.0):
    pts = np.zeros((F, 478, 3))
    pts[..., :2] = centre + rng.normal(scale=h / 3, size=(F, 478, 2))
    pts[:, 10, :2] = np.array(centre) - [0, h / 2]
    pts[:, 152, :2] = np.array(centre) + [0, h / 2]
    return pts


def test_crop_holds_the_motion_range_and_keeps_projection_consistent():
    rng = np.random.default_rng(0)
    pts = _face(rng)
    pts[:, :, 0] += np.linspace(0, 60, len(pts))[:, None]          # the head moves right
    x0, y0, side = portrait_crop(pts)
    assert side % 2 == 0 and side >= 2.1 * 120
    lo, hi = pts[..., :2].reshape(-1, 2).min(0), pts[..., :2].reshape(-1, 2).max(0)
    assert x0 <= lo[0] and y0 <= lo[1] and x0 + side >= hi[0] and y0 + side >= hi[1]
    # A 3D point projected with the source K, then cropped, equals its projection with the
    # crop's K.
    K = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    X = np.array([0.05, -0.02, 0.6])
    p_src = (K @ X)[:2] / X[2]
    Kc = crop_intrinsics(K, (x0, y0, side), 256)
    p_crop = (Kc @ X)[:2] / X[2]
    assert np.allclose(crop_points(p_src[None], (x0, y0, side), 256)[0], p_crop, atol=1e-4)


@pytest.mark.parametrize("layout", ["mediapipe-478", "ibug-68"])
def test_expression_measures_eyes_and_brows(layout):
    scheme = get_scheme(layout)
    rng = np.random.default_rng(1)
    F = 100
    pts = np.zeros((F, scheme.n_points, 3))
    pts[..., :2] = rng.normal(size=(F, scheme.n_points, 2)) * 0.01
    for side, eye in zip((-40, 40), scheme.eyes):
        pts[:, eye.outer, 0], pts[:, eye.inner, 0] = side * 1.4, side * 0.6
        pts[:, list(eye.upper), 1], pts[:, list(eye.lower), 1] = -5, 5
    blink = slice(40, 44)
    shut = list(scheme.eyes[0].upper + scheme.eyes[0].lower)
    pts[blink, shut, 1] = 0                                  # right eye shut
    brows = list(scheme.brows[0] + scheme.brows[1])
    pts[:, brows, 1] = -20
    pts[60:70, brows, 1] = -26                               # brows raised
    raw = raw_expression(pts)
    e = normalise_expression(raw)
    assert e.shape == (F, 3) and e.dtype == np.float32
    assert np.all(e[blink, 0] < 0.05) and abs(np.median(e[:, 0]) - 1) < 0.02
    assert np.all(e[blink, 1] > 0.95)                    # the other eye stays open
    assert e[60:70, 2].min() > e[:40, 2].max()
