"""The driving windows of video frames: for each frame, the audio feature windows and the
expression of its neighbours, as the model's encoders read them (shapes in
:mod:`fg3dgs.model.encoders`). Training, evaluation and rendering all take them from here."""

from __future__ import annotations

import numpy as np

from .encoders import AUDIO_CONTEXT, AUDIO_WINDOW, EXPR_CONTEXT


def audio_window_index(n_features: int, frames: np.ndarray) -> np.ndarray:
    """[B, AUDIO_CONTEXT, AUDIO_WINDOW] feature-frame numbers of each video frame's window
    (see :func:`audio_windows`) in a clip of ``n_features`` feature frames."""
    n_video = (n_features + 1) // 2
    nb = np.clip(np.asarray(frames)[:, None] + np.arange(AUDIO_CONTEXT) - AUDIO_CONTEXT // 2,
                 0, n_video - 1)
    centre = 2 * nb + 1
    idx = centre[..., None] + np.arange(AUDIO_WINDOW) - AUDIO_WINDOW // 2
    return np.clip(idx, 0, n_features - 1)


def audio_windows(features: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """[B, AUDIO_CONTEXT, AUDIO_WINDOW, D]: for each video frame, the 16-feature-frame
    windows of its AUDIO_CONTEXT neighbours (clamped at the clip's ends).
    Video frame i is centred on feature frame 2i + 1 (fg3dgs.audio_features.window)."""
    return features[audio_window_index(len(features), frames)]


def expr_windows(expression: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """[B, EXPR_CONTEXT, E] expression of each frame's neighbours (clamped)."""
    nb = np.clip(frames[:, None] + np.arange(EXPR_CONTEXT) - EXPR_CONTEXT // 2, 0,
                 len(expression) - 1)
    return expression[nb]
