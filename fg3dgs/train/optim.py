"""What each stage optimises: its parameter groups and learning rates, its optimiser, and the
means' learning-rate decay of the static stage.

Groups are named (``"<region>.<param>"``, ``"net.<region>.main"``, ``"hash"``, ...): the
densification strategy finds a region's groups by name, and checkpoints key the Adam moments
by them (:mod:`.checkpoint`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..model.gaussians import PARAMS
from ..model.identity import FG3DGS
from .config import TrainConfig


def _gaussian_groups(stage: str, model: FG3DGS, cfg: TrainConfig, extent: float) -> list[dict]:
    """Each region's Gaussian parameters: the 3DGS rates in the static stage (the means'
    scaled by the head's ``extent``); after it colours and opacities only, at 0.3x."""
    groups = []
    for r in model.cfg.regions:
        gs = model.gaussians[r]
        lrs = {"means": cfg.lr_means * extent, "quats": cfg.lr_quats,
               "log_scales": cfg.lr_scales, "opacity_logits": cfg.lr_opacity, "sh": cfg.lr_sh}
        for name in PARAMS:
            if stage != "static" and name in ("means", "quats", "log_scales"):
                continue            # geometry frozen after stage 1 (H3 plan cached)
            lr = lrs[name] if stage == "static" else 0.3 * lrs[name]
            groups.append({"name": f"{r}.{name}", "params": [getattr(gs, name)], "lr": lr})
    return groups


def _network_groups(model: FG3DGS, cfg: TrainConfig, lip_head: nn.Module) -> list[dict]:
    """H3 tables, deformation networks (the paper's 1e-4 vs 1e-5 split), encoders and, with
    the lip prior, its head: stages 2 and 3."""
    groups = [{"name": "hash", "params": list(model.hash.parameters()), "lr": cfg.lr_hash}]
    for r, net in model.nets.items():
        main, rest = [], []
        for n, p in net.named_parameters():
            is_main = r in ("face", "head") or n.split(".")[0] in ("q", "k", "v")
            (main if is_main else rest).append(p)
        groups.append({"name": f"net.{r}.main", "params": main, "lr": cfg.lr_face_net})
        if rest:
            groups.append({"name": f"net.{r}.rest", "params": rest, "lr": cfg.lr_other_net})
    groups.append({"name": "encoders", "params": list(model.audio.parameters())
                   + list(model.expression.parameters()), "lr": cfg.lr_other_net})
    if cfg.lip_prior > 0:
        groups.append({"name": "lip_head", "params": list(lip_head.parameters()),
                       "lr": cfg.lr_face_net})
    return groups


def _hrpa_groups(model: FG3DGS, cfg: TrainConfig) -> list[dict]:
    """HRPA: only the refined branch learns; its features' adapter alone (adapter mode), or
    its mouth network and the mouth's colour correction."""
    if model.cfg.refined_adapter:
        return [{"name": "refined.adapter",
                 "params": list(model.refined["adapter"].parameters()),
                 "lr": cfg.lr_hrpa_adapter}]
    mouth = model.cfg.refined_region
    return [{"name": "refined.net", "params": list(model.refined["net"].parameters()),
             "lr": cfg.lr_hrpa_net},
            {"name": "refined.colour",
             "params": list(model.refined["colour"][mouth].parameters()),
             "lr": cfg.lr_colour}]


def param_groups(stage: str, model: FG3DGS, cfg: TrainConfig, extent: float,
                 lip_head: nn.Module) -> list[dict]:
    """The named optimiser groups of ``stage`` (see the module's docstring)."""
    if stage == "hrpa":
        return _hrpa_groups(model, cfg)
    groups = _gaussian_groups(stage, model, cfg, extent)
    if stage != "static":
        groups += _network_groups(model, cfg, lip_head)
    if stage == "fusion":
        groups.append({"name": "colour", "params": list(model.colour.parameters()),
                       "lr": cfg.lr_colour})
    return groups


def stage_optimizer(stage: str, model: FG3DGS, cfg: TrainConfig, extent: float,
                    lip_head: nn.Module, device: torch.device) -> torch.optim.Adam:
    """A new Adam over ``stage``'s groups; only their parameters keep requiring gradients
    (the model's and the lip head's others are frozen, and the model's caches dropped)."""
    groups = param_groups(stage, model, cfg, extent, lip_head)
    trainable = {id(p) for g in groups for p in g["params"]}
    for p in [*model.parameters(), *lip_head.parameters()]:
        p.requires_grad_(id(p) in trainable)
    model.invalidate()
    return torch.optim.Adam(groups, eps=1e-15, fused=device.type == "cuda")


def schedule_means_lr(opt: torch.optim.Optimizer, cfg: TrainConfig, step: int, extent: float):
    """The static stage's ``step``: the means' rate decays log-linearly from ``lr_means`` to
    ``lr_means_final`` over the stage (times ``extent``); the other rates stay."""
    f = step / max(1, cfg.iterations["static"])
    lr = np.exp((1 - f) * np.log(cfg.lr_means) + f * np.log(cfg.lr_means_final)) * extent
    for g in opt.param_groups:
        if g["name"].endswith(".means"):
            g["lr"] = lr
