"""Phonemes to mouth motion: viseme targets and coarticulation.

Each phoneme has a mouth target over four parameters in [0, 1]:

- ``jaw_open``: 0 closed teeth, 1 wide open (open vowels);
- ``lip_spread``: lip corners pulled apart (spread vowels /i/);
- ``lip_round``: lips rounded and protruded (/u/, /w/, /o/);
- ``lip_closure``: 1 when the lips meet (bilabials /p b m/, and at rest), about 0.7 for the
  lower lip against the upper teeth (/f v/), 0 when they are apart.

Coarticulation follows Cohen and Massaro's dominance model: every phoneme's influence on a
parameter is full during the phoneme and falls off smoothly before it (anticipation) and
after it (release); the trajectory is the dominance-weighted mean of the targets, lightly
smoothed. The fall-off times give attacks and releases of about 40-80 ms. Bilabial closure
and silence dominate strongly so the lips really meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .speech import PAUSE, Phoneme

PARAMS = ("jaw_open", "lip_spread", "lip_round", "lip_closure")


@dataclass(frozen=True)
class MouthTarget:
    jaw_open: float = 0.0
    lip_spread: float = 0.0
    lip_round: float = 0.0
    lip_closure: float = 0.0
    # How strongly this phoneme holds its lips / its jaw against its neighbours (1 normal).
    lip_dominance: float = 1.0
    jaw_dominance: float = 1.0

    def vector(self) -> np.ndarray:
        return np.array([self.jaw_open, self.lip_spread, self.lip_round, self.lip_closure])


T = MouthTarget
# The jaw rises with the lips for /p b m/ and /f v/ (so jaw opening and lip opening agree).
JAW_DOM_BILABIAL = 4.0
JAW_DOM_LABIODENTAL = 2.5
REST = T(0.0, 0.0, 0.0, 1.0, lip_dominance=2.0)       # silence: closed, relaxed mouth

# Targets per IPA symbol as eSpeak NG reports them for English (stress marks removed).
_CONSONANTS = {
    # bilabials: lips closed, dominant (the closure must be reached)
    **dict.fromkeys(["p", "b", "m"], T(0.05, 0.0, 0.0, 1.0, lip_dominance=12.0,
                                       jaw_dominance=JAW_DOM_BILABIAL)),
    # labiodentals: lower lip to the upper teeth
    **dict.fromkeys(["f", "v"], T(0.12, 0.15, 0.0, 0.7, lip_dominance=4.0,
                                  jaw_dominance=JAW_DOM_LABIODENTAL)),
    # dentals: tongue between the teeth
    **dict.fromkeys(["θ", "ð"], T(0.22, 0.2, 0.0, 0.0)),
    # alveolars
    **dict.fromkeys(["t", "t̪", "d", "n", "s", "z", "ɾ", "ʔ"], T(0.16, 0.3, 0.0, 0.0, 0.5)),
    "l": T(0.25, 0.2, 0.0, 0.0, 0.5),
    # postalveolars: lips pushed forward
    **dict.fromkeys(["ʃ", "ʒ", "tʃ", "dʒ"], T(0.15, 0.0, 0.65, 0.0, 1.5)),
    # velars and glottal: whatever the neighbours do, jaw a little open
    **dict.fromkeys(["k", "g", "ɡ", "ŋ", "x"], T(0.25, 0.1, 0.0, 0.0, 0.4)),
    "h": T(0.3, 0.1, 0.0, 0.0, 0.2),
    **dict.fromkeys(["r", "ɹ", "ɹ-"], T(0.2, 0.0, 0.45, 0.0, 1.0)),
    **dict.fromkeys(["w", "ʍ"], T(0.1, 0.0, 0.95, 0.0, 3.0)),
    **dict.fromkeys(["j", "ʲ"], T(0.15, 0.55, 0.0, 0.0, 1.0)),
}
_VOWELS = {
    # open
    **dict.fromkeys(["ɑː", "ɑ", "a", "aː", "a:", "aa", "ɑːɹ", "ɐ"], T(0.95, 0.15, 0.0, 0.0)),
    "æ": T(0.8, 0.45, 0.0, 0.0),
    **dict.fromkeys(["ʌ", "ʌɹ"], T(0.65, 0.2, 0.0, 0.0)),
    **dict.fromkeys(["ɒ", "ɔ", "ɔː", "ɔːɹ"], T(0.7, 0.0, 0.6, 0.0, 1.5)),
    # mid
    **dict.fromkeys(["ɛ", "e", "eː", "ɛə", "ɛɹ", "eə"], T(0.5, 0.45, 0.0, 0.0)),
    **dict.fromkeys(["ə", "ɚ", "ɜː", "ɜ", "ɜːɹ", "əl", "əɹ", "ᵻ", "ɐː"],
                    T(0.35, 0.15, 0.1, 0.0, 0.6)),
    **dict.fromkeys(["o", "oː", "əʊ"], T(0.45, 0.0, 0.75, 0.0, 1.5)),
    # close
    **dict.fromkeys(["i", "iː", "iə", "ɪə"], T(0.15, 0.9, 0.0, 0.0, 1.5)),
    **dict.fromkeys(["ɪ", "ɪɹ"], T(0.25, 0.6, 0.0, 0.0)),
    **dict.fromkeys(["u", "uː", "ʊ", "ʊə", "ʊɹ", "ju", "juː", "ʉ", "ʉː", "ʉɹ"],
                    T(0.25, 0.0, 1.0, 0.0, 2.0)),
}
# Diphthongs: first half towards the first element, second half towards the second.
_DIPHTHONGS = {
    "aɪ": ("a", "ɪ"), "aʊ": ("a", "ʊ"), "eɪ": ("e", "ɪ"), "oʊ": ("o", "ʊ"),
    "ɔɪ": ("ɔ", "ɪ"), "aɪə": ("a", "ə"), "aʊə": ("a", "ə"), "iə": ("i", "ə"),
    # accents other than General American
    "ei": ("e", "ɪ"), "ʌʊ": ("ʌ", "ʊ"), "æʊ": ("æ", "ʊ"), "əu": ("ə", "ʊ"), "ʌʉ": ("ʌ", "ʊ"),
    "əɪ": ("ə", "ɪ"), "oɪ": ("o", "ɪ"), "aɪɚ": ("a", "ə"), "ɑə": ("ɑ", "ə"), "ɔə": ("ɔ", "ə"),
    "oə": ("o", "ə"),
}
TARGETS: dict[str, MouthTarget] = {PAUSE: REST, **_CONSONANTS, **_VOWELS}


@dataclass(frozen=True)
class Coarticulation:
    """Time constants (s) of the dominance functions and the final smoothing."""

    anticipation: float = 0.022     # influence reaching ahead of a phoneme
    release: float = 0.018          # influence lingering after it
    shape: float = 2.0              # exponent of the fall-off (2: Gaussian-like)
    smoothing: float = 0.010        # Gaussian sigma of the final smoothing
    rate: float = 200.0             # Hz of the internal trajectory


def target_for(symbol: str) -> MouthTarget:
    """Mouth target of one phoneme; unknown symbols fall back by their first character."""
    if symbol in TARGETS:
        return TARGETS[symbol]
    if symbol in _DIPHTHONGS:
        return TARGETS[_DIPHTHONGS[symbol][0]]
    for size in (2, 1):
        if symbol[:size] in TARGETS:
            return TARGETS[symbol[:size]]
    return MouthTarget(0.3, 0.2, 0.0, 0.0, 0.5)     # unknown: a neutral half-open mouth


def is_known(symbol: str) -> bool:
    return symbol in TARGETS or symbol in _DIPHTHONGS


def _segments(phonemes: list[Phoneme]):
    """(start, end, target) with diphthongs split in two halves."""
    out = []
    for p in phonemes:
        parts = _DIPHTHONGS.get(p.symbol)
        if parts and p.end - p.start > 0:
            mid = 0.5 * (p.start + p.end)
            out.append((p.start, mid, TARGETS[parts[0]]))
            out.append((mid, p.end, TARGETS[parts[1]]))
        else:
            out.append((p.start, p.end, target_for(p.symbol)))
    return out


def viseme_track(phonemes: list[Phoneme], times: np.ndarray,
                 params: Coarticulation = Coarticulation()) -> np.ndarray:
    """Mouth parameters at ``times`` (s).

    Args:
        phonemes: the utterance, in time order; silence is assumed before and after.
        times: [T] sample times in seconds.
    Returns:
        [T, 4] float32 in [0, 1], columns as in :data:`PARAMS`.
    """
    times = np.asarray(times, dtype=np.float64)
    segs = _segments(phonemes)
    if not segs:
        return np.tile(REST.vector().astype(np.float32), (len(times), 1))
    t_end = max(segs[-1][1], float(times.max(initial=0.0))) + 0.5
    grid = np.arange(-0.5, t_end, 1.0 / params.rate)
    # Silence around the utterance.
    segs = [(-1e9, segs[0][0], REST)] + segs + [(segs[-1][1], 1e9, REST)]
    num = np.zeros((len(grid), 4))
    den = np.zeros((len(grid), 4))
    for start, end, target in segs:
        before = np.clip(start - grid, 0, None)
        after = np.clip(grid - end, 0, None)
        d = np.exp(-(before / params.anticipation) ** params.shape
                   - (after / params.release) ** params.shape)
        w = np.array([target.jaw_dominance, target.lip_dominance, target.lip_dominance,
                      target.lip_dominance])
        dw = d[:, None] * w[None]
        num += dw * target.vector()[None]
        den += dw
    track = num / np.maximum(den, 1e-12)
    sigma = params.smoothing * params.rate
    radius = int(math.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(track, ((radius, radius), (0, 0)), mode="edge")
    track = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], 1)
    out = np.stack([np.interp(times, grid, track[:, k]) for k in range(4)], axis=1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def frame_times(n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Centre times (s) of video frames: frame i covers [i / fps, (i + 1) / fps)."""
    return (np.arange(n_frames) + 0.5) / fps
