"""An independent observer of faces in video: mediapipe's face mesh, and what is read off it.

Used wherever a video's mouth or eyes are measured rather than known: checking a synthetic
clip against its truth, and the lip-sync benchmark on rendered videos. mediapipe is not used
to make any training target, so its readings judge the renders from outside.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .facemesh import LEFT_IRIS, N_LANDMARKS, RIGHT_IRIS

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14


def track_landmarks(frames: Iterable[np.ndarray]) -> np.ndarray:
    """mediapipe landmarks [F, 478, 2] in pixels (NaN where no face was found) of RGB uint8
    frames [H, W, 3], tracked from frame to frame as in a video."""
    import mediapipe as mp

    out = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                         refine_landmarks=True,
                                         min_detection_confidence=0.5,
                                         min_tracking_confidence=0.5) as mesh:
        for frame in frames:
            h, w = frame.shape[:2]
            res = mesh.process(np.ascontiguousarray(frame))
            if res.multi_face_landmarks:
                lm = res.multi_face_landmarks[0].landmark
                out.append(np.array([[p.x * w, p.y * h] for p in lm]))
            else:
                out.append(np.full((N_LANDMARKS, 2), np.nan))
    return np.array(out).reshape(-1, N_LANDMARKS, 2)


def track_video(path) -> np.ndarray:
    """:func:`track_landmarks` over the frames of a video file."""
    import imageio.v3 as iio

    return track_landmarks(iio.imiter(path))


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """[F] distance between the iris centres of landmarks [F, 478, 2]."""
    return np.linalg.norm(landmarks[:, RIGHT_IRIS] - landmarks[:, LEFT_IRIS], axis=-1)


def lip_opening(landmarks: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """[F] inner-lip gap of landmarks [F, 478, 2] over ``scale`` [F] (default: the measured
    inter-ocular distance), NaN where no face was found."""
    gap = np.linalg.norm(landmarks[:, UPPER_INNER_LIP] - landmarks[:, LOWER_INNER_LIP],
                         axis=-1)
    return gap / (inter_ocular(landmarks) if scale is None else scale)


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """[F] mean lid gap over eye width for both eyes."""
    lm = landmarks
    right = np.linalg.norm(lm[:, 159] - lm[:, 145], axis=-1) / np.linalg.norm(
        lm[:, 33] - lm[:, 133], axis=-1)
    left = np.linalg.norm(lm[:, 386] - lm[:, 374], axis=-1) / np.linalg.norm(
        lm[:, 263] - lm[:, 362], axis=-1)
    return 0.5 * (right + left)
