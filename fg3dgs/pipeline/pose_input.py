"""Head motion from a file: a pose track (:mod:`fg3dgs.pose_track`) that drives the head
instead of the identity's replayed one, moved into the identity's head space. Every
preprocessed clip defines its own head space (its canonical face, see
:mod:`fg3dgs.preprocess.pose`), so a track from another clip is first moved into the
identity's: the rotation and offset between the two canonical faces (a similarity fit on the
rigid points), then, where its camera differs, the depth rescaled by the focal lengths and
the offset shifted by the principal points, so that the head lands where it did in the
track's own frames. A track without ``canonical`` is taken to be in the identity's head space
already (e.g. the identity's own track, edited).
"""

from __future__ import annotations

import numpy as np

from ..options import POSE_ENDS
from ..pose_track import PoseTrack, PoseTrackError


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
