"""Re-targeting a trained identity to another audio front-end, by distillation
(``fg3dgs retarget RUN --speech WAV --out OUT``).

An identity's audio encoder turns its training voice's features into the driving features
(f_a and the per-frame tokens) its deformation networks learned to follow. A new encoder on
another front-end's features (default ``artic``, the speaker-independent articulation of
:mod:`fg3dgs.frontend`) learns to give the same driving features for the same speech:
targets from the old encoder on the clean speech in the identity's own voice (its training
clip's audio), inputs from the new front-end on that speech and on augmented copies of it
(timing-preserving, :mod:`fg3dgs.frontend.augment`), and its outputs are then rescaled to
the old encoder's spread (:func:`~.spread.match_spread`). The Gaussians, the networks, the
refined branch and the replay track stay as they were; no frame is rendered. The new
identity records the front-end it learnt (``audio_model``).

Distilled, the new encoder can know no more than the old one. Given the identity's dataset
(``--data``), the new encoder and the mouth network then learn from its frames
(:mod:`.audio_tune`); the refined branch, made for the old mouth network, is dropped.

An identity that already reads ``artic`` features, from another version of the speech
front-end (identity.json ``audio_model``), moves to the installed one without distillation:
both front-ends estimate the same four mouth parameters and speech activity, so its encoder
is kept and, with the dataset, tuned with the mouth network on its frames through the
installed front-end's features. Without the dataset only the record changes (the encoder
reads the new front-end's estimates as they are).

The last ``heldout`` share of the speech is kept out of training and reported: how much of
the old driving features' variance the new encoder explains there (R^2), clean and
augmented.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..frontend.train import concordance
from ..model.encoders import AudioEncoder
from ..model.identity import FG3DGS
from ..model.io import verify_feature_model
from ..model.windows import audio_windows
from ..preprocess.dataset import Dataset
from .audio_tune import tune_audio_path
from .retarget_config import AudioTuneConfig, RetargetConfig
from .spread import driving_features, match_spread


def _new_features(audio: np.ndarray, name: str, rng: np.random.Generator, copies: int,
                  model_id: str | None = None) -> list[np.ndarray]:
    """[copies + 1] feature arrays [T, D]: clean, then augmented copies (for ``artic`` with
    the vocal-tract warp of the spectrum too)."""
    from ..audio_features import extract
    from ..frontend import articulation_of_mel
    from ..frontend.augment import augment, log_mel_warped

    out = [extract(audio, name, model_id)]
    for _ in range(copies):
        x, alpha = augment(audio, rng)
        out.append(articulation_of_mel(log_mel_warped(x, alpha), model_id) if name == "artic"
                   else extract(x, name, model_id))
    return out


def distill_loss(pred: torch.Tensor, target: torch.Tensor, scale: torch.Tensor,
                 ccc: float) -> torch.Tensor:
    """Mean squared error of [B, K, d] driving features in units of each channel's std,
    plus ``ccc`` x (1 - concordance correlation) per channel over the batch. The MSE alone
    is minimised by predictions shrunk towards the mean wherever the new features explain
    only part of the old (a damped mouth); the concordance term asks for the targets' spread
    too."""
    mse = (((pred - target) / scale) ** 2).mean()
    if not ccc:
        return mse
    return mse + ccc * (1 - concordance(pred.flatten(0, 1), target.flatten(0, 1))).mean()


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def _material(model, speech: list, old_name: str, cfg: RetargetConfig,
              rng: np.random.Generator) -> tuple[list, list, list]:
    """The distillation's material from each speech file: inputs [(new features [T, D],
    video frames [F])], targets [the old encoder's driving features [F, 1 + CTX, d]] of the
    first ``1 - heldout`` of it (clean, then each augmented copy), and the held-out rest as
    (copy k, features, frames, targets)."""
    from ..audio_features import extract
    from ..media import read_audio

    train_x, train_y, held = [], [], []
    for path in speech:
        audio = read_audio(path)
        old = extract(audio, old_name)
        news = _new_features(audio, cfg.features, rng, cfg.copies)
        n_video = (len(old) + 1) // 2
        cut = int(round(n_video * (1 - cfg.heldout)))
        frames = np.arange(n_video)
        target = driving_features(model.audio, old, frames)                 # [F, 1+CTX, d]
        for k, feats in enumerate(news):
            train_x.append((feats, frames[:cut]))
            train_y.append(target[:cut])
            held.append((k, feats, frames[cut:], target[cut:]))
    return train_x, train_y, held


def _distil(train_x: list, train_y: list, D: int, audio_dim: int, cfg: RetargetConfig,
            rng: np.random.Generator, progress: bool) -> AudioEncoder:
    """A new encoder on D-channel features, trained on random windows of the material
    (files drawn by length) to give the targets (:func:`distill_loss`); in eval mode."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    enc = AudioEncoder(D, audio_dim)
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.1)
    scale = torch.cat(train_y).flatten(0, 1).std(0) + 1e-6       # per driving channel
    sizes = np.array([len(f) for _, f in train_x])
    bar = tqdm(range(cfg.steps), desc="distilling", disable=not progress)
    for _ in bar:
        picks = rng.choice(len(train_x), cfg.batch, p=sizes / sizes.sum())
        xs, ys = [], []
        for i in picks:
            feats, frames = train_x[i]
            j = int(rng.integers(len(frames)))
            xs.append(audio_windows(feats, frames[j:j + 1])[0])
            ys.append(train_y[i][j])
        fa, tk = enc(torch.from_numpy(np.stack(xs)))
        pred = torch.cat([fa[:, None], tk], 1)
        loss = distill_loss(pred, torch.stack(ys), scale, cfg.ccc)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return enc.eval()


