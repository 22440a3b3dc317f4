"""Driving-signal encoders: audio (convolutions over 16 feature frames, then attention over
neighbouring video frames for smoothness) and expression (eye openness, brow raise)."""

from __future__ import annotations

import torch
from torch import nn

AUDIO_WINDOW = 16        # feature frames per video frame (0.32 s at 50 Hz)
AUDIO_CONTEXT = 8        # neighbouring video frames the smoothing attention looks at
EXPR_CONTEXT = 5         # neighbouring video frames of expression for the eye tokens


class AudioEncoder(nn.Module):
    """windows [B, AUDIO_CONTEXT, AUDIO_WINDOW, D_in] -> (f_a [B, dim], tokens [B, CTX, dim]).

    Each frame's window is encoded by strided 1D convolutions over time; an attention over
    the CTX neighbouring frames' codes (a small convolution scoring each) pools them into f_a.
    """

    def __init__(self, in_dim: int, dim: int = 32, width: int = 64):
        super().__init__()
        layers, c = [], in_dim
        for _ in range(4):                       # 16 -> 8 -> 4 -> 2 -> 1 time steps
            layers += [nn.Conv1d(c, width, 3, stride=2, padding=1), nn.LeakyReLU(0.02)]
            c = width
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(width, dim)
        self.score = nn.Sequential(nn.Conv1d(dim, 16, 3, padding=1), nn.LeakyReLU(0.02),
                                   nn.Conv1d(16, 1, 3, padding=1))
        self.dim = dim

    def forward(self, windows: torch.Tensor):
        B, T, W, D = windows.shape
        x = self.conv(windows.reshape(B * T, W, D).transpose(1, 2))    # [B*T, width, 1]
        tokens = self.proj(x.mean(-1)).reshape(B, T, self.dim)
        w = torch.softmax(self.score(tokens.transpose(1, 2))[:, 0], dim=-1)   # [B, T]
        return (w[..., None] * tokens).sum(1), tokens


class ExpressionEncoder(nn.Module):
    """expression windows [B, EXPR_CONTEXT, E] -> (f_e [B, dim] of the centre frame,
    tokens [B, EXPR_CONTEXT, dim])."""

    def __init__(self, in_dim: int = 3, dim: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, 32), nn.LeakyReLU(0.02), nn.Linear(32, dim))

    def forward(self, windows: torch.Tensor):
        tokens = self.mlp(windows)
        return tokens[:, windows.shape[1] // 2], tokens


class FeatureAdapter(nn.Module):
    """A small correction of the audio features the refined mouth is driven by:
    windows [B, CTX, W, D] -> [B, CTX, W, D], a depthwise filter over the W feature frames
    (``taps`` of them: timing), a D x D mixing (gain of each articulator and their
    couplings) and a bias. It starts as the identity. HRPA's adapter mode learns only this:
    a few dozen numbers that can change when and how far the mouth moves with each feature,
    but not what a mouth looks like, so the sync expert cannot push the pixels towards what
    it alone rewards."""

    def __init__(self, dim: int, taps: int = 5):
        super().__init__()
        kernel = torch.zeros(dim, taps)
        kernel[:, taps // 2] = 1.0
        self.kernel = nn.Parameter(kernel)                  # [D, taps]
        self.mix = nn.Parameter(torch.eye(dim))             # [D, D]
        self.bias = nn.Parameter(torch.zeros(dim))          # [D]

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        B, T, W, D = windows.shape
        taps = self.kernel.shape[1]
        x = windows.reshape(B * T, W, D).transpose(1, 2)                    # [BT, D, W]
        x = nn.functional.pad(x, (taps // 2, taps - 1 - taps // 2), mode="replicate")
        x = nn.functional.conv1d(x, self.kernel[:, None], groups=D)         # [BT, D, W]
        x = x.transpose(1, 2) @ self.mix + self.bias                        # [BT, W, D]
        return x.reshape(B, T, W, D)
