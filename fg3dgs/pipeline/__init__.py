"""Speak any audio: the render pipeline shared by ``fg3dgs render`` and the app.

The speech input loads without torch, so a command can check its audio before the seconds
that torch and the identity take; the rest is imported on first use."""

from .audio_input import AudioInput, AudioInputError

__all__ = ["AudioInput", "AudioInputError", "RenderOptions", "RenderResult", "TalkingHead",
           "side_by_side"]


def __getattr__(name: str):
    if name in ("RenderOptions", "RenderResult", "side_by_side"):   # (torch-free)
        from . import render_options

        return getattr(render_options, name)
    if name == "TalkingHead":                                       # (imports torch)
        from . import talking_head

        return talking_head.TalkingHead
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
