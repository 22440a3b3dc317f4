"""Speak any audio: the render pipeline shared by ``fg3dgs render`` and the app.

The speech input loads without torch, so a command can check its audio before the seconds
that torch and the identity take; the rest is imported on first use."""

from .audio_input import AudioInput, AudioInputError

__all__ = ["AudioInput", "AudioInputError", "RenderOptions", "RenderResult", "TalkingHead",
           "side_by_side"]


def __getattr__(name: str):
    if name in ("RenderOptions", "RenderResult", "TalkingHead", "side_by_side"):
        from . import talking_head

        return getattr(talking_head, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
