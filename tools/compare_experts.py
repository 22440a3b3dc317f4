"""Sync experts side by side on the same held-out clips.

    python tools/compare_experts.py EXPERT [EXPERT ...] [--clips 40] [--seed 1]

Makes ``--clips`` 5-second held-out clips (held-out voice variants and sentences) with the
wide voice draw and with the ordinary-speaker draw, and an augmented copy of the wide ones'
audio (the training augmentation: noise, rooms, telephone, codecs, level, vocal-tract warp),
then prints each expert's pair accuracy and offset detection on each set
(:func:`fg3dgs.sync.train.evaluate_expert`). EXPERT: a file or the zoo's spec, as
``fg3dgs eval --expert`` takes it.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    from fg3dgs.frontend.augment import augment
    from fg3dgs.sync.audio import sync_mel
    from fg3dgs.sync.data import SyncClip, make_clips
    from fg3dgs.sync.io import load_expert
    from fg3dgs.sync.train import evaluate_expert, trim_clip

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experts", nargs="+")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    photos = ("builtin:astronaut", "builtin:hopper")
    sets = {}
    for voices in ("wide", "speakers"):
        clips = make_clips(photos, 5.0 * args.clips, True, args.seed, 192,
                           sentences_per_clip=(2, 3), progress=False, count=args.clips,
                           voices=voices)
        sets[voices] = [trim_clip(c, 5.0) for c in clips]
    rng = np.random.default_rng(args.seed + 4)
    noisy = []
    for c in sets["wide"]:
        x, warp = augment(c.audio, rng)
        noisy.append(SyncClip(c.context, sync_mel(x, warp=warp), x, c.identity, c.voice,
                              c.text))
    sets["wide, augmented audio"] = noisy
    print("| expert | held-out clips | pair accuracy | offset within 1 |")
    print("|---|---|---|---|")
    for spec in args.experts:
        expert = load_expert(spec)[0]
        for name, clips in sets.items():
            r = evaluate_expert(expert, clips, seed=args.seed + 1)
            print(f"| {spec} | {name} | {r['pair_accuracy']:.3f} | "
                  f"{100 * r['offset_within_1']:.0f} % |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
