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

from ..device import to_device
from ..landmark_schemes import LandmarkScheme, scheme_for
from ..model.identity import FG3DGS
from ..preprocess.dataset import Dataset
from .config import TrainConfig
from .data import TrainData, row_variants


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


class LipPrior:
    """A run's lip prior: the lip targets of its training frames [F_train, K], the head, and
    the loss on ``lip_batch`` random training frames per step. The run's NumPy generator is
    passed to each call (a resume replaces it)."""

    def __init__(self, ds: Dataset, data: TrainData, cfg: TrainConfig, device: torch.device):
        self.cfg, self.data, self.device = cfg, data, device
        lm = np.asarray(ds.landmarks)
        target = lip_targets(lm, scheme_for(lm), data.index, cfg.lip_components)
        self.target = torch.from_numpy(target[data.index]).to(device)
        with torch.random.fork_rng(devices=[]):      # its own seed: runs stay reproducible
            torch.manual_seed(cfg.seed + 1)
            self.head = LipHead(cfg.model.audio_dim, target.shape[1]).to(device)

    def windows(self, rng: np.random.Generator) -> tuple[np.ndarray, torch.Tensor]:
        """``lip_batch`` random training rows and their audio windows, on the device."""
        c = self.cfg
        ks = rng.integers(0, len(self.data), c.lip_batch)
        variants = row_variants(rng, len(ks), c.audio_copies, c.audio_augment_p)
        return ks, to_device(self.data.audio(self.data.index[ks], variants), self.device)

    def l1(self, f_a: torch.Tensor, ks: np.ndarray) -> torch.Tensor:
        """L1 of the head's prediction from f_a [len(ks), D] against rows ks' lips."""
        return (self.head(f_a) - self.target[ks]).abs().mean()

    def loss(self, model: FG3DGS, rng: np.random.Generator) -> torch.Tensor:
        """The prior's L1 on ``lip_batch`` random training rows, through the model's audio
        encoder alone."""
        ks, w = self.windows(rng)
        return self.l1(model.audio(w)[0], ks)

    def drive(self, model: FG3DGS, b: dict, rng: np.random.Generator) -> tuple[dict, torch.Tensor]:
        """The step's driving features of batch ``b`` and the prior's loss: the prior's audio
        windows go through the encoder in the same call as the step's (fewer launches)."""
        ks, w = self.windows(rng)
        B = b["audio"].shape[0]
        drive = model.drive(torch.cat([b["audio"], w]), b["expression"])
        lip = self.l1(drive["f_a"][B:], ks)
        drive["f_a"], drive["tok_a"] = drive["f_a"][:B], drive["tok_a"][:B]
        drive["audio"] = drive["audio"][:B]
        return drive, lip

    def warm_up(self, model: FG3DGS, rng: np.random.Generator, steps: int,
                progress: bool = False):
        """The audio encoder and the head on the prior alone for ``steps`` steps (before the
        deform stage: the encoder starts from features that carry the lips)."""
        from tqdm import tqdm

        opt = torch.optim.Adam(list(model.audio.parameters()) + list(self.head.parameters()),
                               lr=self.cfg.lr_face_net)
        for _ in tqdm(range(steps), desc="lip prior", unit="it", leave=False,
                      disable=not progress):
            loss = self.loss(model, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
