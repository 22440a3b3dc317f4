"""Head pose per frame from face landmarks: a rigid fit to a canonical face built from the clip.

1. Canonical shape: generalised Procrustes analysis of the tracker's 3D landmarks (x, y and
   its relative depth z, all in pixels) over the clip, on points of the rigid face only
   (the scheme's ``rigid`` points: forehead, nose, eye corners, cheekbones; not lips, jaw,
   lids or brows). Scaled to metres by a 63 mm inter-ocular distance.
2. Focal length, once per clip. Landmark trackers give weak-perspective depth, and a canonical
   shape built from it fits a long focal length a little better however the video was shot
   (measured: a search that minimises the reprojection error of PnP fits always runs to its
   upper bound), so the focal length is not observable from the landmarks. By default
   (``focal="prior"``) it is set from the face's size: the subject ``PRIOR_DISTANCE`` metres
   from the camera, so the 63 mm inter-ocular distance spans the clip's median pixel IOD,
   which is how far people sit from a webcam or hold a phone. ``focal="search"`` runs the
   reprojection-error search instead; a number sets it in pixels. Rotations barely depend on
   it (measured: within 0.2 degree between the prior and the search's bound); the depth of
   the translation scales with it, and the rendered images do not change.
3. Per-frame pose (rotation, translation) by PnP with that focal length, started from the
   Procrustes rotation, then a light centred temporal smoothing.

World space is the canonical head space (docs/design.md): X_camera = R @ X_head + t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..landmark_schemes import scheme_for

INTEROCULAR = 0.063
PRIOR_DISTANCE = 0.6      # m, camera to face for the focal-length prior


@dataclass
class PoseTrack:
    """R [F, 3, 3], t [F, 3] (metres), K [3, 3], canonical [P, 3] head-space landmarks,
    reprojection error per frame [F] in pixels; focal_source "prior", "search" or "given"."""

    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    canonical: np.ndarray
    reprojection_px: np.ndarray
    focal_source: str = "prior"


def _umeyama(src: np.ndarray, dst: np.ndarray):
    """Similarity (s, R, t) minimising |s R src + t - dst|^2; src, dst [N, 3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = (S * np.diag(D)).sum() / (a ** 2).sum()
    return s, R, mu_d - s * R @ mu_s


def canonical_shape(points3d: np.ndarray, iterations: int = 5):
    """Generalised Procrustes over frames.

    Args:
        points3d: [F, P, 3] landmarks (x, y, z in pixels; z towards the scene).
    Returns:
        canonical [P, 3] (centred, unit-free), rotations [F, 3, 3] (canonical -> camera).
    """
    ref = points3d[0] - points3d[0].mean(0)
    for _ in range(iterations):
        back = []
        rots = []
        for p in points3d:
            s, R, t = _umeyama(ref, p)
            rots.append(R)
            back.append((p - t) @ R / s)        # frame in canonical coordinates
        new = np.mean(back, axis=0)
        new -= new.mean(0)
        ref = new * np.sqrt((ref ** 2).sum() / (new ** 2).sum())
    return ref, np.array(rots)


def _solve_pnp(obj, img, K, rvec=None, tvec=None):
    import cv2

    ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, rvec=rvec, tvec=tvec,
                                  useExtrinsicGuess=rvec is not None,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    err = np.linalg.norm(proj[:, 0] - img, axis=-1).mean()
    return rvec, tvec, err


def _fit_all(canon, img2d, K, R0):
    """PnP per frame; returns rvecs, tvecs, errors."""
    import cv2

    rvecs, tvecs, errs = [], [], []
    obj = np.ascontiguousarray(canon, np.float64)
    for i in range(len(img2d)):
        rv = cv2.Rodrigues(R0[i])[0] if not rvecs else rvecs[-1]
        # Initial depth from the apparent size.
        if not tvecs:
            span_px = np.linalg.norm(img2d[i].max(0) - img2d[i].min(0))
            span_m = np.linalg.norm(obj.max(0) - obj.min(0))
            c = img2d[i].mean(0)
            z = K[0, 0] * span_m / span_px
            tv = np.array([[(c[0] - K[0, 2]) * z / K[0, 0]], [(c[1] - K[1, 2]) * z / K[1, 1]],
                           [z]])
        else:
            tv = tvecs[-1]
        rv, tv, e = _solve_pnp(obj, np.ascontiguousarray(img2d[i], np.float64), K, rv.copy(),
                               tv.copy())
        rvecs.append(rv)
        tvecs.append(tv)
        errs.append(e)
    return rvecs, tvecs, np.array(errs)


def smooth_rotations(R: np.ndarray, radius: int) -> np.ndarray:
    """Centred moving average of rotations (chordal mean over 2 * radius + 1 frames)."""
    if radius <= 0:
        return R
    out = np.empty_like(R)
    F = len(R)
    for i in range(F):
        m = R[max(0, i - radius):i + radius + 1].mean(0)
        U, _, Vt = np.linalg.svd(m)
        D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
        out[i] = U @ D @ Vt
    return out


def estimate_poses(landmarks: np.ndarray, width: int, height: int, smooth_radius: int = 1,
                   focal: str | float = "prior") -> PoseTrack:
    """Head pose per frame from landmarks.

    Args:
        landmarks: [F, P, 3] x, y in pixels, z the tracker's relative depth in pixels
            (P = 478 mediapipe or 68 iBUG points).
        width, height: image size.
        focal: "prior", "search" or the focal length in pixels (see the module note).
    """
    import cv2

    scheme = scheme_for(landmarks)
    rigid = list(scheme.rigid)
    pts = np.asarray(landmarks, np.float64)
    canon_px, R0 = canonical_shape(pts[:, rigid])
    full_px, _ = canonical_shape(pts)
    # Metric scale from the inter-ocular distance (eye corner midpoints) of the full shape.
    eyes = [0.5 * (full_px[e.outer] + full_px[e.inner]) for e in scheme.eyes]
    metres = INTEROCULAR / np.linalg.norm(eyes[0] - eyes[1])
    # Express the rigid-point canonical in the full shape's frame so both share one space.
    s, Rf, tf = _umeyama(canon_px, full_px[rigid])
    canon = (s * canon_px @ Rf.T + tf) * metres
    full = full_px * metres
    img2d = pts[:, rigid, :2]

    def total_error(f):
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
        step = max(1, len(img2d) // 60)         # a subsample is enough to pick f
        _, _, e = _fit_all(canon, img2d[::step], K, R0[::step])
        return e.mean()

    if focal == "search":
        f = _search_focal(total_error, width)
    elif focal == "prior":
        # The face PRIOR_DISTANCE away: its 63 mm IOD spans the median pixel IOD.
        centres = [pts[:, [e.outer, e.inner], :2].mean(1) for e in scheme.eyes]
        iod_px = float(np.median(np.linalg.norm(centres[0] - centres[1], axis=-1)))
        f = PRIOR_DISTANCE * iod_px / INTEROCULAR
    elif isinstance(focal, (int, float)) and focal > 0:
        f = float(focal)
    else:
        raise ValueError(f"focal must be 'prior', 'search' or a positive number, not {focal!r}")
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    rvecs, tvecs, errs = _fit_all(canon, img2d, K, R0)
    R = np.array([cv2.Rodrigues(rv)[0] for rv in rvecs])
    t = np.array([tv[:, 0] for tv in tvecs])
    return PoseTrack(R=smooth_rotations(R, smooth_radius), t=t, K=K, canonical=full,
                     reprojection_px=errs,
                     focal_source=focal if isinstance(focal, str) else "given")


def _search_focal(total_error, width: int) -> float:
    """Golden-section search of the focal length on a log scale in [0.6, 6] widths."""
    lo, hi = np.log(0.6 * width), np.log(6.0 * width)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = total_error(np.exp(a)), total_error(np.exp(b))
    for _ in range(12):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = total_error(np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = total_error(np.exp(b))
    return float(np.exp(0.5 * (lo + hi)))


def rotation_errors(R_est: np.ndarray, R_true: np.ndarray) -> np.ndarray:
    """Per-frame angle (degrees) between estimated and true head rotations, after removing
    the constant rotation between the two head spaces (each is only defined up to it)."""
    M = np.einsum("fji,fjk->ik", R_est, R_true)       # sum of R_est^T R_true
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    Q = U @ D @ Vt
    rel = np.einsum("fij,jk,flk->fil", R_est, Q, R_true)   # R_est Q R_true^T
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)
    return np.degrees(np.arccos(cos))
