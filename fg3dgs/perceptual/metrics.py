"""LPIPS and FID of rendered frames against real ones, for ``fg3dgs eval``: the networks with
their published weights (or why each is missing) and the metric entries of ``metrics.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Perceptual:
    """The LPIPS and FID networks of an evaluation, or (``reasons``) why each is missing."""
    lpips: object = None                    # fg3dgs.perceptual.LPIPS
    fid: object = None                      # fg3dgs.perceptual.FIDInceptionV3
    reasons: dict = field(default_factory=dict)     # "lpips" / "fid" -> the loader's message


def load_perceptual(lpips_backbone: str | Path | None = None,
                    lpips_linear: str | Path | None = None,
                    fid_weights: str | Path | None = None, device: str = "cpu") -> Perceptual:
    """LPIPS and FID with their published weights, from the given paths or the default ones.
    A metric whose weights are missing at the default places is unavailable (its reason is the
    loader's message); one whose paths were given and do not load raises
    :class:`fg3dgs.perceptual.WeightsUnavailable`."""
    from . import WeightsUnavailable, load_fid_inception, load_lpips

    out = Perceptual()
    try:
        out.lpips = load_lpips(lpips_backbone, lpips_linear, device)
    except WeightsUnavailable as exc:
        if lpips_backbone is not None or lpips_linear is not None:
            raise
        out.reasons["lpips"] = str(exc)
    try:
        out.fid = load_fid_inception(fid_weights, device)
    except WeightsUnavailable as exc:
        if fid_weights is not None:
            raise
        out.reasons["fid"] = str(exc)
    return out


@torch.no_grad()
def perceptual_metrics(nets: Perceptual, truth: np.ndarray, render: np.ndarray,
                       shared: dict | None = None, batch: int = 16) -> dict:
    """``{"lpips": ..., "fid": ...}`` entries of rendered frames against the real ones (both
    [F, H, W, 3] float in [0, 1]): ``{"available": True, "value": ..., "weights": ...}`` or
    ``{"available": False, "reason": ...}``. ``shared`` caches the real frames' Inception
    features across variants."""
    from . import frechet_distance_of_features, inception_features

    out = {}
    if nets.lpips is not None:
        device = next(nets.lpips.parameters()).device
        vals = []
        for a in range(0, len(truth), batch):
            t, r = (torch.from_numpy(np.ascontiguousarray(x[a:a + batch], np.float32))
                    .to(device).permute(0, 3, 1, 2) for x in (truth, render))
            vals.append(nets.lpips(t, r).cpu().numpy())
        out["lpips"] = {"available": True, "value": float(np.concatenate(vals).mean()),
                        "frames": int(len(truth)), "net": "alex", "version": "0.1",
                        "weights": dict(nets.lpips.weights)}
    else:
        out["lpips"] = {"available": False, "reason": nets.reasons["lpips"]}
    if nets.fid is not None:
        shared = {} if shared is None else shared
        if "fid_truth" not in shared:
            shared["fid_truth"] = inception_features(nets.fid, truth, batch)
        value = frechet_distance_of_features(shared["fid_truth"],
                                             inception_features(nets.fid, render, batch))
        out["fid"] = {"available": True, "value": value, "frames": int(len(truth)),
                      "weights": nets.fid.weights,
                      "note": "real vs rendered validation frames; FID falls with the number "
                              "of frames, compare only at equal counts"}
    else:
        out["fid"] = {"available": False, "reason": nets.reasons["fid"]}
    return out
