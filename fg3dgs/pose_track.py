"""The pose track file format: ``R`` [F, 3, 3] and ``t`` [F, 3] with X_camera = R @ X_head + t
(OpenCV axes, metres), the preprocessing's ``cameras.npz`` format, which may also carry the
camera ``K`` [3, 3] it was estimated with and its head space's ``canonical`` landmarks
[P, 3]. NumPy only: the command line checks a track before loading anything heavy; the
render pipeline moves it into an identity's head space (:mod:`fg3dgs.pipeline.pose_input`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROTATION_TOLERANCE = 1e-2          # |R^T R - I| (float16 / float32 tracks pass, shears do not)


class PoseTrackError(ValueError):
    """A pose track that cannot drive the identity: unreadable, malformed, or off camera."""


@dataclass
class PoseTrack:
    """R [F, 3, 3], t [F, 3] (X_camera = R @ X_head + t, metres); K [3, 3] of the camera it
    was estimated with and canonical [P, 3] head-space landmarks, when known."""

    R: np.ndarray
    t: np.ndarray
    K: np.ndarray | None = None
    canonical: np.ndarray | None = None
    source: str = "arrays"

    def __len__(self) -> int:
        return len(self.R)


def check_pose_arrays(R, t, source: str = "the pose track") -> tuple[np.ndarray, np.ndarray]:
    """(R [F, 3, 3], t [F, 3]) as float64, or :class:`PoseTrackError` naming what is wrong."""
    R, t = np.asarray(R), np.asarray(t)
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise PoseTrackError(f"{source}: R must have shape [frames, 3, 3], got {list(R.shape)}")
    if t.ndim != 2 or t.shape[1] != 3:
        raise PoseTrackError(f"{source}: t must have shape [frames, 3], got {list(t.shape)}")
    if len(R) != len(t):
        raise PoseTrackError(f"{source}: R has {len(R)} frames but t has {len(t)}")
    if len(R) == 0:
        raise PoseTrackError(f"{source} has no frames")
    if R.dtype.kind not in "fiu" or t.dtype.kind not in "fiu":
        raise PoseTrackError(f"{source}: R and t must be numbers, got {R.dtype} and {t.dtype}")
    R, t = R.astype(np.float64), t.astype(np.float64)
    bad = ~(np.isfinite(R).all((1, 2)) & np.isfinite(t).all(1))
    if bad.any():
        raise PoseTrackError(f"{source}: frame {int(np.argmax(bad))} (and {int(bad.sum()) - 1} "
                             "more) holds NaN or infinite values")
    err = np.abs(np.einsum("fji,fjk->fik", R, R) - np.eye(3)).max((1, 2))
    det = np.linalg.det(R)
    wrong = (err > ROTATION_TOLERANCE) | (det < 0)
    if wrong.any():
        f = int(np.argmax(wrong))
        why = "a reflection (determinant -1)" if det[f] < 0 else \
            f"not orthonormal (|R^T R - I| = {err[f]:.3g})"
        raise PoseTrackError(f"{source}: R of frame {f} is not a rotation: {why}; give "
                             "rotation matrices (X_camera = R @ X_head + t)")
    if (t[:, 2] <= 0).any():
        f = int(np.argmax(t[:, 2] <= 0))
        raise PoseTrackError(f"{source}: frame {f} puts the head behind the camera (t_z = "
                             f"{t[f, 2]:.3g} m); t is the head's position in camera "
                             "coordinates, z pointing into the scene")
    return R, t


def load_pose_track(path: str | Path) -> PoseTrack:
    """A pose track from a ``.npz`` holding ``R`` and ``t`` (optionally ``K`` and
    ``canonical``), or from a preprocessed dataset folder (its ``cameras.npz``)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "cameras.npz").is_file():
            raise PoseTrackError(f"{path} is a folder without cameras.npz; give a pose track "
                                 "(.npz with R and t) or a preprocessed dataset folder")
        path = path / "cameras.npz"
    if not path.is_file():
        raise PoseTrackError(f"pose track {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise PoseTrackError(f"{path} is not a readable .npz pose track ({exc})") from exc
    missing = [k for k in ("R", "t") if k not in arrays]
    if missing:
        raise PoseTrackError(f"{path} has no {' or '.join(missing)} (it holds "
                             f"{', '.join(sorted(arrays)) or 'nothing'}); a pose track holds R "
                             "[frames, 3, 3] and t [frames, 3]")
    R, t = check_pose_arrays(arrays["R"], arrays["t"], str(path))
    K = arrays.get("K")
    if K is not None and (np.shape(K) != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0):
        raise PoseTrackError(f"{path}: K must be a [3, 3] camera matrix, got shape "
                             f"{list(np.shape(K))}")
    canonical = arrays.get("canonical")
    if canonical is not None:
        canonical = np.asarray(canonical, np.float64)
        if canonical.ndim != 2 or canonical.shape[1] != 3 or not np.isfinite(canonical).all():
            raise PoseTrackError(f"{path}: canonical must be finite [points, 3] landmarks, "
                                 f"got shape {list(canonical.shape)}")
    return PoseTrack(R, t, None if K is None else np.asarray(K, np.float64), canonical,
                     str(path))
