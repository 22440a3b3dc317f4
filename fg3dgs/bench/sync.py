"""Lip sync on speech no identity trained on: ``python -m fg3dgs.bench sync IDENTITY``.

Every clip of the panel (:mod:`fg3dgs.bench.speech_panel`) is rendered by the identity in
both variants; mediapipe's face mesh reads the inner-lip opening off each rendered frame
(over the measured inter-ocular distance). Per clip and variant:

- ``detect``: share of frames where the observer finds a face;
- ``jaw r`` / ``jaw lag``: Pearson r of the opening with the truth's jaw_open (eSpeak clips)
  at the best lag within +-4 frames, and that lag (> 0: the mouth comes late);
- ``env r`` / ``env lag``: the same against the speech's loudness envelope (dB RMS per
  frame, floored 40 dB under its 99th percentile);
- ``motion``: std of the opening over its std on the identity's own real frames (range of
  motion; 1 = as far as on the training video);
- ``C`` / ``D`` / ``offset``: SyncNet's protocol with our expert (the one HRPA optimises)
  and with the judge, an expert trained by the same recipe with another seed that HRPA
  never saw (``checkpoints/judge_expert.safetensors``).

Groups get the medians of their clips. The identity's reference opening std is read from
its identity.json (``observer.opening_std``) or measured on ``--reference-video``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..media import AUDIO_RATE, FPS
from .machine import describe_machine

if TYPE_CHECKING:
    from ..model.info import IdentityInfo
from .speech_panel import PanelClip

MAX_LAG = 4
ENVELOPE_FLOOR_DB = 40.0
JUDGE = "judge_expert.safetensors"


# -- signals ------------------------------------------------------------------------------
def frame_envelope(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """[F] loudness of each video frame's 40 ms of audio [S]: dB RMS, floored
    :data:`ENVELOPE_FLOOR_DB` under the clip's 99th percentile."""
    step = AUDIO_RATE // FPS
    pad = np.zeros(n_frames * step, np.float64)
    m = min(len(audio), len(pad))
    pad[:m] = audio[:m]
    rms = np.sqrt((pad.reshape(n_frames, step) ** 2).mean(1))
    db = 20 * np.log10(rms + 1e-8)
    return np.maximum(db, np.percentile(db, 99) - ENVELOPE_FLOOR_DB)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r over the entries where both are finite (NaN with fewer than 3 or no
    variation)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def best_lag(x: np.ndarray, ref: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """(r, lag) of the lag in [-max_lag, max_lag] where x [F] follows ref [F] best: x[t]
    against ref[t - lag], so lag > 0 when x comes late. Ties go to the smaller |lag|."""
    n = min(len(x), len(ref))
    best = (-np.inf, 0)
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        a = x[max(0, lag):n + min(0, lag)]
        b = ref[max(0, -lag):n - max(0, lag)]
        r = pearson(a, b)
        if np.isfinite(r) and r > best[0]:
            best = (r, lag)
    return (float(best[0]) if np.isfinite(best[0]) else float("nan")), best[1]


# -- one clip -----------------------------------------------------------------------------
@dataclass
class ClipResult:
    name: str
    group: str
    held_out: bool
    seconds: float
    variants: dict[str, dict] = field(default_factory=dict)   # variant -> metric -> value


def measure_clip(head, clip: PanelClip, experts: dict, reference_std: float | None,
                 size: int | None = None) -> ClipResult:
    """Render ``clip`` with ``head`` (a TalkingHead) in every variant it has and measure it.
    ``experts``: name -> a loaded SyncExpert, or the reason it is unavailable (str)."""
    import torch

    from ..face_observer import lip_opening, track_landmarks
    from ..media import write_wav
    from ..pipeline.audio_input import AudioInput
    from ..pipeline.render_options import RenderOptions
    from ..sync.audio import sync_mel
    from ..sync.metrics import frame_mouth_crops, sync_scores

    variants = head.variants
    opts = RenderOptions(variant="both" if len(variants) > 1 else "base", size=size)
    frames = {v: [] for v in variants}
    crops = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="fg3dgs-bench-") as tmp:
        wav = Path(tmp) / "speech.wav"
        write_wav(wav, clip.audio)
        with AudioInput(wav) as speech:
            scale = (size or head.size) / head.size
            for _, rows, imgs in head.frames(speech, opts):
                for v in variants:
                    frames[v].append(imgs[v])
                    crops[v].append(frame_mouth_crops(imgs[v], head.replay.boxes[rows] * scale))
            n = speech.frames
    env = frame_envelope(clip.audio, n)
    mel = sync_mel(clip.audio)
    res = ClipResult(clip.spec.name, clip.spec.group, clip.spec.held_out, clip.seconds)
    for v in variants:
        lm = track_landmarks(np.concatenate(frames[v]))
        opening = lip_opening(lm)
        found = np.isfinite(opening)
        m = {"detect": float(found.mean())}
        if clip.jaw is not None:
            m["jaw_r"], m["jaw_lag"] = best_lag(opening, clip.jaw[:n])
        m["env_r"], m["env_lag"] = best_lag(opening, env)
        std = float(np.nanstd(opening)) if found.sum() > 2 else float("nan")
        m["opening_std"] = std
        m["motion"] = std / reference_std if reference_std else float("nan")
        c = torch.cat(crops[v]).float()
        for name, expert in experts.items():
            if isinstance(expert, str):
                continue
            s = sync_scores(expert, c, mel)
            m[f"{name}_C"], m[f"{name}_D"], m[f"{name}_offset"] = (
                s.confidence, s.distance, s.offset)
        res.variants[v] = m
    return res


