"""What is not driven by the audio: per output frame, which replay frame gives the torso and
background (and, unless a pose track drives the head, the head pose), and the expression (eye
state, brow) fed to the expression encoder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media import FPS
from ..options import BLINKS, POSES

# a blink every 2-6 s, closing over 4 frames (160 ms): fraction of the way to shut
BLINK_EVERY_S = (2.0, 6.0)
BLINK_SHAPE = np.array([0.5, 1.0, 0.6, 0.2])


def pingpong(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frame numbers walking ``frames`` forward, back, forward... (replayed poses)."""
    frames = np.asarray(frames)
    cycle = np.concatenate([frames, frames[-2:0:-1]]) if len(frames) > 1 else frames
    return cycle[np.arange(n) % len(cycle)]


@dataclass
class MotionPlan:
    """replay [n] (row of the replay track per output frame: canvas, face box, and the pose
    unless R / t say otherwise), expression [n, E]; R [n, 3, 3], t [n, 3]: the head pose per
    frame where it is not the replay rows' own (a pose track, scaled motion)."""

    replay: np.ndarray
    expression: np.ndarray
    R: np.ndarray | None = None
    t: np.ndarray | None = None


def blink_curve(n: int, rng: np.random.Generator, fps: int = FPS) -> np.ndarray:
    """[n] in [0, 1]: how far the eyes are shut at each frame, blinks at random intervals."""
    out = np.zeros(n)
    t = rng.uniform(0.5, BLINK_EVERY_S[1]) * fps
    while t < n:
        i = int(t)
        k = min(len(BLINK_SHAPE), n - i)
        out[i:i + k] = np.maximum(out[i:i + k], BLINK_SHAPE[:k])
        t += rng.uniform(*BLINK_EVERY_S) * fps
    return out


def plan_motion(n: int, replay_len: int, track_expression: np.ndarray,
                replay_frames: np.ndarray, pose: str = "replay", blink: str = "replay",
                seed: int = 0) -> MotionPlan:
    """The plan for ``n`` output frames. ``track_expression`` [T, E] is the identity's
    per-frame expression (eyes in channels 0-1, 1 = open), ``replay_frames`` [R] the track
    frames of the replay rows."""
    if pose not in POSES:
        raise ValueError(f"pose must be one of {', '.join(POSES)}, got {pose!r}")
    if blink not in BLINKS:
        raise ValueError(f"blink must be one of {', '.join(BLINKS)}, got {blink!r}")
    walk = pingpong(np.arange(replay_len), n)
    rows = walk if pose == "replay" else np.zeros(n, np.int64)
    expr = np.asarray(track_expression, np.float32)[np.asarray(replay_frames)[walk]].copy()
    if blink == "auto":
        eyes = np.asarray(track_expression, np.float32)[:, :2]
        open_, shut = np.median(eyes, 0), np.percentile(eyes, 0.5, axis=0)
        c = blink_curve(n, np.random.default_rng(seed))[:, None]
        expr[:, :2] = open_ + c * (shut - open_)
    return MotionPlan(rows.astype(np.int64), expr)
