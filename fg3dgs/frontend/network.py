"""The speech front-end: any voice's log-mel -> per-frame articulation at 50 Hz.

A small dilated 1D convolution network over the log-mel frames of
:func:`fg3dgs.mel.log_mel` predicts the four mouth parameters that drive the
synthetic generator (:data:`fg3dgs.synth.visemes.PARAMS`: jaw open, lip spread, lip round,
lip closure) at each feature frame, plus whether the frame is speech. Trained on many voices
with augmentation (:mod:`fg3dgs.frontend.train`), it is meant not to care who speaks: an
identity driven by it sees the same features from any voice saying the same thing.

Feature frame k depends on mel frames k - 30 ... k + 30 (the convolutions see +-15 frames,
0.3 s, and the level reference of each of those another +-15), so a chunk with
:data:`MARGIN` frames of margin on each side gives the whole clip's values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io_utils import atomic_output, checkpoints_dir

OUTPUTS = ("jaw_open", "lip_spread", "lip_round", "lip_closure", "speech")
DEFAULT_FILE = "speech_frontend.safetensors"
META_KEY = "fg3dgs_speech_frontend"
CONTEXT = 15                     # mel frames the convolutions look at on each side
MARGIN = 2 * CONTEXT + 4         # chunk margin for whole-clip values (+4: the mel's own;
                                 # audio_features.CONTEXT_FRAMES["artic"] is this number)
N_MELS = 80


class FrontendError(ValueError):
    """A front-end file that is missing or cannot be loaded; the message says why."""


@dataclass(frozen=True)
class FrontendConfig:
    width: int = 96
    dilations: tuple[int, ...] = (1, 2, 4, 4)   # kernel 3 + these: +-1 +-2 +-4 +-4 ... frames
    kernel_in: int = 9                          # first layer: +-4 frames

    def to_dict(self) -> dict:
        return {**asdict(self), "dilations": list(self.dilations)}

    @classmethod
    def from_dict(cls, d: dict) -> FrontendConfig:
        return cls(**{**d, "dilations": tuple(d["dilations"])})

    @property
    def context(self) -> int:
        return (self.kernel_in - 1) // 2 + sum(self.dilations)


class ArticulationNet(nn.Module):
    """log-mel [B, T, 80] -> [B, T, 5]: four mouth parameters in [0, 1] and a speech
    probability, each frame from the +-:attr:`FrontendConfig.context` frames around it.

    The input is normalised per band by fixed statistics (stored with the weights) and each
    frame's level is removed by subtracting its mean over the bands; the level goes back in
    as one input channel, relative to the loudest frames around it, so silence stays
    recognisable whatever the recording's gain.
    """

    def __init__(self, cfg: FrontendConfig = FrontendConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.register_buffer("mel_mean", torch.zeros(N_MELS))
        self.register_buffer("mel_std", torch.ones(N_MELS))
        self.inp = nn.Conv1d(N_MELS + 1, w, cfg.kernel_in, padding=(cfg.kernel_in - 1) // 2)
        self.blocks = nn.ModuleList(
            nn.Conv1d(w, w, 3, dilation=d, padding=d) for d in cfg.dilations)
        # per frame over the channels (GroupNorm over time would make every frame depend
        # on the whole clip, and chunks on their length)
        self.norms = nn.ModuleList(nn.LayerNorm(w) for _ in cfg.dilations)
        self.out = nn.Conv1d(w, len(OUTPUTS), 1)

    def features_in(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, T, 80] log-mel -> [B, 81, T] network input (level-free spectrum + level)."""
        level = mel.mean(-1, keepdim=True)                                   # [B, T, 1]
        # level relative to the loudest frame within +-CONTEXT frames (a local, causal-free
        # max: the same inside a chunk with that margin as over the whole clip)
        k = 2 * CONTEXT + 1
        local_max = nn.functional.max_pool1d(level.transpose(1, 2), k, 1, CONTEXT)
        rel = (level.transpose(1, 2) - local_max) / 4.0                      # [B, 1, T]
        spec = (mel - level - self.mel_mean) / self.mel_std                  # [B, T, 80]
        return torch.cat([spec.transpose(1, 2), rel], 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.leaky_relu(self.inp(self.features_in(mel)), 0.1)
        for conv, norm in zip(self.blocks, self.norms):
            y = norm(conv(x).transpose(1, 2)).transpose(1, 2)
            x = x + torch.nn.functional.leaky_relu(y, 0.1)
        return torch.sigmoid(self.out(x)).transpose(1, 2)


# -- files ----------------------------------------------------------------------------------
def save_frontend(model: ArticulationNet, path: str | Path, info: dict | None = None) -> Path:
    """One safetensors file in float16; config and ``info`` (training report) in its
    metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": model.cfg.to_dict(), "outputs": list(OUTPUTS), "info": info or {}}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return Path(path)


def load_frontend(path: str | Path | None = None) -> tuple[ArticulationNet, dict]:
    """(network in eval mode, float32, and its metadata) from ``path`` (default: the shipped
    ``checkpoints/speech_frontend.safetensors``)."""
    from safetensors import safe_open

    path = Path(path) if path else checkpoints_dir() / DEFAULT_FILE
    if not path.is_file():
        raise FrontendError(f"speech front-end not found: {path}; train one with "
                            "`fg3dgs train-audio --out DIR` (the shipped one is "
                            f"checkpoints/{DEFAULT_FILE})")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "null"))
            state = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as exc:
        raise FrontendError(f"{path} is not a readable safetensors file: {exc}") from exc
    if not meta or meta.get("outputs") != list(OUTPUTS):
        raise FrontendError(f"{path} is not an fg3dgs speech front-end (no metadata, or "
                            "other outputs); make one with `fg3dgs train-audio`")
    model = ArticulationNet(FrontendConfig.from_dict(meta["config"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise FrontendError(f"{path} does not fit its own config: {exc}") from exc
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise FrontendError(f"{path} holds NaN or infinite weights")
    return model.eval(), meta


_LOADED: dict[str, ArticulationNet] = {}


def articulation(audio: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """[T, 5] front-end outputs of 16 kHz mono audio, T = feature frames (50 Hz)."""
    from ..mel import log_mel

    return articulation_of_mel(log_mel(audio), path)


@torch.no_grad()
def articulation_of_mel(mel: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """[T, 5] front-end outputs of log-mel frames [T, 80] (the front-end at ``path``,
    default the shipped one, loaded once per process and file: the key is the resolved
    path, so a checkpoints folder set later ($FG3DGS_CHECKPOINTS) is not served the
    front-end of the one before)."""
    key = str(Path(path) if path else checkpoints_dir() / DEFAULT_FILE)
    if key not in _LOADED:
        _LOADED[key] = load_frontend(key)[0]
    return _LOADED[key](torch.from_numpy(mel)[None])[0].numpy().astype(np.float32)
