"""``fg3dgs preprocess``: a portrait video to a training set (docs/design.md).

Two streaming passes over the video (memory stays bounded whatever its length):
1. landmarks on the whole frame (downscaled for speed), gap filling, smoothing; then the one
   crop of the clip, head poses and expression;
2. the cropped, resized frames: images, region label maps (face, eyes, mouth from landmarks;
   the rest of the person split into head and torso by person segmentation), and the
   background plate accumulated where the person is absent.
Everything is written to a temporary folder and moved into place at the end.

Dataset layout: frames/NNNNNN.jpg, labels/NNNNNN.png (0 background or outside the source
frame, 1 face, 2 eyes, 3 mouth, 4 rest of the head, 6 torso), landmarks.npy [F, P, 3] (P = 478 mediapipe, 68 face-alignment), cameras.npz (R, t per frame, K),
expression.npy [F, 3], audio.wav, features/NAME.npy, background.png, manifest.json.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..audio_features import AudioFeatureError, cached_features, load_extractor
from ..facemesh import LABEL_HEAD, LABEL_TORSO
from ..io_utils import atomic_directory, sha256
from ..landmark_schemes import scheme_for
from ..media import AUDIO_RATE, FPS, MediaError, read_audio, write_wav
from ..options import size_problem
from .crop import crop_points, portrait_crop
from .expression import EXPRESSION_NAMES, normalise_expression, raw_expression
from .landmarks import smooth_landmarks, track_faces
from .masks import make_masker
from .pose import estimate_poses
from .video import iter_frames, probe_video

FORMAT_VERSION = 1
MIN_SECONDS = 10.0
VALIDATION_FRACTION = 1 / 11


LANDMARKERS = {"mediapipe": "mediapipe-face-mesh-478", "face-alignment": "face-alignment-3d-68"}


class PreprocessError(ValueError):
    """Input that cannot become a dataset (the message names the cause or the frame)."""


@dataclass
class PreprocessConfig:
    size: int = 512
    landmarker: str = "mediapipe"        # or "face-alignment" (68 points, weights downloaded)
    mirror_landmarks: bool = True        # mediapipe: average with the mirrored frame's reading
    focal: str | float = "prior"         # see preprocess.pose: "prior", "search" or pixels
    audio_features: tuple[str, ...] = ("mel",)
    track_max_side: int = 720            # pass 1 decodes at most this many pixels wide/high
    jpeg_quality: int = 95
    max_gap_s: float = 0.5
    min_seconds: float = MIN_SECONDS
    models: dict = field(default_factory=dict)   # extractor -> model id or folder


PLATE_MAX_PERSON = 0.1                   # selfie-segmentation probability
PLATE_ERODE = np.ones((7, 7), np.uint8)  # keep the plate 3 px clear of the person


def _head_split(labels: np.ndarray, person: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """Person pixels not covered by face regions: above the jaw line = head, below = torso.

    labels [H, W] uint8, person [H, W] bool, jaw [17, 2] the jaw contour in pixels (ear to ear
    via the chin). The neck and the collar go to the torso: the torso comes from the training
    frames (replayed with their poses at inference), so the Gaussians end at the jaw, where the
    face region ends too, and no seam crosses the neck. Beyond the ears the line is level.
    """
    out = labels.copy()
    rest = person & (labels == 0)
    order = np.argsort(jaw[:, 0])
    cols = np.arange(labels.shape[1]) + 0.5
    line = np.interp(cols, jaw[order, 0], jaw[order, 1])           # [W]
    above = (np.arange(labels.shape[0]) + 0.5)[:, None] < line[None]
    out[rest & above] = LABEL_HEAD
    out[rest & ~above] = LABEL_TORSO
    return out


def preprocess(video: str | os.PathLike, out_dir: str | os.PathLike,
               cfg: PreprocessConfig = PreprocessConfig(), force: bool = False,
               progress: bool = True) -> Path:
    video, out = Path(video), Path(out_dir)
    info, fa_model = _check_inputs(video, out, cfg, force)
    timings = {}
    start = time.perf_counter()
    points, track = _track_landmarks(video, info, cfg, fa_model, progress)
    F = len(points)
    timings["landmarks_s"] = time.perf_counter() - start

    scheme = scheme_for(points)
    crop = portrait_crop(points)
    pts = crop_points(points, crop, cfg.size)
    poses = estimate_poses(pts, cfg.size, cfg.size, focal=cfg.focal)
    expression = normalise_expression(raw_expression(pts))

    with atomic_directory(out) as tmp:
        t2 = time.perf_counter()
        _write_frames_and_plate(tmp, video, info, crop, pts, scheme, cfg, progress)
        timings["frames_s"] = time.perf_counter() - t2

        audio = read_audio(video)
        audio = np.pad(audio, (0, max(0, F * AUDIO_RATE // FPS - len(audio))))
        audio = audio[: F * AUDIO_RATE // FPS]
        write_wav(tmp / "audio.wav", audio)
        t3 = time.perf_counter()
        for name in cfg.audio_features:
            cached_features(tmp / "features", audio, name, cfg.models.get(name))
        timings["audio_features_s"] = time.perf_counter() - t3

        np.save(tmp / "landmarks.npy", pts.astype(np.float32))
        np.save(tmp / "expression.npy", expression)
        np.savez(tmp / "cameras.npz", R=poses.R.astype(np.float32),
                 t=poses.t.astype(np.float32), K=poses.K.astype(np.float32),
                 canonical=poses.canonical.astype(np.float32),
                 reprojection_px=poses.reprojection_px.astype(np.float32))
        timings["total_s"] = time.perf_counter() - start
        manifest = _manifest(video, info, cfg, F, crop, scheme, poses, track, timings)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _check_inputs(video: Path, out: Path, cfg: PreprocessConfig, force: bool):
    """(the video's info, the face-alignment model or None), or PreprocessError before any
    work: a taken output folder, a bad size, a missing model, no sound, too short."""
    if out.exists() and not force:
        raise PreprocessError(f"{out} already exists; choose another --out or pass --force")
    if why := size_problem(cfg.size):
        raise PreprocessError(f"--size: {why}")
    if cfg.landmarker not in LANDMARKERS:
        raise PreprocessError(f"unknown landmarker {cfg.landmarker!r}; choose from "
                              f"{', '.join(LANDMARKERS)}")
    for name in cfg.audio_features:      # fail before any work if a model is missing
        try:
            load_extractor(name, cfg.models.get(name))
        except AudioFeatureError as exc:
            raise PreprocessError(str(exc)) from exc
    fa_model = None
    if cfg.landmarker == "face-alignment":   # fail before any work if it cannot run
        from .fan import LandmarkerUnavailable, load_face_alignment
        try:
            fa_model = load_face_alignment()
        except LandmarkerUnavailable as exc:
            raise PreprocessError(str(exc)) from exc
    try:
        info = probe_video(video)
    except MediaError as exc:
        raise PreprocessError(str(exc)) from exc
    if not info.has_audio:
        raise PreprocessError(f"{video} has no audio track; the talking head is driven by "
                              "the speech, so the clip needs its sound")
    if info.duration < cfg.min_seconds:
        raise PreprocessError(f"{video} lasts {info.duration:.1f} s; at least "
                              f"{cfg.min_seconds:.0f} s of talking are needed (minutes work "
                              "best)")
    return info, fa_model


def _track_landmarks(video: Path, info, cfg: PreprocessConfig, fa_model, progress: bool):
    """Pass 1: (smoothed landmarks [F, P, 3] in source pixels, the track with its gaps), on
    the (downscaled) whole frame. Sources larger than track_max_side are letterboxed to a
    square and scaled down, so coordinates map back by one scale and offset."""
    from tqdm import tqdm

    big = max(info.width, info.height)
    downscale = big > cfg.track_max_side
    ox, oy = (info.width - big) // 2, (info.height - big) // 2
    frames = (iter_frames(video, info, crop=(ox, oy, big), size=cfg.track_max_side)
              if downscale else iter_frames(video, info))
    bar = tqdm(total=info.frames_at_25, unit="frame", desc="landmarks", disable=not progress)
    if fa_model is not None:
        from .fan import track_faces_fa
        track = track_faces_fa(frames, FPS, cfg.max_gap_s, progress=bar, model=fa_model)
    else:
        track = track_faces(frames, FPS, cfg.max_gap_s, progress=bar,
                            mirror=cfg.mirror_landmarks)
    bar.close()
    points = track.points.astype(np.float64)
    if downscale:
        s = big / cfg.track_max_side
        points[..., :2] = points[..., :2] * s + np.array([ox, oy])
        points[..., 2] *= s
    return smooth_landmarks(points).astype(np.float64), track


def _write_frames_and_plate(tmp: Path, video: Path, info, crop, pts: np.ndarray, scheme,
                            cfg: PreprocessConfig, progress: bool) -> None:
    """Pass 2: the cropped frames, their label maps and the background plate into ``tmp``."""
    import cv2
    import imageio.v3 as iio
    import mediapipe as mp
    from tqdm import tqdm

    F = len(pts)
    (tmp / "frames").mkdir()
    (tmp / "labels").mkdir()
    masker = make_masker(np.median(pts, axis=0))
    # Crop pixels outside the source frame (padded black) are never person or head.
    src = crop[0] + (np.arange(cfg.size) + 0.5) * crop[2] / cfg.size, \
        crop[1] + (np.arange(cfg.size) + 0.5) * crop[2] / cfg.size
    inside = ((src[1] >= 0) & (src[1] < info.height))[:, None] & \
        ((src[0] >= 0) & (src[0] < info.width))[None]
    bg_sum = np.zeros((cfg.size, cfg.size, 3), np.float64)
    bg_count = np.zeros((cfg.size, cfg.size), np.float64)
    bar = tqdm(total=F, unit="frame", desc="frames", disable=not progress)
    n = 0
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        for i, frame in enumerate(iter_frames(video, info, crop=crop, size=cfg.size)):
            if i >= F:
                break
            prob = seg.process(frame).segmentation_mask
            person = (prob > 0.5) & inside
            labels = masker(pts[i], cfg.size, cfg.size)
            labels = _head_split(labels, person, pts[i, list(scheme.jaw), :2])
            labels[~inside] = 0
            iio.imwrite(tmp / "frames" / f"{i:06d}.jpg", frame, quality=cfg.jpeg_quality)
            iio.imwrite(tmp / "labels" / f"{i:06d}.png", labels)
            # The plate takes only confident background, away from the person's edge.
            free = cv2.erode(((prob < PLATE_MAX_PERSON) & (labels == 0)).astype(np.uint8),
                             PLATE_ERODE) > 0
            bg_sum[free] += frame[free]
            bg_count[free] += 1
            n += 1
            bar.update(1)
    bar.close()
    if n < F:
        raise PreprocessError(f"{video}: the second pass read {n} frames, the first {F}; "
                              "the file may be damaged")
    seen = bg_count > 0
    plate = np.zeros_like(bg_sum)
    plate[seen] = bg_sum[seen] / bg_count[seen, None]
    plate = plate.clip(0, 255).astype(np.uint8)
    if (~seen).any():   # never-seen background (behind the person): inpaint it
        plate = cv2.inpaint(plate, (~seen).astype(np.uint8), 5, cv2.INPAINT_TELEA)
    iio.imwrite(tmp / "background.png", plate)


def _manifest(video: Path, info, cfg: PreprocessConfig, F: int, crop, scheme, poses, track,
              timings: dict) -> dict:
    """manifest.json: what the dataset holds and how it was made."""
    n_val = max(1, int(round(F * VALIDATION_FRACTION)))
    return {
        "format_version": FORMAT_VERSION,
        "source": {"path": str(video), "sha256": sha256(video), "width": info.width,
                   "height": info.height, "fps": info.fps, "duration_s": info.duration},
        "frames": F, "fps": FPS, "size": cfg.size,
        "crop": {"x0": crop[0], "y0": crop[1], "side": crop[2]},
        "landmarker": LANDMARKERS[cfg.landmarker],
        "landmark_scheme": scheme.name,
        "focal": {"px": float(poses.K[0, 0]), "source": poses.focal_source},
        "interpolated_gaps": [[a, b] for a, b in track.gaps],
        "split": {"train": [0, F - n_val], "validation": [F - n_val, F]},
        "audio": {"file": "audio.wav", "rate": AUDIO_RATE,
                  "features": {name: f"features/{name}.npy" for name in cfg.audio_features}},
        "expression": list(EXPRESSION_NAMES),
        "labels": {"0": "background", "1": "face", "2": "eyes", "3": "mouth",
                   "4": "head (hair, ears, neck above the chin)", "6": "torso"},
        "camera": "OpenCV; world = canonical head space; X_cam = R X + t; K of the crop",
        "config": asdict(cfg),
        "versions": _versions(),
        "timings": timings,
    }


def _versions() -> dict:
    import importlib.metadata as md

    out = {"fg3dgs": __version__}
    for pkg in ("mediapipe", "numpy", "torch", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
