"""Speak any audio: the render pipeline shared by ``fg3dgs render`` and the app."""

from .audio_input import AudioInput, AudioInputError
from .talking_head import RenderOptions, RenderResult, TalkingHead, side_by_side

__all__ = ["AudioInput", "AudioInputError", "RenderOptions", "RenderResult", "TalkingHead",
           "side_by_side"]
