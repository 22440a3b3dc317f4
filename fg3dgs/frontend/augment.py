"""Augmentations of 16 kHz speech that keep its timing, for training the speech front-end.

Waveform: level, DC offset, noise (white, pink, brown, or other speech) at 0-30 dB SNR,
reverberation (a synthetic room response whose direct sound comes first, so nothing moves in
time), telephone band-limiting (300-3400 Hz through an 8 kHz channel), lossy codecs (MP3,
Opus through ffmpeg, re-aligned by cross-correlation), clipping and, where asked for
(``p_eq``), the colour of a microphone and channel (a zero-phase equaliser: a spectral tilt,
peaks and dips, a low cut and a band limit) and, where asked for (``p_voice``), a less
regular voice (:func:`voice_quality`). Spectrum: vocal-tract
length warping of the STFT's frequency axis before the mel filters (formants move, timing
does not). eSpeak's own pitch and range parameters cover pitch.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np

from ..media import AUDIO_RATE
from ..mel import MelConfig, log_mel_of_power, power_spectrogram
from ..spectrum import warp_frequency


@dataclass(frozen=True)
class AugmentConfig:
    p_noise: float = 0.6
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_reverb: float = 0.4
    rt60_s: tuple[float, float] = (0.15, 0.9)
    p_telephone: float = 0.15
    p_codec: float = 0.2
    p_clip: float = 0.15
    gain_db: tuple[float, float] = (-24.0, 6.0)
    p_warp: float = 0.7
    warp: tuple[float, float] = (0.84, 1.2)
    p_eq: float = 0.0                       # 0: never drawn (the rest draws as without it)
    p_voice: float = 0.0                    # voice_quality; 0: never drawn, as p_eq
    tilt_db: tuple[float, float] = (-4.0, 3.0)      # per octave, about 1 kHz
    peak_db: float = 10.0                   # the peaks' and dips' largest gain


def log_mel_warped(audio: np.ndarray, alpha: float = 1.0,
                   cfg: MelConfig = MelConfig()) -> np.ndarray:
    """[T, 80] log-mel of ``audio`` with the spectrum's frequency axis scaled by ``alpha``
    (> 1 moves formants up, as a shorter vocal tract); alpha = 1 is
    :func:`fg3dgs.mel.log_mel`."""
    power = warp_frequency(power_spectrogram(audio, cfg), alpha)
    return log_mel_of_power(power, cfg)


def _coloured_noise(n: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    white = rng.normal(size=n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n, 1 / AUDIO_RATE), 20.0)
    spec /= f ** (0.5 if kind == "pink" else 1.0)
    return np.fft.irfft(spec, n)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator,
              other: np.ndarray | None = None) -> np.ndarray:
    """``audio`` plus noise (white / pink / brown, or ``other`` speech looped) at
    ``snr_db`` below the speech's power."""
    kinds = ["white", "pink", "brown"] + (["babble"] if other is not None and len(other) else [])
    kind = kinds[rng.integers(len(kinds))]
    if kind == "babble":
        noise = np.resize(other, len(audio)).astype(np.float64)
    else:
        noise = _coloured_noise(len(audio), rng, kind)
    p_s = np.mean(audio.astype(np.float64) ** 2) + 1e-12
    p_n = np.mean(noise ** 2) + 1e-12
    return (audio + noise * np.sqrt(p_s / p_n / 10 ** (snr_db / 10))).astype(np.float32)


def voice_quality(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A less regular voice than a synthesiser's: a slow frequency wobble (pitch and
    formants together, +-0.5-2.5 % at 3-9 Hz, so harmonics smear as in a real voice; the
    time axis moves by at most 1.3 ms) and breath noise (pink noise under the speech's own
    10 ms envelope, 6-24 dB below it, so it comes and goes with the voice)."""
    n = len(audio)
    t = np.arange(n, dtype=np.float64)
    depth, rate = rng.uniform(0.005, 0.025), rng.uniform(3.0, 9.0)
    w = 2 * np.pi * rate / AUDIO_RATE
    # read position t + (depth / w) sin(w t + phase): local speed 1 + depth cos(...)
    phase = rng.uniform(0, 2 * np.pi)
    pos = t + depth / w * (np.sin(w * t + phase) - np.sin(phase))
    x = np.interp(pos, t, audio.astype(np.float64))
    k = int(0.01 * AUDIO_RATE)
    env = np.sqrt(np.convolve(x ** 2, np.ones(k) / k, mode="same"))
    noise = _coloured_noise(n, rng, "pink")
    noise *= env / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
    x = x + noise * 10 ** (-rng.uniform(6.0, 24.0) / 20)
    return x.astype(np.float32)


def reverberate(audio: np.ndarray, rt60: float, rng: np.random.Generator,
                drr_db: float | None = None) -> np.ndarray:
    """Convolve with a synthetic room response: the direct sound at t = 0 (unit), then
    exponentially decaying noise from 2 ms on (-60 dB at ``rt60`` s), ``drr_db`` (default
    drawn from -3..10 dB, rooms to close microphones) under the direct sound's energy."""
    from scipy.signal import fftconvolve

    n = int(min(rt60, 1.2) * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * AUDIO_RATE)] = 0.0
    drr = rng.uniform(-3.0, 10.0) if drr_db is None else drr_db
    ir = tail * np.sqrt(10 ** (-drr / 10) / (np.sum(tail ** 2) + 1e-12))
    ir[0] = 1.0
    out = fftconvolve(audio, ir)[: len(audio)]
    return (out * np.sqrt(np.mean(audio ** 2) / (np.mean(out ** 2) + 1e-12))).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """300-3400 Hz through an 8 kHz channel and back to 16 kHz (zero-phase filters)."""
    from scipy.signal import butter, resample_poly, sosfiltfilt

    sos = butter(4, [300, 3400], btype="band", fs=AUDIO_RATE, output="sos")
    narrow = resample_poly(sosfiltfilt(sos, audio), 1, 2)
    return resample_poly(narrow, 2, 1)[: len(audio)].astype(np.float32)


