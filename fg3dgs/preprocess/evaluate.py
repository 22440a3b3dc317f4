"""Measure a preprocessed synthetic clip against the generator's truth, against the preprocessing's accuracy targets.

The preprocessing never reads the truth; this compares afterwards, in the dataset's crop:
head rotation (up to the constant rotation between the two head spaces), landmark error over
the inter-ocular distance, and the IoU of the eye and mouth masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..facemesh import LABEL_EYES, LABEL_MOUTH, LEFT_IRIS, RIGHT_IRIS
from ..landmark_schemes import to_ibug68
from ..synth.truth import load_truth
from .crop import crop_points
from .pose import rotation_errors


def evaluate_against_truth(dataset: str | Path, synth: str | Path, mask_stride: int = 5):
    import imageio.v3 as iio

    dataset, synth = Path(dataset), Path(synth)
    manifest = json.loads((dataset / "manifest.json").read_text())
    truth = load_truth(synth)
    crop = (manifest["crop"]["x0"], manifest["crop"]["y0"], manifest["crop"]["side"])
    size = manifest["size"]
    F = min(manifest["frames"], truth.n_frames)
    cams = np.load(dataset / "cameras.npz")
    rot = rotation_errors(cams["R"][:F].astype(np.float64),
                          truth.arrays["R"][:F].astype(np.float64))
    lm = np.load(dataset / "landmarks.npy")[:F, :, :2]
    true_lm = crop_points(truth.arrays["landmarks"][:F], crop, size)[..., :2]
    iod = np.linalg.norm(true_lm[:, RIGHT_IRIS] - true_lm[:, LEFT_IRIS], axis=-1)
    if lm.shape[1] == 68:     # face-alignment's layout: compare at the same features
        true_lm = to_ibug68(true_lm)
    lm_err = np.linalg.norm(lm - true_lm, axis=-1) / iod[:, None]
    # Truth label maps into the crop: nearest-neighbour resampling of the video-sized maps.
    x0, y0, side = crop
    src = (np.arange(size) + 0.5) * side / size - 0.5
    ious = {"eyes": [], "mouth": []}
    H = truth.regions(0).shape[0]
    for i in range(0, F, mask_stride):
        t = truth.regions(i)
        ys = np.clip(np.round(y0 + src).astype(int), 0, H - 1)
        xs = np.clip(np.round(x0 + src).astype(int), 0, H - 1)
        inside = ((y0 + src)[:, None] >= 0) & ((y0 + src)[:, None] < H) & \
                 ((x0 + src)[None] >= 0) & ((x0 + src)[None] < H)
        t_crop = np.where(inside, t[ys][:, xs], 0)
        got = iio.imread(dataset / "labels" / f"{i:06d}.png")
        for name, label in (("eyes", LABEL_EYES), ("mouth", LABEL_MOUTH)):
            a, b = got == label, t_crop == label
            ious[name].append((a & b).sum() / max(1, (a | b).sum()))
    timings = manifest.get("timings", {})
    return {
        "frames": F,
        "rotation_median_deg": float(np.median(rot)),
        "rotation_p95_deg": float(np.percentile(rot, 95)),
        "landmark_error_median_iod": float(np.median(lm_err)),
        "iou_eyes": float(np.mean(ious["eyes"])),
        "iou_mouth": float(np.mean(ious["mouth"])),
        "throughput_fps": F / timings["total_s"] if "total_s" in timings else float("nan"),
    }
