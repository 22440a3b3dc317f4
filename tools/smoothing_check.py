"""Does smoothing the driving features at render time pay? Renders an ``artic`` identity on
new clips (as ``fg3dgs eval RUN --cross``) with the speech front-end's four mouth parameters
passed through a temporal filter first, and prints the cross metrics' means per filter.

    python tools/smoothing_check.py RUN CLIP [CLIP ...] [--filters none sg5 sg7 g1]

``sgN``: Savitzky-Golay, window N frames of 20 ms, order 2; ``gS``: Gaussian, sigma S frames;
``none``: the front-end's features as they are. Writes RUN/eval/cross_mouth.json on the
way; the printed numbers are what to read.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

from fg3dgs.evaluate.cross import cross_evaluate

KEYS = ("psnr", "psnr_head", "psnr_jaw_band", "psnr_mouth", "lmd_px", "opening_r_real",
        "jitter_ratio")


def smoother(name: str):
    """[T, C] -> [T, C] along time."""
    if name == "none":
        return lambda f: f
    if name.startswith("sg"):
        return lambda f: savgol_filter(f, int(name[2:]), 2, axis=0)
    if name.startswith("g"):
        return lambda f: gaussian_filter1d(f, float(name[1:]), axis=0)
    raise SystemExit(f"unknown filter {name!r}: use none, sgN (odd N >= 3) or gS")


def filtered_mouth(filt):
    """speech -> the front-end's four mouth parameters [T, 4], filtered over time."""
    def mouth(speech) -> np.ndarray:
        f = speech.features("artic", 0, speech.feature_frames)          # [T, 5]
        return np.clip(filt(f[:, :4]), 0.0, 1.0)

    return mouth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--filters", nargs="+", default=["none", "sg5", "sg7", "g1"])
    args = ap.parse_args()
    print("| filter | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for name in args.filters:
        res = cross_evaluate(args.run, args.clips, progress=False, video=False,
                             mouth=filtered_mouth(smoother(name)))
        m = res["mean"]["base"]
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |", flush=True)


if __name__ == "__main__":
    main()
