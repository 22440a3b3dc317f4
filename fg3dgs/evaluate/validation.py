"""``fg3dgs eval RUN --data DATASET``: render the validation frames and measure them.

Metrics (at the identity's training size, full frames composited on the background plate and
the frame's own torso, the field's self-reconstruction protocol):
- PSNR, SSIM (Gaussian window, skimage) against the real frames, plus PSNR inside the head
  (pixels the real or the rendered head covers);
- jitter: the landmarks' frame-to-frame shake, of the render and of the real frames
  (:func:`fg3dgs.evaluate.regions.jitter`);
- LMD: mean distance in pixels of the 20 lip landmarks (iBUG 48-67, from mediapipe's mesh)
  measured by mediapipe on rendered versus real frames;
- LPIPS (v0.1, AlexNet) of each rendered frame against the real one, averaged, and FID
  between the real and the rendered validation frames (pytorch-fid's Inception), with their
  published weights (:mod:`fg3dgs.perceptual`; default places under
  ``torch.hub.get_dir()/checkpoints``, or the paths given). Without the weights they are
  reported unavailable with the loader's reason, never estimated; a path that was given and
  does not load is an error;
- sync: expert-C / expert-D (our expert, SyncNet's protocol) and, with ``syncnet`` (the path
  of SyncNet's published ``syncnet_v2.model``), LSE-C / LSE-D; without it LSE is reported
  unavailable;
- with ``--truth SYNTH`` (a synthetic clip's folder): the correlation of the rendered mouth
  opening with the truth's jaw_open track and the eye openness in the truth's blinks.

Writes ``RUN/eval/metrics.json`` and ``RUN/eval/validation.mp4`` (truth | render, with the
clip's audio).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..facemesh import LEFT_IRIS, RIGHT_IRIS
from ..io_utils import atomic_output
from ..landmark_schemes import get_scheme
from ..media import AUDIO_RATE, FPS, read_audio, write_video
from ..model.identity import FG3DGS
from ..model.info import IdentityInfo
from ..perceptual.metrics import load_perceptual, perceptual_metrics
from ..pipeline import AudioInput, RenderOptions, TalkingHead
from ..preprocess.dataset import Dataset, DatasetError
from ..synth.truth import load_truth
from ..train.data import TrainData
from ..train.run_outputs import render_frames
from .regions import jitter, lips_lmd, mean_ssim, region_psnrs

UNAVAILABLE = {
    "lse": "LSE-C / LSE-D need SyncNet's published weights (syncnet_v2.model from "
           "joonson/syncnet_python), which cannot be fetched here; pass --syncnet "
           "PATH/TO/syncnet_v2.model to score them. The same protocol on our own expert is "
           "reported as expert-C / expert-D",
}


def landmarks(frames: np.ndarray) -> np.ndarray:
    """mediapipe landmarks [F, 478, 2] in pixels (NaN where no face) of RGB frames [F, H, W, 3]
    float in [0, 1]."""
    import mediapipe as mp

    out = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=True) as mesh:
        for f in frames:
            img = np.ascontiguousarray((f * 255).round().astype(np.uint8))
            h, w = img.shape[:2]
            res = mesh.process(img)
            if res.multi_face_landmarks:
                out.append(np.array([[p.x * w, p.y * h]
                                     for p in res.multi_face_landmarks[0].landmark]))
            else:
                out.append(np.full((478, 2), np.nan))
    return np.array(out)


def eye_openness(lm: np.ndarray) -> np.ndarray:
    """[F] mean lid gap / eye width of both eyes, from landmarks [F, 478, 2]."""
    s = get_scheme("mediapipe-478")
    vals = []
    for e in s.eyes:
        gap = np.linalg.norm(lm[:, list(e.upper)] - lm[:, list(e.lower)], axis=-1).mean(1)
        vals.append(gap / np.linalg.norm(lm[:, e.outer] - lm[:, e.inner], axis=-1))
    return np.mean(vals, axis=0)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """[F] inner-lip gap (points 13-14) over the iris distance."""
    iod = np.linalg.norm(lm[:, RIGHT_IRIS] - lm[:, LEFT_IRIS], axis=-1)
    return np.linalg.norm(lm[:, 13] - lm[:, 14], axis=-1) / iod


@torch.no_grad()
def render_dataset_frames(model, info, ds: Dataset, frames: np.ndarray, batch: int = 8,
                          backend: str = "auto", progress: bool = False):
    """(truth [F, S, S, 3], render [F, S, S, 3]) float arrays of dataset frames, rendered
    as training renders them (:func:`fg3dgs.train.run_outputs.render_frames`)."""
    from tqdm import tqdm

    model.freeze_features()
    parts = [render_frames(model, ds, info.size, info.audio_features, frames[a:a + batch],
                           backend)
             for a in tqdm(range(0, len(frames), batch), desc="rendering", unit="batch",
                           disable=not progress)]
    return np.concatenate([t for t, _ in parts]), np.concatenate([r for _, r in parts])


def render_with_audio(head: TalkingHead, ds: Dataset, speech: str | Path,
                      replay: np.ndarray, variant: str, backend: str = "auto"):
    """(frames [F, S, S, 3] float, replayed dataset frame numbers [F]) of the identity
    speaking the file ``speech``, with head pose, expression and torso replayed from dataset
    frames ``replay`` (back and forth), rendered by the pipeline as ``fg3dgs render`` does.
    F = the speech's length in video frames."""
    head.use_clip(ds, replay)
    opts = RenderOptions(variant=variant, pose="replay", blink="replay", backend=backend)
    with AudioInput(speech) as audio:
        parts = list(head.frames(audio, opts))
    frames = np.concatenate([imgs[variant] for _, _, imgs in parts]).astype(np.float32) / 255
    rows = np.concatenate([r for _, r, _ in parts])
    return frames, head.replay.frames[rows]


