"""Published network weights of the perceptual metrics: where they are looked for, how a
file is read (``torch.load(weights_only=True)``, never pickle code) and checked key for key
against the published layout, and the error that says what is missing and how to get it."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io_utils import layout_problems


class PerceptualWeightsError(ValueError):
    """Weights of a perceptual metric (LPIPS, FID) that cannot be used."""


class WeightsUnavailable(PerceptualWeightsError):
    """The weights are missing, unreadable or not in the published layout. The message names
    the file, what is wrong with it, where it belongs and how to obtain it."""


def hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision and pytorch-fid cache their
    downloads ($TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def read_state_dict(path: str | Path, what: str, obtain: str) -> dict[str, torch.Tensor]:
    """The tensors of a torch-saved state dict at ``path``. ``what`` names the weights in
    messages, ``obtain`` says how to get them. Raises :class:`WeightsUnavailable`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"{what} not found: {path} does not exist. {obtain}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailable(f"{path} is not a readable PyTorch file ({type(exc).__name__}:"
                                 f" {str(exc)[:200]}); expected {what}. {obtain}") from exc
    if not (isinstance(obj, dict) and obj
            and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise WeightsUnavailable(f"{path} holds no state dict of tensors; expected {what}. "
                                 f"{obtain}")
    return dict(obj)


def check_layout(state: dict[str, torch.Tensor], want: dict[str, torch.Size], path: str | Path,
                 what: str, obtain: str, ignored: tuple[str, ...] = (),
                 may_lack: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``want`` names, after checking that every one is there
    with its shape and finite values and that nothing else is (keys starting with one of
    ``ignored`` are allowed and dropped; keys ending with one of ``may_lack`` may be absent).
    Floating-point tensors come back as float32. Raises :class:`WeightsUnavailable`."""
    kept = {k: v for k, v in state.items() if not (ignored and k.startswith(ignored))}
    problems = layout_problems(kept, want, may_lack)
    if problems:
        raise WeightsUnavailable(f"{path} does not fit the layout of {what}: {problems}. "
                                 f"{obtain}")
    return {k: v.float() if v.is_floating_point() else v for k, v in kept.items() if k in want}
