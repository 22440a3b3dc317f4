"""HRPA, the lip-sync refinement stage: its data (the frozen sync expert, the clip's expert
mel, face boxes, other voices' speech) and its loss on windows of T_FRAMES consecutive
rendered frames; and the configuration of ``fg3dgs refine`` (the stage alone on a trained
identity).

The refined branch (a copy of the mouth network and colour corrections, or in adapter mode a
feature adapter in front of the base ones) alone learns; the base branch is kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..device import to_device
from ..model.fusion import fuse
from ..model.identity import FG3DGS
from ..model.info import IdentityInfo
from ..model.windows import audio_windows
from ..preprocess.dataset import Dataset
from . import STAGES, TrainError
from .config import TrainConfig, preset
from .data import TrainData
from .other_voices import Utterance


def load_frozen_expert(spec: str | None, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The sync expert ``spec`` (None: the shipped one) and its record, frozen on ``device``;
    TrainError when it cannot be loaded."""
    from ..sync import ExpertError, load_expert

    try:
        expert, info = load_expert(spec)
    except ExpertError as exc:
        raise TrainError(f"the HRPA stage needs a sync expert: {exc} (or pass --no-hrpa)") \
            from exc
    expert.to(device)
    for p in expert.parameters():
        p.requires_grad_(False)
    return expert, info


def check_expert(cfg: TrainConfig, device: torch.device) -> str | None:
    """Decide at the start, not after the first three stages: an expert that was asked for
    and is missing is a TrainError; the shipped one missing (not built yet) turns HRPA off
    (``cfg.iterations["hrpa"] = 0``) with a warning, and the reason is returned for the
    identity's record."""
    from ..sync import ExpertError, load_expert

    if cfg.expert is not None:
        load_frozen_expert(cfg.expert, device)
        return None
    try:
        load_expert(None)
    except ExpertError as exc:
        skipped = f"no sync expert: {exc}"
        cfg.iterations["hrpa"] = 0
        warnings.warn(f"HRPA will be skipped ({skipped}); the identity gets the base variant "
                      "only. Pass --expert to refine.", stacklevel=2)
        return skipped
    return None


def refine_config(info: IdentityInfo, model: FG3DGS, identity: str | Path, dataset: str | Path,
                  overrides: dict) -> TrainConfig:
    """The configuration of HRPA alone on a trained identity (``info``: its identity.json;
    ``overrides``: TrainConfig fields, ``iterations`` the HRPA stage's count): the identity's
    own training configuration with every other stage at 0 iterations."""
    try:
        cfg = TrainConfig.from_dict(info.train["config"])
    except (KeyError, TypeError) as exc:
        raise TrainError(f"{identity} records no training configuration "
                         f"(identity.json train.config); it cannot be refined") from exc
    cfg.model = model.cfg
    n = overrides.pop("iterations", None) or cfg.iterations.get("hrpa") or \
        preset(cfg.preset).iterations["hrpa"]
    cfg = replace(cfg, iterations={**{s: 0 for s in STAGES}, "hrpa": n}, **overrides)
    if cfg.model.audio_features not in Dataset(dataset)._features:
        raise TrainError(f"{dataset} has no {cfg.model.audio_features!r} audio features, "
                         f"which the identity reads; preprocess with --audio-features "
                         f"{cfg.model.audio_features}")
    return cfg


def refined_records(info: dict, source: IdentityInfo, cfg: TrainConfig, identity: str | Path,
                    seconds: int) -> dict:
    """identity.json of a refined identity (``info``, as the run exported it) with the
    ``source`` identity's records kept (training schedule, observer reference, re-targeting)
    and what was refined from what."""
    info["train"]["config"]["iterations"] = {**source.train["config"]["iterations"],
                                             "hrpa": cfg.iterations["hrpa"]}
    info["train"]["seconds"] = source.train.get("seconds")
    for key in ("observer", "retarget"):
        if getattr(source, key) is not None:
            info[key] = getattr(source, key)
    info["hrpa"] = {**info.get("hrpa", {}), "other_voices": cfg.hrpa_other_voices,
                    "other_minutes": cfg.hrpa_other_minutes, "refined_from": str(identity),
                    "seconds": seconds}
    return info


def sync_shifts(most: int) -> np.ndarray:
    """[n] audio offsets (frames) of HRPA's sync term: 0 first, then +-2..+-most (a
    one-frame shift is too close to in sync to count against it)."""
    far = np.arange(2, most + 1)
    return np.concatenate([[0], far, -far]).astype(np.int64)


