"""The lip-sync expert's training recipe (``fg3dgs train-sync``, :mod:`fg3dgs.sync.train`).
Torch-free and outside :mod:`fg3dgs.sync`, whose package loads the networks: the command
line takes its option defaults from here before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SyncTrainConfig:
    identities: tuple[str, ...] = ("builtin:astronaut", "builtin:hopper")
    minutes: float = 12.0             # training speech, in minutes
    heldout_clips: int = 40           # 5-second held-out clips for the offset test
    width: float = 0.25               # channel scale of Wav2Lip's layout
    size: int = 192                   # rendered frame size
    batch: int = 64
    steps: int = 3000
    lr: float = 1e-3
    min_shift: int = 2                # shifted negatives are at least this many frames off
    temperature: float = 0.1          # of the contrastive loss
    aug_start: float = 0.15           # augmentation ramps from 0 at this fraction of steps
    aug_full: float = 0.6             # ... to full strength here
    voices: str = "wide"              # the voice draw: wide | speakers (sync.data.random_voice)
    audio_copies: int = 2             # augmented copies of each clip's audio
    seed: int = 0
