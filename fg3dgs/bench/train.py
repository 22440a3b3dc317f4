"""``python -m fg3dgs.bench train DATASET``: training iterations per second, stage by stage,
and the wall time a preset's whole schedule would take at those rates.

Each stage (static, deform, fusion, hrpa) is set up as the trainer sets it up, warmed up,
and timed over ``--steps`` optimisation steps (the GPU synchronised before each clock
read). With ``--grow`` (default) every region first gets the preset's densification cap of
Gaussians (existing ones resampled with jitter), the most a run can reach, so the projected
time is an upper bound (the one-off work below is added to it).

Each stage's row also gives the tensor operations one step dispatches (forward, backward
and optimiser; :mod:`fg3dgs.bench.ops`), which on a GPU is about the number of kernel
launches: the measure of a step that is bound by launches. ``--op-sources`` lists where
they come from. ``--compile`` times the step with the networks and the loss compiled
(``fg3dgs train --compile``); the count is then left out, and the warm-up's seconds (mostly
compiling) are printed.

The fusion stage is timed with its LPIPS term: the published weights where they load, else
the same network with random weights (its cost does not depend on them), so that the
projection holds for a run that has the weights (``--lpips-as-run``: without the term where
the weights are missing, as a run on this machine would train).

A run does more than its steps. Each piece of that one-off work is timed once and multiplied
by how often the preset does it (``TrainConfig.one_offs``): the start (dataset and first
model), each stage's set-up, the lip prior's warm-up steps, the densification passes (timed at
the cap, where a pass prunes but adds nothing), previews, checkpoints, compiling (with
``--compile``: the warm-up's time beyond its steps) and the export. Log steps (every
``log_every``-th, which also compute the PSNR and read the loss) are timed as plain steps.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from .machine import describe_machine


def grow_to_cap(trainer, seed: int = 0) -> dict[str, int]:
    """Resample every region of ``trainer.model`` to its densification cap (with jitter)."""
    import torch

    from ..model.gaussians import PARAMS

    g = torch.Generator().manual_seed(seed)
    caps = trainer.cfg.densify.max_gaussians
    with torch.no_grad():
        for r, gs in trainer.model.gaussians.items():
            extra_n = caps[r] - len(gs)
            if extra_n <= 0:
                continue
            pick = torch.randint(len(gs), (extra_n,), generator=g).to(gs.means.device)
            extra = {n: getattr(gs, n).data[pick].clone() for n in PARAMS}
            sigma = extra["log_scales"].exp().mean(1, keepdim=True)
            extra["means"] += torch.randn(extra_n, 3, generator=g).to(sigma) * sigma
            gs.replace(None, extra)
    trainer.model.invalidate()
    return {r: len(gs) for r, gs in trainer.model.gaussians.items()}


def _steps(trainer, k: int):
    """``k`` training steps as the loop runs them between log steps."""
    for _ in range(k):
        trainer.step_once(quality=False)


PROFILE_STEPS = 10


def _profile(trainer, sync, steps: int = PROFILE_STEPS) -> str:
    """torch.profiler's table of ``steps`` steps (host and, on CUDA, device time): where a
    step's time goes, and whether the host or the device is the bound."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if trainer.device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    with profile(activities=acts) as prof:
        _steps(trainer, steps)
        sync()
    key = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60)


