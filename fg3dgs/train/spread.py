"""Rescaling an audio encoder's driving features to a target spread.

A regression from one signal to another is shrunk towards the mean wherever the input
explains only part of the target: a distilled encoder (:mod:`.retarget`) or one heard
through voices it is unsure of (:mod:`.audio_tune`) moves the mouth less than on the
identity's own voice. A per-channel gain about the mean, folded into the encoder's token
projection, gives the motion back without changing its course or the file format.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.encoders import AudioEncoder
from ..model.windows import audio_windows


@torch.no_grad()
def driving_features(enc: AudioEncoder, features: np.ndarray, frames: np.ndarray,
                     chunk: int = 256) -> torch.Tensor:
    """[F, 1 + CTX, d]: f_a and the tokens of video ``frames`` [F] of a clip's features
    [T, D], in chunks of ``chunk`` frames."""
    out = []
    for a in range(0, len(frames), chunk):
        fa, tok = enc(torch.from_numpy(audio_windows(features, frames[a:a + chunk])))
        out.append(torch.cat([fa[:, None], tok], 1))
    return torch.cat(out)


@torch.no_grad()
def match_spread(enc: AudioEncoder, inputs: list[tuple[np.ndarray, np.ndarray]],
                 targets: list[torch.Tensor], rounds: int = 2) -> torch.Tensor:
    """Scale each driving channel of ``enc`` about its mean so that the spread of f_a over
    ``inputs`` ((features [T, D], video frames [F]) pairs) equals that of the ``targets``
    ([F, 1 + CTX, d] each). Folded into the token projection (f_a is a weighted mean of the
    tokens); ``rounds`` repeat it because the attention over the tokens sees the rescaled
    tokens too. Returns the total gain per channel [d]."""
    tgt_std = torch.cat([t[:, 0] for t in targets]).std(0)
    total = torch.ones_like(tgt_std)
    for _ in range(rounds):
        pred = torch.cat([driving_features(enc, f, fr)[:, 0] for f, fr in inputs])
        mean, gain = pred.mean(0), tgt_std / pred.std(0).clamp_min(1e-6)
        enc.proj.weight.mul_(gain[:, None])
        enc.proj.bias.copy_(gain * enc.proj.bias + (1 - gain) * mean)
        total *= gain
    return total
