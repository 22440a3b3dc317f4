"""``fg3dgs eval RUN --cross CLIP``: fidelity under speech the identity never heard, against
truth.

A cross clip is a new clip of the same person (for the synthetic subject: the same photo
speaking a new sentence in another voice with its own head motion, ``fg3dgs synth``). The
identity speaks the clip's audio with the clip's own head poses (moved into its head space)
and eye states, over the clip's own torso and background (:meth:`TalkingHead.use_clip`), so
every pixel has a true value: the field's self-reconstruction protocol, for new speech.

Per variant it reports PSNR / SSIM over the whole frame; PSNR over the head (the clip's head
labels), over the jaw-and-neck band (pixels within 2 % of the frame of the face's lower
outline in the truth or in the render, where a replayed torso meets the jaw) and over the
mouth box (a square around the truth's lips); LMD of the lips; the rendered mouth opening's
Pearson r against the real frames' and, for a synthetic clip, against its jaw_open track;
whether the render's teeth show where the truth's do (:func:`regions.teeth_agreement`);
the landmark jitter of the render and of the real video (:func:`regions.jitter`); LPIPS
of the frame and of the mouth box where its weights exist. Writes ``RUN/eval/cross.json``,
and per clip ``cross-NAME.mp4`` (truth | variants) and ``cross-NAME-widest.png`` (the ten
frames where the real mouth opens widest, truth beside each variant, around the jaw).

``truth_mouth`` (``--truth-mouth``) drives an ``artic`` identity's mouth with a synthetic
clip's true mouth parameters in place of the speech front-end's estimate of them (its speech
activity stays the front-end's): what a perfect front-end would give, so the gap to the
plain run is what the front-end's errors cost. Written to ``RUN/eval/cross_truth_mouth.json``.
``mouth`` replaces them by any other track computed from the speech (e.g. the estimate
filtered over time), written to ``RUN/eval/cross_mouth.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import atomic_output, sha256
from ..media import AUDIO_RATE, FPS, write_video
from ..preprocess.dataset import Dataset, DatasetError
from .regions import (
    band_radius,
    jitter,
    lips_lmd,
    mean_ssim,
    mouth_box,
    region_psnrs,
    teeth_agreement,
)

HEAD_LABELS = (1, 2, 3, 4)       # face, eyes, mouth, rest of the head (preprocessing labels)
SHEET_FRAMES = 10
MIN_CLIP_SECONDS = 2.0


@dataclass
class CrossClip:
    """A clip the identity did not train on: its dataset and, for a synthetic clip, its
    truth (:class:`fg3dgs.synth.truth.Truth`)."""

    name: str
    dataset: Dataset
    truth: object | None


def open_cross_clip(path: str | Path, audio_features: str, size: int, cache: Path,
                    progress: bool = True) -> CrossClip:
    """A preprocessed dataset folder, a clip folder with ``video.mp4`` (a synthetic one has
    ``truth.json`` too) or a video file; a video is preprocessed once into ``cache`` at
    ``size`` pixels."""
    from ..preprocess.pipeline import PreprocessConfig, preprocess
    from ..synth.truth import load_truth

    path = Path(path)
    video = path / "video.mp4" if path.is_dir() else path
    if (path / "manifest.json").is_file():
        ds = Dataset(path)
        src = Path(ds.manifest["source"]["path"]).parent
        truth = load_truth(src) if (src / "truth.json").is_file() else None
    elif video.is_file():
        out = cache / f"{path.stem}-{sha256(video)[:12]}-{size}"
        if not (out / "manifest.json").is_file():
            cfg = PreprocessConfig(size=size, audio_features=(audio_features,),
                                   min_seconds=MIN_CLIP_SECONDS)
            preprocess(video, out, cfg, force=True, progress=progress)
        ds = Dataset(out)
        truth = load_truth(video.parent) if (video.parent / "truth.json").is_file() \
            and video.name == "video.mp4" else None
    else:
        raise DatasetError(f"{path} is neither a dataset (manifest.json), a clip folder "
                           "(video.mp4) nor a video file; give a clip of the person the "
                           "identity never saw, e.g. one made by `fg3dgs synth --photo ... "
                           "--out DIR`")
    ds.require_features(audio_features)
    return CrossClip(path.stem, ds, truth)


class MouthSpeech:
    """A clip's speech (an :class:`~fg3dgs.pipeline.AudioInput`) whose ``artic`` features
    carry the given four mouth parameters ``mouth`` [T, 4] (jaw open, lip spread, lip round,
    lip closure, at the front-end's 50 Hz frames) instead of the front-end's estimate; its
    speech activity stays the front-end's."""

    def __init__(self, speech, mouth: np.ndarray):
        self.speech, self.mouth = speech, mouth
        self.frames, self.samples = speech.frames, speech.samples
        self.feature_frames = speech.feature_frames

    def features(self, name: str, k0: int, k1: int, model_id: str | None = None
                 ) -> np.ndarray:
        f = self.speech.features(name, k0, k1, model_id).copy()       # [k1 - k0, 5]
        f[:, :4] = self.mouth[k0:k1]
        return f

    def audio(self) -> np.ndarray:
        return self.speech.audio()


class TruthMouthSpeech(MouthSpeech):
    """:class:`MouthSpeech` with a synthetic clip's true mouth parameters."""

    def __init__(self, speech, truth):
        from ..frontend.train import targets  # torch: only for --truth-mouth

        super().__init__(speech, targets(truth.phonemes(), speech.samples)[:, :4])


def cross_evaluate(run: str | Path, clips: list[str | Path], backend: str = "auto",
                   progress: bool = True, video: bool = True, perceptual=None,
                   device: str | None = None, truth_mouth: bool = False,
                   mouth: Callable[[object], np.ndarray] | None = None) -> dict:
    """Metrics of every variant of the identity in RUN on each clip (see the module note)
    and their mean over the clips; writes RUN/eval/cross.json (``truth_mouth``:
    cross_truth_mouth.json; ``mouth``, speech -> mouth parameters [T, 4]: cross_mouth.json)
    and the videos and sheets."""
    from ..pipeline import AudioInput, RenderOptions, TalkingHead

    run = Path(run)
    out_dir = run / "eval"
    head = TalkingHead(run, device=device)
    info, size = head.info, head.size
    if (truth_mouth or mouth) and info.audio_features != "artic":
        raise DatasetError(f"--truth-mouth replaces the speech front-end's mouth parameters; "
                           f"{run} is driven by {info.audio_features!r} features, not 'artic'")
    trained_on = info.train.get("dataset_video_sha256")
    opened = []
    for c in clips:
        clip = open_cross_clip(c, info.audio_features, size, out_dir / "cross-data",
                               progress)
        if trained_on and clip.dataset.manifest["source"]["sha256"] == trained_on:
            raise DatasetError(f"{c} is the clip this identity was trained on; --cross takes "
                               "clips it never saw (its validation frames: --data)")
        if truth_mouth and clip.truth is None:
            raise DatasetError(f"--truth-mouth needs the true mouth of a synthetic clip; {c} "
                               "has no truth.json (make one with `fg3dgs synth`)")
        opened.append(clip)
    tag = "_truth_mouth" if truth_mouth else "_mouth" if mouth else ""
    results = {}
    for clip in opened:
        head.use_clip(clip.dataset)         # replaces every per-clip state of the head
        names = tuple(head.variants)
        opts = RenderOptions(variant="both" if len(names) > 1 else names[0], backend=backend,
                             pose="replay", blink="replay")
        renders: dict[str, list] = {v: [] for v in names}
        with AudioInput(clip.dataset.path / clip.dataset.manifest["audio"]["file"]) as speech:
            n = min(speech.frames, len(clip.dataset))
            drive = (TruthMouthSpeech(speech, clip.truth) if truth_mouth else
                     MouthSpeech(speech, mouth(speech)) if mouth else speech)
            for fr, _, imgs in head.frames(drive, opts):
                for v in names:
                    renders[v].append(imgs[v])
            audio = speech.audio()
        got = {v: np.concatenate(r)[:n].astype(np.float32) / 255 for v, r in renders.items()}
        results[clip.name], sheet_rows = _measure(clip, got, size, perceptual)
        if video:
            _write_outputs(out_dir, clip.name + tag.replace("_", "-"), sheet_rows, got,
                           audio[:n * AUDIO_RATE // FPS])
    variants = list(next(iter(results.values())))
    mean = {v: {k: float(np.nanmean([results[c][v][k] for c in results]))
                for k, x in results[next(iter(results))][v].items()
                if isinstance(x, float)} for v in variants}
    report = {"clips": results, "mean": mean, "size": size,
              "band_radius_px": band_radius(size),
              "mouth_from": ("the synthetic truth" if truth_mouth else
                             "the given track" if mouth else "the speech")}
    val = out_dir / "metrics.json"
    if val.is_file():
        m = json.loads(val.read_text())
        report["validation"] = {"psnr": m.get("psnr"), "psnr_head": m.get("psnr_head")}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / f"cross{tag}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _measure(clip: CrossClip, renders: dict[str, np.ndarray], size: int, perceptual
             ) -> tuple[dict, dict]:
    """(variant -> metrics, what the sheet needs) of renders [F, S, S, 3] float."""
    from ..train.data import TrainData
    from .validation import landmarks, mouth_opening

    n = len(next(iter(renders.values())))
    data = TrainData(clip.dataset, size, audio_features=None, frames=np.arange(n))
    truth = data.images.astype(np.float32) / 255
    head_masks = np.isin(data.labels, HEAD_LABELS)
    lm_t = landmarks(truth)
    open_t = mouth_opening(lm_t)
    jaw_true = None
    if clip.truth is not None:
        jaw_true = np.asarray(clip.truth.arrays["visemes"])[:n, 0]
    out = {}
    for v, render in renders.items():
        lm_r = landmarks(render)
        ok = ~np.isnan(lm_t[:, 0, 0]) & ~np.isnan(lm_r[:, 0, 0])
        mse = ((truth - render) ** 2).reshape(n, -1).mean(1)
        open_r = mouth_opening(lm_r)
        m = {
            "frames": int(n),
            "psnr": float(np.mean(-10 * np.log10(np.maximum(mse, 1e-12)))),
            "ssim": mean_ssim(truth, render),
            **region_psnrs(truth, render, lm_t, lm_r, head_masks),
            "lmd_px": lips_lmd(lm_t, lm_r, ok),
            **teeth_agreement(truth, render, lm_t, lm_r),
            "opening_r_real": _r(open_r[ok], open_t[ok]),
            "jitter_px": jitter(lm_r),
            "jitter_real_px": jitter(lm_t),
            "face_frames": int(ok.sum()),
        }
        m["jitter_ratio"] = m["jitter_px"] / m["jitter_real_px"]
        if jaw_true is not None:
            m["opening_jaw_r"] = _r(open_r[ok], jaw_true[ok])
        if perceptual is not None:
            from ..perceptual.metrics import perceptual_metrics

            p = perceptual_metrics(perceptual, truth, render)["lpips"]
            m["lpips"] = p["value"] if p["available"] else None
            if p["available"]:
                crops_t, crops_r = _mouth_crops(truth, render, lm_t, lm_r)
                m["lpips_mouth"] = perceptual_metrics(perceptual, crops_t, crops_r
                                                      )["lpips"]["value"]
            else:
                m["lpips_unavailable"] = p["reason"]
        out[v] = m
    order = np.argsort(-np.nan_to_num(open_t, nan=-1))[:SHEET_FRAMES]
    sheet = {"frames": np.sort(order), "truth": truth, "lm": lm_t}
    return out, sheet


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 \
        else float("nan")


def _mouth_crops(truth, render, lm_t, lm_r, side: int = 96):
    """The mouth boxes of both (around the real lips, or the render's), resized to ``side``
    pixels: [N, side, side, 3] each."""
    import cv2

    t, r = [], []
    for k in range(len(truth)):
        ref = lm_t[k] if not np.isnan(lm_t[k, 0, 0]) else lm_r[k]
        if np.isnan(ref[0, 0]):
            continue
        y0, y1, x0, x1 = mouth_box(ref, truth.shape[1])
        t.append(cv2.resize(truth[k, y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA))
        r.append(cv2.resize(render[k, y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA))
    return np.stack(t), np.stack(r)


def _lower_face(img: np.ndarray, lm: np.ndarray, side: int = 192) -> np.ndarray:
    """The mouth, jaw and neck of a frame [S, S, 3] float: a square of half the frame under
    the nose (from landmarks [478, 2]), at ``side`` pixels, uint8."""
    import cv2

    s = img.shape[0]
    w = s // 2
    cx, cy = (lm[152] + lm[1]) / 2 if not np.isnan(lm[0, 0]) else (s / 2, s / 2)
    x0 = int(np.clip(round(cx - w / 2), 0, s - w))
    y0 = int(np.clip(round(cy - w / 2), 0, s - w))
    crop = img[y0:y0 + w, x0:x0 + w]
    return (cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC) * 255
            ).round().clip(0, 255).astype(np.uint8)


def _write_outputs(out_dir: Path, name: str, sheet: dict, renders: dict[str, np.ndarray],
                   audio: np.ndarray) -> None:
    """cross-NAME.mp4 (truth | variants, with the clip's audio) and cross-NAME-widest.png."""
    import cv2

    truth = sheet["truth"]
    rows = (np.concatenate([t, *(renders[v][k] for v in renders)], 1)
            for k, t in enumerate(truth))
    with atomic_output(out_dir / f"cross-{name}.mp4") as tmp:
        write_video(tmp, ((p * 255).round().clip(0, 255).astype(np.uint8) for p in rows), FPS,
                    audio)
    tiles = []
    for k in sheet["frames"]:
        lm = sheet["lm"][k]
        parts = [_lower_face(truth[k], lm)] + [_lower_face(renders[v][k], lm) for v in renders]
        for img, label in zip(parts, ["truth", *renders]):
            cv2.putText(img, f"{label} {k}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.concatenate(parts, 1))
    pad = np.full((4, tiles[0].shape[1], 3), 255, np.uint8)
    half = (len(tiles) + 1) // 2
    cols = [np.concatenate(sum(([t, pad] for t in group), [])[:-1], 0)
            for group in (tiles[:half], tiles[half:]) if group]
    if len(cols) == 2 and cols[1].shape[0] < cols[0].shape[0]:
        cols[1] = np.pad(cols[1], ((0, cols[0].shape[0] - cols[1].shape[0]), (0, 0), (0, 0)),
                         constant_values=255)
    gap = np.full((cols[0].shape[0], 8, 3), 255, np.uint8)
    sheet_img = np.concatenate(sum(([c, gap] for c in cols), [])[:-1], 1)
    import imageio.v3 as iio

    with atomic_output(out_dir / f"cross-{name}-widest.png") as tmp:
        iio.imwrite(tmp, sheet_img, extension=".png")
