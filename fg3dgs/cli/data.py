"""Clips and datasets: ``fg3dgs synth``, ``synth-check``, ``speak`` and ``preprocess``."""

from __future__ import annotations

import argparse
import json
import random
import time

from ..arguments import image_size, output_file, positive, whole_number
from ..io_utils import atomic_output
from ..media import AUDIO_RATE, write_wav
from ..synth.check import as_dict, check_clip
from ..synth.sheet import contact_sheet
from ..synth.speech import synthesize
from .errors import CommandError
from .parser import Command


def _synth_options(p: argparse.ArgumentParser) -> None:
    # numba and scipy come with the clip module: only synth's own parser imports it
    from ..synth.clip import SynthConfig

    p.add_argument("--photo", default=SynthConfig.photo,
                   help="portrait image, or builtin:astronaut / builtin:hopper")
    p.add_argument("--out", required=True, help="output directory (must not exist)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text", help="text to speak")
    what.add_argument("--text-file", help="file with the text to speak")
    what.add_argument("--sentences", type=whole_number(1),
                      help="speak N sentences of the corpus")
    p.add_argument("--seconds", type=positive,
                   help="with no text: at least this much speech, whole sentences "
                        "(default 10)")
    p.add_argument("--voice", help="eSpeak voice, e.g. en-us, en-gb-scotland, en-us+f3 "
                                   "(default: drawn from the seed)")
    p.add_argument("--size", type=image_size, default=SynthConfig.size,
                   help=f"video size in pixels (default {SynthConfig.size})")
    p.add_argument("--seed", type=int, default=SynthConfig.seed,
                   help=f"draws the voice, sentences and motion (default {SynthConfig.seed})")
    p.add_argument("--background", choices=["blur", "photo", "plain"],
                   default=SynthConfig.background,
                   help="behind the person: the photo blurred (default), as it is, or a "
                        "plain colour")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synth(args: argparse.Namespace) -> int:
    """make a synthetic talking-head clip with ground truth

    Speak text (or corpus sentences) with eSpeak NG and animate a face photo to it. Writes
    DIR/video.mp4 (H.264 + AAC, 25 fps), DIR/audio.wav (16 kHz), DIR/truth.npz and
    DIR/truth.json."""
    from ..synth.clip import SynthConfig, generate

    text = args.text
    if args.text_file:
        try:
            text = open(args.text_file, encoding="utf-8").read()
        except OSError as exc:
            raise CommandError(f"cannot read --text-file: {exc}") from exc
    cfg = SynthConfig(photo=args.photo, text=text, sentences=args.sentences,
                      seconds=args.seconds, voice=args.voice, size=args.size, seed=args.seed,
                      background=args.background)
    start = time.perf_counter()
    out = generate(cfg, args.out, force=args.force, progress=not args.quiet)
    print(f"wrote {out}/ (video.mp4, audio.wav, truth.npz, truth.json) in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def _synth_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir")
    p.add_argument("--json", type=output_file(".json"),
                   help="also write the numbers to this JSON file")
    p.add_argument("--sheet", type=output_file(".png"),
                   help="also write a contact sheet PNG of distinct mouth states")


def run_synth_check(args: argparse.Namespace) -> int:
    """measure a synthetic clip against its truth with mediapipe (exit 1 if a target is
    missed)"""
    result = check_clip(args.dir)
    if args.sheet:
        print(f"wrote {contact_sheet(args.dir, args.sheet)}")
    print(result.report())
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(as_dict(result), indent=2) + "\n")
    return 0 if all(result.passed().values()) else 1


def _speak_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=output_file(".wav"),
                   help="output WAV (16 kHz mono)")
    p.add_argument("--text", help="what to say (default: corpus sentences)")
    p.add_argument("--sentences", type=whole_number(1), default=2,
                   help="corpus sentences to speak without --text (default 2)")
    p.add_argument("--held-out", action="store_true",
                   help="voices and sentences outside the expert's training set")
    p.add_argument("--seed", type=int, default=0, help="draws the voice and sentences")


