"""Speech front-ends on CMU Flite's voices: frame accuracy (Pearson r of each output with
the truth, its spread) on the held-out sentences spoken by Flite's four voices, clean and
augmented: the same set that ``fg3dgs train-audio`` reports under "flite" (same seed and
minutes), for front-ends made before that report existed; then the jaw output's r with the
truth shifted by -1, 0 and +1 of its 20 ms frames, on those and on the report's held-out
eSpeak voices (a lean to +1: the output comes late). Needs the flite program.

    python tools/flite_check.py FRONTEND.safetensors [...] [--seed 0] [--minutes 3]
"""

from __future__ import annotations

import argparse

from fg3dgs.frontend import FrontendError, load_frontend
from fg3dgs.frontend.augment import AugmentConfig
from fg3dgs.frontend.train import (
    FrontendTrainConfig,
    flite_heldout,
    frame_accuracy,
    jaw_lag_r,
    make_material,
    mel_features,
)

OUTPUTS = ("jaw_open", "lip_spread", "lip_round", "lip_closure")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("frontends", nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=FrontendTrainConfig.heldout_minutes)
    args = ap.parse_args()
    cfg = FrontendTrainConfig(seed=args.seed, heldout_minutes=args.minutes)
    try:
        models = [load_frontend(path)[0].float() for path in args.frontends]
    except FrontendError as exc:
        ap.error(str(exc))
    held = flite_heldout(cfg, progress=False)
    if isinstance(held, str):
        raise SystemExit(f"flite_check: {held}")
    clean, augmented, _ = held
    espeak = mel_features(make_material(cfg.heldout_minutes, True, cfg.seed, False), 0,
                       cfg.seed + 1, AugmentConfig(), False)
    print(f"{len(clean)} utterances; r (spread) per output, then speech/pause right")
    for path, model in zip(args.frontends, models):
        for kind, feats in (("clean", clean), ("augmented", augmented)):
            acc = frame_accuracy(model, feats)
            print(f"{path} {kind}: " + ", ".join(
                f"{k} {acc[k]['r']:.3f} ({acc[k]['spread']:.2f})" for k in OUTPUTS)
                + f"; {100 * acc['speech']['accuracy']:.1f} %")
        for kind, feats in (("Flite", clean), ("held-out eSpeak", espeak)):
            print(f"{path} jaw r at -1 / 0 / +1 frames, {kind}: "
                  + " / ".join(f"{r:.3f}" for r in jaw_lag_r(model, feats)))


if __name__ == "__main__":
    main()
