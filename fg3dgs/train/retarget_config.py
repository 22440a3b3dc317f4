"""``fg3dgs retarget``'s configuration: the distillation (:mod:`.retarget`) and, with
``--data``, the tuning on the identity's frames (:mod:`.audio_tune`). Torch-free: the
command line takes its option defaults from here before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RetargetConfig:
    features: str = "artic"
    copies: int = 3                 # augmented copies of the speech beside the clean one
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    heldout: float = 1 / 11         # the last share of the speech, as the dataset's split
    ccc: float = 1.0                # weight of the concordance term (0: plain MSE)
    match_spread: bool = True       # rescale the outputs to the targets' spread at the end
    seed: int = 0


@dataclass
class AudioTuneConfig:
    steps: int = 2000
    batch: int = 2                  # frames per step
    lr: float = 5e-4                # one-cycle peak
    crop_l1: float = 1.0            # weight of the mouth crop's L1 beside the frame's loss
    audio_copies: int = 4           # voice-varied copies of the clip (0: clean only)
    augment_p: float = 0.5          # chance that a frame hears a copy
    voice_spread: bool = True       # rescale f_a's spread on the copies to the clean one's
    check_frames: int = 32          # fixed training frames the fit is reported on
    seed: int = 0
