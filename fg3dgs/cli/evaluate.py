"""``fg3dgs eval``: an identity measured on its validation frames and on clips it never
saw (``--cross``)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..options import BACKENDS
from .errors import CommandError
from .parser import BACKEND_HELP, Command


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the identity's run folder (results go to RUN/eval/; for a "
                   "zoo identity, copy its folder first)")
    p.add_argument("--data", help="the dataset the identity was trained on: measure its "
                   "validation frames")
    p.add_argument("--cross", nargs="+", metavar="CLIP", help="clips of the same person the "
                   "identity never saw (a video or a `fg3dgs synth` folder, preprocessed "
                   "here; or a preprocessed dataset): render each with its own audio, "
                   "poses, eyes and torso and compare with its frames "
                   "(RUN/eval/cross.json)")
    p.add_argument("--truth-mouth", action="store_true",
                   help="with --cross, for an identity on the speech front-end (artic) and "
                   "synthetic clips: drive the mouth with the clips' true mouth parameters "
                   "instead of the front-end's estimate (what a perfect front-end would "
                   "give; RUN/eval/cross_truth_mouth.json)")
    p.add_argument("--truth", help="synthetic clip folder: also compare mouth and blinks "
                                   "with its truth")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    p.add_argument("--no-video", action="store_true", help="skip the side-by-side video")
    p.add_argument("--expert", help="sync expert for expert-C / expert-D (default: the "
                                    "shipped one)")
    p.add_argument("--audio", nargs="+", help="also score lip sync on these speech files "
                                              "(poses replayed from the validation frames)")
    p.add_argument("--syncnet", metavar="PATH", help="SyncNet's published weights "
                   "(syncnet_v2.model from joonson/syncnet_python): also report LSE-C / "
                   "LSE-D (unavailable without them)")
    p.add_argument("--lpips-backbone", metavar="PATH", help="torchvision's AlexNet weights "
                   "alexnet-owt-7be5be79.pth for LPIPS (default: TORCH_HUB/checkpoints/, "
                   "where torchvision caches them)")
    p.add_argument("--lpips-linear", metavar="PATH", help="LPIPS v0.1 linear layers "
                   "(lpips/weights/v0.1/alex.pth; default: the installed lpips package's, "
                   "else TORCH_HUB/checkpoints/lpips_alex_v0.1.pth)")
    p.add_argument("--fid-weights", metavar="PATH", help="pytorch-fid's Inception weights "
                   "pt_inception-2015-12-05-6726825d.pth (default: TORCH_HUB/checkpoints/)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_eval(args: argparse.Namespace) -> int:
    """measure a trained identity on its validation frames

    PSNR, SSIM, LMD, LPIPS and FID on the dataset's validation frames (LPIPS / FID reported
    unavailable without their weights); writes RUN/eval/metrics.json and
    RUN/eval/validation.mp4."""
    if not args.data and not args.cross:
        raise CommandError("give --data (the identity's own dataset: its validation frames) "
                           "or --cross (clips it never saw), or both")
    if args.truth_mouth and not args.cross:
        raise CommandError("--truth-mouth goes with --cross (synthetic clips the identity "
                           "never saw)")
    if args.cross:
        _run_cross(args)
        if not args.data:
            return 0
    # torch comes with the validation measures
    from ..evaluate.validation import evaluate

    m = evaluate(args.run, args.data, args.truth, backend=args.backend,
                 progress=not args.quiet, video=not args.no_video, expert=args.expert,
                 audio_files=args.audio, syncnet=args.syncnet,
                 lpips_backbone=args.lpips_backbone, lpips_linear=args.lpips_linear,
                 fid_weights=args.fid_weights)
    _print_validation(m)
    print(f"wrote {args.run}/eval/metrics.json")
    return 0


def _print_validation(m: dict) -> None:
    print(f"validation frames: {m['frames']} at {m['size']}x{m['size']}")
    print(f"PSNR {m['psnr']:.2f} dB (head {m['psnr_head']:.2f}, jaw band "
          f"{m['psnr_jaw_band']:.2f}, mouth {m['psnr_mouth']:.2f} dB)  SSIM {m['ssim']:.4f}  "
          f"LMD {m['lmd_px']:.2f} px  jitter {m['jitter_px']:.3f} px (real frames "
          f"{m['jitter_real_px']:.3f})")
    for k in ("lpips", "fid"):
        if not m[k]["available"]:
            print(f"{k.upper()}: unavailable ({m[k]['reason']})")
        else:
            w = m[k]["weights"]
            print(f"{k.upper()} weights: " + (", ".join(w.values()) if isinstance(w, dict)
                                               else w)
                  + f" ({m[k]['frames']} frames a variant; values below)")
    if "truth" in m:
        t = m["truth"]
        print(f"mouth opening vs truth jaw_open: r = {t['mouth_jaw_r']:.3f}; blink frames "
              f"{t['blink_frames']}" + (f", eye openness in blinks {t['blink_ratio']:.2f}x "
                                        f"open (open eyes' 5th percentile "
                                        f"{t['open_p5_ratio']:.2f}x)"
                                        if "blink_ratio" in t else ""))
    for variant, r in m.get("variants", {"base": m}).items():
        _print_variant(variant, r)
    if "unavailable" in m["sync_expert"]:
        print(f"sync scores: unavailable ({m['sync_expert']['unavailable']})")
    if m["lse"]["available"]:
        print(f"LSE-C / LSE-D by SyncNet ({m['lse']['weights']}); real frames: "
              f"{_lse_text(m['lse_real_frames'])}")
    else:
        print(f"LSE-C / LSE-D: unavailable ({m['lse']['reason']})")


def _print_variant(variant: str, r: dict) -> None:
    """One mouth branch's measures, then its lip sync on each new speech file."""
    line = (f"[{variant}] PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}  "
            f"LMD {r['lmd_px']:.2f} px")
    if "sync" in r:
        s = r["sync"]
        line += (f"  expert-C {s['expert-C']:.3f}  expert-D {s['expert-D']:.3f}  "
                 f"offset {s['expert-offset']:+d}")
    if r.get("lse", {}).get("available"):
        line += "  " + _lse_text(r["lse"])
    if r.get("lpips", {}).get("available"):
        line += f"  LPIPS {r['lpips']['value']:.4f}"
    if r.get("fid", {}).get("available"):
        line += f"  FID {r['fid']['value']:.2f}"
    print(line)
    for name, s in r.get("sync_new_audio", {}).items():
        print(f"    {name}: expert-C {s['expert-C']:.3f}  expert-D {s['expert-D']:.3f}  "
              f"offset {s['expert-offset']:+d}")
    for name, s in r.get("lse_new_audio", {}).items():
        print(f"    {name}: {_lse_text(s)}")


