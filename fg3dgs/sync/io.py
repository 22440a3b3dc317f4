"""Saving and loading sync experts: ours (safetensors, config in its metadata) and
Wav2Lip's published ``lipsync_expert.pth`` (a torch checkpoint whose ``state_dict`` matches
:class:`SyncExpert` at width 1 with BGR input), from a path or from the Hugging Face Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..io_utils import atomic_output, checkpoints_dir
from .expert import ExpertConfig, SyncExpert

META_KEY = "fg3dgs_sync_expert"
DEFAULT_EXPERT = "sync_expert.safetensors"


class ExpertError(ValueError):
    """A sync expert that cannot be loaded; the message says what is wrong."""


def save_expert(model: SyncExpert, path: str | Path, info: dict | None = None,
                half: bool = True) -> Path:
    """One safetensors file; config and ``info`` (training report) in its metadata."""
    from safetensors.torch import save_file

    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
               for k, v in model.state_dict().items()}
    meta = {"config": model.cfg.to_dict(), "info": info or {}}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return Path(path)


def _resolve(spec: str) -> Path:
    """A local path, or ``hf://OWNER/REPO/FILE`` / ``OWNER/REPO:FILE`` fetched from the Hub."""
    if spec.startswith("hf://") or (":" in spec and not Path(spec).exists()
                                    and spec.count("/") == 1):
        repo, _, filename = (spec[5:].rpartition("/")[::2] if spec.startswith("hf://")
                             else spec.partition(":")[::2])
        if not repo or not filename:
            raise ExpertError(f"cannot read {spec!r} as a Hub file; write hf://OWNER/REPO/FILE "
                              "or OWNER/REPO:FILE")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, filename))
        except Exception as exc:    # offline, missing repo or file: say so plainly
            raise ExpertError(f"could not fetch {filename} from the Hub repo {repo}: "
                              f"{type(exc).__name__}: {exc}. Download it where the network "
                              "is open and pass its local path instead.") from exc
    return Path(spec)


def _state_from_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExpertError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
                          f"{exc}); a sync expert is Wav2Lip's lipsync_expert.pth or one of "
                          "ours (.safetensors)") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ExpertError(f"{path} holds no state dict of tensors; expected Wav2Lip's "
                          "lipsync_expert.pth (a dict with 'state_dict')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state(model: SyncExpert, state: dict[str, torch.Tensor], path: Path) -> None:
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(want[k].shape)})"
             for k in want if k in state and state[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {', '.join(wrong[:2])})")
        raise ExpertError(f"{path} does not fit the sync expert's layout: "
                          + "; ".join(parts) + ". It must be Wav2Lip's colour expert "
                          "(lipsync_expert.pth) or an expert saved by fg3dgs train-sync.")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})


def load_expert(spec: str | Path | None = None) -> tuple[SyncExpert, dict]:
    """(expert in eval mode, info) from a path or Hub file; None: the shipped expert.

    ``info["source"]`` is "wav2lip" for Wav2Lip's published weights and "fg3dgs" for ours,
    so reports can keep the two apart.
    """
    path = checkpoints_dir() / DEFAULT_EXPERT if spec is None else _resolve(str(spec))
    if not path.is_file():
        hint = (" (the shipped expert; rebuild it with the command in docs/lipsync.md)"
                if spec is None else "")
        raise ExpertError(f"sync expert not found: {path}{hint}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads((f.metadata() or {}).get(META_KEY, "null"))
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:
            raise ExpertError(f"{path} is not a readable safetensors file: {exc}") from exc
        if not meta:
            raise ExpertError(f"{path} has no fg3dgs sync-expert metadata; save experts with "
                              "fg3dgs train-sync")
        cfg = ExpertConfig(**meta["config"])
        info = {"source": "fg3dgs", "path": str(path), **meta.get("info", {})}
    else:
        state = _state_from_torch(path)
        first = state.get("face_encoder.0.conv_block.0.weight")
        if first is None:
            raise ExpertError(f"{path} has no face_encoder.0.conv_block.0.weight; it is not "
                              "Wav2Lip's colour expert (lipsync_expert.pth)")
        cfg = ExpertConfig(width=first.shape[0] / 32, bgr=True)
        info = {"source": "wav2lip" if cfg.width == 1.0 else "wav2lip-layout",
                "path": str(path)}
    model = SyncExpert(cfg)
    _load_state(model, state, path)
    return model.eval(), info
