"""Head motion and blinks of the synthetic subject (smooth, random, seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .speech import Phoneme


@dataclass(frozen=True)
class MotionConfig:
    yaw_deg: float = 3.0           # amplitude of the slow random rotation per axis
    pitch_deg: float = 2.0
    roll_deg: float = 1.5
    shift_m: float = 0.003         # amplitude of the slow random translation (x, y)
    depth_m: float = 0.005         # ... and along the viewing axis
    nod_deg: float = 1.6           # pitch added on each stressed vowel while speaking
    blink_gap: tuple[float, float] = (2.0, 6.0)    # s between blinks
    blink_close: float = 0.05      # s lids take to close, stay shut, reopen
    blink_hold: float = 0.02
    blink_open: float = 0.08
    neck_pivot: tuple[float, float, float] = (0.0, 0.09, 0.02)   # head space, m


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Sum of three slow sinusoids (0.06-0.35 Hz) with random phases, peak ~ amplitude."""
    out = np.zeros_like(t)
    for _ in range(3):
        f = rng.uniform(0.06, 0.35)
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 2.0


def rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """[F, 3, 3] rotations from angles in degrees (yaw about y, pitch about x, roll about z;
    OpenCV axes), applied as R = Ry @ Rx @ Rz."""
    y, p, r = (np.radians(a) for a in (yaw, pitch, roll))
    F = len(y)
    Ry = np.zeros((F, 3, 3))
    Ry[:, 0, 0] = np.cos(y)
    Ry[:, 0, 2] = np.sin(y)
    Ry[:, 1, 1] = 1
    Ry[:, 2, 0] = -np.sin(y)
    Ry[:, 2, 2] = np.cos(y)
    Rx = np.zeros((F, 3, 3))
    Rx[:, 0, 0] = 1
    Rx[:, 1, 1] = np.cos(p)
    Rx[:, 1, 2] = -np.sin(p)
    Rx[:, 2, 1] = np.sin(p)
    Rx[:, 2, 2] = np.cos(p)
    Rz = np.zeros((F, 3, 3))
    Rz[:, 0, 0] = np.cos(r)
    Rz[:, 0, 1] = -np.sin(r)
    Rz[:, 1, 0] = np.sin(r)
    Rz[:, 1, 1] = np.cos(r)
    Rz[:, 2, 2] = 1
    return Ry @ Rx @ Rz


def head_motion(times: np.ndarray, phonemes: list[Phoneme], seed: int,
                head_centre: np.ndarray, cfg: MotionConfig = MotionConfig()):
    """Head pose per frame: X_camera = R @ X_head + t.

    Returns R [F, 3, 3], t [F, 3] and the angles [F, 3] (yaw, pitch, roll in degrees).
    """
    rng = np.random.default_rng([seed, 1])
    yaw = _smooth_noise(rng, times, cfg.yaw_deg)
    pitch = _smooth_noise(rng, times, cfg.pitch_deg)
    roll = _smooth_noise(rng, times, cfg.roll_deg)
    nod = np.zeros_like(times)
    for p in phonemes:
        if p.stressed:
            nod += np.exp(-0.5 * ((times - p.start - 0.08) / 0.12) ** 2)
    pitch = pitch + cfg.nod_deg * np.minimum(nod, 1.5)
    shift = np.stack([_smooth_noise(rng, times, cfg.shift_m),
                      _smooth_noise(rng, times, cfg.shift_m),
                      _smooth_noise(rng, times, cfg.depth_m)], axis=-1)
    R = rotation(yaw, pitch, roll)
    pivot = np.asarray(cfg.neck_pivot)
    t = pivot[None] - R @ pivot + np.asarray(head_centre)[None] + shift
    return R, t, np.stack([yaw, pitch, roll], axis=-1)


def blink_track(times: np.ndarray, seed: int, cfg: MotionConfig = MotionConfig()):
    """Eye openness [F] in [0, 1] (both eyes blink together) and the blink start times."""
    rng = np.random.default_rng([seed, 2])
    starts = []
    t = rng.uniform(0.8, 2.5)
    end = float(times.max(initial=0.0))
    while t < end:
        starts.append(t)
        t += rng.uniform(*cfg.blink_gap)
    openness = np.ones_like(times)
    c, h, o = cfg.blink_close, cfg.blink_hold, cfg.blink_open
    for s in starts:
        d = times - s
        closing = (d >= 0) & (d < c)
        shut = (d >= c) & (d < c + h)
        opening = (d >= c + h) & (d < c + h + o)
        openness[closing] = np.minimum(openness[closing], 1 - d[closing] / c)
        openness[shut] = 0.0
        openness[opening] = np.minimum(openness[opening], (d[opening] - c - h) / o)
    return openness, np.array(starts)
