"""What a run writes besides its checkpoint: previews of validation frames
(``preview_<stage>.png``), the loss curve (``loss_curve.png``) and at the end the identity
(``identity.safetensors`` + ``identity.json`` with the run's records, and the replay track).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio_features import feature_model
from ..io_utils import atomic_output
from ..media import FPS
from ..model.fusion import fuse
from ..model.identity import FG3DGS
from ..preprocess.dataset import Dataset
from . import STAGES
from .config import TrainConfig
from .data import TrainData
from .replay_writer import write_replay


@torch.no_grad()
def render_frames(model: FG3DGS, ds: Dataset, size: int, features: str, frames: np.ndarray,
                  backend: str = "auto", device: torch.device | str = "cpu",
                  deformed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(truth, render) [n, S, S, 3] float of dataset frames [n] at ``size``, driven by the
    dataset's ``features`` of their own audio and expressions, over their own canvases: the
    frames as training sees them (previews, and ``fg3dgs eval``'s validation frames).
    ``deformed=False``: the canonical Gaussians (the static stage)."""
    data = TrainData(ds, size, features, frames)
    b = data.batch(np.arange(len(frames)), device)
    drive = model.drive(b["audio"], b["expression"]) if deformed else None
    K = torch.from_numpy(data.K).to(device)
    renders = model.render_regions(drive, b["viewmats"], K, size, size, backend)
    return (b["image"].cpu().numpy(),
            fuse(renders, b["canvas"]).clamp(0, 1).cpu().numpy())


def write_preview(path: Path, truth: np.ndarray, render: np.ndarray):
    """A PNG sheet: one row per frame, truth beside render (both [n, S, S, 3] in [0, 1])."""
    import imageio.v3 as iio

    rows = [np.concatenate([t, o], 1) for t, o in zip(truth, render)]
    sheet = (np.concatenate(rows, 0) * 255).round().astype(np.uint8)
    with atomic_output(path) as tmp:
        iio.imwrite(tmp, sheet, extension=".png")


def write_loss_curve(path: Path, history: list[list], iterations: dict[str, int]):
    """Loss (log scale) and PSNR of the logged steps ([stage, step, loss, psnr] rows), the
    stages one after another on the iteration axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    offset = 0
    for s in STAGES:
        h = [x for x in history if x[0] == s]
        if h:
            steps = [offset + x[1] for x in h]
            ax[0].plot(steps, [x[2] for x in h], label=s)
            ax[1].plot(steps, [x[3] for x in h], label=s)
        offset += iterations.get(s, 0)
    ax[0].set_yscale("log")
    ax[0].set_title("loss")
    ax[1].set_title("PSNR (dB; regions in stages 1-2, frame in 3)")
    for a in ax:
        a.set_xlabel("iteration")
        a.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def identity_meta(cfg: TrainConfig, ds: Dataset, data: TrainData, model: FG3DGS,
                  history: list[list], stage_seconds: dict[str, float],
                  lpips_info: dict | None, hrpa_skipped: str | None,
                  expert_info: dict) -> dict:
    """identity.json's records of the run: features, schedule, dataset, seconds per stage,
    the last fusion PSNRs, variants, track, and what LPIPS and HRPA did."""
    last = [x[3] for x in history if x[0] == "fusion"][-20:]
    meta = {"audio_features": cfg.model.audio_features,
            "audio_model": feature_model(cfg.model.audio_features, data.model_id),
            "size": cfg.size,
            "train": {"preset": cfg.preset, "config": cfg.to_dict(),
                      "dataset": str(ds.path),
                      "dataset_video_sha256": ds.manifest["source"]["sha256"],
                      "frames": len(data),
                      "stage_seconds": {k: round(v, 1) for k, v in stage_seconds.items()}},
            "metrics": {"train_psnr_last": float(np.mean(last)) if last else None},
            "variants": list(model.variants),
            "track": {"fps": FPS, "frames": len(ds)}}
    if lpips_info is not None:
        meta["lpips"] = lpips_info
    if hrpa_skipped:
        meta["hrpa"] = {"skipped": hrpa_skipped}
    if model.refined is not None:
        meta["hrpa"] = {"iterations": cfg.iterations.get("hrpa", 0),
                        "sync_weight": cfg.sync_weight,
                        "sync_term": ({"infonce_shifts": cfg.hrpa_shifts,
                                       "temperature": cfg.hrpa_temperature}
                                      if cfg.hrpa_shifts > 1 else "bce"),
                        "expert": {k: expert_info.get(k) for k in ("source", "path")}}
    return meta


def export_identity(run: Path, model: FG3DGS, ds: Dataset, data: TrainData, size: int,
                    meta: dict) -> Path:
    """Write the identity into ``run``: the model with the dataset's background, track and
    expressions, ``meta`` (:func:`identity_meta`), and the replay track for new speech."""
    extras = {"background": data.background.astype(np.float32),
              "track_R": ds.R.astype(np.float32), "track_t": ds.t.astype(np.float32),
              "K": data.K.astype(np.float32),
              "expression": np.asarray(ds.expression, np.float32)}
    if ds.canonical is not None:     # the head space, for other clips' pose tracks
        extras["canonical"] = ds.canonical.astype(np.float32)
    model.save_pretrained(run, extras, meta)
    write_replay(run, ds, size)      # torso and poses for new speech
    return run