# -- summaries ------------------------------------------------------------------------------
def group_summary(results: list[ClipResult]) -> dict[str, dict[str, dict]]:
    """group -> variant -> metric -> median over the group's clips; plus the share of
    clips whose judge offset is within +-1 frame (``judge_offset_ok``)."""
    out: dict[str, dict[str, dict]] = {}
    for group in sorted({r.group for r in results}):
        rs = [r for r in results if r.group == group]
        out[group] = {}
        for v in rs[0].variants:
            keys = sorted({k for r in rs for k in r.variants[v]})
            summary = {}
            for k in keys:
                vals = [r.variants[v][k] for r in rs if k in r.variants[v]
                        and np.isfinite(r.variants[v][k])]
                if vals:
                    summary[k] = float(statistics.median(vals))
            offsets = [r.variants[v]["judge_offset"] for r in rs
                       if "judge_offset" in r.variants[v]]
            if offsets:
                summary["judge_offset_ok"] = float(np.mean([abs(o) <= 1 for o in offsets]))
            summary["clips"] = len(rs)
            out[group][v] = summary
    return out


REFINED_TOLERANCE = 0.03     # how much worse in r a clip may be refined than base


def refinement_check(results: list[ClipResult],
                     tolerance: float = REFINED_TOLERANCE) -> dict[str, dict]:
    """Refined against base, clip by clip, for each r the clip has (jaw_r, env_r): the
    worst difference (refined - base), the clip it is on, and the clips where refined is
    worse by more than ``tolerance``. Empty for identities with one variant."""
    out: dict[str, dict] = {}
    for key in ("jaw_r", "env_r"):
        diffs = [(r.variants["refined"][key] - r.variants["base"][key], r.name)
                 for r in results if {"base", "refined"} <= set(r.variants)
                 and np.isfinite(r.variants["base"].get(key, np.nan))
                 and np.isfinite(r.variants["refined"].get(key, np.nan))]
        if diffs:
            worst = min(diffs)
            out[key] = {"worst": float(worst[0]), "worst_clip": worst[1],
                        "clips": len(diffs),
                        "worse": [n for d, n in diffs if d < -tolerance]}
    return out


def format_refinement(check: dict[str, dict], tolerance: float = REFINED_TOLERANCE) -> str:
    """One line per r of :func:`refinement_check`."""
    return "\n".join(
        f"# refined - base, {key.replace('_', ' ')}: worst {c['worst']:+.3f} "
        f"({c['worst_clip']}); {len(c['worse'])} of {c['clips']} clips worse by more than "
        f"{tolerance}" + (f": {', '.join(c['worse'])}" if c["worse"] else "")
        for key, c in check.items())


COLUMNS = (("detect", "detect", "{:.2f}"), ("jaw_r", "jaw r", "{:.2f}"),
           ("jaw_lag", "jaw lag", "{:+.0f}"), ("env_r", "env r", "{:.2f}"),
           ("env_lag", "env lag", "{:+.0f}"), ("opening_std", "open sd", "{:.3f}"),
           ("motion", "motion", "{:.2f}"),
           ("ours_C", "ours C", "{:.3f}"), ("ours_offset", "ours off", "{:+.0f}"),
           ("judge_C", "judge C", "{:.3f}"), ("judge_D", "judge D", "{:.3f}"),
           ("judge_offset", "judge off", "{:+.0f}"))


def _cell(m: dict, key: str, fmt: str) -> str:
    v = m.get(key)
    return "-" if v is None or not np.isfinite(v) else fmt.format(v)


def summaries(results: list[ClipResult]) -> dict[str, dict]:
    """{"held out": ..., "dev": ...}: :func:`group_summary` of each part that has clips."""
    parts = {"held out": [r for r in results if r.held_out],
             "dev": [r for r in results if not r.held_out]}
    return {name: group_summary(rs) for name, rs in parts.items() if rs}


