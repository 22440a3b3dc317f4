"""Portrait photos and their face mesh: loading, mediapipe face landmarks, mesh topology.

Built-in photos come from wheels the project already installs: ``builtin:astronaut``
(scikit-image's bundled portrait of Eileen Collins, public domain) and ``builtin:hopper``
(matplotlib's bundled photo of Grace Hopper, public domain).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..facemesh import LEFT_IRIS, RIGHT_IRIS

BUILTIN_PHOTOS = ("astronaut", "hopper")


class PhotoError(ValueError):
    """A photo that cannot be used: unreadable, no face, several faces."""


def load_photo(spec: str) -> np.ndarray:
    """``builtin:NAME`` or an image path -> RGB uint8 [H, W, 3]."""
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name == "astronaut":
            from skimage import data
            return np.ascontiguousarray(data.astronaut()[..., :3])
        if name == "hopper":
            import imageio.v3 as iio
            import matplotlib.cbook as cbook
            with cbook.get_sample_data("grace_hopper.jpg") as f:
                return np.ascontiguousarray(iio.imread(f)[..., :3])
        raise PhotoError(f"unknown built-in photo {spec!r}; built-ins: "
                         + ", ".join(f"builtin:{n}" for n in BUILTIN_PHOTOS))
    path = Path(spec)
    if not path.is_file():
        raise PhotoError(f"photo {spec!r} does not exist (give an image file or one of "
                         + ", ".join(f"builtin:{n}" for n in BUILTIN_PHOTOS) + ")")
    import imageio.v3 as iio
    try:
        image = iio.imread(path)
    except Exception as exc:
        raise PhotoError(f"cannot read {spec!r} as an image ({type(exc).__name__}: {exc}); "
                         "use a JPEG or PNG portrait") from exc
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 64:
        raise PhotoError(f"{spec!r} is not a usable RGB image (shape {image.shape}); use a "
                         "colour portrait of at least 64x64 pixels")
    if image.dtype != np.uint8:
        image = np.clip(image / (image.max() or 1) * 255, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


@dataclass
class FaceLandmarks:
    """mediapipe face mesh landmarks of one photo, in pixels.

    points [478, 3]: x, y in pixels of the photo, z in the same pixel scale (mediapipe's
    relative depth, larger = farther from the camera), in mediapipe's index layout.
    """

    points: np.ndarray
    image_size: tuple[int, int]       # (width, height)

    @property
    def interocular(self) -> float:
        """Distance between the iris centres in pixels."""
        return float(np.linalg.norm(self.points[RIGHT_IRIS, :2] - self.points[LEFT_IRIS, :2]))


def detect_face(image: np.ndarray) -> FaceLandmarks:
    """Run mediapipe's face mesh (with iris refinement) on one RGB uint8 image.

    Raises PhotoError when no face or more than one face is found.
    """
    import mediapipe as mp

    h, w = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2,
                                         refine_landmarks=True,
                                         min_detection_confidence=0.5) as mesh:
        result = mesh.process(np.ascontiguousarray(image))
    faces = result.multi_face_landmarks or []
    if not faces:
        raise PhotoError("no face found in the photo; use a frontal portrait where the face "
                         "is clearly visible")
    if len(faces) > 1:
        raise PhotoError(f"{len(faces)} faces found in the photo; use a portrait of one person")
    pts = np.array([[p.x * w, p.y * h, p.z * w] for p in faces[0].landmark], np.float64)
    return FaceLandmarks(points=pts, image_size=(w, h))


def person_mask(image: np.ndarray) -> np.ndarray:
    """[H, W] bool: the person, from mediapipe's selfie segmentation (ships in the wheel)."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        result = seg.process(np.ascontiguousarray(image))
    return result.segmentation_mask > 0.5
