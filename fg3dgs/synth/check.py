"""Measure a synthetic clip against its truth (``fg3dgs synth-check DIR``).

mediapipe's face mesh runs on the rendered video (as an independent observer) and the
decoded MP4 audio is compared with the truth's phoneme times:

- detection rate: frames where a face is found;
- lip r: Pearson correlation of the measured inner-lip opening with the truth's jaw_open;
- landmark error: median distance of measured to true landmarks, over the inter-ocular
  distance;
- blinks: measured eye openness in the truth's blink frames relative to open frames, which
  must dip below the 5th percentile of the open frames (outside their normal variation);
- audio: speech onsets after pauses in the MP4's audio against the truth's phoneme starts,
  and the lag of the MP4 audio behind audio.wav.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..face_observer import eye_openness, lip_opening, track_video
from ..facemesh import LEFT_IRIS, RIGHT_IRIS
from ..media import AUDIO_RATE, read_audio
from .speech import PAUSE
from .truth import load_truth

# Thresholds a synthetic clip must meet to be usable as ground truth.
MIN_DETECTION = 0.99
MIN_LIP_R = 0.9
MAX_LANDMARK_ERROR = 0.02
MAX_AUDIO_ERROR_S = 0.020


@dataclass
class ClipCheck:
    frames: int
    detection_rate: float
    lip_r: float
    landmark_error: float            # median, in inter-ocular distances
    blink_frames: int
    blink_ratio: float               # measured openness in blink frames / open frames (<1)
    blink_floor: float               # 5th percentile of open frames / their median
    audio_onset_error_s: float       # worst |onset - phoneme start| after pauses
    audio_lag_s: float               # MP4 audio against audio.wav

    def passed(self) -> dict[str, bool]:
        checks = {
            "detection": self.detection_rate >= MIN_DETECTION,
            "lip_sync": self.lip_r >= MIN_LIP_R,
            "landmarks": self.landmark_error <= MAX_LANDMARK_ERROR,
            # A dip outside the normal variation of open eyes.
            "blinks": self.blink_frames == 0 or self.blink_ratio < self.blink_floor,
            "audio": max(self.audio_onset_error_s, abs(self.audio_lag_s)) <= MAX_AUDIO_ERROR_S,
        }
        return {k: bool(v) for k, v in checks.items()}

    def report(self) -> str:
        ok = self.passed()
        rows = [
            ("face found", f"{100 * self.detection_rate:.1f} % of {self.frames} frames",
             f">= {100 * MIN_DETECTION:.0f} %", ok["detection"]),
            ("inner-lip opening vs jaw_open", f"r = {self.lip_r:.3f}", f">= {MIN_LIP_R}",
             ok["lip_sync"]),
            ("landmark error (median)", f"{100 * self.landmark_error:.2f} % of IOD",
             f"<= {100 * MAX_LANDMARK_ERROR:.0f} %", ok["landmarks"]),
            ("eye openness in blinks", f"{self.blink_ratio:.2f} x open "
             f"({self.blink_frames} frames)", f"< {self.blink_floor:.2f}, open eyes' 5th "
             "percentile", ok["blinks"]),
            ("audio vs phoneme times", f"{1000 * self.audio_onset_error_s:.1f} ms worst, "
             f"lag {1000 * self.audio_lag_s:.1f} ms", f"<= {1000 * MAX_AUDIO_ERROR_S:.0f} ms",
             ok["audio"]),
        ]
        return "\n".join(f"{'PASS' if p else 'FAIL'}  {a:32s} {b:34s} (target {c})"
                         for a, b, c, p in rows)


def _audio_onsets(audio: np.ndarray, starts: np.ndarray, symbols: np.ndarray,
                  ends: np.ndarray, sr: int = AUDIO_RATE) -> float:
    """Worst |speech onset - phoneme start| after pauses longer than 80 ms."""
    env = np.sqrt(np.convolve(audio ** 2, np.ones(80) / 80, mode="same"))
    thresh = 0.02 * env.max()
    worst = 0.0
    for i in range(len(symbols) - 1):
        if symbols[i] != PAUSE or ends[i] - starts[i] < 0.08:
            continue
        e = int(ends[i] * sr)
        lo = max(0, e - int(0.05 * sr))
        seg = env[lo:e + int(0.1 * sr)]
        if not (seg > thresh).any():
            continue
        onset = (lo + int(np.argmax(seg > thresh))) / sr
        worst = max(worst, abs(onset - starts[i + 1]))
    return worst


def check_clip(folder: str | Path) -> ClipCheck:
    folder = Path(folder)
    truth = load_truth(folder)
    a = truth.arrays
    measured = track_video(folder / "video.mp4")
    n = min(len(measured), truth.n_frames)
    measured, true_lm = measured[:n], a["landmarks"][:n].astype(np.float64)
    found = ~np.isnan(measured[:, 0, 0])
    iod = np.linalg.norm(true_lm[:, RIGHT_IRIS] - true_lm[:, LEFT_IRIS], axis=-1)
    err = np.linalg.norm(measured[found] - true_lm[found], axis=-1) / iod[found, None]
    lip = lip_opening(measured, iod)
    jaw = a["visemes"][:n, 0]
    lip_r = float(np.corrcoef(lip[found], jaw[found])[0, 1]) if found.sum() > 2 else 0.0
    eyes = eye_openness(measured)
    truth_open = a["eye_open"][:n].mean(1)
    blink = found & (truth_open < 0.3)
    opened = found & (truth_open > 0.95)
    open_median = np.median(eyes[opened])
    ratio = float(np.median(eyes[blink]) / open_median) if blink.any() else 1.0
    floor = float(np.percentile(eyes[opened], 5) / open_median)
    mp4_audio = read_audio(folder / "video.mp4")
    wav = read_audio(folder / "audio.wav")
    m = min(len(mp4_audio), len(wav))
    lag = _lag_fft(mp4_audio[:m], wav[:m])
    onset = _audio_onsets(mp4_audio, a["phoneme_start"], a["phonemes"], a["phoneme_end"])
    return ClipCheck(frames=n, detection_rate=float(found.mean()), lip_r=lip_r,
                     landmark_error=float(np.median(err)) if err.size else float("inf"),
                     blink_frames=int(blink.sum()), blink_ratio=ratio, blink_floor=floor,
                     audio_onset_error_s=onset, audio_lag_s=lag / AUDIO_RATE)


def _lag_fft(x: np.ndarray, y: np.ndarray) -> int:
    """Lag (samples) of x behind y by FFT cross-correlation."""
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    c = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(y, n)), n)
    k = int(np.argmax(c))
    return k if k < n // 2 else k - n


def as_dict(check: ClipCheck) -> dict:
    return {**asdict(check), "passed": check.passed()}
