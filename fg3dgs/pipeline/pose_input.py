"""Head motion from a file: a pose track that drives the head instead of the identity's
replayed one.

A track is ``R`` [F, 3, 3] and ``t`` [F, 3] with X_camera = R @ X_head + t (OpenCV axes,
metres), the preprocessing's ``cameras.npz`` format, which may also carry the camera ``K``
[3, 3] it was estimated with and its head space's ``canonical`` landmarks [P, 3]. Every
preprocessed clip defines its own head space (its canonical face, see
:mod:`fg3dgs.preprocess.pose`), so a track from another clip is first moved into the
identity's: the rotation and offset between the two canonical faces (a similarity fit on the
rigid points), then, where its camera differs, the depth rescaled by the focal lengths and
the offset shifted by the principal points, so that the head lands where it did in the
track's own frames. A track without ``canonical`` is taken to be in the identity's head space
already (e.g. the identity's own track, edited). Torch-free: the command line checks a track
before loading anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..options import POSE_ENDS

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


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, Q, b) minimising |s Q src + b - dst|^2 over points [N, 3] (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    U, S, Vt = np.linalg.svd((dst - mu_d).T @ (src - mu_s))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    Q = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / ((src - mu_s) ** 2).sum())
    return s, Q, mu_d - s * Q @ mu_s


def to_identity_space(track: PoseTrack, canonical: np.ndarray | None, K: np.ndarray,
                      size: int) -> tuple[np.ndarray, np.ndarray]:
    """The track's (R [F, 3, 3], t [F, 3]) in the identity's head space and camera (``K``
    [3, 3] at ``size`` pixels, ``canonical`` [P, 3] its head-space landmarks)."""
    R, t = track.R, track.t
    if track.canonical is not None:
        if canonical is None:
            raise PoseTrackError(
                f"{track.source} comes from another clip (it has its own canonical face) and "
                "this identity does not record its own, so the two head spaces cannot be "
                "matched; re-export the identity with a current fg3dgs")
        if len(track.canonical) != len(canonical):
            raise PoseTrackError(f"{track.source} has {len(track.canonical)} canonical "
                                 f"landmarks, the identity {len(canonical)}: preprocess the "
                                 "track's video with the identity's landmarker")
        from ..landmark_schemes import scheme_for

        rigid = list(scheme_for(canonical).rigid)
        # X_track = s Q X_identity + b, so X_camera = R (s Q X + b) + t
        s, Q, b = _similarity(canonical[rigid], track.canonical[rigid])
        R, t = R @ Q, t + R @ b
    if track.K is not None:
        k = K.astype(np.float64)
        depth = k[0, 0] / track.K[0, 0]
        z = t[:, 2] * depth
        # the head's centre projects where it did in the track's camera
        x = (track.K[0, 0] * t[:, 0] / t[:, 2] + track.K[0, 2] - k[0, 2]) * z / k[0, 0]
        y = (track.K[1, 1] * t[:, 1] / t[:, 2] + track.K[1, 2] - k[1, 2]) * z / k[1, 1]
        t = np.stack([x, y, z], 1)
    centre = np.einsum("ij,fj->fi", K, t)
    px = centre[:, :2] / centre[:, 2:]
    off = ((px < 0) | (px > size)).any(1)
    if off.any():
        f = int(np.argmax(off))
        raise PoseTrackError(f"{track.source}: frame {f} puts the head's centre at pixel "
                             f"({px[f, 0]:.0f}, {px[f, 1]:.0f}), outside the identity's "
                             f"{size}x{size} frame; the track does not fit this identity's "
                             "camera (is it from another framing, in other units than metres?)")
    return R, t


def extend(R: np.ndarray, t: np.ndarray, n: int, end: str = "hold"
           ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` poses, the track held at its last pose or ping-ponged past its end."""
    if end not in POSE_ENDS:
        raise ValueError(f"pose end must be one of {', '.join(POSE_ENDS)}, got {end!r}")
    if end == "hold":
        rows = np.minimum(np.arange(n), len(R) - 1)
    else:
        from .motion import pingpong

        rows = pingpong(np.arange(len(R)), n)
    return R[rows], t[rows]


def scale_motion(R: np.ndarray, t: np.ndarray, scale: float, R_ref: np.ndarray,
                 t_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses [F] with their departure from the reference pose (R_ref [3, 3], t_ref [3])
    multiplied by ``scale``: 0 holds the reference, 1 leaves them, 2 doubles the motion
    (rotations along their geodesic from the reference)."""
    if scale == 1.0:
        return R, t
    from scipy.spatial.transform import Rotation

    rel = Rotation.from_matrix(np.einsum("ij,fjk->fik", R_ref.T, R))
    R = np.einsum("ij,fjk->fik", R_ref, Rotation.from_rotvec(rel.as_rotvec() * scale)
                  .as_matrix())
    return R, t_ref + scale * (t - t_ref)


def reference_pose(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central pose of a track: (mean rotation [3, 3], median translation [3])."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).mean().as_matrix(), np.median(t, 0)


def nearest_rows(R: np.ndarray, t: np.ndarray, R_rows: np.ndarray, t_rows: np.ndarray,
                 metres_per_degree: float = 0.005) -> np.ndarray:
    """[F] for each pose (R [F, 3, 3], t [F, 3]), the row of (R_rows [N, 3, 3], t_rows
    [N, 3]) with the nearest pose: rotation angle in degrees plus translation distance,
    ``metres_per_degree`` trading one for the other (so the replayed torso and neck sit as
    they did under a head posed like that)."""
    cos = (np.einsum("fij,nij->fn", R, R_rows) - 1) / 2
    deg = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    dist = np.linalg.norm(t[:, None] - t_rows[None], axis=-1) / metres_per_degree
    return np.argmin(deg + dist, 1)


def canonical_for_track(canonical: np.ndarray, R_from: np.ndarray, R_to: np.ndarray
                        ) -> np.ndarray:
    """A clip's canonical landmarks [P, 3] moved into the head space of another pose track
    of the same frames (R_from [F, 3, 3] the clip's, R_to [F, 3, 3] the other's, e.g. an
    identity trained on an earlier preprocessing of the same video): the constant rotation
    between the two tracks."""
    M = np.einsum("fji,fjk->ik", R_from, R_to)          # sum of R_from^T R_to
    U, _, Vt = np.linalg.svd(M)
    Q = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt   # R_to ~ R_from Q
    return canonical @ Q          # rows: Q^T x