def run_speak(args: argparse.Namespace) -> int:
    """synthesise test speech (a WAV) with a random voice

    Corpus sentences (or --text) spoken by a random eSpeak voice. --held-out draws voices
    and sentences from the set the sync expert never trains on, to test lip sync on unseen
    speech."""
    from ..sync.data import random_voice, split_sentences  # torch comes with it

    rng = random.Random(args.seed)
    text = args.text
    if text is None:
        pool = split_sentences(args.held_out)
        if args.sentences > len(pool):
            raise CommandError(f"--sentences: the {'held-out ' * args.held_out}corpus has "
                               f"{len(pool)} sentences; ask for at most that many")
        text = " ".join(rng.sample(pool, args.sentences))
    speech = synthesize(text, random_voice(rng, args.held_out))
    write_wav(args.out, speech.audio, AUDIO_RATE)
    print(f"wrote {args.out}: {speech.duration:.1f} s, voice {speech.voice.espeak_name} "
          f"(rate {speech.voice.rate}, pitch {speech.voice.pitch}): {text}")
    return 0


def _preprocess_options(p: argparse.ArgumentParser) -> None:
    # numba and scipy come with the pipeline module: only preprocess's parser imports it
    from ..preprocess.pipeline import LANDMARKERS, PreprocessConfig

    features = ",".join(PreprocessConfig.audio_features)
    p.add_argument("video")
    p.add_argument("--out", required=True, help="dataset folder (must not exist)")
    p.add_argument("--size", type=image_size, default=PreprocessConfig.size,
                   help=f"crop size in pixels (default {PreprocessConfig.size}; the cpu "
                        "training preset uses 256)")
    p.add_argument("--landmarker", choices=tuple(LANDMARKERS),
                   default=PreprocessConfig.landmarker,
                   help="mediapipe (478 points, offline; default) or face-alignment (68 "
                        "points; downloads its weights on first use)")
    p.add_argument("--audio-features", default=features,
                   help="comma-separated: mel, artic (the shipped speech front-end), "
                        f"hubert, wav2vec2 (default {features})")
    p.add_argument("--audio-model", help="model id or local folder for hubert / wav2vec2")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--preview", action="store_true",
                   help="also write DATASET/preview.png: frames with landmarks, masks and "
                        "head-pose axes")
    p.add_argument("--no-mirror", action="store_true",
                   help="mediapipe: read each frame once, not also mirrored (about a quarter "
                        "faster; the average of both readings is more accurate)")


def run_preprocess(args: argparse.Namespace) -> int:
    """turn a portrait video into a training set

    Landmarks, one portrait crop, head-pose cameras, region masks, expression and audio
    features, written to DATASET. The video needs one person talking, with sound, for at least
    10 s (minutes are better)."""
    from ..preprocess.pipeline import PreprocessConfig, preprocess

    names = tuple(n.strip() for n in args.audio_features.split(",") if n.strip())
    cfg = PreprocessConfig(size=args.size, landmarker=args.landmarker, audio_features=names,
                           mirror_landmarks=not args.no_mirror,
                           models={n: args.audio_model for n in names if args.audio_model})
    start = time.perf_counter()
    out = preprocess(args.video, args.out, cfg, force=args.force, progress=not args.quiet)
    print(f"wrote dataset {out}/ in {time.perf_counter() - start:.0f} s")
    if args.preview:
        from ..preprocess.preview import preview_sheet
        print(f"wrote {preview_sheet(out, out / 'preview.png')}")
    return 0


COMMANDS = (Command("synth", run_synth, _synth_options),
            Command("synth-check", run_synth_check, _synth_check_options),
            Command("speak", run_speak, _speak_options),
            Command("preprocess", run_preprocess, _preprocess_options))