def _lse_text(s: dict) -> str:
    return f"LSE-C {s['LSE-C']:.3f}  LSE-D {s['LSE-D']:.3f}  offset {s['offset']:+d}"


def _run_cross(args: argparse.Namespace) -> None:
    from ..evaluate.cross import cross_evaluate
    from ..perceptual.metrics import load_perceptual

    nets = load_perceptual(args.lpips_backbone, args.lpips_linear, args.fid_weights)
    r = cross_evaluate(args.run, args.cross, backend=args.backend,
                       progress=not args.quiet, video=not args.no_video, perceptual=nets,
                       truth_mouth=args.truth_mouth)
    print(f"clips the identity never saw, at {r['size']}x{r['size']} (jaw band: "
          f"{r['band_radius_px']} px either side of the jaw line)")
    for clip, per in r["clips"].items():
        for v, m in per.items():
            print(f"  {clip} [{v}] " + _cross_line(m))
    for v, m in r["mean"].items():
        print(f"mean [{v}] " + _cross_line(m))
        if "validation" in r and r["validation"].get("psnr_head") is not None:
            print(f"  head PSNR {m['psnr_head']:.2f} dB under new speech, "
                  f"{r['validation']['psnr_head']:.2f} dB on the validation frames "
                  f"(gap {r['validation']['psnr_head'] - m['psnr_head']:.2f} dB)")
    name = "cross_truth_mouth.json" if args.truth_mouth else "cross.json"
    if args.truth_mouth:
        print("(the mouth driven by the clips' true mouth parameters, not the front-end's)")
    print(f"wrote {Path(args.run) / 'eval' / name}")


def _cross_line(m: dict) -> str:
    line = (f"PSNR {m['psnr']:.2f}  head {m['psnr_head']:.2f}  jaw band "
            f"{m['psnr_jaw_band']:.2f}  mouth {m['psnr_mouth']:.2f} dB  SSIM {m['ssim']:.4f}  "
            f"LMD {m['lmd_px']:.2f} px  opening r {m['opening_r_real']:.3f}")
    if "opening_jaw_r" in m:
        line += f" (jaw_open {m['opening_jaw_r']:.3f})"
    line += f"  jitter {m['jitter_px']:.3f} px ({m['jitter_ratio']:.2f}x the real video's)"
    if not math.isnan(m.get("teeth_shown", math.nan)):        # NaN: the truth shows none
        line += f"  teeth shown {m['teeth_shown']:.0%} (IoU {m['teeth_iou']:.2f})"
    if m.get("lpips") is not None:
        line += f"  LPIPS {m['lpips']:.4f} (mouth {m['lpips_mouth']:.4f})"
    return line


COMMANDS = (Command("eval", run_eval, _eval_options),)
