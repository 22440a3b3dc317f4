"""Lip sync on many more real Czech voices than the sync panel holds: every other level of
the fillets-ng voice recordings the panel fetched (``python -m fg3dgs.bench sync --fetch``),
except the panel's own levels, each speaker's lines joined to 10-15 s as the panel does;
the mouth opening's r with the loudness (best lag within +-4 frames), per clip and median,
for each variant the identity has (and, with a refined one, refined against base per clip).

    python tools/czech_wide_check.py IDENTITY [--levels 15] [--json FILE] [--choosing]

No clip of the check is used to train, tune or choose anything. ``--choosing`` takes the
levels between them instead (the other half of those the panel does not use): a wider set
to choose between candidates on, so that the check stays unseen.
"""

from __future__ import annotations

import argparse
import json
import statistics

from fg3dgs.bench.speech_panel import (
    PANEL,
    ClipSpec,
    PanelClip,
    PanelError,
    join_lines,
    speech_dir,
)
from fg3dgs.bench.sync import (
    format_refinement,
    measure_clip,
    reference_std,
    refinement_check,
)
from fg3dgs.pipeline.talking_head import TalkingHead


def clips(levels: int, choosing: bool = False) -> list[PanelClip]:
    root = speech_dir() / "czech"
    taken = {row["level"] for row in PANEL["czech"]}
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in taken)
    out = []
    for lvl in names[1::2] if choosing else names[::2]:
        pair = []
        for spk in ("m", "v"):
            try:
                audio = join_lines(root / lvl, spk)
            except PanelError:
                break
            if len(audio) < 8 * 16000:
                break
            pair.append(PanelClip(ClipSpec(f"cs-{lvl}-{spk}", "czech", True,
                                           f"fillets-ng-data-cs {lvl}, speaker {spk}"),
                                  audio, None))
        if len(pair) == 2:              # both speakers, so each level weighs the same
            out += pair
        if len(out) >= 2 * levels:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("identity", help="run folder or zoo id")
    ap.add_argument("--levels", type=int, default=15,
                    help="game levels to take, two clips each (both speakers; default 15)")
    ap.add_argument("--json", help="write the per-clip results here")
    ap.add_argument("--choosing", action="store_true",
                    help="the levels between the check's, to choose on")
    args = ap.parse_args()
    if args.levels < 1:
        ap.error(f"--levels must be 1 or more, got {args.levels}")
    head = TalkingHead.load(args.identity)
    std = reference_std(head.info, None)[0]
    rows, results = {v: [] for v in head.variants}, []
    for clip in clips(args.levels, args.choosing):
        r = measure_clip(head, clip, {}, std)
        results.append(r)
        for v, m in r.variants.items():
            rows[v].append({"clip": r.name, "seconds": round(r.seconds, 1),
                            "env_r": m["env_r"], "env_lag": m["env_lag"], "motion": m["motion"]})
        print(f"{r.name:24s} {r.seconds:5.1f} s  " + "  ".join(
            f"{v}: env r {m['env_r']:.3f} lag {m['env_lag']:+d} motion {m['motion']:.2f}"
            for v, m in r.variants.items()), flush=True)
    for v, rs in rows.items():
        print(f"{v}: {len(rs)} clips, median env r "
              f"{statistics.median(x['env_r'] for x in rs):.3f}, median motion "
              f"{statistics.median(x['motion'] for x in rs):.2f}")
    if "refined" in rows:
        d = [b["env_r"] - a["env_r"] for a, b in zip(rows["base"], rows["refined"])]
        print(f"refined - base, env r per clip: median {statistics.median(d):+.3f}, "
              f"higher on {sum(x > 0 for x in d)} of {len(d)}")
        print(format_refinement(refinement_check(results)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"identity": args.identity, "variants": {
                v: {"clips": rs, "median_env_r": statistics.median(x["env_r"] for x in rs)}
                for v, rs in rows.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
