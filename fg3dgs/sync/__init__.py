"""Lip-sync expert (Wav2Lip-compatible layout), its training data and the sync metrics."""

from .expert import ExpertConfig, SyncExpert
from .io import ExpertError, load_expert, save_expert

__all__ = ["ExpertConfig", "SyncExpert", "ExpertError", "load_expert", "save_expert"]