@torch.no_grad()
def _heldout_r2(enc: AudioEncoder, held: list, copies: int) -> dict:
    """The report's ``heldout_r2_clean`` / ``heldout_r2_augmented``: R^2 of f_a and the
    tokens, and f_a's spread against the targets', on the held-out material."""
    report = {}
    for kind, ks in (("clean", {0}), ("augmented", set(range(1, copies + 1)))):
        rows = [h for h in held if h[0] in ks]
        if not rows or not len(rows[0][2]):
            continue
        pred = torch.cat([driving_features(enc, f, fr) for _, f, fr, _ in rows])
        tgt = torch.cat([t for *_, t in rows])
        report[f"heldout_r2_{kind}"] = {
            "f_a": round(_r2(pred[:, 0], tgt[:, 0]), 4),
            "tokens": round(_r2(pred[:, 1:].flatten(0, 1), tgt[:, 1:].flatten(0, 1)), 4),
            "spread": round(float((pred[:, 0].std(0) / tgt[:, 0].std(0)).median()), 4)}
    return report


def _write_copy(run: Path, out: Path, model, extras: dict, meta: dict, half: bool):
    """The identity at ``out`` (replaced whole, through ``out.partial``): ``run``'s other
    files copied, the model and ``meta`` saved."""
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in run.iterdir():
        if f.name not in ("identity.safetensors", "identity.json") and f.is_file():
            shutil.copy2(f, tmp / f.name)
    model.save_pretrained(tmp, extras, meta, half=half)   # (hashes the copied replay too)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def retarget(run: str | Path, speech: list[str | Path], out: str | Path,
             cfg: RetargetConfig = RetargetConfig(), progress: bool = True,
             force: bool = False, data: str | Path | None = None,
             tune: AudioTuneConfig = AudioTuneConfig()) -> dict:
    """Write a copy of identity ``run`` at ``out`` whose audio encoder reads ``cfg.features``;
    returns the report (also in out/identity.json under "retarget"). With ``data`` (the
    identity's preprocessed dataset, with ``cfg.features`` features) the new encoder and the
    mouth network are then tuned on its frames (:mod:`.audio_tune`) and an HRPA-refined
    branch, made for the old mouth network, is dropped. ``speech`` may then be empty: the
    dataset's audio is the identity's own voice. An ``artic`` identity made with another
    speech front-end keeps its encoder (see the module note)."""
    from ..audio_features import feature_model

    run, out = Path(run), Path(out)
    if out.exists() and not force:
        raise ValueError(f"{out} exists; pass --force to replace it")
    model = FG3DGS.from_pretrained(run, features=False)
    info, extras = model.info, model.extras
    old_name = info.audio_features
    same_kind = old_name == cfg.features
    if same_kind and (cfg.features != "artic" or
                      info.audio_model == feature_model(cfg.features)):
        raise ValueError(f"{run} already reads {cfg.features!r} features"
                         + (" from the installed speech front-end" if cfg.features == "artic"
                            else ""))
    if not same_kind:               # only another front-end version may be moved past
        verify_feature_model(run, info)
    ds = None
    if data is not None:
        ds = Dataset(data)
        ds.require_features(cfg.features)
        speech = list(speech) or [ds.path / "audio.wav"]
    if same_kind:
        report = {"config": asdict(cfg), "from": f"{old_name} ({info.audio_model})",
                  "encoder": "kept (the same articulations from another front-end version)"}
    elif not speech:
        raise ValueError("no speech in the identity's voice: give its training clip's audio "
                         "(--speech) or its dataset (--data)")
    else:
        t0 = time.perf_counter()
        rng = np.random.default_rng(cfg.seed)
        train_x, train_y, held = _material(model, speech, old_name, cfg, rng)
        D = train_x[0][0].shape[1]
        enc = _distil(train_x, train_y, D, model.cfg.audio_dim, cfg, rng, progress)
        report = {"config": asdict(cfg), "from": old_name, "speech": [str(p) for p in speech]}
        if cfg.match_spread:
            gain = match_spread(enc, train_x, train_y)
            report["spread_gain_median"] = round(float(gain.median()), 4)
        report["seconds"] = round(time.perf_counter() - t0)
        report.update(_heldout_r2(enc, held, cfg.copies))
        model.audio = enc
        model.cfg.audio_features = cfg.features
        model.cfg.audio_in_dim = D
    meta = info.meta()
    meta["audio_features"] = cfg.features
    meta["audio_model"] = feature_model(cfg.features)
    if "retarget" in meta:              # an earlier move: its record stays, nested
        report["before"] = meta["retarget"]
    meta["retarget"] = report
    if ds is not None:
        report["tune"] = tune_audio_path(model, ds, info.size, tune, progress=progress)
        if model.refined is not None:          # made for the mouth network tuned above
            model.refined = None
            model.cfg.refined = False
            meta["variants"] = ["base"]
            meta.pop("hrpa", None)
            report["tune"]["refined_branch_dropped"] = True
    _write_copy(run, out, model, extras, meta, info.dtype == "float16")
    (out / "retarget.json").write_text(json.dumps(report, indent=2))
    return report
