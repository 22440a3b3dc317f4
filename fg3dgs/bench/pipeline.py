"""``python -m fg3dgs.bench pipeline``: audio to frames to video, end to end, with the time
of each stage (audio features, deformation networks, rasterization, fusion, video encoding).

Models: the shipped demo identity (mel features), the same head re-targeted to the speech
front-end (``artic``: the front-end's network runs in "audio features"), and a paper-size
timing model of about 100k Gaussians
(the demo's Gaussians resampled with jitter to 65k face / 12k eyes / 23k mouth, SH degree 3,
the paper preset's networks with fresh weights: right for speed, meaningless as a face).
Each configuration renders the same speech (the example clips looped to ``--seconds``) to an
MP4 once to warm up and then ``--repeats`` times; the table gives medians. Frames go to
ffmpeg from a background thread while the next ones render, so "encode" is only the time
the renderer waited for the encoder (mostly the end of the file). ``--stream`` adds
the streaming latency: from handing an audio chunk to the first frame it yields.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..media import AUDIO_RATE
from .machine import describe_machine

PAPER_COUNTS = {"face": 65_000, "eyes": 12_000, "mouth": 23_000}


def speech(seconds: float, folder: Path) -> Path:
    """The example clips, concatenated and looped to ``seconds``, as a 16 kHz WAV."""
    from ..media import read_audio, write_wav
    from ..pipeline.studio import examples

    clips = [read_audio(p) for p, _ in examples()]
    if not clips:
        raise SystemExit("no example clips in assets/examples")
    audio = np.concatenate(clips)
    n = int(seconds * AUDIO_RATE)
    audio = np.tile(audio, n // len(audio) + 1)[:n]
    path = folder / f"speech_{seconds:g}s.wav"
    write_wav(path, audio)
    return path


def paper_size_identity(demo: Path, out: Path, seed: int = 0) -> Path:
    """A timing model of about 100k Gaussians with the paper's configuration."""
    import torch

    from ..model.identity import FG3DGS
    from ..model.io import record_file_hashes
    from ..model.replay import INDEX, VIDEO
    from ..train.config import preset

    model = FG3DGS.from_pretrained(demo)
    cfg = preset("paper").model
    cfg.refined = True
    big = FG3DGS.empty(cfg, PAPER_COUNTS)
    g = torch.Generator().manual_seed(seed)
    k_sh = (cfg.sh_degree + 1) ** 2
    with torch.no_grad():
        for r, n in PAPER_COUNTS.items():
            src, dst = model.gaussians[r], big.gaussians[r]
            pick = torch.randint(len(src), (n,), generator=g)
            jitter = torch.randn(n, 3, generator=g) * src.log_scales[pick].exp().mean(1,
                                                                                 True)
            dst.means.copy_(src.means[pick] + jitter)
            dst.quats.copy_(src.quats[pick])
            dst.log_scales.copy_(src.log_scales[pick] - np.log(1.6))   # more, smaller
            dst.opacity_logits.copy_(src.opacity_logits[pick])
            sh = torch.zeros(n, k_sh, 3)
            sh[:, : src.sh.shape[1]] = src.sh[pick]
            sh[:, src.sh.shape[1]:] = 0.01 * torch.randn(n, k_sh - src.sh.shape[1], 3,
                                                         generator=g)
            dst.sh.copy_(sh)
        lo = torch.stack([big.gaussians[r].means.min(0).values for r in PAPER_COUNTS]).min(0)
        hi = torch.stack([big.gaussians[r].means.max(0).values for r in PAPER_COUNTS]).max(0)
        for h in big.hash.values():
            h.bound_min.copy_(lo.values - 0.01)
            h.bound_max.copy_(hi.values + 0.01)
    big.save_pretrained(out, model.extras, model.info)
    for f in (VIDEO, INDEX):
        (out / f).write_bytes((demo / f).read_bytes())
    record_file_hashes(out)
    return out


def _refined_or_base(head) -> str:
    """The variant the bench renders: refined, or base for an identity without it."""
    return "refined" if "refined" in head.variants else "base"


