"""Tuning an identity's audio path on its own frames (``fg3dgs retarget ... --data DS``).

Distillation (:mod:`.retarget`) teaches a new audio encoder to give the driving features the
old one gave for the identity's own voice: it cannot know more than the old encoder did.
Here the new encoder and the mouth network learn from the pixels instead, everything else
frozen: the dataset's training frames, each heard through its clean features or, with
probability ``augment_p``, a voice-varied copy of the clip (:mod:`.audio_variants`); the
loss is the fusion stage's photometric loss over the frame plus the L1 of the mouth crop
(the mouth is a few percent of the frame). Then the driving features' spread under the
voice-varied copies is rescaled to their spread on the clean speech (:mod:`.spread`): the
encoder hedges on voices it is unsure of, which would damp the mouth on a user's voice.

The mouth network changes, so an HRPA-refined branch made for the old one no longer fits:
the caller drops it (run ``fg3dgs refine`` on the result).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..model.fusion import fuse
from ..model.identity import FG3DGS
from ..preprocess.dataset import Dataset
from ..sync.crops import face_boxes, mouth_crops
from .audio_variants import AudioVariantConfig, draw_variants
from .data import TrainData
from .losses import photometric
from .retarget_config import AudioTuneConfig
from .spread import driving_features, match_spread


def tunable(model: FG3DGS) -> list[torch.nn.Parameter]:
    """The audio path: the audio encoder and the mouth network (the head's without region
    split)."""
    return [*model.audio.parameters(), *model.nets[model.cfg.refined_region].parameters()]


def _loss(model: FG3DGS, data: TrainData, b: dict, K: torch.Tensor, boxes: np.ndarray,
          cfg: AudioTuneConfig, dssim: float) -> torch.Tensor:
    """Photometric loss of batch ``b``'s fused render plus ``crop_l1`` x its mouth crop's L1."""
    S = data.size
    drive = model.drive(b["audio"], b["expression"])
    out = fuse(model.render_regions(drive, b["viewmats"], K, S, S), b["canvas"])
    loss = photometric(out, b["image"], dssim)
    if cfg.crop_l1 > 0:
        box = torch.as_tensor(boxes[b["frames"]], dtype=out.dtype, device=out.device)
        crops = [mouth_crops(x.permute(0, 3, 1, 2), box) for x in (out, b["image"])]
        loss = loss + cfg.crop_l1 * (crops[0] - crops[1]).abs().mean()
    return loss


def tune_audio_path(model: FG3DGS, dataset: Dataset | str | Path, size: int,
                    cfg: AudioTuneConfig = AudioTuneConfig(), dssim: float = 0.2,
                    device: torch.device | str = "cpu", progress: bool = True) -> dict:
    """Tune ``model``'s audio encoder and mouth network in place on ``dataset``'s training
    frames at ``size`` px (the identity's); returns the report: the fit (the loss on
    ``check_frames`` fixed frames, clean features) before and after, and the spread gain."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    data = TrainData(ds, size, model.cfg.audio_features, ds.split("train"), progress=progress,
                     variants=AudioVariantConfig(cfg.audio_copies, cfg.seed + 2))
    if data.features.shape[1] != model.cfg.audio_in_dim:
        raise ValueError(f"the dataset's {model.cfg.audio_features!r} features have "
                         f"{data.features.shape[1]} channels, the identity reads "
                         f"{model.cfg.audio_in_dim}")
    model.to(device).train()
    params = tunable(model)
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    model.invalidate()
    K = torch.from_numpy(data.K).to(device)
    boxes = face_boxes(ds.landmarks) * (size / ds.manifest["size"])
    rng = np.random.default_rng(cfg.seed)
    check = np.linspace(0, len(data) - 1, min(cfg.check_frames, len(data))).round().astype(int)

    @torch.no_grad()
    def fit() -> float:
        return float(np.mean([_loss(model, data, data.batch(check[a:a + 8], device), K, boxes,
                                    cfg, dssim).item() for a in range(0, len(check), 8)]))

    report = {"config": asdict(cfg), "dataset": str(ds.path), "fit_before": round(fit(), 5)}
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.1)
    for _ in tqdm(range(cfg.steps), desc="tuning the audio path", unit="it",
                  disable=not progress):
        ks = rng.integers(0, len(data), cfg.batch)
        variants = draw_variants(rng, len(ks), cfg.audio_copies, cfg.augment_p) \
            if cfg.audio_copies > 0 and cfg.augment_p > 0 else None
        loss = _loss(model, data, data.batch(ks, device, variants), K, boxes, cfg, dssim)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    model.invalidate()
    report["fit_after"] = round(fit(), 5)
    if cfg.voice_spread and cfg.audio_copies > 0:
        enc, frames = model.audio, data.index
        clean = driving_features(enc, data.feature_sets[0], frames)
        copies = [(f, frames) for f in data.feature_sets[1:]]
        gain = match_spread(enc, copies, [clean] * len(copies))
        report["voice_spread_gain_median"] = round(float(gain.median()), 4)
    model.to("cpu")
    report["seconds"] = round(time.perf_counter() - t0)
    return report