def sync_term(expert: torch.nn.Module, mel: torch.Tensor, faces: torch.Tensor,
              temperature: float) -> torch.Tensor:
    """HRPA's sync loss of W rendered windows ``faces`` [W, 15, 48, 96] and their audio
    ``mel`` [W * n, 1, 80, 16], each window's n windows at :func:`sync_shifts`: the expert's
    BCE when n is 1, else the InfoNCE that picks each window's in-sync audio among its
    shifted ones, averaged over the windows. The BCE rises for a mouth that looks like speech
    to the expert whenever it moves; the InfoNCE only for a mouth whose motion matches this
    audio better than the same audio earlier or later."""
    if len(mel) == len(faces):
        return expert.sync_loss(mel, faces)
    a, v = expert(mel, faces)
    logits = torch.einsum("wd,wnd->wn", v, a.reshape(len(v), -1, a.shape[-1])) / temperature
    return torch.nn.functional.cross_entropy(
        logits, torch.zeros(len(v), dtype=torch.long, device=logits.device))


@dataclass
class HrpaStage:
    """What the stage reads besides the training frames: the frozen expert and its record,
    the clip's expert mel [M, 80], face boxes at the training size [F, 3] and other voices'
    utterances (empty unless ``hrpa_other_voices`` > 0)."""

    expert: torch.nn.Module
    expert_info: dict
    sync_mel: np.ndarray
    boxes: np.ndarray
    other_voices: list[Utterance] = field(default_factory=list)

    @classmethod
    def start(cls, model: FG3DGS, step: int, cfg: TrainConfig, ds: Dataset, data: TrainData,
              device: torch.device, progress: bool = False) -> HrpaStage:
        """Switch ``model`` to its refined branch, made again from the base one at the
        stage's first ``step`` (0), and load the stage's data."""
        from ..sync.audio import sync_mel
        from ..sync.crops import face_boxes

        if model.refined is None or step == 0:   # (re)start from the base branch
            model.add_refined(adapter=cfg.hrpa_adapter)
        model.set_variant("refined")
        expert, info = load_frozen_expert(cfg.expert, device)
        mel = sync_mel(ds.audio())
        boxes = face_boxes(ds.landmarks) * (cfg.size / ds.manifest["size"])
        other = []
        if cfg.hrpa_other_voices > 0:
            from .other_voices import make_other_voices

            other = make_other_voices(cfg.hrpa_other_minutes, cfg.model.audio_features,
                                      cfg.seed + 3, data.model_id, progress=progress)
        return cls(expert, info, mel, boxes, other)

    def loss(self, model: FG3DGS, data: TrainData, K: torch.Tensor, cfg: TrainConfig,
             rng: np.random.Generator, variants: Callable[[int], np.ndarray | None],
             image_loss: Callable[..., torch.Tensor],
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, fused renders, true frames [W * T_FRAMES, S, S, 3]) of W =
        ``hrpa_windows`` runs of T_FRAMES consecutive random training frames: their own audio,
        the photometric, mouth-crop and sync terms; or (a share ``hrpa_other_voices`` of the
        steps) other voices' speech driving the mouth over those frames' poses and canvas, the
        sync term alone (there is no true frame for it). ``variants(n)``: the feature sets of
        n rows (one per window)."""
        from ..sync.audio import mel_windows
        from ..sync.crops import mouth_crops, stack_windows
        from ..sync.expert import T_FRAMES
        from .other_voices import draw_window

        W = cfg.hrpa_windows
        k0 = rng.integers(0, len(data) - T_FRAMES + 1, W)
        ks = (k0[:, None] + np.arange(T_FRAMES)).ravel()
        other = bool(self.other_voices) and rng.random() < cfg.hrpa_other_voices
        v = variants(W)                 # one feature set for each of the expert's windows
        b = data.batch(ks, device, None if v is None else np.repeat(v, T_FRAMES))
        shifts = sync_shifts(cfg.hrpa_shifts)
        if other:
            drawn = [draw_window(self.other_voices, rng) for _ in range(W)]
            b["audio"] = to_device(np.concatenate(
                [audio_windows(u.features, np.arange(f0, f0 + T_FRAMES)) for u, f0 in drawn]),
                device)
            mel = np.concatenate([mel_windows(u.mel, f0 + shifts) for u, f0 in drawn])
        else:
            mel = mel_windows(self.sync_mel, (b["frames"][::T_FRAMES, None] + shifts).ravel())
        mel = to_device(mel, device)
        drive = model.drive(b["audio"], b["expression"])
        renders = model.render_regions(drive, b["viewmats"], K, cfg.size, cfg.size, cfg.backend)
        out = fuse(renders, b["canvas"])
        boxes = to_device(self.boxes[b["frames"]], device)
        crops = mouth_crops(out.permute(0, 3, 1, 2), boxes)
        sync = sync_term(self.expert, mel, stack_windows(crops), cfg.hrpa_temperature)
        if other:
            return cfg.sync_weight * sync, out, b["image"]
        loss = image_loss(out, b["image"], cfg.dssim) + cfg.sync_weight * sync
        if cfg.hrpa_crop_l1 > 0:    # the mouth's own pixels weigh as much as the sync term
            real = mouth_crops(b["image"].permute(0, 3, 1, 2), boxes)
            loss = loss + cfg.hrpa_crop_l1 * (crops - real).abs().mean()
        return loss, out, b["image"]