def format_table(results: list[ClipResult], parts: dict[str, dict]) -> str:
    """Per clip and variant, then per group of each part (:func:`summaries`)."""
    head = "| clip | group | held out | s | variant | " + \
        " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (5 + len(COLUMNS))]
    for r in results:
        for v, m in r.variants.items():
            lines.append(f"| {r.name} | {r.group} | {'yes' if r.held_out else 'no'} | "
                         f"{r.seconds:.1f} | {v} | "
                         + " | ".join(_cell(m, k, f) for k, _, f in COLUMNS) + " |")
    for part, summary in parts.items():
        lines += ["", f"| group ({part}) | clips | variant | "
                  + " | ".join(c[1] for c in COLUMNS) + " | judge off within 1 |",
                  "|" + "---|" * (4 + len(COLUMNS))]
        for g, per in summary.items():
            for v, m in per.items():
                lines.append(f"| {g} | {m['clips']} | {v} | "
                             + " | ".join(_cell(m, k, f) for k, _, f in COLUMNS)
                             + f" | {_cell(m, 'judge_offset_ok', '{:.0%}')} |")
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------
def reference_std(info: IdentityInfo, video: str | None, synth: str | None = None
                  ) -> tuple[float | None, str]:
    """The identity's opening std on its own real frames, and where it comes from:
    ``video`` (a video of them), ``synth`` ("SEED:SECONDS[:PHOTO]": the validation frames,
    the last 1/11, of the synthetic clip ``fg3dgs synth --seed SEED --seconds SECONDS``
    made, drawn again), or identity.json's record."""
    from ..face_observer import lip_opening, track_landmarks, track_video

    if video:
        o = lip_opening(track_video(video))
        return float(np.nanstd(o)), f"measured on {video}"
    if synth:
        from ..synth.clip import SynthConfig, prepare, render_frames

        seed, seconds, *photo = synth.split(":")
        cfg = SynthConfig(photo=photo[0] if photo else "builtin:astronaut",
                          seconds=float(seconds), seed=int(seed))
        n = prepare(cfg).frames
        first = n - round(n / 11)
        o = lip_opening(track_landmarks(render_frames(cfg, range(first, n))))
        return float(np.nanstd(o)), (f"frames {first}-{n - 1} of fg3dgs synth --photo "
                                     f"{cfg.photo} --seconds {seconds} --seed {seed}")
    rec = info.observer or {}
    if rec.get("opening_std"):
        return float(rec["opening_std"]), rec.get("source", "identity.json")
    return None, ("unknown: the identity records no observer.opening_std and no "
                  "--reference-video was given")


def load_experts(judge: str | None) -> dict:
    from ..io_utils import checkpoints_dir
    from ..sync.io import ExpertError, load_expert

    out = {}
    for name, spec in (("ours", None), ("judge", judge or checkpoints_dir() / JUDGE)):
        try:
            out[name] = load_expert(spec)[0]
        except ExpertError as exc:
            out[name] = str(exc)
    return out


def run(args) -> int:
    from ..model.io import IdentityError
    from ..pipeline.talking_head import TalkingHead
    from ..zoo import ZooError
    from .speech_panel import PanelError, fetch_speech, load_panel, unavailable

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        results = [ClipResult(**c) for c in saved["clips"]]
        print(f"# {saved['identity']}, from {args.from_json}")
        print(format_table(results, summaries(results)))
        print(format_refinement(refinement_check(results)))
        return 0
    if not args.identity:
        print("bench sync: error: give an identity (run folder or zoo id), or --from-json")
        return 2
    if args.fetch:
        print(f"real speech in {fetch_speech(force=args.force_fetch)}")
    held = {"all": None, "held-out": True, "dev": False}[args.clips]
    try:
        panel = load_panel(held_out=held, groups=tuple(args.groups) if args.groups else None)
    except PanelError as exc:
        print(f"bench sync: error: {exc}")
        return 2
    if args.only:
        missing = sorted(set(args.only) - {c.spec.name for c in panel})
        if missing:
            names = ", ".join(c.spec.name for c in panel)
            print(f"bench sync: error: no clip {', '.join(missing)} among the {args.clips} "
                  f"clips of the groups asked for ({names})")
            return 2
        panel = [c for c in panel if c.spec.name in args.only]
    try:
        head = TalkingHead.load(args.identity)
    except (ZooError, IdentityError) as exc:
        print(f"bench sync: error: {exc}")
        return 2
    ref, ref_from = reference_std(head.info, args.reference_video, args.reference_synth)
    experts = load_experts(args.judge)
    print(f"# machine: {describe_machine()}")
    for group, why in ({} if args.groups else unavailable()).items():
        print(f"# the {group} group is left out: {why}")
    print(f"# identity {args.identity}, {len(panel)} clips ({args.clips}), variants "
          f"{', '.join(head.variants)}; reference opening std "
          f"{'-' if ref is None else f'{ref:.4f}'} ({ref_from})")
    for name, e in experts.items():
        if isinstance(e, str):
            print(f"# {name} expert unavailable: {e}")
    results = []
    for clip in panel:
        t0 = time.perf_counter()
        results.append(measure_clip(head, clip, experts, ref, args.size))
        print(f"# {clip.spec.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    parts = summaries(results)
    print(format_table(results, parts))
    check = {part: refinement_check([r for r in results if r.held_out == held])
             for part, held in (("held out", True), ("dev", False))}
    for part, c in check.items():
        if c:
            print(f"# {part}:\n" + format_refinement(c))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": describe_machine(), "identity": str(args.identity), "reference_std": ref,
            "reference_from": ref_from,
            "clips": [r.__dict__ for r in results], "groups": parts,
            "refined_vs_base": check}, indent=2))
    return 0
