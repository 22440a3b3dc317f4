"""Speech front-ends on recorded human speech: frame accuracy (Pearson r of each output with
the truth, its spread: the std of the output over the truth's) on the held-out tenth of the
recorded Russian sentences of :mod:`fg3dgs.synth.festvox_ru` (one speaker, the phone timings
that came with the corpus, mapped to the generator's mouth targets; the set that ``fg3dgs
train-audio`` reports on), clean and with one augmented copy each, over all frames and over those where the man speaks
(r over all frames also rewards telling speech from pauses); then the jaw output's r
at -1, 0 and +1 of its 20 ms frames. Downloads the corpus on first use (Debian's
festvox-ru, 179 MB, into $FG3DGS_CACHE).

    python tools/recorded_check.py FRONTEND.safetensors [...]
"""

from __future__ import annotations

import argparse

from fg3dgs.frontend import FrontendError, load_frontend
from fg3dgs.frontend.train import frame_accuracy, jaw_lag_r, recorded_heldout
from fg3dgs.mel import RATE
from fg3dgs.synth.festvox_ru import CorpusMissing, fetch

OUTPUTS = ("jaw_open", "lip_spread", "lip_round", "lip_closure")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("frontends", nargs="+")
    args = ap.parse_args()
    try:
        models = [load_frontend(path)[0].float() for path in args.frontends]
        fetch()
    except (FrontendError, CorpusMissing) as exc:
        ap.error(str(exc))
    clean, augmented = recorded_heldout()         # the set train-audio's report measures
    minutes = sum(len(m) for m, _ in clean) / RATE / 60
    print(f"{len(clean)} held-out recordings, {minutes:.1f} min; r (spread) per output, "
          "speech/pause right, then r over the frames where he speaks")
    for path, model in zip(args.frontends, models):
        for kind, feats in (("clean", clean), ("augmented", augmented)):
            acc = frame_accuracy(model, feats)
            print(f"{path} {kind}: " + ", ".join(
                f"{k} {acc[k]['r']:.3f} ({acc[k]['spread']:.2f})" for k in OUTPUTS)
                + f"; {100 * acc['speech']['accuracy']:.1f} %; while speaking, r: " + ", ".join(
                    f"{acc[k]['r_speaking']:.3f}" for k in OUTPUTS))
        print(f"{path} jaw r at -1 / 0 / +1 frames: "
              + " / ".join(f"{r:.3f}" for r in jaw_lag_r(model, clean)))


if __name__ == "__main__":
    main()
