"""A run's state for an exact resume: ``train_state.safetensors``.

Tensors, by key prefix: ``model.*`` (the model's state dict), ``lip_head.*`` (the lip prior's
head; absent in runs from before the prior), ``opt.<group>.<i>.{exp_avg,exp_avg_sq,step}``
(Adam's state per named group, :mod:`.optim`), ``densify.<region>.{grad_sum,count}`` (the
densification statistics of the static stage, :class:`~fg3dgs.model.gaussians.DensifyRegions`)
and ``rng.torch`` / ``rng.cuda``. The JSON metadata ``meta`` holds the configuration, stage,
step, the head's extent, the history, Gaussian counts, the groups' learning rates, NumPy's
random state, the LPIPS record and the seconds per stage. Runs written before the trainer
was split into modules use the same keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..io_utils import atomic_output

STATE = "train_state.safetensors"


def read_state(path: Path) -> dict:
    """{"meta": the JSON metadata, "tensors": name -> tensor (on the CPU)}."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    return {"meta": meta, "tensors": load_file(str(path))}


def write_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict):
    """Write the state atomically (a crash leaves the previous one), tensors moved to the
    CPU."""
    from safetensors.torch import save_file

    tensors = {k: v.cpu() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with ``prefix + "."`` before each key (made contiguous, as safetensors
    wants)."""
    return {f"{prefix}.{k}": v.detach().contiguous() for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix + "."``, the prefix taken off."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's moments and step count of every parameter that has them, by group name."""
    t = {}
    for g in opt.param_groups:
        for i, p in enumerate(g["params"]):
            st = opt.state.get(p)
            if st:
                for k in ("exp_avg", "exp_avg_sq"):
                    t[f"opt.{g['name']}.{i}.{k}"] = st[k].contiguous()
                t[f"opt.{g['name']}.{i}.step"] = torch.as_tensor(st["step"]).reshape(1)
    return t


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                   lrs: dict[str, float], device: torch.device):
    """Give a new optimiser the saved learning rates (``lrs``: group name -> rate) and Adam
    state of :func:`optimizer_tensors`; groups or rows the state lacks start afresh."""
    for g in opt.param_groups:
        g["lr"] = lrs.get(g["name"], g["lr"])
        for i, p in enumerate(g["params"]):
            key = f"opt.{g['name']}.{i}"
            if f"{key}.exp_avg" in tensors:
                step = tensors[f"{key}.step"].reshape(())    # fused Adam keeps it on the GPU
                opt.state[p] = {"step": step.to(p.device) if p.is_cuda else step,
                                "exp_avg": tensors[f"{key}.exp_avg"].to(device),
                                "exp_avg_sq": tensors[f"{key}.exp_avg_sq"].to(device)}


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """torch's random states (and CUDA's on a GPU run)."""
    t = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        t["rng.cuda"] = torch.cuda.get_rng_state()
    return t


def restore_rng(tensors: dict[str, torch.Tensor], numpy_state: dict,
                device: torch.device) -> np.random.Generator:
    """Set torch's random states back; returns the run's NumPy generator in its saved state."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    rng = np.random.default_rng()
    rng.bit_generator.state = numpy_state
    return rng
