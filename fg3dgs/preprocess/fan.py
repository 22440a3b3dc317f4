"""The face-alignment landmarker (68 iBUG points, the field's standard for LMD).

face-alignment's networks (FAN and its depth network, TorchScript archives) are downloaded on
first use into torch's hub cache (``$TORCH_HOME/hub/checkpoints``); without network access
they must already be there. Faces are boxed by mediapipe's face detector (its model ships in
the wheel), so face-alignment's own detector and its separate weights are never needed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..media import FPS
from .landmarks import LandmarkTrack, track_with

N_POINTS = 68


class LandmarkerUnavailable(RuntimeError):
    """The chosen landmarker cannot run here (package or weights missing)."""


def load_face_alignment(device: str = "cpu"):
    """face_alignment.FaceAlignment for 3D landmarks, or LandmarkerUnavailable saying why."""
    try:
        import face_alignment
    except ImportError as exc:
        raise LandmarkerUnavailable(
            "the face-alignment landmarker is not installed (pip install -r "
            "requirements-fan.txt, or pip install 'fg3dgs[fan]'); or use --landmarker mediapipe, which "
            "needs no download") from exc
    from torch.hub import get_dir

    try:
        return face_alignment.FaceAlignment(face_alignment.LandmarksType.THREE_D,
                                            device=device, face_detector="folder")
    except Exception as exc:   # URLError, HTTPError, a truncated archive, ...
        raise LandmarkerUnavailable(
            f"face-alignment could not load its network weights ({type(exc).__name__}: "
            f"{exc}). It downloads 3DFAN4 and its depth network (about 200 MB) from "
            f"adrianbulat.com into {get_dir()}/checkpoints on first use: run it once where "
            "the network is open, or copy the files there. Otherwise use --landmarker "
            "mediapipe (the default), whose model ships inside its wheel") from exc


def track_faces_fa(frames: Iterable[np.ndarray], fps: float = FPS, max_gap_s: float = 0.5,
                   progress=None, device: str = "cpu", model=None) -> LandmarkTrack:
    """68 3D landmarks per frame [F, 68, 3] (x, y, relative depth in pixels), with the same
    gap filling and errors as the mediapipe tracker."""
    import mediapipe as mp

    fa = model if model is not None else load_face_alignment(device)
    def points(frame):
        h, w = frame.shape[:2]
        out = []
        for d in det.process(np.ascontiguousarray(frame)).detections or []:
            b = d.location_data.relative_bounding_box
            box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w,
                            (b.ymin + b.height) * h])
            out.append(np.asarray(fa.get_landmarks_from_image(
                np.ascontiguousarray(frame), detected_faces=[box])[0], np.float32))
        return out

    with mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                   min_detection_confidence=0.5) as det:
        return track_with(points, N_POINTS, frames, fps, max_gap_s, progress)
