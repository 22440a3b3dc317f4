"""The ``fg3dgs`` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .arguments import image_size, output_file, pose_scale, pose_source, positive, whole_number
from .options import BACKENDS, POSE_ENDS
from .train import COMPILE_MODES, PRESETS, parse_iterations


def _cmd_demo(args: argparse.Namespace) -> int:
    """The product in one command: the shipped identity speaking a bundled example."""
    from pathlib import Path

    from .io_utils import assets_dir

    args.audio = args.audio or str(assets_dir() / "examples" / "morning.wav")
    sheet = args.sheet or str(Path(args.out).with_suffix(".png"))
    return _cmd_render(args, then_sheet=sheet, prefer="both")


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synth.clip import SynthConfig, SynthError, generate
    from .synth.photo import PhotoError

    text = args.text
    if args.text_file:
        try:
            text = open(args.text_file, encoding="utf-8").read()
        except OSError as exc:
            print(f"fg3dgs synth: error: cannot read --text-file: {exc}", file=sys.stderr)
            return 2
    cfg = SynthConfig(photo=args.photo, text=text, sentences=args.sentences,
                      seconds=args.seconds, voice=args.voice, size=args.size, seed=args.seed,
                      background=args.background)
    start = time.perf_counter()
    try:
        out = generate(cfg, args.out, force=args.force, progress=not args.quiet)
    except (SynthError, PhotoError) as exc:
        print(f"fg3dgs synth: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}/ (video.mp4, audio.wav, truth.npz, truth.json) in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def _cmd_synth_check(args: argparse.Namespace) -> int:
    from .media import MediaError
    from .synth.check import as_dict, check_clip
    from .synth.truth import TruthError

    try:
        result = check_clip(args.dir)
    except (TruthError, MediaError) as exc:
        print(f"fg3dgs synth-check: error: {exc}", file=sys.stderr)
        return 2
    if args.sheet:
        from .synth.sheet import contact_sheet
        print(f"wrote {contact_sheet(args.dir, args.sheet)}")
    print(result.report())
    if args.json:
        from .io_utils import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(as_dict(result), indent=2) + "\n")
    return 0 if all(result.passed().values()) else 1


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from .media import MediaError
    from .preprocess.landmarks import FaceTrackError
    from .preprocess.pipeline import PreprocessConfig, PreprocessError, preprocess

    names = tuple(n.strip() for n in args.audio_features.split(",") if n.strip())
    cfg = PreprocessConfig(size=args.size, landmarker=args.landmarker, audio_features=names,
                           mirror_landmarks=not args.no_mirror,
                           models={n: args.audio_model for n in names if args.audio_model})
    start = time.perf_counter()
    try:
        out = preprocess(args.video, args.out, cfg, force=args.force, progress=not args.quiet)
    except (PreprocessError, FaceTrackError, MediaError) as exc:
        print(f"fg3dgs preprocess: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote dataset {out}/ in {time.perf_counter() - start:.0f} s")
    if args.preview:
        from .preprocess.preview import preview_sheet
        print(f"wrote {preview_sheet(out, out / 'preview.png')}")
    return 0


def _dataset_size(folder: str) -> int | None:
    """The frame size a dataset was preprocessed at (None when it cannot be read: training
    then says what is wrong with it)."""
    from pathlib import Path

    try:
        return int(json.loads((Path(folder) / "manifest.json").read_text())["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cmd_train(args: argparse.Namespace) -> int:
    from .model.io import IdentityError
    from .preprocess.dataset import DatasetError
    from .train.config import preset
    from .train.trainer import TrainError, train

    over = {}
    if args.size:
        over["size"] = args.size
    if args.no_region_split:
        over["region_split"] = False
    if args.no_frequency_aware:
        over["frequency_aware"] = False
    if args.audio_features:
        over["audio_features"] = args.audio_features
    if args.iterations:
        try:
            counts = parse_iterations(args.iterations)
        except ValueError as exc:
            print(f"fg3dgs train: error: {exc}", file=sys.stderr)
            return 2
        over["iterations"] = {**preset(args.preset).iterations, **counts}
    if args.no_hrpa:
        over["iterations"] = {**over.get("iterations", preset(args.preset).iterations),
                              "hrpa": 0}
    if args.expert:
        over["expert"] = args.expert
    if args.audio_copies is not None:
        if args.audio_copies < 0:
            print("fg3dgs train: error: --audio-copies must be 0 or more", file=sys.stderr)
            return 2
        over["audio_copies"] = args.audio_copies
    over["backend"] = args.backend
    resumed = args.resume or args.stage is not None
    ds_size, preset_size = _dataset_size(args.dataset), preset(args.preset).size
    if not args.size and not resumed and ds_size and ds_size < preset_size:
        over["size"] = ds_size
        print(f"training at {ds_size}x{ds_size}, the dataset's size (the {args.preset} "
              f"preset's {preset_size} would only upsample it; preprocess at --size "
              f"{preset_size} for that)", file=sys.stderr)
    if args.compile:
        over["compile"], over["compile_mode"] = "inductor", args.compile
    start = time.perf_counter()
    try:
        cfg = None if resumed else preset(args.preset, **over)
        out = train(args.dataset, args.out, cfg, resume=args.resume,
                    progress=not args.quiet, force=args.force, stage=args.stage,
                    expert=args.expert if resumed else None)
    except (TrainError, DatasetError, IdentityError, ValueError) as exc:
        print(f"fg3dgs train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; the state is saved: continue with fg3dgs train {args.dataset} "
              f"--out {args.out} --resume", file=sys.stderr)
        return 130
    info = json.loads((out / "identity.json").read_text())
    stages = info.get("train", {}).get("stage_seconds", {})
    per = ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())
    print(f"wrote identity {out}/identity.safetensors in {time.perf_counter() - start:.0f} s"
          + (f" (stages over the whole run: {per})" if per else ""))
    return 0


def _cmd_refine(args: argparse.Namespace) -> int:
    from .model.io import IdentityError
    from .preprocess.dataset import DatasetError
    from .train.trainer import TrainError, refine
    from .zoo import resolve_identity

    over = {k: v for k, v in (("iterations", args.iterations), ("expert", args.expert),
                              ("hrpa_other_voices", args.other_voices),
                              ("hrpa_other_minutes", args.other_minutes),
                              ("backend", args.backend),
                              ("lr_hrpa_adapter", args.adapter_lr)) if v is not None}
    if args.adapter:
        over["hrpa_adapter"] = True
    elif args.adapter_lr is not None:
        print("fg3dgs refine: error: --adapter-lr needs --adapter", file=sys.stderr)
        return 2
    if not 0 <= over.get("hrpa_other_voices", 0) <= 1:
        print("fg3dgs refine: error: --other-voices is a share of the steps, 0 to 1",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        out = refine(resolve_identity(args.identity), args.data, args.out,
                     progress=not args.quiet, force=args.force, **over)
    except (TrainError, DatasetError, IdentityError, ValueError) as exc:
        print(f"fg3dgs refine: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote identity {out}/identity.safetensors in {time.perf_counter() - start:.0f} s")
    return 0


def _lse_text(s: dict) -> str:
    return f"LSE-C {s['LSE-C']:.3f}  LSE-D {s['LSE-D']:.3f}  offset {s['offset']:+d}"


def _cross_eval(args: argparse.Namespace) -> int:
    from .evaluate.cross import cross_evaluate
    from .model.io import IdentityError
    from .model.replay import ReplayError
    from .perceptual import PerceptualWeightsError
    from .perceptual.metrics import load_perceptual
    from .pipeline.pose_input import PoseTrackError
    from .preprocess.dataset import DatasetError
    from .preprocess.pipeline import PreprocessError
    from .synth.truth import TruthError

    try:
        nets = load_perceptual(args.lpips_backbone, args.lpips_linear, args.fid_weights)
        r = cross_evaluate(args.run, args.cross, backend=args.backend,
                           progress=not args.quiet, video=not args.no_video, perceptual=nets)
    except (IdentityError, DatasetError, PerceptualWeightsError, PoseTrackError, ReplayError,
            PreprocessError, TruthError) as exc:
        print(f"fg3dgs eval: error: {exc}", file=sys.stderr)
        return 2
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
    print(f"wrote {Path(args.run) / 'eval' / 'cross.json'}")
    return 0


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


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate.validation import evaluate
    from .media import MediaError
    from .model.io import IdentityError
    from .perceptual import PerceptualWeightsError
    from .preprocess.dataset import DatasetError
    from .sync import ExpertError
    from .synth.truth import TruthError

    if not args.data and not args.cross:
        print("fg3dgs eval: error: give --data (the identity's own dataset: its validation "
              "frames) or --cross (clips it never saw), or both", file=sys.stderr)
        return 2
    if args.cross:
        code = _cross_eval(args)
        if code or not args.data:
            return code
    try:
        m = evaluate(args.run, args.data, args.truth, backend=args.backend,
                     progress=not args.quiet, video=not args.no_video, expert=args.expert,
                     audio_files=args.audio, syncnet=args.syncnet,
                     lpips_backbone=args.lpips_backbone, lpips_linear=args.lpips_linear,
                     fid_weights=args.fid_weights)
    except (IdentityError, DatasetError, MediaError, ExpertError, PerceptualWeightsError,
            TruthError) as exc:
        print(f"fg3dgs eval: error: {exc}", file=sys.stderr)
        return 2
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
    if "unavailable" in m["sync_expert"]:
        print(f"sync scores: unavailable ({m['sync_expert']['unavailable']})")
    if m["lse"]["available"]:
        print(f"LSE-C / LSE-D by SyncNet ({m['lse']['weights']}); real frames: "
              f"{_lse_text(m['lse_real_frames'])}")
    else:
        print(f"LSE-C / LSE-D: unavailable ({m['lse']['reason']})")
    print(f"wrote {args.run}/eval/metrics.json")
    return 0


def _cmd_train_sync(args: argparse.Namespace) -> int:
    from .sync.train import SyncTrainConfig, train_expert

    cfg = SyncTrainConfig(identities=tuple(args.identities.split(",")), minutes=args.minutes,
                          steps=args.steps, width=args.width, batch=args.batch,
                          heldout_clips=args.heldout_clips, seed=args.seed,
                          voices=args.voices, audio_copies=args.audio_copies)
    try:
        report = train_expert(cfg, args.out, progress=not args.quiet, force=args.force)
    except ValueError as exc:
        print(f"fg3dgs train-sync: error: {exc}", file=sys.stderr)
        return 2
    h = report["heldout"]
    print(f"held-out ({h['clips']} clips, unseen voices and sentences): pair accuracy "
          f"{h['pair_accuracy']:.3f}, offset found within +-1 frame on "
          f"{100 * h['offset_within_1']:.0f}% of clips")
    print(f"wrote {args.out}/sync_expert.safetensors and {args.out}/report.json")
    return 0


def _cmd_train_audio(args: argparse.Namespace) -> int:
    from .frontend.train import FrontendTrainConfig, train_frontend

    cfg = FrontendTrainConfig(minutes=args.minutes, copies=args.copies, steps=args.steps,
                              batch=args.batch, seed=args.seed, ccc=args.ccc)
    try:
        report = train_frontend(cfg, args.out, progress=not args.quiet, force=args.force)
    except ValueError as exc:
        print(f"fg3dgs train-audio: error: {exc}", file=sys.stderr)
        return 2
    h = report["heldout"]
    for kind in ("clean", "augmented"):
        acc = h[kind]
        print(f"held-out voices and sentences, {kind}: " + ", ".join(
            f"{k} r {acc[k]['r']:.3f} (spread {acc[k]['spread']:.2f})"
            for k in ("jaw_open", "lip_spread", "lip_round", "lip_closure"))
            + f"; speech/pause {100 * acc['speech']['accuracy']:.1f} % of frames")
    print(f"wrote {args.out}/speech_frontend.safetensors and {args.out}/report.json")
    return 0


def _cmd_retarget(args: argparse.Namespace) -> int:
    from .model.io import IdentityError
    from .train.audio_tune import AudioTuneConfig
    from .train.retarget import RetargetConfig, retarget
    from .zoo import resolve_identity

    cfg = RetargetConfig(features=args.audio_features, copies=args.copies, steps=args.steps,
                         seed=args.seed, match_spread=not args.keep_shrinkage)
    tune = AudioTuneConfig(seed=args.seed, **({"steps": args.tune_steps} if args.tune_steps
                                              else {}))
    try:
        report = retarget(resolve_identity(args.identity), args.speech or [], args.out, cfg,
                          progress=not args.quiet, force=args.force, data=args.data,
                          tune=tune)
    except (ValueError, IdentityError, OSError) as exc:
        print(f"fg3dgs retarget: error: {exc}", file=sys.stderr)
        return 2
    for kind in ("clean", "augmented"):
        r2 = report.get(f"heldout_r2_{kind}")
        if r2:
            print(f"held-out speech, {kind}: driving features explained R^2 f_a "
                  f"{r2['f_a']:.3f}, tokens {r2['tokens']:.3f}; spread of f_a "
                  f"{r2['spread']:.2f} x the identity's own")
    if "spread_gain_median" in report:
        print(f"driving features rescaled to the old encoder's spread (median gain "
              f"{report['spread_gain_median']:.2f})")
    if "tune" in report:
        t = report["tune"]
        print(f"tuned on {t['dataset']}: loss on its frames {t['fit_before']:.4f} -> "
              f"{t['fit_after']:.4f}" + (f"; voice-varied spread gain "
                                         f"{t['voice_spread_gain_median']:.2f}"
                                         if "voice_spread_gain_median" in t else ""))
        if t.get("refined_branch_dropped"):
            print(f"the refined branch was made for the old mouth network and is left out: "
                  f"fg3dgs refine {args.out} --data {args.data} --out OUT")
    print(f"wrote {args.out} (audio features {args.audio_features})")
    return 0


def _cmd_speak(args: argparse.Namespace) -> int:
    import random

    from .media import AUDIO_RATE, write_wav
    from .sync.data import random_voice, split_sentences
    from .synth.speech import SpeechError, synthesize

    rng = random.Random(args.seed)
    text = args.text
    if text is None:
        pool = split_sentences(args.held_out)
        if args.sentences > len(pool):
            print(f"fg3dgs speak: error: --sentences: the {'held-out ' * args.held_out}corpus "
                  f"has {len(pool)} sentences; ask for at most that many", file=sys.stderr)
            return 2
        text = " ".join(rng.sample(pool, args.sentences))
    try:
        speech = synthesize(text, random_voice(rng, args.held_out))
    except SpeechError as exc:
        print(f"fg3dgs speak: error: {exc}", file=sys.stderr)
        return 2
    write_wav(args.out, speech.audio, AUDIO_RATE)
    print(f"wrote {args.out}: {speech.duration:.1f} s, voice {speech.voice.espeak_name} "
          f"(rate {speech.voice.rate}, pitch {speech.voice.pitch}): {text}")
    return 0


def _cmd_render(args: argparse.Namespace, then_sheet: str | None = None,
                prefer: str = "refined") -> int:
    from tqdm import tqdm

    from .media import MediaError
    from .pipeline import AudioInput, AudioInputError
    from .timing import process_age

    name = args.command
    if args.stream and args.scores:
        print(f"fg3dgs {name}: error: --scores is not available with --stream",
              file=sys.stderr)
        return 2
    try:
        # the speech first: a wrong file is reported before torch and the identity load
        speech = AudioInput(args.audio)
    except (AudioInputError, MediaError) as exc:
        print(f"fg3dgs {name}: error: {exc}", file=sys.stderr)
        return 2
    from .model.io import IdentityError
    from .model.replay import ReplayError
    from .pipeline import RenderOptions, TalkingHead
    from .zoo import ZooError

    try:
        with speech:
            head = TalkingHead.load(args.identity, verify=not args.no_verify)
            loaded = process_age()
            # the refined branch where the identity has one (a --no-hrpa run has only base)
            variant = args.variant or (prefer if "refined" in head.variants else "base")
            opts = RenderOptions(variant=variant, size=args.size, pose=args.pose,
                                 pose_scale=args.pose_scale, pose_end=args.pose_end,
                                 blink=args.blink, backend=args.backend, batch=args.batch,
                                 seed=args.seed, sync_scores=args.scores)
            with tqdm(total=1000, desc="rendering", unit="‰", disable=args.quiet,
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
                      ) as bar:

                def progress(frac: float, stage: str) -> None:
                    bar.set_description_str(stage)
                    bar.update(int(frac * 1000) - bar.n)

                if args.stream:
                    res = head.render_streaming(speech, args.out, opts, args.chunk_ms,
                                                progress)
                else:
                    res = head.render(speech, args.out, opts, progress)
        sheet = None
        if then_sheet:
            from .pipeline.sheet import video_sheet

            sheet = video_sheet(args.out, then_sheet)
    except (ZooError, IdentityError, ReplayError, AudioInputError, MediaError,
            ValueError) as exc:
        print(f"fg3dgs {name}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {res.frames} frames ({res.audio_seconds:.2f} s of speech) at "
          f"{res.size}x{res.size}, variant {opts.variant}, backend {res.backend}, "
          f"{res.render_seconds:.1f} s ({res.fps:.1f} frames/s)")
    if sheet:
        print(f"wrote {sheet}: a contact sheet of 8 moments of the video")
    for v, s in res.sync.items():
        print(f"  [{v}] " + ", ".join(f"{k} {x}" for k, x in s.items()))
    if res.latency_ms:
        print(f"  streaming: {res.latency_ms['chunk']:g} ms chunks, latency from a chunk to "
              f"its first frame {res.latency_ms['median']:.0f} ms median, "
              f"{res.latency_ms['max']:.0f} ms worst")
    if args.verbose:
        split = {"start-up (imports, checks, loading)": loaded, **res.timings}
        other = res.render_seconds - sum(res.timings.values())
        print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items())
              + f", other {other:.2f}; {process_age():.2f} since the process started")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import ZooError, find, load_zoo, pull

    try:
        if args.zoo_cmd == "list":
            for e in load_zoo():
                print(f"{e.id:24s} {e.title} [{e.audio_features}; {e.license}] "
                      f"<- {e.describe_source()}")
                if args.verbose:
                    print(f"{'':24s} {e.description}")
        elif args.zoo_cmd == "pull":
            folder = pull(find(args.id), quiet=False)
            print(f"{args.id}: {folder}")
        else:
            from .zoo.export import ExportInfo, export_identity

            name = args.id or args.out.rstrip("/").split("/")[-1]
            notes = open(args.notes).read() if args.notes else ""
            info = ExportInfo(name, args.title or name, args.description, args.license, notes)
            entry = export_identity(args.run, args.out, info, args.data, half=not args.float32,
                                    force=args.force)
            print(f"wrote {args.out}: model card README.md, identity, replay track, "
                  f"preview; zoo_entry.json lists {len(entry['source']['files'])} files "
                  "with their sha256")
    except (ZooError, ValueError) as exc:
        print(f"fg3dgs zoo: error: {exc}", file=sys.stderr)
        return 2
    return 0


BACKEND_HELP = ("rasterizer: gsplat (CUDA GPU), cpu (ours), or auto: gsplat where a CUDA GPU "
                "works, else cpu (default)")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="also print where the time "
                   "went: start-up, audio features, networks, rasterization, fusion, encoding")
    p.add_argument("--no-verify", action="store_true", help="skip the identity's sha256 "
                   "checks (for developers editing weights in place)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fg3dgs", description="FG-3DGS: audio-driven 3D Gaussian talking heads. Train an "
        "identity from a portrait video (synth / preprocess / train / eval), render it "
        "speaking any audio (render), or pull one from the model zoo (zoo).",
        epilog="Each command has its own --help. The web app: python app.py in a checkout "
        "of the repository (it is also the Hugging Face Space).")
    parser.add_argument("--version", action="version", version=f"fg3dgs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the shipped identity speaking an example: an MP4 "
                          "and a contact sheet PNG (offline)",
                          description="Render the shipped demo identity speaking a bundled "
                          "example sentence, without (left) and with (right) the lip-sync "
                          "refinement, to an MP4 and a contact-sheet PNG of 8 moments of it. "
                          "Needs no download.")
    demo.add_argument("--out", default="demo.mp4", type=output_file(".mp4"),
                      help="output MP4 (default: demo.mp4)")
    demo.add_argument("--sheet", default=None, type=output_file(".png"),
                      help="contact sheet PNG (default: the --out name with .png)")
    demo.add_argument("--identity", default="astronaut-artic",
                      help="run folder or zoo id (default: astronaut-artic, shipped)")
    demo.add_argument("--audio", default=None, help="speech file (default: the bundled "
                      "examples/morning.wav)")
    demo.add_argument("--variant", choices=("base", "refined", "both"), default=None,
                      help="mouth branch (default: both side by side, or base for an "
                      "identity without the lip-sync refinement)")
    demo.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    _add_run_flags(demo)
    # what render's options would be at their defaults
    demo.set_defaults(stream=False, scores=False, size=None, batch=None, pose="replay",
                      pose_scale=1.0, pose_end="hold", blink="replay", seed=0, chunk_ms=200.0)
    demo.set_defaults(func=_cmd_demo)

    syn = sub.add_parser("synth", help="make a synthetic talking-head clip with ground truth",
                         description="Speak text (or corpus sentences) with eSpeak NG and "
                         "animate a face photo to it. Writes DIR/video.mp4 (H.264 + AAC, 25 "
                         "fps), DIR/audio.wav (16 kHz), DIR/truth.npz and DIR/truth.json.")
    syn.add_argument("--photo", default="builtin:astronaut",
                     help="portrait image, or builtin:astronaut / builtin:hopper")
    syn.add_argument("--out", required=True, help="output directory (must not exist)")
    what = syn.add_mutually_exclusive_group()
    what.add_argument("--text", help="text to speak")
    what.add_argument("--text-file", help="file with the text to speak")
    what.add_argument("--sentences", type=whole_number(1), help="speak N sentences of the corpus")
    syn.add_argument("--seconds", type=positive,
                     help="with no text: at least this much speech, whole sentences "
                          "(default 10)")
    syn.add_argument("--voice", help="eSpeak voice, e.g. en-us, en-gb-scotland, en-us+f3 "
                                     "(default: drawn from the seed)")
    syn.add_argument("--size", type=image_size, default=512,
                     help="video size in pixels (default 512)")
    syn.add_argument("--seed", type=int, default=0,
                     help="draws the voice, sentences and motion (default 0)")
    syn.add_argument("--background", choices=["blur", "photo", "plain"], default="blur",
                     help="behind the person: the photo blurred (default), as it is, or a "
                          "plain colour")
    syn.add_argument("--force", action="store_true", help="replace an existing --out")
    syn.add_argument("--quiet", action="store_true", help="no progress bar")
    syn.set_defaults(func=_cmd_synth)

    pre = sub.add_parser("preprocess", help="turn a portrait video into a training set",
                         description="Landmarks, one portrait crop, head-pose cameras, region "
                         "masks, expression and audio features, written to DATASET. The video "
                         "needs one person talking, with sound, for at least 10 s (minutes "
                         "are better).")
    pre.add_argument("video")
    pre.add_argument("--out", required=True, help="dataset folder (must not exist)")
    pre.add_argument("--size", type=image_size, default=512,
                     help="crop size in pixels (default 512; the cpu training preset uses 256)")
    pre.add_argument("--landmarker", choices=["mediapipe", "face-alignment"],
                     default="mediapipe",
                     help="mediapipe (478 points, offline; default) or face-alignment (68 "
                          "points; downloads its weights on first use)")
    pre.add_argument("--audio-features", default="mel",
                     help="comma-separated: mel, artic (the shipped speech front-end), "
                          "hubert, wav2vec2 (default mel)")
    pre.add_argument("--audio-model", help="model id or local folder for hubert / wav2vec2")
    pre.add_argument("--force", action="store_true", help="replace an existing --out")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    pre.add_argument("--preview", action="store_true",
                     help="also write DATASET/preview.png: frames with landmarks, masks and "
                          "head-pose axes")
    pre.add_argument("--no-mirror", action="store_true",
                     help="mediapipe: read each frame once, not also mirrored (about a quarter "
                          "faster; the average of both readings is more accurate)")
    pre.set_defaults(func=_cmd_preprocess)

    tr = sub.add_parser("train", help="train an identity from a preprocessed dataset",
                        description="The FG-3DGS stages (static, deform, fusion, hrpa); "
                        "writes RUN/identity.safetensors + identity.json, previews and a "
                        "loss curve. Ctrl-C saves the state; --resume continues exactly.")
    tr.add_argument("dataset")
    tr.add_argument("--out", required=True, help="run folder")
    tr.add_argument("--preset", choices=PRESETS, default="cpu",
                    help="cpu: 256x256, about an hour on 2 cores; paper: the paper's "
                         "512x512 schedule (for a CUDA GPU)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--force", action="store_true", help="start over in an existing --out")
    tr.add_argument("--size", type=image_size, help="training image size (preset's by default)")
    tr.add_argument("--iterations", help="STATIC,DEFORM,FUSION[,HRPA] iteration counts")
    tr.add_argument("--stage", choices=["fusion", "hrpa"],
                    help="rerun this stage of the finished run in --out from its start, "
                         "the stages after it too (fusion: the whole-frame stage, e.g. with "
                         "a newer loss; hrpa: the lip-sync refinement, e.g. with another "
                         "--expert)")
    tr.add_argument("--expert", help="sync expert for HRPA: ours (.safetensors), Wav2Lip's "
                                     "lipsync_expert.pth, or hf://OWNER/REPO/FILE "
                                     "(default: checkpoints/sync_expert.safetensors)")
    tr.add_argument("--no-hrpa", action="store_true",
                    help="skip the lip-sync refinement (the identity has the base variant "
                         "only)")
    tr.add_argument("--audio-features", help="which of the dataset's features (default mel)")
    tr.add_argument("--audio-copies", type=int, metavar="N",
                    help="voice-varied (augmented) copies of the clip's audio that drive "
                         "half the training frames (default 4; 0: the clean audio only)")
    tr.add_argument("--no-region-split", action="store_true",
                    help="ablation: one Gaussian set and one network for the whole head")
    tr.add_argument("--no-frequency-aware", action="store_true",
                    help="ablation: plain MLP deltas for all regions")
    tr.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    tr.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                    choices=COMPILE_MODES,
                    help="run the networks and the loss through torch.compile (fewer GPU "
                         "kernel launches; a stage's first steps take a minute or so to "
                         "compile; a resumed run keeps its own setting). MODE: torch.compile's "
                         "(default; reduce-overhead adds CUDA graphs)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    rf = sub.add_parser("refine", help="run the lip-sync refinement (HRPA) again on an "
                                       "identity",
                        description="HRPA alone on a trained identity (a re-targeted or "
                        "downloaded one needs no training run): its refined branch starts "
                        "again from the base one and learns from the sync expert on the "
                        "identity's own frames, and with --other-voices also on speech in "
                        "other voices (eSpeak NG voices, half of it augmented). Writes a new "
                        "identity to --out.")
    rf.add_argument("identity", help="run folder or zoo id")
    rf.add_argument("--data", required=True,
                    help="the preprocessed dataset the identity was trained on")
    rf.add_argument("--out", required=True, help="run folder for the refined identity")
    rf.add_argument("--iterations", type=whole_number(1),
                    help="HRPA steps (default: the identity's own schedule's)")
    rf.add_argument("--other-voices", type=float, metavar="SHARE",
                    help="share of the steps driven by other voices' speech, judged by the "
                         "expert alone (default 0: the identity's own audio only)")
    rf.add_argument("--other-minutes", type=positive, metavar="MIN",
                    help="minutes of other voices' speech to make for it (default 4)")
    rf.add_argument("--expert", help="sync expert (default: the identity's training one, "
                                     "else checkpoints/sync_expert.safetensors)")
    rf.add_argument("--adapter", action="store_true",
                    help="learn only a small adapter of the refined mouth's audio features "
                         "(a filter over the feature frames, a gain and mixing of the "
                         "articulators) instead of its network and colours: the expert can "
                         "change when and how far the mouth moves, not what it looks like")
    rf.add_argument("--adapter-lr", type=positive, metavar="LR",
                    help="learning rate of that adapter (default 2e-3)")
    rf.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    rf.add_argument("--force", action="store_true", help="replace an existing --out")
    rf.add_argument("--quiet", action="store_true", help="no progress bar")
    rf.set_defaults(func=_cmd_refine)

    ev = sub.add_parser("eval", help="measure a trained identity on its validation frames",
                        description="PSNR, SSIM, LMD, LPIPS and FID on the dataset's "
                        "validation frames (LPIPS / FID reported unavailable without their "
                        "weights); writes RUN/eval/metrics.json and RUN/eval/validation.mp4.")
    ev.add_argument("run")
    ev.add_argument("--data", help="the dataset the identity was trained on: measure its "
                    "validation frames")
    ev.add_argument("--cross", nargs="+", metavar="CLIP", help="clips of the same person the "
                    "identity never saw (a video or a `fg3dgs synth` folder, preprocessed "
                    "here; or a preprocessed dataset): render each with its own audio, "
                    "poses, eyes and torso and compare with its frames "
                    "(RUN/eval/cross.json)")
    ev.add_argument("--truth", help="synthetic clip folder: also compare mouth and blinks "
                                    "with its truth")
    ev.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    ev.add_argument("--no-video", action="store_true", help="skip the side-by-side video")
    ev.add_argument("--expert", help="sync expert for expert-C / expert-D (default: the "
                                     "shipped one)")
    ev.add_argument("--audio", nargs="+", help="also score lip sync on these speech files "
                                               "(poses replayed from the validation frames)")
    ev.add_argument("--syncnet", metavar="PATH", help="SyncNet's published weights "
                    "(syncnet_v2.model from joonson/syncnet_python): also report LSE-C / "
                    "LSE-D (unavailable without them)")
    ev.add_argument("--lpips-backbone", metavar="PATH", help="torchvision's AlexNet weights "
                    "alexnet-owt-7be5be79.pth for LPIPS (default: TORCH_HUB/checkpoints/, "
                    "where torchvision caches them)")
    ev.add_argument("--lpips-linear", metavar="PATH", help="LPIPS v0.1 linear layers "
                    "(lpips/weights/v0.1/alex.pth; default: the installed lpips package's, "
                    "else TORCH_HUB/checkpoints/lpips_alex_v0.1.pth)")
    ev.add_argument("--fid-weights", metavar="PATH", help="pytorch-fid's Inception weights "
                    "pt_inception-2015-12-05-6726825d.pth (default: TORCH_HUB/checkpoints/)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_eval)

    ts = sub.add_parser("train-sync", help="train the lip-sync expert on synthetic clips",
                        description="Generates clips with the synthetic generator (many "
                        "voices, rates and pitches, the built-in photos, colour / crop / "
                        "scale augmentation, augmented copies of the audio), trains the "
                        "expert and reports held-out pair accuracy and offset detection on "
                        "unseen voices and sentences.")
    ts.add_argument("--out", required=True, help="folder for sync_expert.safetensors")
    ts.add_argument("--identities", default="builtin:astronaut,builtin:hopper",
                    help="comma-separated photos (builtin:NAME or image paths)")
    ts.add_argument("--minutes", type=positive, default=12.0, help="minutes of training speech")
    ts.add_argument("--steps", type=whole_number(1), default=3000, help="optimiser steps")
    ts.add_argument("--batch", type=whole_number(2), default=64,
                    help="clips per optimiser step (default 64)")
    ts.add_argument("--width", type=positive, default=0.25,
                    help="channel scale of Wav2Lip's layout (1 = the published expert's)")
    ts.add_argument("--heldout-clips", type=whole_number(1), default=40,
                    help="5-second held-out clips for the offset test")
    ts.add_argument("--voices", choices=("wide", "speakers"), default="wide",
                    help="wide: every eSpeak accent and variant, other languages' voices "
                    "reading English, 80-260 words per minute (the speech front-end's draw); "
                    "speakers: 7 English accents, ordinary variants, 130-200 (default wide)")
    ts.add_argument("--audio-copies", type=whole_number(0), default=2,
                    help="augmented copies of each clip's audio (noise, reverberation, "
                    "telephone, codecs, level, vocal-tract warp; default 2)")
    ts.add_argument("--seed", type=int, default=0, help="draws the training material")
    ts.add_argument("--force", action="store_true", help="replace the expert in an existing "
                    "--out")
    ts.add_argument("--quiet", action="store_true", help="no progress bars")
    ts.set_defaults(func=_cmd_train_sync)

    ta = sub.add_parser("train-audio", help="train the speech front-end (any voice -> "
                        "mouth articulation) on eSpeak speech",
                        description="Speaks corpus sentences with many eSpeak NG voices, "
                        "variants, rates and pitches, augments each (noise, reverberation, "
                        "telephone band, codecs, level, clipping, vocal-tract warping) and "
                        "trains the network behind --audio-features artic to predict the "
                        "synthetic generator's jaw / spread / round / closure and speech "
                        "activity at 50 Hz; reports its accuracy on voices and sentences it "
                        "never saw.")
    ta.add_argument("--out", required=True, help="folder for speech_frontend.safetensors")
    ta.add_argument("--minutes", type=positive, default=20.0,
                    help="minutes of training speech before augmentation (default 20)")
    ta.add_argument("--copies", type=whole_number(0), default=4,
                    help="augmented copies of each utterance (default 4)")
    ta.add_argument("--steps", type=whole_number(1), default=3000, help="optimiser steps")
    ta.add_argument("--batch", type=whole_number(1), default=32,
                    help="4-second windows per step (default 32)")
    ta.add_argument("--ccc", type=float, default=0.5,
                    help="weight of the concordance term that keeps the mouth outputs' "
                         "spread on voices the network is unsure of (default 0.5; 0: off)")
    ta.add_argument("--seed", type=int, default=0, help="draws the voices and augmentations")
    ta.add_argument("--force", action="store_true", help="replace a front-end in --out")
    ta.add_argument("--quiet", action="store_true", help="no progress bars")
    ta.set_defaults(func=_cmd_train_audio)

    rt = sub.add_parser("retarget", help="give a trained identity another audio front-end "
                        "(default artic) by distilling its audio encoder",
                        description="A new audio encoder on the new features learns to give "
                        "the driving features the identity's own encoder gives for the same "
                        "speech (its training clip's audio; augmented copies too). Nothing "
                        "is rendered; the Gaussians, networks and replay track are kept.")
    rt.add_argument("identity", help="run folder or zoo id")
    rt.add_argument("--speech", nargs="+",
                    help="speech in the identity's own voice: its training clip's audio "
                    "(default with --data: the dataset's)")
    rt.add_argument("--data", help="the identity's preprocessed dataset, with the new "
                    "features: the new encoder and the mouth network are then tuned on its "
                    "training frames (about 6 minutes on 2 CPU cores at 256 px); a refined "
                    "branch is dropped (run fg3dgs refine after)")
    rt.add_argument("--tune-steps", type=whole_number(1), default=None,
                    help="tuning steps with --data (default: AudioTuneConfig's, 2000)")
    rt.add_argument("--out", required=True, help="folder for the new identity")
    rt.add_argument("--audio-features", default="artic", choices=["artic", "mel"],
                    help="the new front-end (default artic)")
    rt.add_argument("--copies", type=whole_number(0), default=3,
                    help="augmented copies of the speech (default 3)")
    rt.add_argument("--steps", type=whole_number(1), default=3000, help="optimiser steps")
    rt.add_argument("--keep-shrinkage", action="store_true",
                    help="leave the distilled driving features as trained, without "
                    "rescaling them to the old encoder's spread (for comparison)")
    rt.add_argument("--seed", type=int, default=0)
    rt.add_argument("--force", action="store_true", help="replace an existing --out")
    rt.add_argument("--quiet", action="store_true", help="no progress bars")
    rt.set_defaults(func=_cmd_retarget)

    sp = sub.add_parser("speak", help="synthesise test speech (a WAV) with a random voice",
                        description="Corpus sentences (or --text) spoken by a random eSpeak "
                        "voice. --held-out draws voices and sentences from the set the sync "
                        "expert never trains on, to test lip sync on unseen speech.")
    sp.add_argument("--out", required=True, type=output_file(".wav"),
                    help="output WAV (16 kHz mono)")
    sp.add_argument("--text", help="what to say (default: corpus sentences)")
    sp.add_argument("--sentences", type=whole_number(1), default=2,
                    help="corpus sentences to speak without --text (default 2)")
    sp.add_argument("--held-out", action="store_true",
                    help="voices and sentences outside the expert's training set")
    sp.add_argument("--seed", type=int, default=0, help="draws the voice and sentences")
    sp.set_defaults(func=_cmd_speak)

    rd = sub.add_parser("render", help="an identity speaking any audio, to an MP4",
                        description="Render an identity (run folder or zoo id) speaking "
                        "AUDIO (wav, mp3, flac, ogg, m4a or a video's sound) to H.264 + AAC.")
    rd.add_argument("--identity", required=True, help="run folder or zoo id (fg3dgs zoo list)")
    rd.add_argument("--audio", required=True, help="speech file")
    rd.add_argument("--out", required=True, type=output_file(".mp4"), help="output MP4")
    rd.add_argument("--variant", choices=("base", "refined", "both"), default=None,
                    help="mouth branch (default: refined, or base where the identity has no "
                         "lip-sync refinement); 'both' puts base and refined side by side")
    rd.add_argument("--size", type=image_size, default=None, help="output side (default: the "
                    "identity's training size)")
    rd.add_argument("--pose", type=pose_source, default="replay", metavar="replay|static|FILE",
                    help="replay: the replay track's head motion (default); static: its "
                         "first pose; FILE: a pose track (.npz with R [F, 3, 3] and t [F, 3], "
                         "or a preprocessed dataset folder: its cameras.npz), moved into the "
                         "identity's head space")
    rd.add_argument("--pose-scale", type=pose_scale, default=1.0,
                    help="head motion about its central pose: 0 still, 0.5 damped, 1 as is "
                         "(default), 2 doubled")
    rd.add_argument("--pose-end", choices=POSE_ENDS, default="hold",
                    help="a pose track shorter than the speech: hold its last pose "
                         "(default) or loop it back and forth")
    rd.add_argument("--blink", choices=("replay", "auto"), default="replay",
                    help="replay: the track's eye state (default); auto: a blink every 2-6 s")
    rd.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    rd.add_argument("--batch", type=whole_number(1), default=None,
                    help="frames per network call (default 8 on the CPU, 32 on a GPU)")
    rd.add_argument("--seed", type=int, default=0, help="auto blinks")
    rd.add_argument("--scores", action="store_true", help="also report expert-C / D / "
                    "offset of each variant (our sync expert)")
    rd.add_argument("--stream", action="store_true", help="feed the speech in chunks "
                    "through the streaming renderer (live use) and report its latency")
    rd.add_argument("--chunk-ms", type=positive, default=200.0, help="--stream chunk length")
    _add_run_flags(rd)
    rd.set_defaults(func=_cmd_render)

    zoo = sub.add_parser("zoo", help="the model zoo: list, pull, export identities")
    zsub = zoo.add_subparsers(dest="zoo_cmd", required=True)
    zl = zsub.add_parser("list", help="identities in checkpoints/zoo.json ($FG3DGS_ZOO)")
    zl.add_argument("-v", "--verbose", action="store_true", help="also the descriptions")
    zp = zsub.add_parser("pull", help="download an identity into the Hugging Face cache")
    zp.add_argument("id")
    ze = zsub.add_parser("export", help="a Hub-ready folder (model card, weights, preview)")
    ze.add_argument("run", help="trained run folder")
    ze.add_argument("--out", required=True, help="the folder to write (a Hub repository's "
                    "contents)")
    ze.add_argument("--data", default=None, help="the dataset it was trained on (needed "
                    "when the run has no replay track)")
    ze.add_argument("--id", default=None, help="zoo id (default: the --out folder's name)")
    ze.add_argument("--title", default=None, help="the model card's title (default: the id)")
    ze.add_argument("--description", default="A talking-head identity trained with fg3dgs.",
                    help="one line for the model card and the zoo listing")
    ze.add_argument("--license", default="other",
                    help="the Hub's licence id, e.g. cc-by-4.0 (it must allow what the source "
                         "video allows; default 'other', and the card says none was stated)")
    ze.add_argument("--notes", default=None, help="a markdown file appended to the model "
                    "card (how the identity was made)")
    ze.add_argument("--float32", action="store_true", help="keep float32 weights "
                    "(default float16)")
    ze.add_argument("--force", action="store_true", help="replace an existing --out (its "
                    "contents are removed)")
    zoo.set_defaults(func=_cmd_zoo)

    chk = sub.add_parser("synth-check", help="measure a synthetic clip against its truth "
                                             "with mediapipe (exit 1 if a target is missed)")
    chk.add_argument("dir")
    chk.add_argument("--json", type=output_file(".json"),
                     help="also write the numbers to this JSON file")
    chk.add_argument("--sheet", type=output_file(".png"),
                     help="also write a contact sheet PNG of distinct mouth states")
    chk.set_defaults(func=_cmd_synth_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "backend", None) == "gsplat":
        from .render.gsplat_backend import gsplat_status

        ok, why = gsplat_status()
        if not ok:
            print(f"fg3dgs {args.command}: error: --backend gsplat is unavailable here: {why}; "
                  "use --backend cpu (or auto)", file=sys.stderr)
            return 2
    # warnings as one line for people, not Python's "file:line: Category" and source line
    python_format = warnings.formatwarning
    warnings.formatwarning = lambda message, *_a, **_k: f"fg3dgs: warning: {message}\n"
    try:
        return args.func(args)
    except KeyboardInterrupt:          # (train catches its own: it saves the state first)
        print(f"\nfg3dgs {args.command}: interrupted; unfinished outputs were not kept",
              file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = python_format

def run() -> None:
    """The ``fg3dgs`` console script: :func:`main`, then exit. The objects alive at the end
    are frozen out of the garbage collector first: the interpreter's last collection over
    torch's and numba's objects would add about a second to every command. When only daemon
    threads are left, the exit handlers run and the process ends without the interpreter's
    teardown of every module (about 0.3 s more after a render, all of it in freeing torch's,
    numba's and LLVM's state, which the process's end frees anyway)."""
    import atexit
    import gc
    import threading

    code = main()
    gc.freeze()
    if all(t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        atexit._run_exitfuncs()        # what sys.exit would run: temporary folders, logging
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    sys.exit(code)


if __name__ == "__main__":
    run()
