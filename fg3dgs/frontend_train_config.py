"""The speech front-end's training recipe (``fg3dgs train-audio``,
:mod:`fg3dgs.frontend.train`). Torch-free and outside :mod:`fg3dgs.frontend`, whose package
loads the network: the command line takes its option defaults from here before anything
heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FrontendTrainConfig:
    # The defaults are the shipped front-end's recipe (about 11 minutes on 2 CPU cores).
    minutes: float = 160.0           # of training speech (before augmentation)
    copies: int = 4                  # augmented copies of each utterance (plus the clean one)
    steps: int = 16000
    batch: int = 24
    crop_frames: int = 200           # 4 s windows
    lr: float = 2e-3
    heldout_minutes: float = 3.0
    seed: int = 0
    width: int = 96
    ccc: float = 0.5                 # weight of the concordance term on the mouth outputs
    eq: float = 0.5                  # share of augmented copies through a random equaliser
    flite: float = 0.0               # share of the training speech spoken by Flite's voices
    voice_quality: float = 0.0       # share of augmented copies through augment.voice_quality
    recorded: bool = False           # add the recorded Russian speech's nine tenths
