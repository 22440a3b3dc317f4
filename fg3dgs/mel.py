"""The project's log-mel features and their frame grid: 50 feature frames per second (two
per video frame), 80 mel bands of the STFT power, in plain NumPy (:mod:`fg3dgs.spectrum`).
The speech front-end reads them, and ``--audio-features mel`` drives identities with them
(:mod:`fg3dgs.audio_features`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .media import AUDIO_RATE
from .spectrum import mel_filters, stft_magnitude

RATE = 50                 # feature frames per second
HOP = AUDIO_RATE // RATE  # samples per feature frame (320 at 16 kHz)


@dataclass(frozen=True)
class MelConfig:
    n_mels: int = 80
    n_fft: int = 1024
    win_length: int = 800       # 50 ms
    fmin: float = 55.0
    fmax: float = 7600.0


def n_frames(num_samples: int) -> int:
    """Feature frames for an audio of ``num_samples`` samples at 16 kHz."""
    return int(np.ceil(num_samples / HOP))


def log_mel(audio: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """[T, 80] log-mel spectrogram (natural log of power, floor 1e-5), T = n_frames.

    Each feature frame depends only on its own samples, bit for bit: chunked extraction
    (streaming, long files) equals the whole clip's exactly. The STFT transforms each frame
    on its own; the mel projection adds each filter's bins in one fixed order, where a BLAS
    matrix product would round a frame differently by the number of frames beside it.
    """
    return log_mel_of_power(power_spectrogram(audio, cfg), cfg)


def power_spectrogram(audio: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """[F, T] STFT power of the feature frames (T = n_frames), F = n_fft / 2 + 1 bins."""
    T = n_frames(len(audio))
    return stft_magnitude(np.asarray(audio, np.float32), cfg.n_fft, HOP, cfg.win_length,
                          power=2.0)[:, :T]


def log_mel_of_power(power: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """[T, 80] log-mel of a power spectrogram [F, T] (see :func:`log_mel`)."""
    bins, weights = _mel_bands(cfg)                                          # [M, J] each
    mel = np.zeros((cfg.n_mels, power.shape[1]), np.float32)
    for j in range(bins.shape[1]):        # the j-th bin of every filter's band at once
        mel += weights[:, j, None] * power[bins[:, j]]
    return np.log(np.maximum(mel, 1e-5)).T.astype(np.float32)


@functools.cache
def _mel_bands(cfg: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The mel filters as their bands: bins [M, J] (int) and weights [M, J] (float32),
    filter m = sum_j weights[m, j] * power[bins[m, j]] (J: the widest band; zero weights
    pad the narrower ones)."""
    basis = mel_filters(AUDIO_RATE, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    nz = [np.flatnonzero(row) for row in basis]
    J = max(len(b) for b in nz)
    bins = np.zeros((len(basis), J), np.int64)
    weights = np.zeros((len(basis), J), np.float32)
    for m, b in enumerate(nz):
        bins[m, :len(b)] = b
        weights[m, :len(b)] = basis[m, b]
    return bins, weights
