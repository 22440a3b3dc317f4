"""Voice-varied copies of an identity's own audio features, for training.

The clip's speech goes through the timing-preserving augmentations of the speech front-end
(:mod:`fg3dgs.frontend.augment`: room, noise, the clip itself as babble, telephone band,
codecs, level, clipping, vocal-tract warp) and through the identity's feature extractor
again. Every copy keeps the clip's frame timing, so a training frame can be driven by any
copy: the mouth network learns from input that varies the way a user's recording does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio_features import extract
from ..frontend.augment import AugmentConfig, augment, log_mel_warped
from ..media import AUDIO_RATE


@dataclass(frozen=True)
class AudioVariantConfig:
    copies: int = 4          # augmented copies of the clip (the clean features stay copy 0)
    seed: int = 0


def features_of_augmented(audio: np.ndarray, alpha: float, name: str,
                          model_id: str | None = None) -> np.ndarray:
    """[T, D] features ``name`` of an augmented waveform whose spectrum is warped by
    ``alpha`` (the warp applies to the log-mel based extractors; the transformer models
    read the waveform)."""
    if name == "mel":
        return log_mel_warped(audio, alpha)
    if name == "artic":
        from ..frontend import articulation_of_mel

        return articulation_of_mel(log_mel_warped(audio, alpha), model_id)
    return extract(audio, name, model_id)


def augmented_feature_sets(audio: np.ndarray, clean: np.ndarray, name: str,
                           cfg: AudioVariantConfig, model_id: str | None = None,
                           aug: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """[1 + copies, T, D]: ``clean`` [T, D] followed by the features of ``copies`` augmented
    versions of ``audio`` [S] (16 kHz), each cut or edge-padded to T frames."""
    rng = np.random.default_rng(cfg.seed)
    T = len(clean)
    sets = [np.asarray(clean, np.float32)]
    for _ in range(cfg.copies):
        # babble of the same voice saying something else: the clip shifted by 3-20 s
        other = np.roll(audio, int(rng.integers(3 * AUDIO_RATE, 20 * AUDIO_RATE)))
        x, alpha = augment(audio, rng, aug, other=other)
        f = features_of_augmented(x, alpha, name, model_id).astype(np.float32)
        if len(f) < T:
            f = np.concatenate([f, np.repeat(f[-1:], T - len(f), 0)])
        sets.append(f[:T])
    return np.stack(sets)


def draw_variants(rng: np.random.Generator, n: int, copies: int, p: float) -> np.ndarray:
    """[n] int: 0 (the clean features) or, with probability ``p``, one of the copies
    1..copies (``copies`` >= 1)."""
    pick = rng.integers(1, copies + 1, n)
    return np.where(rng.random(n) < p, pick, 0)
