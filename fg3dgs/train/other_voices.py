"""Speech in voices the identity never heard, for the lip-sync refinement (HRPA).

The sync expert's term needs no ground-truth frame: any speech can drive the mouth while the
expert judges whether the rendered mouth moves with it. Refining on the clip's own voice alone
tunes the mouth to that voice; a bank of other voices (eSpeak NG's voices, accents and
languages over wide rates and pitches, half of them through the timing-preserving
augmentations of :mod:`fg3dgs.frontend.augment`) makes the refinement hold for speech from
outside. The voices are those the speech front-end trains on: its held-out voice variants
and the lip-sync benchmark's stay unheard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sync.expert import T_FRAMES


@dataclass
class Utterance:
    """One utterance: the identity's audio features [T, D] (50 Hz) and the sync expert's
    mel [M, 80]; ``frames`` video frames long."""

    features: np.ndarray
    mel: np.ndarray
    frames: int


def make_other_voices(minutes: float, features: str, seed: int, model_id: str | None = None,
                      augmented: float = 0.5, progress: bool = True) -> list[Utterance]:
    """About ``minutes`` of eSpeak speech in the speech front-end's training voices as the
    identity's ``features`` (a share ``augmented`` of the utterances augmented first) and
    the expert's mel of the clean speech. Utterances shorter than the expert's window are
    left out."""
    from ..audio_features import extract
    from ..frontend.augment import augment
    from ..frontend.train import make_material
    from ..sync.audio import sync_mel
    from .audio_variants import features_of_augmented

    rng = np.random.default_rng(seed)
    out = []
    material = make_material(minutes, held_out=False, seed=seed, progress=progress)
    for audio, _ in material:
        if rng.random() < augmented:        # the identity hears it augmented; the expert
            other = material[int(rng.integers(len(material)))][0]   # judges the clean one
            x, alpha = augment(audio, rng, other=other)
            feats = features_of_augmented(x, alpha, features, model_id)
        else:
            feats = extract(audio, features, model_id)
        n = (len(feats) + 1) // 2
        if n >= T_FRAMES:
            out.append(Utterance(np.asarray(feats, np.float32), sync_mel(audio), n))
    if not out:
        raise ValueError(f"{minutes} minutes of other voices gave no utterance of "
                         f"{T_FRAMES} frames or more")
    return out


def draw_window(bank: list[Utterance], rng: np.random.Generator) -> tuple[Utterance, int]:
    """A random utterance (by length) and the first of T_FRAMES consecutive video frames in
    it."""
    sizes = np.array([u.frames - T_FRAMES + 1 for u in bank], np.float64)
    u = bank[int(rng.choice(len(bank), p=sizes / sizes.sum()))]
    return u, int(rng.integers(0, u.frames - T_FRAMES + 1))
