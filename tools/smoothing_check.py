"""Does smoothing the driving features at render time pay? Renders an ``artic`` identity on
new clips (as ``fg3dgs eval RUN --cross``) with the speech front-end's four mouth parameters
passed through a temporal filter first, and prints the cross metrics' means per filter.

    python tools/smoothing_check.py RUN CLIP [CLIP ...] [--filters none sg5 sg7 g1]

``sgN``: Savitzky-Golay, window N frames of 20 ms, order 2; ``gS``: Gaussian, sigma S frames;
``none``: the front-end's features as they are. The clips are ``fg3dgs synth`` folders (the
check goes through the ``--truth-mouth`` path, which needs a clip with truth). Writes RUN/eval/cross_truth_mouth.json (the
slot ``--truth-mouth`` uses) on the way; the printed numbers are what to read.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_filter

import fg3dgs.evaluate.cross as cross

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


def smoothed_speech(filt):
    class SmoothedSpeech:
        """A clip's speech whose ``artic`` mouth parameters are the front-end's, filtered."""

        def __init__(self, speech, truth):
            self.speech = speech
            f = speech.features("artic", 0, speech.feature_frames)      # [T, 5]
            self.mouth = np.clip(filt(f[:, :4]), 0.0, 1.0)
            self.frames, self.samples = speech.frames, speech.samples
            self.feature_frames = speech.feature_frames

        def features(self, name, k0, k1, model_id=None):
            f = self.speech.features(name, k0, k1, model_id).copy()
            f[:, :4] = self.mouth[k0:k1]
            return f

        def audio(self):
            return self.speech.audio()

    return SmoothedSpeech


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--filters", nargs="+", default=["none", "sg5", "sg7", "g1"])
    args = ap.parse_args()
    print("| filter | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for name in args.filters:
        cross.TruthMouthSpeech = smoothed_speech(smoother(name))
        res = cross.cross_evaluate(args.run, args.clips, progress=False, video=False,
                                   truth_mouth=True)
        m = res["mean"]["base"]
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |", flush=True)


if __name__ == "__main__":
    main()
