"""The start of a run: the folder it may write to, the device it trains on and the model
before training (Gaussians seeded from the dataset's frames, per region)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model.gaussians import GaussianSet
from ..model.identity import FG3DGS
from ..model.init_points import initial_points
from ..preprocess.dataset import Dataset
from . import TrainError
from .config import TrainConfig
from .data import TrainData


def check_new_run(run: Path, state: Path, force: bool):
    """TrainError unless ``run`` is empty, missing, or ``force`` says to train there anyway
    (``state``: its checkpoint, whose presence means a run to ``--resume``)."""
    if not (run.exists() and any(run.iterdir()) and not force):
        return
    if state.is_file():
        raise TrainError(f"{run} already holds a run; pass --resume to continue it, --force "
                         "to start over, or choose another --out")
    held = sorted(p.name for p in run.iterdir())
    raise TrainError(f"{run} is not empty (it holds {', '.join(held[:3])}"
                     f"{', ...' * (len(held) > 3)}); choose another --out, or "
                     "pass --force to train there anyway")


def train_device(backend: str) -> torch.device:
    """Where a run trains: on CUDA when it rasterizes with gsplat (``gsplat``, or ``auto``
    where gsplat works), else on the CPU with our rasterizer."""
    from ..render.gsplat_backend import gsplat_status

    if backend == "cpu":
        return torch.device("cpu")
    ok, why = gsplat_status()
    if backend == "gsplat" and not ok:
        raise TrainError(f"--backend gsplat is unavailable here: {why}; use --backend cpu")
    return torch.device("cuda" if ok else "cpu")


def _knn_scale(points: np.ndarray) -> np.ndarray:
    """Initial Gaussian std per point [N]: mean distance to its 3 nearest neighbours."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(points).query(points, k=4)
    return np.clip(d[:, 1:].mean(1), 1e-4, 0.01).astype(np.float32)


def initial_model(ds: Dataset, data: TrainData, cfg: TrainConfig) -> tuple[FG3DGS, float]:
    """The model before training, and the head's extent (m) for learning-rate scaling."""
    cams = np.load(ds.path / "cameras.npz")
    canonical = cams["canonical"].astype(np.float64)
    picks = np.linspace(0, len(data) - 1, min(12, len(data))).round().astype(int)
    frames = [(data.images[k].astype(np.float32) / 255, data.labels[k],
               data.viewmats[k][:3, :3].astype(np.float64),
               data.viewmats[k][:3, 3].astype(np.float64), data.K.astype(np.float64))
              for k in picks]
    if canonical.shape[0] != 478:
        raise TrainError("training needs the 478-point mediapipe layout (the dataset was "
                         "made with another landmarker); preprocess with --landmarker "
                         "mediapipe")
    pts = initial_points(canonical, frames, cfg.model.init_counts, cfg.seed)
    groups = {"face": ["face", "head_rest"], "eyes": ["eyes"], "mouth": ["mouth"],
              "head": ["face", "head_rest", "eyes", "mouth"]}
    sets = {}
    allp = np.concatenate([p for p, _, _ in pts.values()])
    for r in cfg.model.regions:
        p, c, rigid = (np.concatenate([pts[k][i] for k in groups[r]]) for i in range(3))
        sets[r] = GaussianSet(torch.from_numpy(p), torch.from_numpy(c), cfg.model.sh_degree,
                              torch.from_numpy(_knn_scale(p)), opacity=0.5,
                              rigid=torch.from_numpy(rigid))
    lo, hi = allp.min(0), allp.max(0)
    pad = 0.15 * (hi - lo)
    model = FG3DGS(cfg.model, sets, (lo - pad).tolist(), (hi + pad).tolist())
    extent = float(np.linalg.norm(allp - allp.mean(0), axis=1).max())
    return model, extent
