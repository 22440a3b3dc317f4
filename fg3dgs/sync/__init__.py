"""Lip-sync expert (Wav2Lip-compatible layout), its training data and the sync metrics;
SyncNet with its published weights for LSE-C / LSE-D (:mod:`fg3dgs.sync.syncnet`)."""

from .expert import ExpertConfig, SyncExpert
from .io import ExpertError, load_expert, save_expert
from .syncnet import SyncNet, load_syncnet, lse_scores

__all__ = ["ExpertConfig", "SyncExpert", "ExpertError", "load_expert", "save_expert",
           "SyncNet", "load_syncnet", "lse_scores"]