def _boxes(lm: np.ndarray, ds: Dataset, replayed: np.ndarray, size: int) -> np.ndarray:
    """Face boxes [F, 3] of frames from their detected landmarks [F, 478, 2] (the replayed
    dataset frames' own landmarks where none are found)."""
    from ..sync.crops import face_boxes
    from ..sync.metrics import crop_boxes

    scale = size / ds.manifest["size"]
    fallback = face_boxes(np.asarray(ds.landmarks)[replayed]) * scale
    return crop_boxes(lm, fallback)


def _sync(expert, frames: np.ndarray, lm: np.ndarray, ds: Dataset, replayed: np.ndarray,
          size: int, audio: np.ndarray):
    """Our expert's sync scores of rendered frames [F, S, S, 3] against their audio."""
    from ..sync.audio import sync_mel
    from ..sync.metrics import score_frames

    return score_frames(expert, frames, _boxes(lm, ds, replayed, size), sync_mel(audio))


def _lse(syncnet, frames: np.ndarray, lm: np.ndarray, ds: Dataset, replayed: np.ndarray,
         size: int, audio: np.ndarray) -> dict:
    """LSE-C / LSE-D / offset of frames [F, S, S, 3] against their audio [S'] (16 kHz), by
    SyncNet with its published weights (face crops from the same boxes as :func:`_sync`)."""
    from ..sync.syncnet import lse_scores

    s = lse_scores(syncnet, frames, _boxes(lm, ds, replayed, size), audio)
    return {"LSE-C": round(s.confidence, 4), "LSE-D": round(s.distance, 4),
            "offset": s.offset}


