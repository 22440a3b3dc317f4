"""Face landmarks per frame (mediapipe face mesh, 478 points; or face-alignment's 68, see
:mod:`.fan`), gap filling and smoothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..facemesh import LEFT_IRIS, RIGHT_IRIS, mirror_permutation
from ..landmark_schemes import scheme_for
from ..media import FPS

N_POINTS = 478


class FaceTrackError(ValueError):
    """The video cannot be tracked: no face, several faces, the face lost for too long."""


@dataclass
class LandmarkTrack:
    """points [F, P, 3]: x, y in pixels, z the tracker's relative depth in pixels;
    found [F] frames where the face was detected (the others are interpolated);
    gaps: (first, last) frame of each interpolated span."""

    points: np.ndarray
    found: np.ndarray
    gaps: list[tuple[int, int]] = field(default_factory=list)


class MeshReader:
    """mediapipe's face mesh on single frames: ``reader(frame) -> list of [478, 3]`` (x, y in
    pixels, z relative depth in pixels), one array per face found. A context manager.

    Detection on every frame (static mode), not tracking from the last frame's landmarks:
    measured on the synthetic subject, lid landmarks are less biased (eye mask IoU 0.86 ->
    0.89 and 0.82 -> 0.84), landmark error 1.75 -> 1.55 % IOD, for about 5 % more time.

    mirror: also read the mirrored frame and average the two readings point for point
    (:func:`fg3dgs.facemesh.mirror_permutation`). The network is not mirror-symmetric, and
    its errors on the two sides of a face differ. On the synthetic subject the average lowers
    the landmark error with glasses (1.62 -> 1.32 % IOD) and the lid bias behind them (eye
    mask IoU 0.837 -> 0.854), and costs a little on the photo without (0.890 -> 0.874; the
    docs/data.md has the table). The mirrored reading runs in a thread beside the plain one.
    """

    MATCH = 0.1      # a mirrored face further than this many IODs (median) is another face

    def __init__(self, mirror: bool = True):
        import mediapipe as mp

        self.mirror, self.perm = mirror, mirror_permutation()
        with contextlib.ExitStack() as stack:     # closes what opened if a later one fails
            self._meshes = [stack.enter_context(mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=2, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5))
                for _ in range(2 if mirror else 1)]
            self._pool = stack.enter_context(ThreadPoolExecutor(1)) if mirror else None
            self._stack = stack.pop_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def _read(self, mesh, image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        faces = mesh.process(image).multi_face_landmarks or []
        return [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32)
                for f in faces]

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        frame = np.ascontiguousarray(frame)
        if not self.mirror:
            return self._read(self._meshes[0], frame)
        mirrored = np.ascontiguousarray(frame[:, ::-1])
        job = self._pool.submit(self._read, self._meshes[1], mirrored)
        faces, flipped = self._read(self._meshes[0], frame), job.result()
        if len(faces) != 1 or not flipped:       # the plain reading decides
            return faces
        back = [self.unmirror(f, frame.shape[1]) for f in flipped]
        gap = [np.median(np.linalg.norm(b[:, :2] - faces[0][:, :2], axis=-1)) for b in back]
        k = int(np.argmin(gap))
        iod = np.linalg.norm(faces[0][RIGHT_IRIS, :2] - faces[0][LEFT_IRIS, :2])
        if gap[k] > self.MATCH * iod:
            return faces
        return [0.5 * (faces[0] + back[k])]

    def unmirror(self, face: np.ndarray, width: int) -> np.ndarray:
        """A face [478, 3] read on the mirrored frame, in the frame's points and pixels."""
        out = face[self.perm]
        out[:, 0] = width - out[:, 0]          # continuous x: the image spans [0, width]
        return out


def track_faces(frames: Iterable[np.ndarray], fps: float = FPS, max_gap_s: float = 0.5,
                progress=None, mirror: bool = True) -> LandmarkTrack:
    """Run mediapipe's face mesh on every frame (:class:`MeshReader`).

    Short losses (under ``max_gap_s``) are filled by linear interpolation and reported in
    ``gaps``; a longer loss, no face at all, or two faces raise FaceTrackError naming the
    frame and time.
    """
    with MeshReader(mirror) as reader:
        return track_with(reader, N_POINTS, frames, fps, max_gap_s, progress)


def track_with(detect, n_points: int, frames: Iterable[np.ndarray], fps: float,
               max_gap_s: float, progress=None) -> LandmarkTrack:
    """Run ``detect(frame) -> list of [n_points, 3] arrays, one per face`` over the frames;
    two faces raise FaceTrackError, missing faces become gaps for :func:`finish_track`."""
    pts, found = [], []
    for i, frame in enumerate(frames):
        faces = detect(frame)
        if len(faces) > 1:
            raise FaceTrackError(f"{len(faces)} faces in frame {i} ({i / fps:.2f} s); "
                                 "the video must show one person")
        found.append(bool(faces))   # one small array per frame: bounded memory
        pts.append(faces[0] if faces else np.full((n_points, 3), np.nan, np.float32))
        if progress is not None:
            progress.update(1)
    return finish_track(pts, found, fps, max_gap_s)


def finish_track(pts: list[np.ndarray], found: list[bool], fps: float,
                 max_gap_s: float) -> LandmarkTrack:
    """Check the per-frame detections [P, 3] (NaN where none) and fill short gaps."""
    if not pts:
        raise FaceTrackError("the video has no frames")
    points = np.stack(pts).astype(np.float64)
    found = np.asarray(found)
    if not found.any():
        raise FaceTrackError("no face found in any frame; use a video where one face is "
                             "clearly visible")
    gaps = _runs(~found)
    limit = max_gap_s * fps
    for a, b in gaps:
        if b - a + 1 > limit:
            raise FaceTrackError(f"the face is lost for {(b - a + 1) / fps:.1f} s, frames "
                                 f"{a}-{b} ({a / fps:.2f}-{(b + 1) / fps:.2f} s); gaps "
                                 f"under {max_gap_s} s are filled, longer ones are not")
    good = np.flatnonzero(found)
    flat = points.reshape(len(points), -1)
    for k in range(flat.shape[1]):
        flat[:, k] = np.interp(np.arange(len(points)), good, flat[good, k])
    return LandmarkTrack(points=points.astype(np.float32), found=found, gaps=gaps)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    idx = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(idx[::2], idx[1::2])]


def smooth_landmarks(points: np.ndarray, rigid_window: int = 7,
                     fast_window: int = 5) -> np.ndarray:
    """Savitzky-Golay smoothing over time (quadratic, centred: no lag).

    Lips and eyelids get the shorter window so fast articulation and blinks are kept.
    Args: points [F, P, C], P = 478 or 68. Windows are in frames (odd).
    """
    from scipy.signal import savgol_filter

    out = np.array(points, np.float64, copy=True)
    F = len(out)
    fast = scheme_for(out).fast_mask
    for mask, window in ((~fast, rigid_window), (fast, fast_window)):
        win = min(window, F if F % 2 else F - 1)
        if win >= 5 and mask.any():
            out[:, mask] = savgol_filter(out[:, mask], win, 2, axis=0)
    return out.astype(np.float32)