def _timed(fn, sync) -> float:
    """Seconds ``fn()`` takes, the device synchronised before and after."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _lip_step_s(trainer, sync, steps: int) -> float:
    """Seconds per warm-up step of the lip prior (after two untimed ones)."""
    trainer.warm_up_lip_prior(steps=2)
    return _timed(lambda: trainer.warm_up_lip_prior(steps=steps), sync) / steps


def _densify_pass_s(trainer, sync) -> float:
    """Seconds of one densification pass over all regions, at the first step one is due (the
    statistics of the steps run so far)."""
    due = trainer.cfg.densify.due_steps(trainer.cfg.iterations["static"])[0]

    def one_pass():
        trainer.densify.run_pass(due, trainer.model.gaussians, trainer.opt)
        trainer.model.invalidate()
    return _timed(one_pass, sync)


def _lpips_for_timing(trainer, stand_in: bool = True) -> str:
    """Give the fusion stage an LPIPS term if it has none (and ``stand_in``): the published
    network where it loaded, else the same network with random weights. Returns which."""
    if trainer.cfg.lpips <= 0:
        return "off (TrainConfig.lpips is 0)"
    if trainer.lpips_net is not None:
        return "published weights"
    if not stand_in:
        return "off (its weights are missing, as in a run here)"
    from ..perceptual.lpips import LPIPS

    net = LPIPS().eval().to(trainer.device)
    for p in net.parameters():
        p.requires_grad_(False)
    trainer.lpips_net = net
    return "random weights (the published ones are missing; the cost is the same)"


def run(args) -> int:
    import torch

    from ..train.config import STAGES, preset
    from ..train.trainer import Trainer, TrainError

    cfg = preset(args.preset, backend=args.backend, compile="inductor" if args.compile else "",
                 compile_mode=args.compile or "default")
    if args.batch:
        cfg.batch = args.batch
    if args.iterations:
        cfg.iterations = {**cfg.iterations, **args.iterations}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            tr = Trainer(args.dataset, Path(tmp) / "run", cfg, progress=False)
        except (TrainError, ValueError) as exc:
            print(f"fg3dgs bench train: error: {exc}")
            return 2
        start_s = time.perf_counter() - t0
        counts = grow_to_cap(tr) if args.grow else {r: len(g) for r, g in
                                                     tr.model.gaussians.items()}
        sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
        _print_header(tr, cfg, counts, args)
        rows, total, sources, profiles = [], 0.0, [], []
        plan, once, lpips = cfg.one_offs(), [], None       # once: (work, stage, times, s)
        for stage in STAGES:
            n = cfg.iterations.get(stage, 0)
            if n <= 0 or (args.stages and stage not in args.stages):
                continue
            row, lp = _measure_stage(tr, cfg, stage, n, plan[stage], args, sync, once,
                                     sources, profiles)
            lpips = lp or lpips
            rows.append(row)
            total += row["projected_minutes"]
        whole = not args.stages or all(s in args.stages for s in STAGES
                                       if cfg.iterations.get(s, 0) > 0)
        if whole:
            print(f"| all | {sum(r['iterations'] for r in rows)} | | | {total:.1f} | |")
            once.insert(0, ("start (dataset, first model)", "", 1, start_s))
            once.append(("export (identity, replay track)", "", 1, _timed(tr.export, sync)))
        if lpips:
            print(f"# fusion timed with its LPIPS term: {lpips}")
        extra = _print_one_offs(once, total if whole else None)
        if cfg.compile:
            print("# warm-up (compiling) per stage: " + ", ".join(
                f"{r['stage']} {r['warmup_s']:.0f} s" for r in rows))
        for stage, table in profiles:
            print(f"\n# {stage}: torch.profiler over {PROFILE_STEPS} steps\n{table}")
        for stage, counted in sources:
            print(f"\n# {stage}: tensor ops of one step by source")
            for where, k in counted.sources.most_common(args.op_sources):
                print(f"{k:6d}  {where}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": describe_machine(), "preset": cfg.preset, "size": cfg.size,
             "batch": cfg.batch, "device": str(tr.device), "gaussians": counts,
             "grown": args.grow, "rows": rows,
             "projected_minutes": total if whole else None,
             "one_offs": [{"work": w, "stage": st, "times": k, "seconds_each": sec}
                          for w, st, k, sec in once],
             "one_off_minutes": extra,
             "projected_minutes_with_one_offs": total + extra if whole else None,
             "fusion_lpips": lpips,
             "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2 ** 20
                             if tr.device.type == "cuda" else None)}, indent=2) + "\n")
    return 0


def _print_header(tr, cfg, counts: dict, args) -> None:
    print(f"# machine: {describe_machine()}")
    how = "grown to the densification cap" if args.grow else "as initialised"
    print(f"# preset {cfg.preset} at {cfg.size}x{cfg.size}, batch {cfg.batch}, "
          f"device {tr.device}, Gaussians {counts} ({how}); "
          f"{args.steps} timed steps per stage after {args.warmup}"
          + (f", networks and loss compiled (torch.compile, mode {cfg.compile_mode})"
             if cfg.compile else ""))
    print("| stage | iterations in the preset | ms per iteration (median of 5 blocks) | "
          "iterations/s | projected minutes | tensor ops per step |")
    print("|---|---|---|---|---|---|")


def _measure_stage(tr, cfg, stage: str, n: int, plan: dict, args, sync, once: list,
                   sources: list, profiles: list) -> tuple[dict, str | None]:
    """Time one stage's steps (printing its row) and its one-off work (appended to
    ``once``); returns (its row, fusion's LPIPS note or None)."""
    import torch

    from ..bench.ops import OpCounter

    lpips = None
    once.append(("stage set-up", stage, 1, _timed(lambda: tr.start_stage(stage), sync)))
    if tr.lip_warmup_due:   # timed on its own (which clears it), not in the first step
        once.append(("lip-prior warm-up step", stage, plan["lip-prior warm-up step"],
                     _lip_step_s(tr, sync, args.steps)))
    if stage == "fusion":
        lpips = _lpips_for_timing(tr, stand_in=not args.lpips_as_run)
    warm_s = _timed(lambda: _steps(tr, args.warmup), sync)      # with --compile: compiling
    if args.sync_debug and tr.device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
        tr.step_once(quality=False)
        torch.cuda.set_sync_debug_mode("default")
    ops = None
    if not cfg.compile:
        with OpCounter(by_source=bool(args.op_sources)) as counted:
            tr.step_once(quality=False)
        ops = counted.total
        if args.op_sources:
            sources.append((stage, counted))
    if stage in args.profile:
        profiles.append((stage, _profile(tr, sync)))
    per = max(1, args.steps // 5)
    blocks = [_timed(lambda: _steps(tr, per), sync) / per for _ in range(5)]
    ms = 1000 * statistics.median(blocks)
    minutes = n * ms / 1000 / 60
    row = {"stage": stage, "iterations": n, "ms_per_iteration": ms,
           "iterations_per_s": 1000 / ms, "projected_minutes": minutes,
           "ops_per_step": ops, "warmup_s": warm_s,
           # (with --no-grow a densification pass may have added some)
           "gaussians": {r: len(g) for r, g in tr.model.gaussians.items()}}
    print(f"| {stage} | {n} | {ms:.1f} | {1000 / ms:.1f} | {minutes:.1f} | "
          f"{'-' if ops is None else ops} |", flush=True)
    if cfg.compile:
        once.append(("compiling", stage, 1, max(0.0, warm_s - args.warmup * ms / 1000)))
    once.append(("preview", stage, plan["preview"], _timed(tr.write_preview, sync)))
    once.append(("checkpoint", stage, plan["checkpoint"], _timed(tr.save_state, sync)))
    if plan.get("densification pass"):
        once.append(("densification pass", stage, plan["densification pass"],
                     _densify_pass_s(tr, sync)))
        if args.grow:                   # (a pass may prune) back to the cap
            grow_to_cap(tr)
    return row, lpips


def _print_one_offs(once: list, steps_minutes: float | None) -> float:
    """Print the one-off work's table (and the whole run's projection where every stage
    was timed); returns its minutes."""
    extra = sum(k * s for _, _, k, s in once) / 60
    print("\n# one-off work: timed once, times how often the preset does it\n"
          "| work | stage | times | seconds each | minutes |\n|---|---|---|---|---|")
    for work, stage, k, sec in once:
        print(f"| {work} | {stage} | {k} | {sec:.3g} | {k * sec / 60:.2f} |")
    print(f"| all one-off work | | | | {extra:.1f} |")
    if steps_minutes is not None:
        print(f"# the whole run: {steps_minutes:.1f} min of steps + {extra:.1f} min of "
              f"one-off work = {steps_minutes + extra:.1f} min")
    return extra
