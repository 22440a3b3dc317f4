"""fg3dgs.spectrum against librosa, the reference it stands in for at start-up."""

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")

from fg3dgs.mel import MelConfig, log_mel, n_frames  # noqa: E402
from fg3dgs.spectrum import mel_filters, stft_magnitude  # noqa: E402
from fg3dgs.sync.audio import SyncMelConfig, sync_mel  # noqa: E402


def _speechlike(seconds=2.3, seed=0):
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    y = 0.3 * np.sin(2 * np.pi * (150 + 80 * np.sin(3 * t)) * t) * (0.5 + 0.5 * np.sin(5 * t))
    return (y + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 1024, 80, 55.0, 7600.0),
                                                        (16000, 800, 80, 55.0, 7600.0),
                                                        (22050, 512, 40, 0.0, 11025.0)])
def test_mel_filters_are_librosas(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filters(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    # both evaluate the same float64 formula, then round to float32: at most one rounding
    # of float32 apart (relative 2^-24 of the largest weight)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2.0 ** -23 * np.abs(ref).max())


@pytest.mark.parametrize("n_fft,hop,win", [(1024, 320, 800), (800, 200, 800)])
def test_stft_magnitude_is_librosas(n_fft, hop, win):
    y = _speechlike()
    ours = stft_magnitude(y, n_fft, hop, win)
    ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, center=True,
                              pad_mode="constant"))
    assert ours.shape == ref.shape
    # float32 FFTs of the same frames: sums of n_fft terms, so errors grow like
    # n_fft * 2^-24 of the frame's energy, far below a 1e-4 fraction of the largest bin
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * ref.max())


def test_log_mel_and_sync_mel_match_the_librosa_formulas():
    y = _speechlike()
    cfg = MelConfig()
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=cfg.n_fft, hop_length=320,
                                         win_length=cfg.win_length, n_mels=cfg.n_mels,
                                         fmin=cfg.fmin, fmax=cfg.fmax, center=True)
    ref = np.log(np.maximum(ref, 1e-5)).T[:n_frames(len(y))]
    # log of a relative error e is an absolute error e: float32 sums of ~35 products
    np.testing.assert_allclose(log_mel(y), ref, rtol=0, atol=1e-4)

    s = SyncMelConfig()
    pre = np.append(y[0], y[1:] - s.preemphasis * y[:-1]).astype(np.float64)
    spec = np.abs(librosa.stft(pre, n_fft=s.n_fft, hop_length=s.hop, win_length=s.n_fft))
    basis = librosa.filters.mel(sr=16000, n_fft=s.n_fft, n_mels=80, fmin=s.fmin, fmax=s.fmax)
    db = 20 * np.log10(np.maximum(10 ** (s.min_db / 20), basis @ spec)) - s.ref_db
    want = np.clip(2 * s.max_abs * (db - s.min_db) / -s.min_db - s.max_abs, -4, 4)
    np.testing.assert_allclose(sync_mel(y), want, rtol=0, atol=1e-4)


def test_a_frame_does_not_depend_on_its_neighbours():
    y = _speechlike(4.0)
    whole = log_mel(y)
    for k0, k1 in [(0, 7), (13, 77), (150, len(whole))]:
        a = max(0, k0 - 4)
        part = log_mel(y[a * 320:(k1 + 4) * 320 if k1 + 4 < len(whole) else len(y)])
        np.testing.assert_array_equal(part[k0 - a:k1 - a], whole[k0:k1])
