"""The lip-shape prior of the audio encoder (an auxiliary loss of the deform and fusion stages).

Trained through the rendered images alone, one frame per step, the audio encoder sees too
few samples in a CPU schedule to learn the speech-to-mouth mapping: on the demo clip a
linear read-out of its features explained the dataset's lip opening at r = 0.74 while the
same encoder trained directly on the lips reached 0.87. The dataset already holds the lips'
landmarks per frame, so each step also asks a linear head on the pooled audio feature f_a to
predict the frame's lip shape (a few principal components of the lip contour in a head-
aligned 2D frame) for a batch of random training frames. Only the audio windows pass
through the encoder for this, which costs little next to a render, and it gives the encoder
many more samples per step. The head is used in training only; identities do not keep it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..landmark_schemes import LandmarkScheme


def lip_shapes(landmarks: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """[F, 40] lip contours (outer then inner, as :meth:`LandmarkScheme.mouth_points`) of
    landmarks [F, P, 2+], centred on the eye-corner midpoint, de-rotated by the eye line and
    divided by the eye-corner span, so the head's position, roll and scale drop out."""
    p = np.asarray(landmarks, np.float64)[..., :2]
    r, l = scheme.eyes
    right = 0.5 * (p[:, r.outer] + p[:, r.inner])
    left = 0.5 * (p[:, l.outer] + p[:, l.inner])
    centre, axis = 0.5 * (right + left), left - right
    span = np.linalg.norm(axis, axis=-1, keepdims=True)
    c, s = (axis / span).T
    rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)       # [F, 2, 2]
    lips = scheme.mouth_points(p) - centre[:, None]
    lips = np.einsum("fij,fpj->fpi", rot, lips) / span[:, None]
    return lips.reshape(len(p), -1)


def lip_targets(landmarks: np.ndarray, scheme: LandmarkScheme, fit_rows: np.ndarray,
                components: int = 8) -> np.ndarray:
    """[F, components] whitened principal components of :func:`lip_shapes`, fitted on the
    frames ``fit_rows`` (the training split) so validation frames stay unseen."""
    x = lip_shapes(landmarks, scheme)
    fit = x[fit_rows]
    mean = fit.mean(0)
    _, sv, vt = np.linalg.svd(fit - mean, full_matrices=False)
    k = min(components, len(sv))
    std = sv[:k] / np.sqrt(max(1, len(fit) - 1))
    return ((x - mean) @ vt[:k].T / np.maximum(std, 1e-8)).astype(np.float32)


class LipHead(nn.Module):
    """f_a [B, D] -> predicted lip components [B, K] (linear, so the encoder itself must
    carry the lip shape)."""

    def __init__(self, audio_dim: int, components: int = 8):
        super().__init__()
        self.linear = nn.Linear(audio_dim, components)

    def forward(self, f_a: torch.Tensor) -> torch.Tensor:
        return self.linear(f_a)
