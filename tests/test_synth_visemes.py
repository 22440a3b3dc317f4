"""Viseme targets and coarticulation."""

import numpy as np
import pytest

from fg3dgs.synth.speech import Phoneme
from fg3dgs.synth.visemes import PARAMS, frame_times, target_for, viseme_track

JAW, SPREAD, ROUND, CLOSURE = range(4)


@pytest.mark.parametrize("symbol, check", [
    ("p", lambda v: v[CLOSURE] == 1 and v[JAW] < 0.1),
    ("m", lambda v: v[CLOSURE] == 1),
    ("f", lambda v: 0.5 < v[CLOSURE] < 0.9 and v[JAW] < 0.2),
    ("ɑː", lambda v: v[JAW] > 0.8 and v[CLOSURE] == 0),
    ("uː", lambda v: v[ROUND] > 0.8 and v[JAW] < 0.4),
    ("w", lambda v: v[ROUND] > 0.8),
    ("iː", lambda v: v[SPREAD] > 0.7 and v[ROUND] == 0),
    ("_", lambda v: v[CLOSURE] == 1 and v[JAW] == 0 and v[ROUND] == 0),
])
def test_targets(symbol, check):
    assert check(target_for(symbol).vector())


def _isolated(symbol, start=0.5, end=0.8):
    return [Phoneme("_", 0, start), Phoneme(symbol, start, end), Phoneme("_", end, 1.5)]


def test_attack_release_and_anticipation():
    t = np.arange(0, 1.5, 0.001)
    jaw = viseme_track(_isolated("ɑː"), t)[:, JAW]
    peak = jaw.max()
    rise10, rise90 = t[np.argmax(jaw > 0.1 * peak)], t[np.argmax(jaw > 0.9 * peak)]
    fall90 = t[len(t) - 1 - np.argmax(jaw[::-1] > 0.9 * peak)]
    fall10 = t[len(t) - 1 - np.argmax(jaw[::-1] > 0.1 * peak)]
    assert 0.04 <= rise90 - rise10 <= 0.08
    assert 0.04 <= fall10 - fall90 <= 0.08
    assert rise10 < 0.5                   # the mouth opens before the vowel starts
    assert peak > 0.9


def test_bilabial_closes_between_open_vowels():
    ph = [Phoneme("_", 0, 0.3), Phoneme("a", 0.3, 0.45), Phoneme("b", 0.45, 0.52),
          Phoneme("a", 0.52, 0.7), Phoneme("_", 0.7, 1.0)]
    tr = viseme_track(ph, np.array([0.38, 0.485, 0.61]))
    assert tr[1, CLOSURE] > 0.9 and tr[0, CLOSURE] < 0.3 and tr[2, CLOSURE] < 0.3
    assert tr[0, JAW] > 0.8 and tr[1, JAW] < tr[0, JAW]


def test_diphthong_glides_and_silence_rests():
    ph = _isolated("aɪ", 0.5, 0.9)
    tr = viseme_track(ph, np.array([0.58, 0.83, 1.4]))
    assert tr[0, JAW] > tr[1, JAW] + 0.3 and tr[1, SPREAD] > tr[0, SPREAD]
    assert np.allclose(tr[2], [0, 0, 0, 1], atol=1e-3)
    assert viseme_track([], np.array([0.1])).tolist() == [[0, 0, 0, 1]]


def test_track_shape_and_frame_times():
    times = frame_times(50)
    assert times[0] == pytest.approx(0.02) and times[-1] == pytest.approx(1.98)
    tr = viseme_track(_isolated("uː"), times)
    assert tr.shape == (50, len(PARAMS)) and tr.dtype == np.float32
    assert tr.min() >= 0 and tr.max() <= 1
