"""Generate a synthetic talking-head clip with ground truth (``fg3dgs synth``)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..facemesh import N_LANDMARKS, N_MESH_VERTICES
from ..io_utils import atomic_directory
from ..media import AUDIO_RATE, FPS, write_video, write_wav
from ..options import size_problem
from . import corpus
from .face import Expression, FaceRig, build_rig
from .motion import MotionConfig, blink_track, head_motion
from .photo import PhotoError, detect_face, load_photo, person_mask
from .raster import downsample, downsample_labels, render
from .speech import Speech, SpeechError, Voice, synthesize, voice_for_seed
from .truth import encode_regions, save_truth
from .visemes import PARAMS, frame_times, viseme_track


class SynthError(ValueError):
    """Bad arguments for a synthetic clip (the message says what to change)."""


@dataclass
class SynthConfig:
    photo: str = "builtin:astronaut"
    text: str | None = None           # exact text to speak; else corpus sentences
    sentences: int | None = None      # number of corpus sentences
    seconds: float | None = None      # or: at least this much speech (whole sentences)
    voice: str | None = None          # "en-us", "en-gb+f3", ...; None: drawn from the seed
    size: int = 512
    seed: int = 0
    background: str = "blur"          # blur | photo | plain
    supersample: int = 2
    framing: float = 2.1              # crop side in face heights (forehead to chin)


def speak(cfg: SynthConfig) -> Speech:
    """Synthesise the clip's speech: the given text, N corpus sentences, or whole corpus
    sentences until at least ``seconds`` of speech."""
    voice = Voice.parse(cfg.voice) if cfg.voice else voice_for_seed(cfg.seed)
    if cfg.voice:
        v = voice_for_seed(cfg.seed)   # keep the seed's rate and pitch for a named voice
        voice = Voice(voice.name, voice.variant, v.rate, v.pitch, v.pitch_range)
    if cfg.text is not None:
        if not cfg.text.strip():
            raise SynthError("the text is empty; give some words, or --sentences N")
        return synthesize(cfg.text.strip(), voice)
    if cfg.sentences is not None:
        if cfg.sentences < 1:
            raise SynthError(f"--sentences must be at least 1, got {cfg.sentences}")
        return synthesize(" ".join(corpus.pick_sentences(cfg.sentences, cfg.seed)), voice)
    seconds = 10.0 if cfg.seconds is None else cfg.seconds
    if seconds <= 0:
        raise SynthError(f"--seconds must be positive, got {seconds}")
    # Start from about 2.3 words per second, then use the measured rate to top up.
    sentences = corpus.pick_sentences(max(1, int(seconds)), cfg.seed)
    words = np.cumsum([len(x.split()) for x in sentences])
    n = int(np.searchsorted(words, seconds * 2.3)) + 1
    speech = synthesize(" ".join(sentences[:n]), voice)
    for _ in range(5):
        if speech.duration >= seconds:
            break
        rate = words[n - 1] / speech.duration                   # words per second
        need = words[n - 1] + 1.1 * rate * (seconds - speech.duration)
        if n >= len(sentences):
            sentences = corpus.pick_sentences(2 * len(sentences), cfg.seed)
            words = np.cumsum([len(x.split()) for x in sentences])
        n = max(n + 1, int(np.searchsorted(words, need)) + 1)
        speech = synthesize(" ".join(sentences[:n]), voice)
    return speech


def output_camera(rig: FaceRig, landmarks: np.ndarray, size: int, framing: float,
                  supersample: int = 1) -> np.ndarray:
    """Intrinsics [3, 3] of a square portrait crop of the photo camera, ``size`` pixels."""
    face_h = np.linalg.norm(landmarks[152, :2] - landmarks[10, :2])
    centre = landmarks[:468, :2].mean(0) + np.array([0.0, 0.18 * face_h])
    side = framing * face_h
    s = size * supersample / side
    K = rig.K_photo
    return np.array([[K[0, 0] * s, 0, (K[0, 2] - (centre[0] - side / 2)) * s],
                     [0, K[1, 1] * s, (K[1, 2] - (centre[1] - side / 2)) * s],
                     [0, 0, 1.0]])


def project(K: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """[V, 3] camera-space points -> [V, 2] pixels."""
    return cam[:, :2] / cam[:, 2:3] * K[[0, 1], [0, 1]] + K[[0, 1], [2, 2]]


def render_frame(rig: FaceRig, head_space: np.ndarray, R: np.ndarray, t: np.ndarray,
                 K_ss: np.ndarray, size: int, ss: int, background: np.ndarray):
    """One frame: (RGB uint8 [size, size, 3], labels [size, size], camera-space vertices)."""
    cam = rig.pose(head_space, R, t)
    xy = project(K_ss, cam)
    rgb, _, lab = render(xy, cam[:, 2] + rig.depth_bias, rig.tris, rig.uv, rig.colors,
                         rig.textured, rig.labels, rig.texture, size * ss, size * ss,
                         background)
    image = (np.clip(downsample(rgb, ss), 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, downsample_labels(lab, ss), cam


@dataclass
class AnimationTracks:
    """Per-frame drive of a clip: visemes [N, 4], head rotation R [N, 3, 3] and translation
    t [N, 3] (camera space), head angles [N, 3] (degrees), eye openness [N], blink starts."""

    visemes: np.ndarray
    R: np.ndarray
    t: np.ndarray
    angles: np.ndarray
    openness: np.ndarray
    blinks: np.ndarray


def animation_tracks(rig: FaceRig, speech: Speech, n: int, seed: int,
                     motion: MotionConfig = MotionConfig()) -> AnimationTracks:
    """Mouth, head and eyelid tracks of ``n`` frames that follow ``speech``."""
    times = frame_times(n, FPS)
    R, t, angles = head_motion(times, speech.phonemes, seed, rig.head_centre, motion)
    openness, blinks = blink_track(times, seed)
    return AnimationTracks(viseme_track(speech.phonemes, times), R, t, angles, openness,
                           blinks)


def background_colour(rig: FaceRig) -> np.ndarray:
    """[3] the colour drawn where no mesh covers the frame: the texture's mean corner."""
    return np.asarray(rig.texture[[0, -1]][:, [0, -1]].reshape(-1, 3).mean(0))


