"""``fg3dgs train``: the three stages of FG-3DGS (docs/design.md) on a dataset.

1. static: each region's Gaussians fitted to the frames masked to that region (L1 + 0.2
   D-SSIM, plus the region's alpha against its mask so regions stay apart), with 3DGS
   densification and pruning;
2. deform: the canonical geometry is frozen (so the H3 plan of the means is computed once)
   and the encoders, H3 tables and deformation networks learn the per-frame deltas, per
   region, with the same loss (colours and opacities keep learning);
3. fusion: the regions are composited (mouth over eyes, face over both) with per-region
   colour corrections over the background plate and the frame's torso; the loss is on the
   whole frame;
4. hrpa: the mouth network and colour corrections are copied into a refined branch, which
   alone learns from windows of 5 consecutive rendered frames: the fusion loss plus
   ``sync_weight`` x the lip-sync expert's loss on their mouth crops against the audio. The
   base branch is kept, so the identity renders with or without the refinement.

The run folder gets ``train_state.safetensors`` (everything needed to resume exactly: model,
optimiser moments, random state, history; written atomically every ``checkpoint_every``
steps, at the end of each stage and on Ctrl-C), ``loss_curve.png``, ``preview_*.png`` and at
the end the identity (``identity.safetensors`` + ``identity.json``).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..audio_features import feature_model
from ..device import to_device
from ..io_utils import atomic_output
from ..media import FPS
from ..model.fusion import fuse
from ..model.gaussians import PARAMS, DensifyStrategy, GaussianSet
from ..model.identity import FG3DGS, REGION_LABELS
from ..model.init_points import initial_points
from ..model.io import build_model, save_identity, with_default_buffers
from ..model.windows import audio_windows
from ..options import size_problem
from ..preprocess.dataset import Dataset
from . import CUDA_GRAPH_MODES
from .audio_variants import AudioVariantConfig, draw_variants
from .config import STAGES, TrainConfig, preset
from .data import TrainData, region_masks
from .losses import (
    compiled_photometric,
    masked_l1,
    mean_weights,
    padded_batch,
    photometric,
    psnr_tensor,
)
from .mouth_prior import LipHead, lip_targets
from .replay_writer import write_replay

STATE = "train_state.safetensors"


class TrainError(ValueError):
    """A run that cannot start or resume (the message says why)."""


def region_window(labels: np.ndarray, region: str, margin: int):
    """(x0, y0, w, h): the region's bounding box over the batch's label maps [B, H, W] plus
    a margin, clipped to the image (the whole image when the region is absent). It reads the
    host's copy of the labels: reading them on a GPU would make the CPU wait for it."""
    H, W = labels.shape[1:]
    m = np.isin(labels, REGION_LABELS[region]).any(0)
    ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if len(ys) == 0:
        return 0, 0, W, H
    y0, y1 = max(0, int(ys[0]) - margin), min(H, int(ys[-1]) + 1 + margin)
    x0, x1 = max(0, int(xs[0]) - margin), min(W, int(xs[-1]) + 1 + margin)
    return x0, y0, x1 - x0, y1 - y0


def train_device(backend: str) -> torch.device:
    """Where a run trains: on CUDA when it rasterizes with gsplat (``gsplat``, or ``auto``
    where gsplat works), else on the CPU with our rasterizer."""
    from ..render.gsplat_backend import gsplat_status

    if backend == "cpu":
        return torch.device("cpu")
    ok, why = gsplat_status()
    if backend == "gsplat" and not ok:
        raise TrainError(f"--backend gsplat is unavailable here: {why}; use --backend cpu")
    return torch.device("cuda" if ok else "cpu")


def _knn_scale(points: np.ndarray) -> np.ndarray:
    """Initial Gaussian std per point: mean distance to its 3 nearest neighbours."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(points).query(points, k=4)
    return np.clip(d[:, 1:].mean(1), 1e-4, 0.01).astype(np.float32)


def initial_model(ds: Dataset, data: TrainData, cfg: TrainConfig) -> tuple[FG3DGS, float]:
    """The model before training, and the head's extent (m) for learning-rate scaling."""
    cams = np.load(ds.path / "cameras.npz")
    canonical = cams["canonical"].astype(np.float64)
    picks = np.linspace(0, len(data) - 1, min(12, len(data))).round().astype(int)
    frames = [(data.images[k].astype(np.float32) / 255, data.labels[k],
               data.viewmats[k][:3, :3].astype(np.float64),
               data.viewmats[k][:3, 3].astype(np.float64), data.K.astype(np.float64))
              for k in picks]
    if canonical.shape[0] != 478:
        raise TrainError("training needs the 478-point mediapipe layout (the dataset was "
                         "made with another landmarker); preprocess with --landmarker "
                         "mediapipe")
    pts = initial_points(canonical, frames, cfg.model.init_counts, cfg.seed)
    groups = {"face": ["face", "head_rest"], "eyes": ["eyes"], "mouth": ["mouth"],
              "head": ["face", "head_rest", "eyes", "mouth"]}
    sets = {}
    allp = np.concatenate([p for p, _, _ in pts.values()])
    for r in cfg.model.regions:
        p, c, rigid = (np.concatenate([pts[k][i] for k in groups[r]]) for i in range(3))
        sets[r] = GaussianSet(torch.from_numpy(p), torch.from_numpy(c), cfg.model.sh_degree,
                              torch.from_numpy(_knn_scale(p)), opacity=0.5,
                              rigid=torch.from_numpy(rigid))
    lo, hi = allp.min(0), allp.max(0)
    pad = 0.15 * (hi - lo)
    model = FG3DGS(cfg.model, sets, (lo - pad).tolist(), (hi + pad).tolist())
    extent = float(np.linalg.norm(allp - allp.mean(0), axis=1).max())
    return model, extent


