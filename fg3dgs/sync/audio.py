"""The expert's audio front end: Wav2Lip's normalised log-mel spectrogram.

80 bands at 80 frames per second (16 kHz, 800-sample window, 200-sample hop, 55-7600 Hz,
pre-emphasis 0.97), in dB relative to 20 dB, floored at -100 dB and scaled to [-4, 4]. The
published expert was trained on exactly this, so ours uses it too and either loads into the
same pipeline. A window of 16 frames (0.2 s) starts at video frame i's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media import AUDIO_RATE, FPS
from ..spectrum import mel_filters, stft_magnitude, warp_frequency
from .expert import MEL_BANDS, MEL_STEPS


@dataclass(frozen=True)
class SyncMelConfig:
    n_fft: int = 800
    hop: int = 200
    fmin: float = 55.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    ref_db: float = 20.0
    min_db: float = -100.0
    max_abs: float = 4.0

    @property
    def rate(self) -> float:
        """Mel frames per second."""
        return AUDIO_RATE / self.hop


SILENCE = -4.0               # value of a silent band after normalisation


def sync_mel(audio: np.ndarray, cfg: SyncMelConfig = SyncMelConfig(),
             warp: float = 1.0) -> np.ndarray:
    """[S] float audio at 16 kHz -> [80, T] normalised log-mel, T = S // 200 + 1.
    ``warp`` scales the spectrum's frequency axis first (a vocal-tract length change, as
    the training augmentation draws it)."""
    x = np.asarray(audio, np.float64)
    y = x - cfg.preemphasis * np.concatenate([[0.0], x[:-1]])         # pre-emphasis filter
    spec = warp_frequency(stft_magnitude(y, cfg.n_fft, cfg.hop), warp)
    basis = mel_filters(AUDIO_RATE, cfg.n_fft, MEL_BANDS, cfg.fmin, cfg.fmax)
    floor = 10.0 ** (cfg.min_db / 20.0)
    db = 20.0 * np.log10(np.maximum(floor, basis @ spec)) - cfg.ref_db
    norm = 2 * cfg.max_abs * (db - cfg.min_db) / -cfg.min_db - cfg.max_abs
    return np.clip(norm, -cfg.max_abs, cfg.max_abs).astype(np.float32)


def mel_start(frame: int | np.ndarray, cfg: SyncMelConfig = SyncMelConfig()):
    """First mel frame of video frame ``frame``'s window."""
    return (np.asarray(frame) * cfg.rate / FPS).astype(np.int64)


def mel_windows(mel: np.ndarray, frames: np.ndarray,
                cfg: SyncMelConfig = SyncMelConfig()) -> np.ndarray:
    """[80, T] mel, [N] video frame indices (any integers) -> [N, 1, 80, 16] windows.

    Windows that reach before the start or past the end are padded with silence, so shifted
    audio (offset search) is defined for every frame.
    """
    starts = mel_start(np.asarray(frames), cfg)
    pad = MEL_STEPS + int(max(0, -starts.min(initial=0)))
    padded = np.pad(mel, ((0, 0), (pad, pad + max(0, int(starts.max(initial=0)) + MEL_STEPS
                                                     - mel.shape[1]))),
                    constant_values=SILENCE)
    idx = starts[:, None] + pad + np.arange(MEL_STEPS)[None]           # [N, 16]
    return padded[:, idx].transpose(1, 0, 2)[:, None].astype(np.float32)