def animate(rig: FaceRig, tracks: AnimationTracks, K_ss: np.ndarray, size: int, ss: int,
            background: np.ndarray):
    """Yield (image, labels, camera-space vertices, head-space vertices) per frame."""
    for i in range(len(tracks.visemes)):
        e = Expression(*(float(v) for v in tracks.visemes[i]),
                       eye_open=(tracks.openness[i],) * 2)
        hs = rig.deform(e)
        image, lab, cam = render_frame(rig, hs, tracks.R[i], tracks.t[i], K_ss, size, ss,
                                       background)
        yield image, lab, cam, hs


def calibrate_registration(rig: FaceRig, K_out: np.ndarray, size: int, ss: int,
                           background: np.ndarray, iterations: int = 2) -> float:
    """Register the photo texture to the mesh as mediapipe sees it.

    The mesh vertices come from mediapipe's landmarks on the photo, but mediapipe does not
    place a landmark on exactly the same image feature at another scale and crop. Render the
    neutral face as the video will show it, detect its landmarks, and shift the texture
    coordinates of each landmark vertex so the feature mediapipe finds lands on the vertex;
    iris points (not drawn) move to where they are seen. Returns the remaining median
    distance in inter-ocular distances.
    """
    K_ss = K_out * np.array([[ss], [ss], [1]])
    scale = K_out[0, 0] / rig.K_photo[0, 0]          # output pixels per photo pixel
    residual = float("nan")
    for it in range(iterations + 1):
        image, _, cam = render_frame(rig, rig.rest, np.eye(3), rig.head_centre, K_ss, size,
                                     ss, background)
        try:
            seen = detect_face(image).points[:, :2]
        except PhotoError:
            break
        truth = project(K_out, cam[:N_LANDMARKS])
        iod = np.linalg.norm(truth[468] - truth[473])
        delta = seen - truth
        residual = float(np.median(np.linalg.norm(delta, axis=-1)) / iod)
        if it == iterations:
            break
        limit = 0.06 * iod
        norm = np.linalg.norm(delta, axis=-1, keepdims=True)
        delta = delta * np.minimum(1.0, limit / np.maximum(norm, 1e-9))
        rig.uv[:N_MESH_VERTICES] += delta[:N_MESH_VERTICES] / scale
        z = cam[N_MESH_VERTICES:N_LANDMARKS, 2:3]
        rig.rest[N_MESH_VERTICES:N_LANDMARKS, :2] += delta[N_MESH_VERTICES:] * z / K_out[0, 0]
    return residual


@dataclass
class PreparedClip:
    """Everything a clip's frames are drawn from (speech, rig, tracks, cameras)."""

    speech: Speech
    rig: FaceRig
    tracks: AnimationTracks
    frames: int
    K_ss: np.ndarray
    K_out: np.ndarray
    background: np.ndarray
    registration_error: float