def measure(identity: Path, backend: str, size: int, batch: int | None, audio: Path,
            repeats: int, variant: str | None = None) -> dict:
    """Median end-to-end frames/s and per-stage ms/frame of rendering ``audio`` to an MP4
    (``batch`` None: the renderer's default for the device; ``variant`` None: refined, or
    base for an identity without it)."""
    import torch

    from ..pipeline import RenderOptions, TalkingHead

    device = "cuda" if backend == "gsplat" else "cpu"
    head = TalkingHead(identity, device=device)
    variant = variant or _refined_or_base(head)
    opts = RenderOptions(variant=variant, size=size, backend=backend, batch=batch)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats + 1):                     # the first run warms up
            res = head.render(audio, Path(tmp) / "out.mp4", opts)
            if k:
                runs.append(res)
    n = runs[0].frames
    stages = ("audio features", "networks", "rasterize", "fusion", "encode")
    row = {"variant": variant, "gaussians": sum(len(g) for g in head.model.gaussians.values()),
           "backend": res.backend, "size": size, "batch": batch or head.default_batch,
           "frames": n,
           "fps": statistics.median(r.fps for r in runs),
           "ms_per_frame": {s: statistics.median(1000 * r.timings.get(s, 0) / n
                                                 for r in runs) for s in stages}}
    if device == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def stream_latency(identity: Path, audio: Path, size: int, chunk_ms: int, backend: str,
                   batch: int) -> dict:
    """Streaming: median and worst time from handing over an audio chunk to the first
    frame it yields, and the frames/s sustained."""
    from ..media import read_audio
    from ..pipeline import RenderOptions, TalkingHead

    device = "cuda" if backend == "gsplat" else "cpu"
    head = TalkingHead(identity, device=device)
    samples = read_audio(audio)
    step = int(AUDIO_RATE * chunk_ms / 1000)
    chunks = [samples[i:i + step] for i in range(0, len(samples), step)]
    opts = RenderOptions(variant=_refined_or_base(head), size=size, backend=backend,
                         batch=batch)
    for _ in head.stream(iter(chunks[:5]), opts):       # warm up
        pass
    latencies, frames = [], 0
    start = time.perf_counter()
    stream = head.stream(iter(chunks), opts, timestamps=True)
    for handed, frame_batch in stream:
        if handed is not None:
            latencies.append(time.perf_counter() - handed)
        frames += len(frame_batch)
    wall = time.perf_counter() - start
    return {"size": size, "chunk_ms": chunk_ms, "latency_ms_median":
            1000 * statistics.median(latencies), "latency_ms_max": 1000 * max(latencies),
            "fps": frames / wall, "frames": frames}


def run(args) -> int:
    from ..io_utils import checkpoints_dir
    from ..render.gsplat_backend import gsplat_status

    zoo = checkpoints_dir() / "identities"
    demo = zoo / "astronaut-demo"
    backends = ["cpu"]
    ok, why = gsplat_status()
    if args.backend in ("all", "gsplat"):
        if ok:
            backends = ["gsplat"] if args.backend == "gsplat" else ["cpu", "gsplat"]
        elif args.backend == "gsplat":
            print(f"gsplat backend unavailable: {why}")
            return 1
        else:
            print(f"# gsplat rows skipped: {why}")
    print(f"# machine: {describe_machine()}")
    print(f"# {args.seconds:g} s of speech to H.264 + AAC, variant refined (base for an "
          "identity without it), medians of "
          f"{args.repeats} runs after one warm-up; stage times in ms per frame (encode: time "
          "spent waiting for the encoder, which runs beside the renderer)")
    print("| model | Gaussians | backend | size | batch | frames/s end to end | audio "
          "features | networks | rasterize | fusion | encode |")
    print("|" + "---|" * 11)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio = speech(args.seconds, tmp)
        models = {}
        if "demo" in args.models:
            models["demo"] = demo
        if "artic" in args.models:
            models["artic"] = zoo / "astronaut-artic"
        if "paper" in args.models:
            models["paper-size"] = paper_size_identity(demo, tmp / "paper")
        for name, path in models.items():
            for backend in backends:
                for size in args.sizes:
                    r = measure(path, backend, size, args.batch, audio, args.repeats)
                    r["model"] = name
                    rows.append(r)
                    m = r["ms_per_frame"]
                    print(f"| {name} | {r['gaussians'] // 1000}k | {r['backend']} | "
                          f"{size}x{size} | {r['batch']} | {r['fps']:.1f} | "
                          + " | ".join(f"{m[s]:.1f}" for s in m) + " |", flush=True)
        if args.stream:
            print(f"\n# streaming, {args.chunk_ms} ms audio chunks")
            print("| model | size | backend | latency chunk -> first frame, median / worst "
                  "ms | frames/s |")
            print("|---|---|---|---|---|")
            heads = {n: p for n, p in models.items() if n != "paper-size"} or {"demo": demo}
            for name, path in heads.items():
                for backend in backends:
                    s = stream_latency(path, audio, 256, args.chunk_ms, backend,
                                       args.batch or 8)
                    rows.append({"stream": s, "backend": backend, "model": name})
                    print(f"| {name} | 256x256 | {backend} | {s['latency_ms_median']:.0f} / "
                          f"{s['latency_ms_max']:.0f} | {s['fps']:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": describe_machine(), "rows": rows},
                                              indent=2))
    return 0