class Trainer:
    def __init__(self, dataset: str | Path, run: str | Path, cfg: TrainConfig | None = None,
                 resume: bool = False, progress: bool = True, force: bool = False,
                 start: bool = True):
        self.run = Path(run)
        self.progress = progress
        state_path = self.run / STATE
        if resume:
            if not state_path.is_file():
                raise TrainError(f"nothing to resume: {state_path} does not exist")
            saved = _read_state(state_path)
            self.cfg = TrainConfig.from_dict(saved["meta"]["config"])
        else:
            if self.run.exists() and any(self.run.iterdir()) and not force:
                if state_path.is_file():
                    raise TrainError(f"{self.run} already holds a run; pass --resume to "
                                     "continue it, --force to start over, or choose another "
                                     "--out")
                held = sorted(p.name for p in self.run.iterdir())
                raise TrainError(f"{self.run} is not empty (it holds {', '.join(held[:3])}"
                                 f"{', ...' * (len(held) > 3)}); choose another --out, or "
                                 "pass --force to train there anyway")
            self.cfg = cfg or TrainConfig()
            if why := size_problem(self.cfg.size):
                raise TrainError(f"--size: {why}")
        self.device = train_device(self.cfg.backend)
        self.hrpa_skipped = None
        self.lpips_net, self.lpips_info, self.lpips_tried = None, None, False   # fusion's LPIPS
        if self.cfg.iterations.get("hrpa", 0) > 0 and not resume:
            self._check_expert()            # decide now, not after the first three stages
        self.ds = Dataset(dataset)
        if self.cfg.size > self.ds.manifest["size"] and not resume:
            warnings.warn(f"the dataset's frames are {self.ds.manifest['size']} px: training "
                          f"at {self.cfg.size} upsamples them (no detail is gained). Train "
                          f"with --size {self.ds.manifest['size']}, or preprocess at "
                          f"--size {self.cfg.size}", stacklevel=2)
        c = self.cfg
        self.data = TrainData(self.ds, c.size, c.model.audio_features, self.ds.split("train"),
                              progress=progress,
                              variants=AudioVariantConfig(c.audio_copies, c.seed + 2))
        val = self.ds.split("validation")
        self.preview_frames = np.linspace(val.start, val.stop - 1, 3).round().astype(int)
        self.cfg.model.audio_in_dim = int(self.data.features.shape[1])
        self._init_lip_prior()
        if resume:
            self._restore(saved)
        elif start:             # (else the caller sets the model and stage: refine_identity)
            torch.manual_seed(self.cfg.seed)
            self.model, self.extent = initial_model(self.ds, self.data, self.cfg)
            self.model.to(self.device)
            self.stage, self.step = STAGES[0], 0
            self.rng = np.random.default_rng(self.cfg.seed)
            self.history: list[list] = []
            self.stage_seconds: dict[str, float] = {}
            self._new_stage_state()
        self.K = torch.from_numpy(self.data.K).to(self.device)

    @classmethod
    def refine_identity(cls, identity: str | Path, dataset: str | Path, run: str | Path,
                        progress: bool = True, force: bool = False,
                        **overrides) -> Trainer:
        """A run of the HRPA stage alone on a trained identity (its Gaussians, networks and
        audio encoder as they are; the refined branch starts again from the base one), on
        the dataset it was trained on, for an identity without its training run (a
        re-targeted or downloaded one). ``overrides``: TrainConfig fields (``iterations``
        is the HRPA stage's count)."""
        from ..model.io import load_identity

        model, info, _ = load_identity(identity)
        try:
            cfg = TrainConfig.from_dict(info["train"]["config"])
        except (KeyError, TypeError) as exc:
            raise TrainError(f"{identity} records no training configuration "
                             f"(identity.json train.config); it cannot be refined") from exc
        cfg.model = model.cfg
        n = overrides.pop("iterations", None) or cfg.iterations.get("hrpa") or \
            preset(cfg.preset).iterations["hrpa"]
        cfg = replace(cfg, iterations={**{s: 0 for s in STAGES}, "hrpa": n}, **overrides)
        if cfg.model.audio_features not in Dataset(dataset)._features:
            raise TrainError(f"{dataset} has no {cfg.model.audio_features!r} audio features, "
                             f"which the identity reads; preprocess with --audio-features "
                             f"{cfg.model.audio_features}")
        self = cls(dataset, run, cfg, progress=progress, force=force, start=False)
        self.source_info = info             # (what refine() keeps of the source's records)
        self.model = model.train().to(self.device)
        self.model.invalidate()
        self.model.refined = None
        self.extent = 1.0                  # (scales the means' rate: static stage only)
        self.stage, self.step = "hrpa", 0
        self.rng = np.random.default_rng(cfg.seed)
        self.history, self.stage_seconds = [], {}
        self._new_stage_state()
        return self

    def _init_lip_prior(self):
        """The lip-shape targets of the training frames [F_train, K] and their head."""
        from ..landmark_schemes import scheme_for

        c = self.cfg
        lm = np.asarray(self.ds.landmarks)
        target = lip_targets(lm, scheme_for(lm), self.data.index, c.lip_components)
        self.lip_target = torch.from_numpy(target[self.data.index]).to(self.device)
        with torch.random.fork_rng(devices=[]):      # its own seed: runs stay reproducible
            torch.manual_seed(c.seed + 1)
            self.lip_head = LipHead(c.model.audio_dim, target.shape[1]).to(self.device)

    @property
    def _photometric(self):
        """The image loss: :func:`photometric`, compiled where ``cfg.compile`` asks."""
        c = self.cfg
        return compiled_photometric(c.compile, c.compile_mode) if c.compile else photometric

    def _lip_windows(self) -> tuple[np.ndarray, torch.Tensor]:
        """``lip_batch`` random training frames and their audio windows, on the device."""
        ks = self.rng.integers(0, len(self.data), self.cfg.lip_batch)
        return ks, to_device(self.data.audio(self.data.index[ks], self._variants(len(ks))),
                             self.device)

    def _variants(self, n: int) -> np.ndarray | None:
        """[n] which feature set drives each of n rows (None: the clean one for all; runs
        without augmented copies draw nothing, so their random sequence stays as it was)."""
        c = self.cfg
        if c.audio_copies <= 0 or c.audio_augment_p <= 0:
            return None
        return draw_variants(self.rng, n, c.audio_copies, c.audio_augment_p)

    def _lip_l1(self, f_a: torch.Tensor, ks: np.ndarray) -> torch.Tensor:
        """L1 of the lip head's prediction from f_a [len(ks), D] against frames ks' lips."""
        return (self.lip_head(f_a) - self.lip_target[ks]).abs().mean()

    def _lip_loss(self) -> torch.Tensor:
        """The lip prior's L1 for ``lip_batch`` random training frames."""
        ks, w = self._lip_windows()
        return self._lip_l1(self.model.audio(w)[0], ks)

    def _drive(self, b: dict) -> tuple[dict, torch.Tensor | None]:
        """The step's driving features and, with the lip prior, its loss: the prior's audio
        windows go through the encoder in the same call as the step's (fewer launches)."""
        if self.cfg.lip_prior <= 0:
            return self.model.drive(b["audio"], b["expression"]), None
        ks, w = self._lip_windows()
        B = b["audio"].shape[0]
        drive = self.model.drive(torch.cat([b["audio"], w]), b["expression"])
        lip = self._lip_l1(drive["f_a"][B:], ks)
        drive["f_a"], drive["tok_a"] = drive["f_a"][:B], drive["tok_a"][:B]
        drive["audio"] = drive["audio"][:B]
        return drive, lip

    def _lip_warmup(self, steps: int | None = None):
        """Before the deform stage: the audio encoder and the lip head on the prior alone,
        for ``steps`` (the config's ``lip_warmup``) steps."""
        from tqdm import tqdm

        c = self.cfg
        opt = torch.optim.Adam(list(self.model.audio.parameters())
                               + list(self.lip_head.parameters()), lr=c.lr_face_net)
        steps = c.lip_warmup if steps is None else steps
        for _ in tqdm(range(steps), desc="lip prior", unit="it", leave=False,
                      disable=not self.progress):
            loss = self._lip_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    # -- optimisation set-up ------------------------------------------------------------
    def _groups(self, stage: str) -> list[dict]:
        c, m = self.cfg, self.model
        groups = []
        for r in m.cfg.regions:
            gs = m.gaussians[r]
            lrs = {"means": c.lr_means * self.extent, "quats": c.lr_quats,
                   "log_scales": c.lr_scales, "opacity_logits": c.lr_opacity, "sh": c.lr_sh}
            for name in PARAMS:
                if stage != "static" and name in ("means", "quats", "log_scales"):
                    continue            # geometry frozen after stage 1 (H3 plan cached)
                lr = lrs[name] if stage == "static" else 0.3 * lrs[name]
                groups.append({"name": f"{r}.{name}", "params": [getattr(gs, name)],
                               "lr": lr})
        if stage != "static":
            groups.append({"name": "hash", "params": list(m.hash.parameters()),
                           "lr": c.lr_hash})
            for r, net in m.nets.items():
                main, rest = [], []
                for n, p in net.named_parameters():   # the paper's 1e-4 vs 1e-5 split
                    is_main = r in ("face", "head") or n.split(".")[0] in ("q", "k", "v")
                    (main if is_main else rest).append(p)
                groups.append({"name": f"net.{r}.main", "params": main, "lr": c.lr_face_net})
                if rest:
                    groups.append({"name": f"net.{r}.rest", "params": rest,
                                   "lr": c.lr_other_net})
            groups.append({"name": "encoders", "params": list(m.audio.parameters())
                           + list(m.expression.parameters()), "lr": c.lr_other_net})
            if c.lip_prior > 0:
                groups.append({"name": "lip_head", "params": list(self.lip_head.parameters()),
                               "lr": c.lr_face_net})
        if stage == "fusion":
            groups.append({"name": "colour", "params": list(m.colour.parameters()),
                           "lr": c.lr_colour})
        if stage == "hrpa" and m.cfg.refined_adapter:   # only the features' adapter learns
            groups = [{"name": "refined.adapter", "params": list(m.refined["adapter"].parameters()),
                       "lr": c.lr_hrpa_adapter}]
        elif stage == "hrpa":   # only the refined mouth learns: network and colour correction
            mouth = m.cfg.refined_region
            groups = [{"name": "refined.net", "params": list(m.refined["net"].parameters()),
                       "lr": c.lr_hrpa_net},
                      {"name": "refined.colour",
                       "params": list(m.refined["colour"][mouth].parameters()),
                       "lr": c.lr_colour}]
        return groups

    def _new_stage_state(self):
        if self.stage == "hrpa":
            self._start_hrpa()
        groups = self._groups(self.stage)
        trainable = {id(p) for g in groups for p in g["params"]}
        for p in [*self.model.parameters(), *self.lip_head.parameters()]:
            p.requires_grad_(id(p) in trainable)
        self.model.invalidate()
        self.opt = torch.optim.Adam(groups, eps=1e-15, fused=self.device.type == "cuda")
        if self.cfg.compile:        # (again each stage: HRPA adds a branch)
            self.model.compile_networks(self.cfg.compile, self.cfg.compile_mode)
        # at the deform stage's first step (not on a resume past it)
        self.lip_warmup_due = (self.stage == "deform" and self.step == 0
                               and self.cfg.lip_prior > 0 and self.cfg.lip_warmup > 0)
        self.densify = {r: DensifyStrategy(self.cfg.densify, self.extent, r)
                        for r in self.model.cfg.regions} if self.stage == "static" else {}
        if self.stage == "fusion":
            self._start_lpips()

    def restart_at(self, stage: str):
        """Run ``stage`` (again) from its start on a resumed run whose earlier stages are
        done, e.g. HRPA with another expert or weight."""
        if stage not in STAGES:
            raise TrainError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        k, done = STAGES.index(stage), STAGES.index(self.stage)
        prev = STAGES[k - 1] if k else None
        finished = done > k - 1 or (prev == self.stage
                                    and self.step >= self.cfg.iterations[prev])
        if not finished:
            raise TrainError(f"the run is at {self.stage} step {self.step}; finish the stages "
                             f"before {stage} first (fg3dgs train ... --resume)")
        if self.cfg.iterations.get(stage, 0) <= 0:
            self.cfg.iterations[stage] = preset(self.cfg.preset).iterations[stage]
        self.stage, self.step = stage, 0
        self._new_stage_state()

    def _start_lpips(self):
        """LPIPS for the fusion loss (v0.1 AlexNet, default weight paths), loaded once on the
        training device. Without its weights the stage runs without the term: one warning,
        and the identity's metadata says so."""
        import warnings

        from ..perceptual import WeightsUnavailable, load_lpips

        if self.lpips_tried:
            return
        self.lpips_tried = True
        before = self.lpips_info or {}          # (what the steps before a resume did)
        if self.cfg.lpips <= 0:
            self.lpips_info = {"used": False, "reason": "the LPIPS weight (TrainConfig.lpips) "
                                                        "is 0"}
            return
        try:
            self.lpips_net = load_lpips(device=self.device)
        except WeightsUnavailable as exc:
            why = str(exc) + (" (the fusion steps before the resume used it)"
                              if before.get("used") else "")
            self.lpips_info = {"used": False, "reason": why}
            warnings.warn(f"the fusion loss runs without its LPIPS term: {why}", stacklevel=2)
            return
        self.lpips_info = {"used": True, "weight": self.cfg.lpips,
                           "patches": [self.cfg.lpips_patches, self.cfg.lpips_patch],
                           "weights": self.lpips_net.weights}

    def _lpips_loss(self, out: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        """``cfg.lpips`` x the mean LPIPS of ``lpips_patches`` square patches of side
        ``lpips_patch`` (the frame's side if that is smaller), uniformly placed inside the
        frame, the same places in the render and the image [B, H, W, 3]. Draws its corners
        from the run's random generator (only when LPIPS is in use)."""
        from ..perceptual.lpips import patch_pairs

        c = self.cfg
        H, W = out.shape[1:3]
        size = min(c.lpips_patch, H, W)
        ys = self.rng.integers(0, H - size + 1, c.lpips_patches)
        xs = self.rng.integers(0, W - size + 1, c.lpips_patches)
        a, b = patch_pairs(out, img, list(zip(ys.tolist(), xs.tolist())), size)
        return c.lpips * self.lpips_net(a, b).mean()

    def _check_expert(self):
        """A missing expert that was asked for is an error; the shipped one missing (not
        built yet) skips HRPA with a warning, and the identity says so."""
        import warnings

        from ..sync import ExpertError, load_expert

        if self.cfg.expert is not None:
            self._load_expert()
            return
        try:
            load_expert(None)
        except ExpertError as exc:
            self.hrpa_skipped = f"no sync expert: {exc}"
            self.cfg.iterations["hrpa"] = 0
            warnings.warn(f"HRPA will be skipped ({self.hrpa_skipped}); the identity gets "
                          "the base variant only. Pass --expert to refine.", stacklevel=2)

    def _load_expert(self):
        from ..sync import ExpertError, load_expert

        try:
            self.expert, self.expert_info = load_expert(self.cfg.expert)
        except ExpertError as exc:
            raise TrainError(f"the HRPA stage needs a sync expert: {exc} (or pass --no-hrpa)") \
                from exc
        self.expert.to(self.device)
        for p in self.expert.parameters():
            p.requires_grad_(False)

    def _start_hrpa(self):
        """Refined branch, frozen sync expert, the clip's expert mel and face boxes."""
        from ..sync.audio import sync_mel
        from ..sync.crops import face_boxes

        if self.model.refined is None or self.step == 0:   # (re)start from the base branch
            self.model.add_refined(adapter=self.cfg.hrpa_adapter)
        self.model.set_variant("refined")
        self._load_expert()
        self.sync_mel = sync_mel(self.ds.audio())
        scale = self.cfg.size / self.ds.manifest["size"]
        self.boxes = face_boxes(self.ds.landmarks) * scale            # [F, 3]
        self.other_voices = []
        if self.cfg.hrpa_other_voices > 0:
            from .other_voices import make_other_voices

            self.other_voices = make_other_voices(
                self.cfg.hrpa_other_minutes, self.cfg.model.audio_features, self.cfg.seed + 3,
                self.data.model_id, progress=self.progress)

    def _hrpa_step(self, quality: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One HRPA step on T_FRAMES consecutive training frames: their own audio, the
        photometric, mouth-crop and sync terms; or (a share ``hrpa_other_voices`` of the
        steps) another voice's speech driving the mouth over those frames' poses and
        canvas, the sync term alone (there is no true frame for it)."""
        from ..sync.audio import mel_windows
        from ..sync.crops import mouth_crops, stack_windows
        from ..sync.expert import T_FRAMES
        from .other_voices import draw_window

        c = self.cfg
        k0 = int(self.rng.integers(0, len(self.data) - T_FRAMES + 1))
        ks = np.arange(k0, k0 + T_FRAMES)
        other = bool(self.other_voices) and self.rng.random() < c.hrpa_other_voices
        v = self._variants(1)           # one feature set for the expert's whole window
        b = self.data.batch(ks, self.device, None if v is None else np.repeat(v, T_FRAMES))
        if other:
            u, f0 = draw_window(self.other_voices, self.rng)
            b["audio"] = to_device(audio_windows(u.features, np.arange(f0, f0 + T_FRAMES)),
                                   self.device)
            mel = to_device(mel_windows(u.mel, np.array([f0])), self.device)
        else:
            mel = to_device(mel_windows(self.sync_mel, b["frames"][:1]), self.device)
        drive = self.model.drive(b["audio"], b["expression"])
        renders = self.model.render_regions(drive, b["viewmats"], self.K, c.size, c.size,
                                            c.backend)
        out = fuse(renders, b["canvas"])
        boxes = to_device(self.boxes[b["frames"]], self.device)
        crops = mouth_crops(out.permute(0, 3, 1, 2), boxes)
        sync = self.expert.sync_loss(mel, stack_windows(crops))
        if other:
            loss = c.sync_weight * sync
        else:
            loss = self._photometric(out, b["image"], c.dssim) + c.sync_weight * sync
            if c.hrpa_crop_l1 > 0:  # the mouth's own pixels weigh as much as the sync term
                real = mouth_crops(b["image"].permute(0, 3, 1, 2), boxes)
                loss = loss + c.hrpa_crop_l1 * (crops - real).abs().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach(), psnr_tensor(out.detach(), b["image"]) if quality else None

    # -- the loop -----------------------------------------------------------------------
    def train(self):
        from tqdm import tqdm

        if self.stage == "hrpa" and not hasattr(self, "expert"):
            self._start_hrpa()          # resumed inside HRPA
        total = sum(self.cfg.iterations.get(s, 0) for s in STAGES)
        done = sum(self.cfg.iterations.get(s, 0) for s in STAGES[:STAGES.index(self.stage)])
        bar = tqdm(total=total, initial=done + self.step, unit="it", desc=self.stage,
                   disable=not self.progress, dynamic_ncols=True)
        self._mark = time.perf_counter()
        try:
            while True:
                n = self.cfg.iterations[self.stage]
                while self.step < n:
                    after = self.step + 1
                    log = after % self.cfg.log_every == 0 or after == n
                    save = after % self.cfg.checkpoint_every == 0 and after < n
                    loss, p = self._one_step(quality=log)
                    self.step = after
                    bar.update(1)
                    if log or save:                         # the only waits for the device
                        loss, p = float(loss), (float(p) if log else None)
                        if not np.isfinite(loss):
                            raise TrainError(
                                f"the loss became {loss} by {self.stage} step {self.step}; "
                                f"the last checkpoint ({STATE}) is from before, resume from "
                                "it (--resume) or start over with lower learning rates")
                    if log:
                        self.history.append([self.stage, self.step, loss, p])
                        bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{p:.2f}",
                                        gaussians=sum(len(g) for g in
                                                      self.model.gaussians.values()))
                    if save:
                        self._clock_stage()
                        self.save_state()
                    if self.step % self.cfg.preview_every == 0:
                        self.write_preview()
                k = STAGES.index(self.stage)
                self.write_preview()
                self._clock_stage()
                nxt = next((s for s in STAGES[k + 1:] if self.cfg.iterations.get(s, 0) > 0),
                           None)
                if nxt is None:
                    self.save_state()
                    break
                self.stage, self.step = nxt, 0
                bar.set_description(self.stage)
                self._new_stage_state()
                self.save_state()
        except KeyboardInterrupt:
            bar.close()
            self._clock_stage()
            self.save_state()
            raise
        bar.close()
        self.write_loss_curve()
        return self.export()

    def _clock_stage(self):
        """Add the wall time since the last call (or the loop's start) to the current
        stage's ``stage_seconds`` (kept across resumes, written to identity.json)."""
        now = time.perf_counter()
        self.stage_seconds[self.stage] = self.stage_seconds.get(self.stage, 0.0) \
            + now - self._mark
        self._mark = now

    def _lr_schedule(self):
        if self.stage != "static":
            return
        c, n = self.cfg, max(1, self.cfg.iterations["static"])
        f = self.step / n
        lr = np.exp((1 - f) * np.log(c.lr_means) + f * np.log(c.lr_means_final)) * self.extent
        for g in self.opt.param_groups:
            if g["name"].endswith(".means"):
                g["lr"] = lr

    def _one_step(self, quality: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimisation step: (loss, PSNR), left on the device (see :meth:`train`); the
        PSNR only when ``quality`` (log steps: it costs launches on every other step)."""
        if self.cfg.compile and self.cfg.compile_mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()   # a new iteration: graphs reuse memory
        if self.stage == "hrpa":
            return self._hrpa_step(quality)
        c = self.cfg
        static = self.stage == "static"
        if self.lip_warmup_due:
            self.lip_warmup_due = False
            self._lip_warmup()
        ks = self.rng.integers(0, len(self.data), c.batch)
        b = self.data.batch(ks, self.device, None if static else self._variants(len(ks)))
        self._lr_schedule()
        drive, lip = (None, None) if static else self._drive(b)
        S = c.size
        img = b["image"]
        windows = None
        if self.stage != "fusion":
            labels = self.data.labels[ks]         # the host's copy, gathered once
            windows = {r: region_window(labels, r, c.window_margin) for r in ("eyes", "mouth")
                       if r in self.model.cfg.regions}
        # stages 1-2 fit each region's own colours; the corrections belong to fusion (at
        # their identity start they change nothing, and skipping them saves kernels)
        res = self.model.render_regions(drive, b["viewmats"], self.K, S, S, c.backend,
                                        keep_means2d=static, windows=windows,
                                        colour=self.stage == "fusion")
        renders, m2d = res if static else (res, {})
        if self.stage == "fusion":
            out = fuse(renders, b["canvas"])
            loss = self._photometric(out, img, c.dssim)
            if self.lpips_net is not None:
                loss = loss + self._lpips_loss(out, img)
            loss = loss + c.fusion_alpha_weight * self._alpha_l1(renders, b["labels"])
            if c.mouth_interior > 0:
                loss = loss + c.mouth_interior * masked_l1(out, img,
                                                           self.data.interior(ks, self.device))
            psnr = psnr_tensor(out.detach(), img) if quality else None
        else:
            loss, psnr = self._region_loss(renders, img, b["labels"], windows, quality)
        if lip is not None:
            loss = loss + c.lip_prior * lip
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if static:
            changed = False
            for r, strat in self.densify.items():
                for m in m2d[r]:
                    strat.observe(self.model.gaussians[r], m, S, S)
                changed |= strat.step(self.step + 1, self.model.gaussians[r], self.opt)
            if changed:
                self.model.invalidate()
        return loss.detach(), psnr

    @staticmethod
    def _alpha_l1(renders: dict, labels: torch.Tensor) -> torch.Tensor:
        """Fusion: the sum over regions of the mean |alpha - mask| over the frame, all regions
        in one term (their frames are the same size; fewer kernels than a term each)."""
        alphas = torch.cat([a for _rgb, a in renders.values()], -1)         # [B, H, W, R]
        return len(renders) * (alphas - region_masks(labels, tuple(renders))).abs().mean()

    def _region_loss(self, renders: dict, img: torch.Tensor, labels: torch.Tensor,
                     windows: dict | None, quality: bool):
        """Stages 1-2: (loss, PSNR or None). Each region's render against the image inside
        its mask, and its alpha against the mask: photometric + alpha_weight x L1, means over
        its window (the whole frame where it has none). The windowed regions (eyes, mouth)
        go through the loss in one call, zero-padded to one size and weighted by 1 / (their
        pixels): the same sum (:func:`~fg3dgs.train.losses.photometric`), fewer kernels."""
        c = self.cfg
        loss, psnr = 0.0, (0.0 if quality else None)
        parts = []
        masks = region_masks(labels, tuple(renders))                         # one lookup
        for k, (r, (rgb, a)) in enumerate(renders.items()):
            mask, im = masks[..., k:k + 1], img
            window = (windows or {}).get(r)
            if window is not None:
                x0, y0, w, h = window
                mask, im = (t[:, y0:y0 + h, x0:x0 + w] for t in (mask, im))
            target = im * mask
            if quality:
                psnr += psnr_tensor(rgb.detach(), target) / len(renders)
            if window is not None:
                parts.append((rgb, a, target, mask))
            else:
                loss = loss + self._photometric(rgb, target, c.dssim) \
                    + c.alpha_weight * (a - mask).abs().mean()
        if parts:
            rgb, a, target, mask = (padded_batch([p[i] for p in parts]) for i in range(4))
            w = to_device(mean_weights([tuple(p[0].shape[:3]) for p in parts]), rgb.device)
            loss = loss + self._photometric(rgb, target, c.dssim, w) \
                + c.alpha_weight * ((a - mask).abs()[..., 0] * w).sum()
        return loss, psnr

    # -- outputs --------------------------------------------------------------------------
    @torch.no_grad()
    def render_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(truth, render) [n, S, S, 3] float of dataset frames with the current model."""
        data = TrainData(self.ds, self.cfg.size, self.cfg.model.audio_features, frames)
        b = data.batch(np.arange(len(frames)), self.device)
        drive = None if self.stage == "static" else self.model.drive(b["audio"],
                                                                      b["expression"])
        renders = self.model.render_regions(drive, b["viewmats"], self.K, self.cfg.size,
                                            self.cfg.size, self.cfg.backend)
        return (b["image"].cpu().numpy(),
                fuse(renders, b["canvas"]).clamp(0, 1).cpu().numpy())

    def write_preview(self):
        import imageio.v3 as iio

        truth, out = self.render_frames(self.preview_frames)
        rows = [np.concatenate([t, o], 1) for t, o in zip(truth, out)]
        sheet = (np.concatenate(rows, 0) * 255).round().astype(np.uint8)
        path = self.run / f"preview_{self.stage}.png"
        with atomic_output(path) as tmp:
            iio.imwrite(tmp, sheet, extension=".png")

    def write_loss_curve(self):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        offset = 0
        for s in STAGES:
            h = [x for x in self.history if x[0] == s]
            if h:
                steps = [offset + x[1] for x in h]
                ax[0].plot(steps, [x[2] for x in h], label=s)
                ax[1].plot(steps, [x[3] for x in h], label=s)
            offset += self.cfg.iterations.get(s, 0)
        ax[0].set_yscale("log")
        ax[0].set_title("loss")
        ax[1].set_title("PSNR (dB; regions in stages 1-2, frame in 3)")
        for a in ax:
            a.set_xlabel("iteration")
            a.legend()
        fig.tight_layout()
        with atomic_output(self.run / "loss_curve.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)

    def export(self) -> Path:
        last = [x[3] for x in self.history if x[0] == "fusion"][-20:]
        meta = {"audio_features": self.cfg.model.audio_features,
                "audio_model": feature_model(self.cfg.model.audio_features,
                                             self.data.model_id),
                "size": self.cfg.size,
                "train": {"preset": self.cfg.preset, "config": self.cfg.to_dict(),
                          "dataset": str(self.ds.path),
                          "dataset_video_sha256": self.ds.manifest["source"]["sha256"],
                          "frames": len(self.data),
                          "stage_seconds": {k: round(v, 1) for k, v in
                                            self.stage_seconds.items()}},
                "metrics": {"train_psnr_last": float(np.mean(last)) if last else None},
                "variants": list(self.model.variants),
                "track": {"fps": FPS, "frames": len(self.ds)}}
        if self.lpips_info is not None:
            meta["lpips"] = self.lpips_info
        if getattr(self, "hrpa_skipped", None):
            meta["hrpa"] = {"skipped": self.hrpa_skipped}
        if self.model.refined is not None:
            info = getattr(self, "expert_info", {})
            meta["hrpa"] = {"iterations": self.cfg.iterations.get("hrpa", 0),
                            "sync_weight": self.cfg.sync_weight,
                            "expert": {k: info.get(k) for k in ("source", "path")}}
        ds = self.ds
        extras = {"background": self.data.background.astype(np.float32),
                  "track_R": ds.R.astype(np.float32), "track_t": ds.t.astype(np.float32),
                  "K": self.data.K.astype(np.float32),
                  "expression": np.asarray(ds.expression, np.float32)}
        if ds.canonical is not None:     # the head space, for other clips' pose tracks
            extras["canonical"] = ds.canonical.astype(np.float32)
        save_identity(self.model, self.run, extras, meta)
        write_replay(self.run, ds, self.cfg.size)     # torso and poses for new speech
        return self.run

    # -- exact resume ---------------------------------------------------------------------
    def save_state(self):
        from safetensors.torch import save_file

        t = {f"model.{k}": v.detach().contiguous() for k, v in
             self.model.state_dict().items()}
        t.update({f"lip_head.{k}": v.detach().contiguous() for k, v in
                  self.lip_head.state_dict().items()})
        for g in self.opt.param_groups:
            for i, p in enumerate(g["params"]):
                st = self.opt.state.get(p)
                if st:
                    for k in ("exp_avg", "exp_avg_sq"):
                        t[f"opt.{g['name']}.{i}.{k}"] = st[k].contiguous()
                    t[f"opt.{g['name']}.{i}.step"] = torch.as_tensor(st["step"]).reshape(1)
        for r, s in self.densify.items():
            if s.grad_sum is not None:
                t[f"densify.{r}.grad_sum"] = s.grad_sum.contiguous()
                t[f"densify.{r}.count"] = s.count.contiguous()
        t["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state()
        t = {k: v.cpu() for k, v in t.items()}
        meta = {"config": self.cfg.to_dict(), "stage": self.stage, "step": self.step,
                "extent": self.extent, "history": self.history,
                "counts": {r: len(g) for r, g in self.model.gaussians.items()},
                "lrs": {g["name"]: g["lr"] for g in self.opt.param_groups},
                "rng": self.rng.bit_generator.state, "lpips": self.lpips_info,
                "stage_seconds": self.stage_seconds}
        self.run.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.run / STATE) as tmp:
            save_file(t, str(tmp), metadata={"meta": json.dumps(meta)})

    def _restore(self, saved: dict):
        meta, t = saved["meta"], saved["tensors"]
        self.stage, self.step = meta["stage"], int(meta["step"])
        self.extent = float(meta["extent"])
        self.history = meta["history"]
        self.stage_seconds = meta.get("stage_seconds", {})
        self.lpips_info = meta.get("lpips")
        self.model = build_model(self.cfg.model, meta["counts"])
        self.model.load_state_dict(with_default_buffers(
            self.model, {k[6:]: v for k, v in t.items() if k.startswith("model.")}))
        self.model.to(self.device)
        head = {k[9:]: v for k, v in t.items() if k.startswith("lip_head.")}
        if head:                        # (runs from before the prior have none)
            self.lip_head.load_state_dict(head)
        self._new_stage_state()
        for g in self.opt.param_groups:
            g["lr"] = meta["lrs"].get(g["name"], g["lr"])
            for i, p in enumerate(g["params"]):
                key = f"opt.{g['name']}.{i}"
                if f"{key}.exp_avg" in t:
                    step = t[f"{key}.step"].reshape(())    # fused Adam keeps it on the GPU
                    self.opt.state[p] = {"step": step.to(p.device) if p.is_cuda else step,
                                         "exp_avg": t[f"{key}.exp_avg"].to(self.device),
                                         "exp_avg_sq": t[f"{key}.exp_avg_sq"].to(
                                             self.device)}
        for r, s in self.densify.items():
            if f"densify.{r}.grad_sum" in t:
                s.grad_sum = t[f"densify.{r}.grad_sum"].to(self.device)
                s.count = t[f"densify.{r}.count"].to(self.device)
        torch.set_rng_state(t["rng.torch"])
        if "rng.cuda" in t and self.device.type == "cuda":
            torch.cuda.set_rng_state(t["rng.cuda"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng"]


def _read_state(path: Path) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    return {"meta": meta, "tensors": load_file(str(path))}


def train(dataset, run, cfg: TrainConfig | None = None, resume: bool = False,
          progress: bool = True, force: bool = False, stage: str | None = None,
          expert: str | None = None) -> Path:
    """Train (or resume) a run; ``stage``: rerun that stage of a resumed run from its start
    (e.g. "hrpa"); ``expert``: the sync expert for HRPA (a resumed run keeps its own)."""
    start = time.perf_counter()
    trainer = Trainer(dataset, run, cfg, resume=resume or stage is not None,
                      progress=progress, force=force)
    if expert is not None:
        trainer.cfg.expert = expert
    if stage is not None:
        trainer.restart_at(stage)
    out = trainer.train()
    info = json.loads((out / "identity.json").read_text())
    info["train"]["seconds"] = time.perf_counter() - start + info["train"].get("seconds", 0)
    (out / "identity.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def refine(identity, dataset, run, progress: bool = True, force: bool = False,
           **overrides) -> Path:
    """HRPA alone on a trained identity (:meth:`Trainer.refine_identity`); the new identity
    keeps the source's records (training schedule, observer reference, re-targeting) and
    says what was refined from what."""
    start = time.perf_counter()
    trainer = Trainer.refine_identity(identity, dataset, run, progress=progress, force=force,
                                      **overrides)
    src = trainer.source_info
    out = trainer.train()
    info = json.loads((out / "identity.json").read_text())
    n = trainer.cfg.iterations["hrpa"]
    info["train"]["config"]["iterations"] = {**src["train"]["config"]["iterations"],
                                             "hrpa": n}
    info["train"]["seconds"] = src["train"].get("seconds")
    for key in ("observer", "retarget"):
        if key in src:
            info[key] = src[key]
    info["hrpa"] = {**info.get("hrpa", {}), "other_voices": trainer.cfg.hrpa_other_voices,
                    "other_minutes": trainer.cfg.hrpa_other_minutes,
                    "refined_from": str(identity),
                    "seconds": round(time.perf_counter() - start)}
    (out / "identity.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
