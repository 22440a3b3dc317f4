"""The lip-sync expert: a SyncNet-style pair of encoders that scores whether a window of 5
mouth crops and the matching 0.2 s of log-mel audio are in sync.

The layer layout is that of Wav2Lip's published colour expert (``lipsync_expert.pth``):
``face_encoder`` and ``audio_encoder`` are ``nn.Sequential`` stacks of conv + batch-norm +
ReLU blocks (``N.conv_block.0`` the convolution, ``N.conv_block.1`` the batch norm), some with
a residual connection, so that file's state dict loads into ``SyncExpert(ExpertConfig())``
key for key. Our own expert uses the same design with every channel count scaled by
``width`` (a few MB instead of 60).

Inputs: faces [B, 15, 48, 96] (5 RGB crops stacked on channels, values in [0, 1], the lower
half of a 96x96 face box; Wav2Lip's weights expect BGR, which ``ExpertConfig.bgr`` records),
mel [B, 1, 80, 16] (:func:`fg3dgs.sync.audio.sync_mel` windows). Embeddings are L2-normalised
and non-negative (the last block ends in a ReLU), so their cosine similarity lies in [0, 1]
and is read as the probability that the pair is in sync.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (in, out, kernel, stride, padding, residual); channel counts at width 1.
FACE_LAYERS = (
    (15, 32, 7, 1, 3, False),
    (32, 64, 5, (1, 2), 1, False),
    (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 2, 1, False),
    (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, 2, 1, False),
    (256, 256, 3, 1, 1, True), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 2, 1, False),
    (512, 512, 3, 1, 1, True), (512, 512, 3, 1, 1, True),
    (512, 512, 3, 2, 1, False),
    (512, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
)
AUDIO_LAYERS = (
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
)
T_FRAMES = 5                 # video frames per window (0.2 s at 25 fps)
CROP_H, CROP_W = 48, 96      # lower half of a 96x96 face crop
MEL_BANDS, MEL_STEPS = 80, 16


@dataclass(frozen=True)
class ExpertConfig:
    """``width`` scales every channel count (1.0: Wav2Lip's layout); ``bgr``: the weights
    expect crops in BGR order (Wav2Lip's, read with OpenCV)."""

    width: float = 1.0
    bgr: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def embedding_dim(self) -> int:
        return self.channels(512)

    def channels(self, c: int) -> int:
        return c if c in (1, 15) else max(4, int(round(c * self.width)))


class ConvBlock(nn.Module):
    """Conv + batch norm (+ input) + ReLU; parameter names as Wav2Lip's ``Conv2d``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int,
                 residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding),
                                        nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


def _stack(layers, cfg: ExpertConfig) -> nn.Sequential:
    return nn.Sequential(*(ConvBlock(cfg.channels(i), cfg.channels(o), k, s, p, r)
                           for i, o, k, s, p, r in layers))


class SyncExpert(nn.Module):
    def __init__(self, cfg: ExpertConfig = ExpertConfig()):
        super().__init__()
        self.cfg = cfg
        self.face_encoder = _stack(FACE_LAYERS, cfg)
        self.audio_encoder = _stack(AUDIO_LAYERS, cfg)

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """[B, 15, 48, 96] RGB crops in [0, 1] -> [B, D] unit embeddings."""
        if faces.shape[1:] != (3 * T_FRAMES, CROP_H, CROP_W):
            raise ValueError(f"faces must be [B, {3 * T_FRAMES}, {CROP_H}, {CROP_W}], got "
                             f"{tuple(faces.shape)}")
        if self.cfg.bgr:
            faces = faces.view(-1, T_FRAMES, 3, CROP_H, CROP_W).flip(2).reshape(faces.shape)
        return F.normalize(self.face_encoder(faces).flatten(1), dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 1, 80, 16] mel windows -> [B, D] unit embeddings."""
        if mel.shape[1:] != (1, MEL_BANDS, MEL_STEPS):
            raise ValueError(f"mel must be [B, 1, {MEL_BANDS}, {MEL_STEPS}], got "
                             f"{tuple(mel.shape)}")
        return F.normalize(self.audio_encoder(mel).flatten(1), dim=1)

    def forward(self, mel: torch.Tensor, faces: torch.Tensor):
        """(audio embeddings, face embeddings), Wav2Lip's argument and result order."""
        return self.embed_audio(mel), self.embed_faces(faces)

    def sync_prob(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """[B] probability (cosine similarity) that each pair is in sync."""
        a, v = self(mel, faces)
        return F.cosine_similarity(a, v).clamp(1e-6, 1 - 1e-6)

    def sync_loss(self, mel: torch.Tensor, faces: torch.Tensor,
                  target: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Binary cross-entropy of :meth:`sync_prob` against ``target`` (1 = in sync)."""
        p = self.sync_prob(mel, faces)
        target = torch.as_tensor(target, dtype=p.dtype, device=p.device).expand_as(p)
        return F.binary_cross_entropy(p, target)