def eq_gain_db(freqs: np.ndarray, tilt_db: float, peaks: list[tuple[float, float, float]],
               low_cut: float = 0.0, high_cut: float | None = None) -> np.ndarray:
    """The equaliser's gain in dB at ``freqs`` (Hz): ``tilt_db`` per octave about 1 kHz,
    ``peaks`` of (centre Hz, gain dB, width in octaves) as Gaussian bumps on the octave
    scale, and 12 dB per octave below ``low_cut`` and 24 above ``high_cut``."""
    octs = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    g = tilt_db * octs
    for centre, gain, width in peaks:
        g = g + gain * np.exp(-0.5 * ((octs - np.log2(centre / 1000.0)) / width) ** 2)
    if low_cut > 0:
        g = g - 12.0 * np.maximum(0.0, np.log2(low_cut / np.maximum(freqs, 1.0)))
    if high_cut:
        g = g - 24.0 * np.maximum(0.0, np.log2(np.maximum(freqs, 1.0) / high_cut))
    return g


def equalize(audio: np.ndarray, rng: np.random.Generator,
             cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """A random microphone and channel colour (:func:`eq_gain_db`: a tilt, up to three
    peaks or dips, a low cut at 50-300 Hz half the time, a band limit at 3.5-7 kHz a third
    of the time), applied as a real gain on the spectrum: zero phase, nothing moves in
    time. The level is kept."""
    x = audio.astype(np.float64)
    n = len(x)
    freqs = np.fft.rfftfreq(n, 1 / AUDIO_RATE)
    peaks = [(float(np.exp(rng.uniform(np.log(150), np.log(6000)))),
              float(rng.uniform(-cfg.peak_db, cfg.peak_db)), float(rng.uniform(0.3, 1.5)))
             for _ in range(rng.integers(0, 4))]
    low = float(rng.uniform(50, 300)) if rng.random() < 0.5 else 0.0
    high = float(rng.uniform(3500, 7000)) if rng.random() < 1 / 3 else None
    gain = 10 ** (eq_gain_db(freqs, float(rng.uniform(*cfg.tilt_db)), peaks, low, high) / 20)
    out = np.fft.irfft(np.fft.rfft(x) * gain, n)
    return (out * np.sqrt(np.mean(x ** 2) / (np.mean(out ** 2) + 1e-12))).astype(np.float32)


def codec(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Through MP3 (24-64 kbps) or Opus (12-32 kbps) and back, re-aligned to the input by
    cross-correlation (encoders pad the start)."""
    from ..media import ffmpeg_exe

    if rng.random() < 0.5:
        fmt, args = "mp3", ["-c:a", "libmp3lame", "-b:a", f"{rng.choice([24, 32, 48, 64])}k"]
    else:
        fmt, args = "ogg", ["-c:a", "libopus", "-b:a", f"{rng.choice([12, 16, 24, 32])}k"]
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    enc = subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "s16le", "-ar", str(AUDIO_RATE),
                          "-ac", "1", "-i", "-", *args, "-f", fmt, "-"],
                         input=pcm, capture_output=True, check=True).stdout
    dec = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", "-", "-f", "s16le", "-ac", "1",
                          "-ar", str(AUDIO_RATE), "-"], input=enc, capture_output=True,
                         check=True).stdout
    out = np.frombuffer(dec, np.int16).astype(np.float32) / 32768.0
    return _align(out, audio)


def _align(y: np.ndarray, x: np.ndarray, most: int = 4000) -> np.ndarray:
    """``y`` shifted (by at most ``most`` samples) to best match ``x``, cut to its length."""
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    cand = np.concatenate([c[:most + 1], c[-most:]])
    k = int(np.argmax(cand))
    lag = k if k <= most else k - len(cand)
    if lag > 0:
        y = y[lag:]
    elif lag < 0:
        y = np.concatenate([np.zeros(-lag, np.float32), y])
    out = np.zeros(len(x), np.float32)
    out[: min(len(x), len(y))] = y[: len(x)]
    return out


def augment(audio: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig(),
            other: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(augmented waveform [S], vocal-tract warp factor for :func:`log_mel_warped`)."""
    x = np.asarray(audio, np.float32)
    if cfg.p_voice and rng.random() < cfg.p_voice:
        x = voice_quality(x, rng)
    if rng.random() < cfg.p_reverb:
        x = reverberate(x, rng.uniform(*cfg.rt60_s), rng)
    if rng.random() < cfg.p_noise:
        x = add_noise(x, rng.uniform(*cfg.snr_db), rng, other)
    if cfg.p_eq and rng.random() < cfg.p_eq:
        x = equalize(x, rng, cfg)
    if rng.random() < cfg.p_telephone:
        x = telephone(x)
    peak = np.abs(x).max() + 1e-9
    x = x / peak * 10 ** (rng.uniform(*cfg.gain_db) / 20) * 0.9
    if rng.random() < cfg.p_codec:
        x = codec(x, rng)
    if rng.random() < cfg.p_clip:
        lim = rng.uniform(0.2, 0.8) * (np.abs(x).max() + 1e-9)
        x = np.clip(x, -lim, lim)
    x = x + rng.uniform(-0.02, 0.02)
    alpha = float(rng.uniform(*cfg.warp)) if rng.random() < cfg.p_warp else 1.0
    return x.astype(np.float32), alpha
