"""The losses of stages 1-3 on a rendered batch: each region against its masked frame (static,
deform) and the fused frame against the real one (fusion, with its LPIPS term where the
weights load).

``image_loss`` is :func:`~fg3dgs.train.losses.photometric` or its compiled form (the trainer
chooses, see ``Trainer.image_loss``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..device import to_device
from .config import TrainConfig
from .data import region_masks
from .losses import masked_l1, mean_weights, padded_batch, psnr_tensor

ImageLoss = Callable[..., torch.Tensor]


def region_loss(renders: dict, img: torch.Tensor, labels: torch.Tensor, windows: dict | None,
                quality: bool, cfg: TrainConfig,
                image_loss: ImageLoss) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stages 1-2: (loss, PSNR or None). Each region's render (rgb [B, h, w, 3], alpha
    [B, h, w, 1]) against the image [B, H, W, 3] inside its mask, and its alpha against the
    mask: photometric + alpha_weight x L1, means over its window (x0, y0, w, h; the whole
    frame where it has none). The windowed regions (eyes, mouth) go through the loss in one
    call, zero-padded to one size and weighted by 1 / (their pixels): the same sum
    (:func:`~fg3dgs.train.losses.photometric`), fewer kernels."""
    loss, psnr = 0.0, (0.0 if quality else None)
    parts = []
    masks = region_masks(labels, tuple(renders))                         # one lookup
    for k, (r, (rgb, a)) in enumerate(renders.items()):
        mask, im = masks[..., k:k + 1], img
        window = (windows or {}).get(r)
        if window is not None:
            x0, y0, w, h = window
            mask, im = (t[:, y0:y0 + h, x0:x0 + w] for t in (mask, im))
        target = im * mask
        if quality:
            psnr += psnr_tensor(rgb.detach(), target) / len(renders)
        if window is not None:
            parts.append((rgb, a, target, mask))
        else:
            loss = loss + image_loss(rgb, target, cfg.dssim) \
                + cfg.alpha_weight * (a - mask).abs().mean()
    if parts:
        rgb, a, target, mask = (padded_batch([p[i] for p in parts]) for i in range(4))
        w = to_device(mean_weights([tuple(p[0].shape[:3]) for p in parts]), rgb.device)
        loss = loss + image_loss(rgb, target, cfg.dssim, w) \
            + cfg.alpha_weight * ((a - mask).abs()[..., 0] * w).sum()
    return loss, psnr


def alpha_l1(renders: dict, labels: torch.Tensor) -> torch.Tensor:
    """Fusion: the sum over regions of the mean |alpha - mask| over the frame, all regions
    in one term (their frames are the same size; fewer kernels than a term each)."""
    alphas = torch.cat([a for _rgb, a in renders.values()], -1)         # [B, H, W, R]
    return len(renders) * (alphas - region_masks(labels, tuple(renders))).abs().mean()


def fusion_loss(out: torch.Tensor, img: torch.Tensor, renders: dict, labels: torch.Tensor,
                cfg: TrainConfig, image_loss: ImageLoss,
                lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
                interior: torch.Tensor | None) -> torch.Tensor:
    """Fusion: the fused frame ``out`` against the image (both [B, H, W, 3]), ``lpips``'s
    term where there is one, the regions' alphas against their masks and the L1 inside the
    inner lips (``interior`` [B, H, W, 1], where ``mouth_interior`` > 0)."""
    loss = image_loss(out, img, cfg.dssim)
    if lpips is not None:
        loss = loss + lpips(out, img)
    loss = loss + cfg.fusion_alpha_weight * alpha_l1(renders, labels)
    if cfg.mouth_interior > 0:
        loss = loss + cfg.mouth_interior * masked_l1(out, img, interior)
    return loss


def load_fusion_lpips(cfg: TrainConfig, device: torch.device,
                      before: dict | None) -> tuple[torch.nn.Module | None, dict]:
    """LPIPS for the fusion loss (v0.1 AlexNet, default weight paths) on ``device``, and the
    record the identity keeps of it. Without its weights: None, one warning, and the record
    says why (``before``: the record of the steps before a resume)."""
    from ..perceptual import WeightsUnavailable, load_lpips

    before = before or {}
    if cfg.lpips <= 0:
        return None, {"used": False, "reason": "the LPIPS weight (TrainConfig.lpips) is 0"}
    try:
        net = load_lpips(device=device)
    except WeightsUnavailable as exc:
        why = str(exc) + (" (the fusion steps before the resume used it)"
                          if before.get("used") else "")
        warnings.warn(f"the fusion loss runs without its LPIPS term: {why}", stacklevel=3)
        return None, {"used": False, "reason": why}
    return net, {"used": True, "weight": cfg.lpips, "patches": [cfg.lpips_patches,
                                                               cfg.lpips_patch],
                 "weights": net.weights}


def lpips_patch_loss(net: torch.nn.Module, out: torch.Tensor, img: torch.Tensor,
                     cfg: TrainConfig, rng: np.random.Generator) -> torch.Tensor:
    """``cfg.lpips`` x the mean LPIPS of ``lpips_patches`` square patches of side
    ``lpips_patch`` (the frame's side if that is smaller), uniformly placed inside the
    frame, the same places in the render and the image [B, H, W, 3]. Draws its corners
    from the run's random generator (only when LPIPS is in use)."""
    from ..perceptual.lpips import patch_pairs

    H, W = out.shape[1:3]
    size = min(cfg.lpips_patch, H, W)
    ys = rng.integers(0, H - size + 1, cfg.lpips_patches)
    xs = rng.integers(0, W - size + 1, cfg.lpips_patches)
    a, b = patch_pairs(out, img, list(zip(ys.tolist(), xs.tolist())), size)
    return cfg.lpips * net(a, b).mean()