def prepare(cfg: SynthConfig) -> PreparedClip:
    """Speak, build the rig and its tracks, and register the texture: the clip before any
    frame is drawn."""
    photo = load_photo(cfg.photo)
    face = detect_face(photo)
    try:
        speech = speak(cfg)
    except SpeechError as exc:
        raise SynthError(str(exc)) from exc
    mask = person_mask(photo) if cfg.background != "photo" else None
    rig = build_rig(photo, face, mask, cfg.background)
    n = max(1, math.ceil(speech.duration * FPS - 1e-9))
    tracks = animation_tracks(rig, speech, n, cfg.seed)
    ss = cfg.supersample
    K_ss = output_camera(rig, face.points, cfg.size, cfg.framing, ss)
    K_out = output_camera(rig, face.points, cfg.size, cfg.framing, 1)
    background = background_colour(rig)
    registration_error = calibrate_registration(rig, K_out, cfg.size, ss, background)
    return PreparedClip(speech, rig, tracks, n, K_ss, K_out, background, registration_error)


def render_frames(cfg: SynthConfig, indices) -> Iterator[np.ndarray]:
    """RGB frames [S, S, 3] uint8 of the clip ``cfg`` makes, only those of ``indices``
    (the same pixels as those frames of its video.mp4 before encoding)."""
    clip = prepare(cfg)
    tr = clip.tracks
    for i in indices:
        e = Expression(*(float(v) for v in tr.visemes[i]), eye_open=(tr.openness[i],) * 2)
        image, _, _ = render_frame(clip.rig, clip.rig.deform(e), tr.R[i], tr.t[i], clip.K_ss,
                                   cfg.size, cfg.supersample, clip.background)
        yield image


def generate(cfg: SynthConfig, out_dir: str | os.PathLike, force: bool = False,
             progress: bool = True) -> Path:
    """Write video.mp4, audio.wav, truth.npz and truth.json to ``out_dir``.

    Everything is written to a temporary folder beside ``out_dir`` and moved into place
    when complete; an existing ``out_dir`` is an error unless ``force``.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise SynthError(f"{out} already exists; choose another --out or pass --force")
    if why := size_problem(cfg.size):
        raise SynthError(f"--size: {why}")
    if cfg.background not in ("blur", "photo", "plain"):
        raise SynthError(f"--background must be blur, photo or plain, got {cfg.background}")

    # Everything that can fail on bad input happens before any file is written.
    clip = prepare(cfg)
    speech, rig, tracks, n = clip.speech, clip.rig, clip.tracks, clip.frames
    visemes, R, t, angles = tracks.visemes, tracks.R, tracks.t, tracks.angles
    blinks = tracks.blinks
    ss, K_ss, K_out, background = cfg.supersample, clip.K_ss, clip.K_out, clip.background
    audio = np.zeros(n * AUDIO_RATE // FPS, np.float32)
    audio[:len(speech.audio)] = speech.audio[:len(audio)]

    landmarks = np.zeros((n, N_LANDMARKS, 2), np.float32)
    eye_open = np.zeros((n, 2), np.float32)
    regions: list[bytes] = []

    registration_error = clip.registration_error

    def frames():
        from tqdm import tqdm

        bar = tqdm(total=n, unit="frame", desc="rendering", disable=not progress)
        for i, (image, lab, cam, hs) in enumerate(
                animate(rig, tracks, K_ss, cfg.size, ss, background)):
            landmarks[i] = project(K_out, cam[:N_LANDMARKS])
            eye_open[i] = rig.eye_openness(hs)
            regions.append(encode_regions(lab))
            bar.update(1)
            yield image
        bar.close()

    with atomic_directory(out) as tmp:
        write_video(tmp / "video.mp4", frames(), FPS, audio, AUDIO_RATE)
        write_wav(tmp / "audio.wav", audio, AUDIO_RATE)
        arrays = {
            "fps": np.array(FPS), "K": K_out, "R": R.astype(np.float32),
            "t": t.astype(np.float32), "head_angles": angles.astype(np.float32),
            "landmarks": landmarks, "landmarks_head": rig.rest[:N_LANDMARKS].astype(np.float32),
            "visemes": visemes, "viseme_names": np.array(PARAMS), "eye_open": eye_open,
            "blink_starts": blinks.astype(np.float32),
            "phonemes": np.array([p.symbol for p in speech.phonemes]),
            "phoneme_start": np.array([p.start for p in speech.phonemes]),
            "phoneme_end": np.array([p.end for p in speech.phonemes]),
            "phoneme_stressed": np.array([p.stressed for p in speech.phonemes]),
        }
        meta = {"generator": "fg3dgs synth", "config": asdict(cfg), "text": speech.text,
                "voice": asdict(speech.voice), "frames": n, "fps": FPS,
                "duration_s": n / FPS, "speech_s": speech.duration, "size": cfg.size,
                "audio_rate": AUDIO_RATE,
                "registration_error_iod": registration_error}
        save_truth(tmp, arrays, regions, (cfg.size, cfg.size), meta)
    return out
