"""Speaking: ``fg3dgs render`` (an identity speaking any audio) and ``demo`` (the shipped
identity speaking a bundled example).

render's defaults are RenderOptions' (torch-free); demo reads the options it leaves out
from render's table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..arguments import image_size, output_file, pose_scale, pose_source, positive, whole_number
from ..io_utils import assets_dir
from ..options import BACKENDS, BLINKS, POSE_ENDS, POSES, VARIANTS
from ..pipeline import AudioInput
from ..pipeline.render_options import RenderOptions
from ..pipeline.sheet import video_sheet
from ..timing import process_age
from .errors import CommandError
from .parser import BACKEND_HELP, Command, add_run_flags

if TYPE_CHECKING:
    from ..pipeline import RenderResult

# render's options that demo leaves out: demo renders with render's defaults of them
RENDER_ONLY = ("size", "pose", "pose_scale", "pose_end", "blink", "batch", "seed", "scores",
               "stream", "chunk_ms")


def _render_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--identity", required=True, help="run folder or zoo id (fg3dgs zoo list)")
    p.add_argument("--audio", required=True, help="speech file")
    p.add_argument("--out", required=True, type=output_file(".mp4"), help="output MP4")
    p.add_argument("--variant", choices=VARIANTS, default=None,
                   help="mouth branch (default: refined, or base where the identity has no "
                        "lip-sync refinement); 'both' puts base and refined side by side")
    p.add_argument("--size", type=image_size, default=RenderOptions.size,
                   help="output side (default: the identity's training size)")
    p.add_argument("--pose", type=pose_source, default=RenderOptions.pose,
                   metavar="|".join((*POSES, "FILE")),
                   help="replay: the replay track's head motion (default); static: its "
                        "first pose; FILE: a pose track (.npz with R [F, 3, 3] and t [F, 3], "
                        "or a preprocessed dataset folder: its cameras.npz), moved into the "
                        "identity's head space")
    p.add_argument("--pose-scale", type=pose_scale, default=RenderOptions.pose_scale,
                   help="head motion about its central pose: 0 still, 0.5 damped, 1 as is "
                        "(default), 2 doubled")
    p.add_argument("--pose-end", choices=POSE_ENDS, default=RenderOptions.pose_end,
                   help="a pose track shorter than the speech: hold its last pose "
                        "(default) or loop it back and forth")
    p.add_argument("--blink", choices=BLINKS, default=RenderOptions.blink,
                   help="replay: the track's eye state (default); auto: a blink every 2-6 s")
    p.add_argument("--backend", choices=BACKENDS, default=RenderOptions.backend,
                   help=BACKEND_HELP)
    p.add_argument("--batch", type=whole_number(1), default=RenderOptions.batch,
                   help="frames per network call (default 8 on the CPU, 32 on a GPU)")
    p.add_argument("--seed", type=int, default=RenderOptions.seed, help="auto blinks")
    p.add_argument("--scores", action="store_true", help="also report expert-C / D / "
                   "offset of each variant (our sync expert)")
    p.add_argument("--stream", action="store_true", help="feed the speech in chunks "
                   "through the streaming renderer (live use) and report its latency")
    p.add_argument("--chunk-ms", type=positive, default=200.0, help="--stream chunk length")
    add_run_flags(p)


def _demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo.mp4", type=output_file(".mp4"),
                   help="output MP4 (default: demo.mp4)")
    p.add_argument("--sheet", default=None, type=output_file(".png"),
                   help="contact sheet PNG (default: the --out name with .png)")
    p.add_argument("--identity", default="astronaut-artic",
                   help="run folder or zoo id (default: astronaut-artic, shipped)")
    p.add_argument("--audio", default=None, help="speech file (default: the bundled "
                   "examples/morning.wav)")
    p.add_argument("--variant", choices=VARIANTS, default=None,
                   help="mouth branch (default: both side by side, or base for an "
                   "identity without the lip-sync refinement)")
    p.add_argument("--backend", choices=BACKENDS, default=RenderOptions.backend,
                   help=BACKEND_HELP)
    add_run_flags(p)
    scratch = argparse.ArgumentParser(add_help=False)
    _render_options(scratch)
    p.set_defaults(**{name: scratch.get_default(name) for name in RENDER_ONLY})


def run_demo(args: argparse.Namespace) -> int:
    """the shipped identity speaking an example: an MP4 and a contact sheet PNG (offline)

    Render a shipped identity (default: the app's, astronaut-artic) speaking a bundled example
    sentence to an MP4 and a contact-sheet PNG of 8 moments of it; an identity with the
    lip-sync refinement is shown without (left) and with (right) it. Needs no download."""
    args.audio = args.audio or str(assets_dir() / "examples" / "morning.wav")
    sheet = args.sheet or str(Path(args.out).with_suffix(".png"))
    return _render(args, then_sheet=sheet, prefer="both")


def run_render(args: argparse.Namespace) -> int:
    """an identity speaking any audio, to an MP4

    Render an identity (run folder or zoo id) speaking AUDIO (wav, mp3, flac, ogg, m4a or a
    video's sound) to H.264 + AAC."""
    return _render(args)


def _render(args: argparse.Namespace, then_sheet: str | None = None,
            prefer: str = "refined") -> int:
    """render, and demo with ``then_sheet`` (a contact sheet of the video) and ``prefer``
    (the variant where the identity has the refined one and --variant is not given)."""
    if args.stream and args.scores:
        raise CommandError("--scores is not available with --stream")
    # the speech first: a wrong file is reported before torch and the identity load
    speech = AudioInput(args.audio)
    # torch comes with the renderer; tqdm's 15 ms of start-up only a render needs
    from tqdm import tqdm

    from ..pipeline import TalkingHead

    with speech:
        head = TalkingHead.load(args.identity, verify=not args.no_verify)
        loaded = process_age()
        # the refined branch where the identity has one (a --no-hrpa run has only base)
        variant = args.variant or (prefer if "refined" in head.variants else "base")
        opts = RenderOptions(variant=variant, size=args.size, pose=args.pose,
                             pose_scale=args.pose_scale, pose_end=args.pose_end,
                             blink=args.blink, backend=args.backend, batch=args.batch,
                             seed=args.seed, sync_scores=args.scores)
        opts.check(head.variants)       # refused before a progress bar is drawn
        with tqdm(total=1000, desc="rendering", unit="‰", disable=args.quiet,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
                  ) as bar:

            def progress(frac: float, stage: str) -> None:
                bar.set_description_str(stage)
                bar.update(int(frac * 1000) - bar.n)

            if args.stream:
                res = head.render_streaming(speech, args.out, opts, args.chunk_ms, progress)
            else:
                res = head.render(speech, args.out, opts, progress)
    sheet = video_sheet(args.out, then_sheet) if then_sheet else None
    print(f"wrote {args.out}: {res.frames} frames ({res.audio_seconds:.2f} s of speech) at "
          f"{res.size}x{res.size}, variant {opts.variant}, backend {res.backend}, "
          f"{res.render_seconds:.1f} s ({res.fps:.1f} frames/s)")
    if sheet:
        print(f"wrote {sheet}: a contact sheet of 8 moments of the video")
    _print_details(args, res, loaded)
    return 0


def _print_details(args: argparse.Namespace, res: RenderResult, loaded: float) -> None:
    """A render's sync scores, streaming latency and (--verbose) where the time went;
    ``loaded``: seconds from the process's start to the identity loaded."""
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


COMMANDS = (Command("demo", run_demo, _demo_options, reports=(ValueError,)),
            Command("render", run_render, _render_options, reports=(ValueError,)))