def evaluate(run: str | Path, dataset: str | Path, truth_dir: str | Path | None = None,
             backend: str = "auto", progress: bool = True, video: bool = True,
             expert: str | None = None, audio_files: list[str] | None = None,
             syncnet: str | Path | None = None, lpips_backbone: str | Path | None = None,
             lpips_linear: str | Path | None = None,
             fid_weights: str | Path | None = None) -> dict:
    """Metrics of every variant of the identity (base, and refined after HRPA) on the
    validation frames, plus sync scores there and on ``audio_files`` (speech the identity
    never heard, with replayed poses). ``syncnet``: the path of SyncNet's published
    ``syncnet_v2.model`` for LSE-C / LSE-D (a file that does not load raises
    :class:`fg3dgs.sync.ExpertError`). ``lpips_backbone`` / ``lpips_linear`` / ``fid_weights``:
    the LPIPS and FID weight files instead of the default places (see :func:`load_perceptual`;
    a given file that does not load raises :class:`fg3dgs.perceptual.WeightsUnavailable`).
    Writes ``RUN/eval/metrics.json`` (and the video)."""
    from ..sync import ExpertError, load_expert
    from ..sync.syncnet import load_syncnet

    run = Path(run)
    lse_net = None if syncnet is None else load_syncnet(syncnet)     # fail before rendering
    if lse_net is not None and torch.cuda.is_available():
        lse_net.cuda()
    perceptual = load_perceptual(lpips_backbone, lpips_linear, fid_weights,
                                 "cuda" if torch.cuda.is_available() else "cpu")
    # --audio clips render through the pipeline (whose TalkingHead also decodes the replay
    # track); without them the model alone
    head = TalkingHead(run, device="cpu") if audio_files else None
    model = head.model if head is not None else FG3DGS.from_pretrained(run)
    info = model.info
    ds = Dataset(dataset)
    _check_trained_on(info, ds)
    synth_truth = None if truth_dir is None else load_truth(truth_dir)   # fail before rendering
    try:
        sync_expert, expert_info = load_expert(expert)
    except ExpertError as exc:
        sync_expert, expert_info = None, {"unavailable": str(exc)}
    clips = {Path(f).name: (f, read_audio(f)) for f in audio_files or []}
    results = {}
    shared = {"audio": read_audio(ds.path / "audio.wav"), "syncnet": lse_net,
              "syncnet_path": None if syncnet is None else str(syncnet),
              "perceptual": perceptual}
    for variant in model.variants:
        model.set_variant(variant)
        results[variant] = _evaluate_variant(model, head, variant, ds, synth_truth, backend,
                                             progress, sync_expert, clips, shared)
    arrays = {v: {k: r.pop(k) for k in ("_frames", "_truth", "_render")}
              for v, r in results.items()}
    metrics = dict(results["base"])
    if len(results) > 1:
        metrics["variants"] = results
    # LSE-C / LSE-D are SyncNet's numbers; any other expert's go under its own name.
    metrics["sync_expert"] = {k: v for k, v in expert_info.items()
                              if k in ("source", "path", "unavailable")}
    if lse_net is None:
        metrics["lse"] = {"available": False, "reason": UNAVAILABLE["lse"]}
    out_dir = run / "eval"
    out_dir.mkdir(exist_ok=True)
    with atomic_output(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    if video:     # truth | base | refined
        frames, truth = arrays["base"]["_frames"], arrays["base"]["_truth"]
        renders = [arrays[v]["_render"] for v in model.variants]
        audio = shared["audio"]
        a0, a1 = frames[0] * AUDIO_RATE // FPS, (frames[-1] + 1) * AUDIO_RATE // FPS
        rows = (np.concatenate([t, *r], 1) for t, *r in zip(truth, *renders))
        with atomic_output(out_dir / "validation.mp4") as tmp:
            write_video(tmp, ((p * 255).round().astype(np.uint8) for p in rows), FPS,
                        audio[a0:a1])
    return metrics


def _check_trained_on(info: IdentityInfo, ds: Dataset) -> None:
    """DatasetError unless ``ds`` is made from the video the identity was trained on (its
    validation frames are frames of that video): by the video's sha256, or for identities
    from before that was recorded, by the number of frames."""
    want = info.train.get("dataset_video_sha256")
    got = ds.manifest["source"]["sha256"]
    frames = info.track.get("frames")
    if (want is not None and want != got) or (want is None and frames not in (None, len(ds))):
        raise DatasetError(f"{ds.path} is not the dataset this identity was trained on ("
                           + (f"its video's sha256 is {got[:12]}…, the identity's "
                              f"{want[:12]}…" if want else
                              f"{len(ds)} frames, the identity's track has {frames}")
                           + "); give --data the dataset it was trained on")


def _evaluate_variant(model: FG3DGS, head: TalkingHead | None, variant: str, ds: Dataset,
                      synth_truth, backend, progress, expert, clips: dict,
                      shared: dict) -> dict:
    """Metrics of ``variant`` (the model's current one); ``head`` renders the ``clips``
    (None without them). ``shared`` holds what is the same
    for every variant (the clip's audio, SyncNet or None and its path, the LPIPS / FID
    networks; filled on the first call: the real frames' landmarks, sync scores and
    Inception features)."""
    info = model.info
    frames = np.arange(*ds.manifest["split"]["validation"])
    truth, render = render_dataset_frames(model, info, ds, frames, backend=backend,
                                          progress=progress)
    mse = ((truth - render) ** 2).reshape(len(frames), -1).mean(1)
    psnr = float(np.mean(-10 * np.log10(np.maximum(mse, 1e-12))))
    ssim = mean_ssim(truth, render)
    size = info.size
    heads = np.stack([np.isin(TrainData._labels_at(ds, int(i), size), (1, 2, 3, 4))
                      for i in frames])
    if "lm_t" not in shared:
        shared["lm_t"] = landmarks(truth)
    lm_t, lm_r = shared["lm_t"], landmarks(render)
    ok = ~np.isnan(lm_t[:, 0, 0]) & ~np.isnan(lm_r[:, 0, 0])
    lmd = lips_lmd(lm_t, lm_r, ok)
    metrics = {
        "frames": int(len(frames)), "size": size,
        "psnr": psnr, "ssim": ssim,
        **region_psnrs(truth, render, lm_t, lm_r, heads),   # head, jaw-and-neck band, mouth
        "lmd_px": lmd, "lmd_frames": int(ok.sum()),
        "jitter_px": jitter(lm_r), "jitter_real_px": jitter(lm_t),
        **perceptual_metrics(shared["perceptual"], truth, render, shared),
    }
    if synth_truth is not None:
        metrics["truth"] = _against_synth_truth(synth_truth, frames, lm_r, ok)
    a0, a1 = frames[0] * AUDIO_RATE // FPS, (frames[-1] + 1) * AUDIO_RATE // FPS
    audio = shared["audio"][a0:a1]
    syncnet = shared.get("syncnet")
    if expert is not None:
        metrics["sync"] = _sync(expert, render, lm_r, ds, frames, size,
                                audio).as_dict("expert")
        if "sync_real" not in shared:
            shared["sync_real"] = _sync(expert, truth, lm_t, ds, frames, size,
                                        audio).as_dict("expert")
        metrics["sync_real_frames"] = shared["sync_real"]
    if syncnet is not None:
        weights = {"weights": shared["syncnet_path"]}
        metrics["lse"] = {"available": True,
                          **_lse(syncnet, render, lm_r, ds, frames, size, audio), **weights}
        if "lse_real" not in shared:
            shared["lse_real"] = {"available": True,
                                  **_lse(syncnet, truth, lm_t, ds, frames, size, audio),
                                  **weights}
        metrics["lse_real_frames"] = shared["lse_real"]
    heard, heard_lse = {}, {}
    for name, (path, clip) in clips.items():
        if expert is None and syncnet is None:
            break
        out, replayed = render_with_audio(head, ds, path, frames, variant, backend)
        lm_o = landmarks(out)
        if expert is not None:
            heard[name] = _sync(expert, out, lm_o, ds, replayed, size, clip).as_dict("expert")
        if syncnet is not None:
            heard_lse[name] = _lse(syncnet, out, lm_o, ds, replayed, size, clip)
    if heard:
        metrics["sync_new_audio"] = heard
    if heard_lse:
        metrics["lse_new_audio"] = heard_lse
    metrics.update(_frames=frames, _truth=truth, _render=render)
    return metrics


def _against_synth_truth(t, frames, lm_r, ok) -> dict:
    """Mouth opening vs jaw_open (Pearson r) and the eyes in the truth's blinks (``t``: the
    synthetic clip's :class:`~fg3dgs.synth.truth.Truth`)."""
    jaw = t.arrays["visemes"][frames, 0]
    eyes_true = t.arrays["eye_open"][frames].mean(1)
    mouth = mouth_opening(lm_r)
    r = float(np.corrcoef(mouth[ok], jaw[ok])[0, 1]) if ok.sum() > 2 else float("nan")
    eyes = eye_openness(lm_r)
    blink = (eyes_true < 0.5) & ok
    open_ = (eyes_true > 0.9) & ok
    out = {"mouth_jaw_r": r, "blink_frames": int(blink.sum())}
    if blink.any() and open_.any():
        med_open = float(np.median(eyes[open_]))
        out["blink_ratio"] = float(np.median(eyes[blink]) / med_open)
        out["open_p5_ratio"] = float(np.percentile(eyes[open_], 5) / med_open)
        out["eyes_r"] = float(np.corrcoef(eyes[ok], eyes_true[ok])[0, 1])
    return out
