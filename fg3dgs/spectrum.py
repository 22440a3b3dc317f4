"""Short-time spectra and mel filter banks in plain NumPy, as librosa computes them.

Written out because importing librosa (scipy.signal, scipy.stats) takes 2-4 s, most of a
command's start-up, for two small functions; the tests check both against librosa
(``stft(center=True, pad_mode="constant", window="hann")`` and ``filters.mel`` with Slaney
scale and norm). Each STFT frame is transformed on its own, so a frame's values never depend
on how many frames are computed with it.
"""

from __future__ import annotations

import functools

import numpy as np


def stft_magnitude(y: np.ndarray, n_fft: int, hop: int, win_length: int | None = None,
                   power: float = 1.0) -> np.ndarray:
    """|STFT|^power [n_fft // 2 + 1, 1 + len(y) // hop] of samples [S]: frames centred on
    t * hop (zero padding of n_fft // 2 at both ends), a periodic Hann window of
    ``win_length`` samples centred in each n_fft frame. Computed in y's precision
    (float32 in, float32 out)."""
    win_length = win_length or n_fft
    dtype = np.float32 if y.dtype == np.float32 else np.float64
    n = np.arange(win_length)
    window = np.zeros(n_fft, dtype)
    lead = (n_fft - win_length) // 2
    window[lead:lead + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)
    padded = np.pad(np.asarray(y, dtype), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]   # [T, n_fft]
    spec = np.fft.rfft(frames * window, axis=1).T                            # [F, T]
    mag = (spec.real ** 2 + spec.imag ** 2).astype(dtype)
    return mag if power == 2.0 else mag ** np.asarray(power / 2, dtype)


def warp_frequency(spec: np.ndarray, alpha: float) -> np.ndarray:
    """Spectrogram [F, T] with its frequency axis scaled by ``alpha`` (> 1 moves formants
    up, as a shorter vocal tract does): warped bin f shows the original f / alpha, linearly
    interpolated; bins beyond the original's top are 0. alpha = 1 returns ``spec``."""
    if alpha == 1.0:
        return spec
    F = spec.shape[0]
    src = np.arange(F) / alpha
    lo = np.clip(np.floor(src).astype(int), 0, F - 1)
    hi = np.clip(lo + 1, 0, F - 1)
    frac = (src - lo)[:, None].astype(spec.dtype)
    out = (1 - frac) * spec[lo] + frac * spec[hi]
    out[src > F - 1] = 0.0
    return out


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, 3.0 * f / 200.0)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)),
                    200.0 * m / 3.0)


@functools.cache
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 triangular mel filters on Slaney's scale, each
    scaled to unit area (2 / bandwidth in Hz): librosa.filters.mel's defaults. Read-only."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights
