"""Training: ``fg3dgs train``, ``refine`` and ``retarget`` (identities), ``train-sync`` (the
lip-sync expert) and ``train-audio`` (the speech front-end).

The options' defaults, and the numbers their help gives, come from the config dataclasses
(torch-free, so that arguments are checked before torch loads)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..arguments import image_size, positive, share, whole_number
from ..frontend_train_config import FrontendTrainConfig
from ..mel import RATE
from ..options import BACKENDS
from ..sync_train_config import SyncTrainConfig
from ..train import COMPILE_MODES, PRESETS, parse_iterations
from ..train.config import TrainConfig, preset
from ..train.retarget_config import AudioTuneConfig, RetargetConfig
from ..zoo import resolve_identity
from .errors import CommandError
from .parser import BACKEND_HELP, Command


def _train_options(p: argparse.ArgumentParser) -> None:
    cpu, paper = preset("cpu"), preset("paper")
    p.add_argument("dataset")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--preset", choices=PRESETS, default=TrainConfig.preset,
                   help=f"cpu: {cpu.size}x{cpu.size}, about an hour on 2 cores; paper: the "
                        f"paper's {paper.size}x{paper.size} schedule (for a CUDA GPU)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="start over in an existing --out")
    p.add_argument("--size", type=image_size, help="training image size (preset's by default)")
    p.add_argument("--iterations", help="STATIC,DEFORM,FUSION[,HRPA] iteration counts")
    p.add_argument("--stage", choices=["fusion", "hrpa"],
                   help="rerun this stage of the finished run in --out from its start, "
                        "the stages after it too (fusion: the whole-frame stage, e.g. with "
                        "a newer loss; hrpa: the lip-sync refinement, e.g. with another "
                        "--expert)")
    p.add_argument("--expert", help="sync expert for HRPA: ours (.safetensors), Wav2Lip's "
                                    "lipsync_expert.pth, or hf://OWNER/REPO/FILE "
                                    "(default: checkpoints/sync_expert.safetensors)")
    p.add_argument("--no-hrpa", action="store_true",
                   help="skip the lip-sync refinement (the identity has the base variant "
                        "only)")
    # (None: the preset's)
    p.add_argument("--audio-features", help="which of the dataset's features (default "
                                            f"{cpu.model.audio_features})")
    p.add_argument("--audio-copies", type=int, metavar="N",
                   help="voice-varied (augmented) copies of the clip's audio that drive "
                        f"half the training frames (default {cpu.audio_copies}; 0: the clean "
                        "audio only)")
    p.add_argument("--no-region-split", action="store_true",
                   help="ablation: one Gaussian set and one network for the whole head")
    p.add_argument("--no-frequency-aware", action="store_true",
                   help="ablation: plain MLP deltas for all regions")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    p.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                   choices=COMPILE_MODES,
                   help="run the networks and the loss through torch.compile (fewer GPU "
                        "kernel launches; a stage's first steps take a minute or so to "
                        "compile; a resumed run keeps its own setting). MODE: torch.compile's "
                        "(default; reduce-overhead adds CUDA graphs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    """train an identity from a preprocessed dataset

    The FG-3DGS stages (static, deform, fusion, hrpa); writes RUN/identity.safetensors +
    identity.json, previews and a loss curve. Ctrl-C saves the state; --resume continues
    exactly."""
    # torch comes with the trainer and the config's presets
    from ..train.config import preset
    from ..train.trainer import train

    resumed = args.resume or args.stage is not None
    over = _train_overrides(args, preset(args.preset).iterations)
    ds_size, preset_size = _dataset_size(args.dataset), preset(args.preset).size
    if not args.size and not resumed and ds_size and ds_size < preset_size:
        over["size"] = ds_size
        print(f"training at {ds_size}x{ds_size}, the dataset's size (the {args.preset} "
              f"preset's {preset_size} would only upsample it; preprocess at --size "
              f"{preset_size} for that)", file=sys.stderr)
    start = time.perf_counter()
    try:
        cfg = None if resumed else preset(args.preset, **over)
        out = train(args.dataset, args.out, cfg, resume=args.resume,
                    progress=not args.quiet, force=args.force, stage=args.stage,
                    expert=args.expert if resumed else None)
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


def _train_overrides(args: argparse.Namespace, schedule: dict[str, int]) -> dict:
    """The preset's settings that the options change; ``schedule``: the preset's iterations."""
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
        over["iterations"] = {**schedule, **parse_iterations(args.iterations)}
    if args.no_hrpa:
        over["iterations"] = {**over.get("iterations", schedule), "hrpa": 0}
    if args.expert:
        over["expert"] = args.expert
    if args.audio_copies is not None:
        if args.audio_copies < 0:
            raise CommandError("--audio-copies must be 0 or more")
        over["audio_copies"] = args.audio_copies
    over["backend"] = args.backend
    if args.compile:
        over["compile"], over["compile_mode"] = "inductor", args.compile
    return over


def _dataset_size(folder: str) -> int | None:
    """The frame size a dataset was preprocessed at (None when it cannot be read: training
    then says what is wrong with it)."""
    try:
        return int(json.loads((Path(folder) / "manifest.json").read_text())["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _refine_options(p: argparse.ArgumentParser) -> None:
    cfg = TrainConfig       # (None below: the identity's own setting, else these)
    p.add_argument("identity", help="run folder or zoo id")
    p.add_argument("--data", required=True,
                   help="the preprocessed dataset the identity was trained on")
    p.add_argument("--out", required=True, help="run folder for the refined identity")
    p.add_argument("--iterations", type=whole_number(1),
                   help="HRPA steps (default: the identity's own schedule's)")
    p.add_argument("--other-voices", type=float, metavar="SHARE",
                   help="share of the steps driven by other voices' speech, judged by the "
                        f"expert alone (default {cfg.hrpa_other_voices:g}: the identity's own "
                        "audio only)")
    p.add_argument("--other-minutes", type=positive, metavar="MIN",
                   help="minutes of other voices' speech to make for it (default "
                        f"{cfg.hrpa_other_minutes:g})")
    p.add_argument("--expert", help="sync expert (default: the identity's training one, "
                                    "else checkpoints/sync_expert.safetensors)")
    p.add_argument("--sync-shifts", type=whole_number(0), metavar="S",
                   help="the sync term: 0 for Wav2Lip's BCE on the in-sync pair, 2 or more "
                        "for an InfoNCE that asks the expert to pick the rendered window's "
                        "own audio among the same audio shifted by 2..S frames either way "
                        f"(default {cfg.hrpa_shifts})")
    p.add_argument("--adapter", action="store_true",
                   help="learn only a small adapter of the refined mouth's audio features "
                        "(a filter over the feature frames, a gain and mixing of the "
                        "articulators) instead of its network and colours: the expert can "
                        "change when and how far the mouth moves, not what it looks like")
    p.add_argument("--adapter-lr", type=positive, metavar="LR",
                   help=f"learning rate of that adapter (default {cfg.lr_hrpa_adapter:g})")
    p.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_refine(args: argparse.Namespace) -> int:
    """run the lip-sync refinement (HRPA) again on an identity

    HRPA alone on a trained identity (a re-targeted or downloaded one needs no training run):
    its refined branch starts again from the base one and learns from the sync expert on the
    identity's own frames, and with --other-voices also on speech in other voices (eSpeak NG
    voices, half of it augmented). Writes a new identity to --out."""
    from ..train.trainer import refine

    over = {k: v for k, v in (("iterations", args.iterations), ("expert", args.expert),
                              ("hrpa_other_voices", args.other_voices),
                              ("hrpa_other_minutes", args.other_minutes),
                              ("backend", args.backend), ("hrpa_shifts", args.sync_shifts),
                              ("lr_hrpa_adapter", args.adapter_lr)) if v is not None}
    if args.adapter:
        over["hrpa_adapter"] = True
    elif args.adapter_lr is not None:
        raise CommandError("--adapter-lr needs --adapter")
    if over.get("hrpa_shifts") == 1:
        raise CommandError("--sync-shifts is 0 (BCE) or 2 or more: a one-frame shift is too "
                           "close to in sync to count against it")
    if not 0 <= over.get("hrpa_other_voices", 0) <= 1:
        raise CommandError("--other-voices is a share of the steps, 0 to 1")
    start = time.perf_counter()
    out = refine(resolve_identity(args.identity), args.data, args.out,
                 progress=not args.quiet, force=args.force, **over)
    print(f"wrote identity {out}/identity.safetensors in {time.perf_counter() - start:.0f} s")
    return 0


def _retarget_options(p: argparse.ArgumentParser) -> None:
    cfg, tune = RetargetConfig, AudioTuneConfig
    p.add_argument("identity", help="run folder or zoo id")
    p.add_argument("--speech", nargs="+",
                   help="speech in the identity's own voice: its training clip's audio "
                   "(default with --data: the dataset's)")
    p.add_argument("--data", help="the identity's preprocessed dataset, with the new "
                   "features: the new encoder and the mouth network are then tuned on its "
                   "training frames (about 6 minutes on 2 CPU cores at 256 px); a refined "
                   "branch is dropped (run fg3dgs refine after)")
    p.add_argument("--tune-steps", type=whole_number(1), default=tune.steps,
                   help=f"tuning steps with --data (default {tune.steps})")
    p.add_argument("--out", required=True, help="folder for the new identity")
    p.add_argument("--audio-features", default=cfg.features, choices=["artic", "mel"],
                   help=f"the new front-end (default {cfg.features})")
    p.add_argument("--copies", type=whole_number(0), default=cfg.copies,
                   help=f"augmented copies of the speech (default {cfg.copies})")
    p.add_argument("--steps", type=whole_number(1), default=cfg.steps,
                   help=f"distillation steps (default {cfg.steps})")
    # the flag turns RetargetConfig.match_spread (on by default) off
    p.add_argument("--keep-shrinkage", action="store_true",
                   help="leave the distilled driving features as trained, without "
                   "rescaling them to the old encoder's spread (for comparison)")
    p.add_argument("--seed", type=int, default=cfg.seed,     # it seeds the tuning too
                   help=f"draws the augmented copies and the batches (default {cfg.seed})")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_retarget(args: argparse.Namespace) -> int:
    """give a trained identity another audio front-end (default artic) by distilling its
    audio encoder

    A new audio encoder on the new features learns to give the driving features the identity's
    own encoder gives for the same speech (its training clip's audio; augmented copies too).
    Nothing is rendered; the Gaussians, networks and replay track are kept. An identity on
    another version of the speech front-end (artic) keeps its encoder and moves to the
    installed one; with --data it is tuned there."""
    from ..train.retarget import retarget

    cfg = RetargetConfig(features=args.audio_features, copies=args.copies, steps=args.steps,
                         seed=args.seed, match_spread=not args.keep_shrinkage)
    tune = AudioTuneConfig(seed=args.seed, steps=args.tune_steps)
    report = retarget(resolve_identity(args.identity), args.speech or [], args.out, cfg,
                      progress=not args.quiet, force=args.force, data=args.data, tune=tune)
    for kind in ("clean", "augmented"):
        r2 = report.get(f"heldout_r2_{kind}")
        if r2:
            print(f"held-out speech, {kind}: driving features explained R^2 f_a "
                  f"{r2['f_a']:.3f}, tokens {r2['tokens']:.3f}; spread of f_a "
                  f"{r2['spread']:.2f} x the identity's own")
    if "encoder" in report:
        print(f"moved from {report['from']} to the installed front-end; the audio encoder "
              "kept" + ("" if "tune" in report else " as it was (give --data to tune it)"))
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


def _train_sync_options(p: argparse.ArgumentParser) -> None:
    cfg = SyncTrainConfig
    p.add_argument("--out", required=True, help="folder for sync_expert.safetensors")
    p.add_argument("--identities", default=",".join(cfg.identities),
                   help="comma-separated photos (builtin:NAME or image paths)")
    p.add_argument("--minutes", type=positive, default=cfg.minutes,
                   help="minutes of training speech")
    p.add_argument("--steps", type=whole_number(1), default=cfg.steps,
                   help=f"optimiser steps (default {cfg.steps})")
    p.add_argument("--batch", type=whole_number(2), default=cfg.batch,
                   help=f"clips per optimiser step (default {cfg.batch})")
    p.add_argument("--width", type=positive, default=cfg.width,
                   help="channel scale of Wav2Lip's layout (1 = the published expert's)")
    p.add_argument("--heldout-clips", type=whole_number(1), default=cfg.heldout_clips,
                   help="5-second held-out clips for the offset test")
    p.add_argument("--voices", choices=("wide", "speakers"), default=cfg.voices,
                   help="wide: every eSpeak accent and variant, other languages' voices "
                   "reading English, 80-260 words per minute (the speech front-end's draw); "
                   f"speakers: 7 English accents, ordinary variants, 130-200 (default "
                   f"{cfg.voices})")
    p.add_argument("--audio-copies", type=whole_number(0), default=cfg.audio_copies,
                   help="augmented copies of each clip's audio (noise, reverberation, "
                   f"telephone, codecs, level, vocal-tract warp; default {cfg.audio_copies})")
    p.add_argument("--seed", type=int, default=cfg.seed, help="draws the training material "
                   f"(default {cfg.seed})")
    p.add_argument("--force", action="store_true", help="replace the expert in an existing "
                   "--out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_train_sync(args: argparse.Namespace) -> int:
    """train the lip-sync expert on synthetic clips

    Generates clips with the synthetic generator (many voices, rates and pitches, the built-in
    photos, colour / crop / scale augmentation, augmented copies of the audio), trains the
    expert and reports held-out pair accuracy and offset detection on unseen voices and
    sentences."""
    from ..sync.train import train_expert

    cfg = SyncTrainConfig(identities=tuple(args.identities.split(",")), minutes=args.minutes,
                          steps=args.steps, width=args.width, batch=args.batch,
                          heldout_clips=args.heldout_clips, seed=args.seed,
                          voices=args.voices, audio_copies=args.audio_copies)
    report = train_expert(cfg, args.out, progress=not args.quiet, force=args.force)
    h = report["heldout"]
    print(f"held-out ({h['clips']} clips, unseen voices and sentences): pair accuracy "
          f"{h['pair_accuracy']:.3f}, offset found within +-1 frame on "
          f"{100 * h['offset_within_1']:.0f}% of clips")
    print(f"wrote {args.out}/sync_expert.safetensors and {args.out}/report.json")
    return 0


def _train_audio_options(p: argparse.ArgumentParser) -> None:
    cfg = FrontendTrainConfig
    p.add_argument("--out", required=True, help="folder for speech_frontend.safetensors")
    p.add_argument("--minutes", type=positive, default=cfg.minutes,
                   help=f"minutes of training speech before augmentation (default "
                        f"{cfg.minutes:g}; the defaults make the shipped front-end, about 11 "
                        "minutes on 2 cores)")
    p.add_argument("--copies", type=whole_number(0), default=cfg.copies,
                   help=f"augmented copies of each utterance (default {cfg.copies})")
    p.add_argument("--steps", type=whole_number(1), default=cfg.steps,
                   help=f"optimiser steps (default {cfg.steps})")
    p.add_argument("--batch", type=whole_number(1), default=cfg.batch,
                   help=f"{cfg.crop_frames // RATE}-second windows per step (default "
                        f"{cfg.batch})")
    p.add_argument("--ccc", type=float, default=cfg.ccc,
                   help="weight of the concordance term that keeps the mouth outputs' "
                        f"spread on voices the network is unsure of (default {cfg.ccc:g}; "
                        "0: off)")
    p.add_argument("--eq", type=share, default=cfg.eq, metavar="SHARE",
                   help="share of the augmented copies also coloured by a random microphone "
                        "and channel equaliser (tilt, peaks and dips, low cut, band limit; "
                        f"default {cfg.eq:g})")
    p.add_argument("--flite", type=share, default=cfg.flite, metavar="SHARE",
                   help="share of the training speech spoken by CMU Flite's voices (speakers "
                        "of the CMU ARCTIC recordings; needs the flite program, e.g. apt-get "
                        f"install flite; default {cfg.flite:g})")
    p.add_argument("--voice-quality", type=share, default=cfg.voice_quality, metavar="SHARE",
                   help="share of the augmented copies also given a less regular voice (a "
                        f"slow pitch and formant wobble, breath noise; default "
                        f"{cfg.voice_quality:g})")
    p.add_argument("--recorded", action="store_true",
                   help="also train on nine tenths of the recorded Russian speech (a man "
                        "reading, 89 min, with the corpus's phone timings; Debian's "
                        "festvox-ru, 179 MB, downloaded on first use), on top of --minutes")
    p.add_argument("--width", type=whole_number(8), default=cfg.width,
                   help=f"channels of the network's convolutions (default {cfg.width}; "
                        "compute grows with its square)")
    p.add_argument("--seed", type=int, default=cfg.seed, help="draws the voices and "
                   f"augmentations (default {cfg.seed})")
    p.add_argument("--force", action="store_true", help="replace a front-end in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_train_audio(args: argparse.Namespace) -> int:
    """train the speech front-end (any voice -> mouth articulation) on eSpeak speech

    Speaks corpus sentences with many eSpeak NG voices, variants, rates and pitches, augments
    each (noise, reverberation, telephone band, codecs, level, clipping, vocal-tract warping)
    and trains the network behind --audio-features artic to predict the synthetic generator's
    jaw / spread / round / closure and speech activity at 50 Hz; reports its accuracy on voices
    and sentences it never saw, on CMU Flite's voices where flite is installed, and on
    recorded Russian speech where it is downloaded (tools/recorded_check.py)."""
    from ..frontend.train import train_frontend

    cfg = FrontendTrainConfig(minutes=args.minutes, copies=args.copies, steps=args.steps,
                              batch=args.batch, seed=args.seed, ccc=args.ccc, eq=args.eq,
                              flite=args.flite, voice_quality=args.voice_quality,
                              recorded=args.recorded, width=args.width)
    report = train_frontend(cfg, args.out, progress=not args.quiet, force=args.force)
    checks = [("held-out voices and sentences", report["heldout"])]
    heard = "heard in training" if cfg.flite > 0 else "never heard in training"
    checks.append((f"Flite's voices ({heard}), held-out sentences", report["flite"]))
    heard = "heard in training" if cfg.recorded else "never heard in training"
    checks.append((f"recorded speech, a person ({heard}), held-out sentences",
                   report["recorded"]))
    for name, h in checks:
        if isinstance(h, str):                  # not measured, and why
            print(f"{name}: {h}")
            continue
        for kind in ("clean", "augmented"):
            acc = h[kind]
            print(f"{name}, {kind}: " + ", ".join(
                f"{k} r {acc[k]['r']:.3f} (spread {acc[k]['spread']:.2f})"
                for k in ("jaw_open", "lip_spread", "lip_round", "lip_closure"))
                + f"; speech/pause {100 * acc['speech']['accuracy']:.1f} % of frames")
    print(f"wrote {args.out}/speech_frontend.safetensors and {args.out}/report.json")
    return 0


COMMANDS = (Command("train", run_train, _train_options, reports=(ValueError,)),
            Command("refine", run_refine, _refine_options, reports=(ValueError,)),
            Command("retarget", run_retarget, _retarget_options, reports=(ValueError, OSError)),
            Command("train-sync", run_train_sync, _train_sync_options, reports=(ValueError,)),
            Command("train-audio", run_train_audio, _train_audio_options, reports=(ValueError,)))
