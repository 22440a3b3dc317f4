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

:class:`Trainer` holds a run's state and its loop; the concerns live beside it: ``start``
(run folder, device, first model), ``optim`` (groups, optimisers, schedule), ``checkpoint``
(the state file), ``stage_losses`` (stages 1-3), ``mouth_prior`` (the lip prior), ``hrpa``
(stage 4, ``refine``), ``loop`` (the schedule), ``run_outputs`` (previews, curve, identity)
and, in the model, :class:`~fg3dgs.model.gaussians.DensifyRegions` (densification).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..model.fusion import fuse
from ..model.gaussians import DensifyRegions
from ..model.identity import FG3DGS
from ..model.io import with_default_buffers
from ..options import size_problem
from ..preprocess.dataset import Dataset
from . import CUDA_GRAPH_MODES, STAGES, TrainError, run_outputs
from .audio_variants import AudioVariantConfig
from .checkpoint import (
    STATE,
    load_optimizer,
    optimizer_tensors,
    prefixed,
    read_state,
    restore_rng,
    rng_tensors,
    unprefixed,
    write_state,
)
from .config import TrainConfig, preset
from .data import TrainData, region_window, row_variants
from .hrpa import HrpaStage, check_expert, refine_config, refined_records
from .loop import run_schedule
from .losses import compiled_photometric, photometric, psnr_tensor
from .mouth_prior import LipPrior
from .optim import schedule_means_lr, stage_optimizer
from .stage_losses import fusion_loss, load_fusion_lpips, lpips_patch_loss, region_loss
from .start import check_new_run, initial_model, train_device

__all__ = ["STATE", "StepResult", "TrainError", "Trainer", "refine", "train"]


class StepResult(NamedTuple):
    """One optimisation step: its loss and, where asked, the PSNR in dB (stages 1-2: the
    regions' mean; after: the fused frame's). 0-d tensors left on the device: reading them
    makes the host wait for it."""

    loss: torch.Tensor
    psnr: torch.Tensor | None


class Trainer:
    """A run of the four stages on a dataset, resumable exactly.

    The step API (what :meth:`train`, ``fg3dgs bench train`` and the tests drive):
    :meth:`start_stage` sets a stage up from its first step, :meth:`step_once` runs one
    optimisation step at ``step`` (the caller advances ``step``), :meth:`warm_up_lip_prior`
    runs the lip prior's warm-up (due before the deform stage's first step:
    ``lip_warmup_due``), :meth:`feature_variants` draws the feature sets of training rows.
    State: ``stage``, ``step``, ``model``, ``opt``, ``rng`` (NumPy, all the run's draws),
    ``densify`` (the static stage's :class:`~fg3dgs.model.gaussians.DensifyRegions`, else
    None), ``lip_prior``, ``hrpa`` (the HRPA stage's :class:`~fg3dgs.train.hrpa.HrpaStage`)
    and ``lpips_net`` (fusion's LPIPS, None without its weights)."""

    def __init__(self, dataset: str | Path, run: str | Path, cfg: TrainConfig | None = None,
                 resume: bool = False, progress: bool = True, force: bool = False,
                 start: bool = True):
        """A new run (``start``: seeded model at the static stage; else the caller sets the
        model and stage, as :meth:`refine_identity` does) or, with ``resume``, the run saved
        in ``run`` as it was."""
        self.run = Path(run)
        self.progress = progress
        state_path = self.run / STATE
        if resume:
            if not state_path.is_file():
                raise TrainError(f"nothing to resume: {state_path} does not exist")
            saved = read_state(state_path)
            self.cfg = TrainConfig.from_dict(saved["meta"]["config"])
        else:
            check_new_run(self.run, state_path, force)
            self.cfg = cfg or TrainConfig()
            if why := size_problem(self.cfg.size):
                raise TrainError(f"--size: {why}")
        self.device = train_device(self.cfg.backend)
        self.hrpa_skipped, self.hrpa, self.densify = None, None, None
        self.lpips_net, self.lpips_info, self.lpips_tried = None, None, False   # fusion's LPIPS
        if self.cfg.iterations.get("hrpa", 0) > 0 and not resume:
            self.hrpa_skipped = check_expert(self.cfg, self.device)   # now, not after stage 3
        self.ds = Dataset(dataset)
        self._load_data(resume)
        if resume:
            self._restore(saved)
        elif start:
            torch.manual_seed(self.cfg.seed)
            self.model, self.extent = initial_model(self.ds, self.data, self.cfg)
            self.model.to(self.device)
            self.rng = np.random.default_rng(self.cfg.seed)
            self.history: list[list] = []
            self.stage_seconds: dict[str, float] = {}
            self.start_stage(STAGES[0])
        self.K = torch.from_numpy(self.data.K).to(self.device)

    def _load_data(self, resume: bool):
        """The training frames in memory (with voice-varied audio), the preview frames and
        the lip prior."""
        c, ds = self.cfg, self.ds
        if c.size > ds.manifest["size"] and not resume:
            warnings.warn(f"the dataset's frames are {ds.manifest['size']} px: training "
                          f"at {c.size} upsamples them (no detail is gained). Train "
                          f"with --size {ds.manifest['size']}, or preprocess at "
                          f"--size {c.size}", stacklevel=3)
        self.data = TrainData(ds, c.size, c.model.audio_features, ds.split("train"),
                              progress=self.progress,
                              variants=AudioVariantConfig(c.audio_copies, c.seed + 2))
        val = ds.split("validation")
        self.preview_frames = np.linspace(val.start, val.stop - 1, 3).round().astype(int)
        c.model.audio_in_dim = int(self.data.features.shape[1])
        self.lip_prior = LipPrior(ds, self.data, c, self.device)

    @classmethod
    def refine_identity(cls, identity: str | Path, dataset: str | Path, run: str | Path,
                        progress: bool = True, force: bool = False,
                        **overrides) -> Trainer:
        """A run of the HRPA stage alone on a trained identity (its Gaussians, networks and
        audio encoder as they are; the refined branch starts again from the base one), on
        the dataset it was trained on, for an identity without its training run (a
        re-targeted or downloaded one). ``overrides``: TrainConfig fields (``iterations``
        is the HRPA stage's count)."""
        model = FG3DGS.from_pretrained(identity)
        info = model.info
        cfg = refine_config(info, model, identity, dataset, overrides)
        self = cls(dataset, run, cfg, progress=progress, force=force, start=False)
        self.source_info = info             # (what refine() keeps of the source's records)
        self.model = model.train().to(self.device)
        self.model.invalidate()
        self.model.refined = None
        self.extent = 1.0                  # (scales the means' rate: static stage only)
        self.rng = np.random.default_rng(cfg.seed)
        self.history, self.stage_seconds = [], {}
        self.start_stage("hrpa")
        return self

    @property
    def image_loss(self) -> Callable[..., torch.Tensor]:
        """The image loss: :func:`~fg3dgs.train.losses.photometric`, compiled where
        ``cfg.compile`` asks."""
        c = self.cfg
        return compiled_photometric(c.compile, c.compile_mode) if c.compile else photometric

    # -- the step API ---------------------------------------------------------------------
    def start_stage(self, stage: str):
        """Set ``stage`` up from its first step (``step`` = 0): its optimiser over the
        stage's groups (the rest frozen), densification (static), the lip prior's warm-up
        due (deform), LPIPS (fusion), the refined branch and sync expert (hrpa)."""
        self.stage, self.step = stage, 0
        self._set_up_stage()

    def _set_up_stage(self):
        """The current stage's optimiser and state at the current ``step`` (a resume sets its
        stage up mid-way)."""
        c = self.cfg
        if self.stage == "hrpa":
            self._start_hrpa()
        self.opt = stage_optimizer(self.stage, self.model, c, self.extent, self.lip_prior.head,
                                   self.device)
        if c.compile:        # (again each stage: HRPA adds a branch)
            self.model.compile_networks(c.compile, c.compile_mode)
        # at the deform stage's first step (not on a resume past it)
        self.lip_warmup_due = (self.stage == "deform" and self.step == 0
                               and c.lip_prior > 0 and c.lip_warmup > 0)
        self.densify = DensifyRegions(c.densify, self.extent, self.model.cfg.regions) \
            if self.stage == "static" else None
        if self.stage == "fusion":
            self.start_lpips()

    def _start_hrpa(self):
        self.hrpa = HrpaStage.start(self.model, self.step, self.cfg, self.ds, self.data,
                                    self.device, self.progress)

    def start_lpips(self):
        """Fusion's LPIPS, loaded once per run (:func:`~.stage_losses.load_fusion_lpips`)."""
        if self.lpips_tried:
            return
        self.lpips_tried = True
        self.lpips_net, self.lpips_info = load_fusion_lpips(self.cfg, self.device,
                                                            self.lpips_info)

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
        self.start_stage(stage)

    def feature_variants(self, n: int) -> np.ndarray | None:
        """[n] which feature set drives each of n training rows, drawn from ``rng`` (None:
        the clean one for all; runs without augmented copies draw nothing)."""
        return row_variants(self.rng, n, self.cfg.audio_copies, self.cfg.audio_augment_p)

    def warm_up_lip_prior(self, steps: int | None = None):
        """The audio encoder and the lip prior's head on the prior alone, for ``steps``
        (default ``cfg.lip_warmup``) steps; no longer due afterwards."""
        self.lip_warmup_due = False
        self.lip_prior.warm_up(self.model, self.rng,
                               self.cfg.lip_warmup if steps is None else steps, self.progress)

    def step_once(self, quality: bool = True) -> StepResult:
        """One optimisation step of the current stage at ``step`` (stage 1's densification
        passes fall on ``step + 1``). The PSNR only when ``quality`` (log steps: it costs
        launches on every other step); the step reads no value on the host."""
        c = self.cfg
        if c.compile and c.compile_mode in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()   # a new iteration: graphs reuse memory
        if self.stage == "hrpa":
            loss, out, img = self.hrpa.loss(self.model, self.data, self.K, c, self.rng,
                                            self.feature_variants, self.image_loss,
                                            self.device)
            self._optimise(loss)
            return StepResult(loss.detach(), psnr_tensor(out.detach(), img) if quality else None)
        static = self.stage == "static"
        if self.lip_warmup_due:
            self.warm_up_lip_prior()
        ks = self.rng.integers(0, len(self.data), c.batch)
        b = self.data.batch(ks, self.device, None if static else self.feature_variants(len(ks)))
        if static:
            schedule_means_lr(self.opt, c, self.step, self.extent)
        loss, psnr, means2d = self._frame_loss(ks, b, quality)
        self._optimise(loss)
        if static and self.densify.step_post_backward(self.step + 1, self.model.gaussians,
                                                      means2d, self.opt, c.size, c.size):
            self.model.invalidate()
        return StepResult(loss.detach(), psnr)

    def _optimise(self, loss: torch.Tensor):
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def _drive(self, b: dict) -> tuple[dict, torch.Tensor | None]:
        """Batch ``b``'s driving features and, with the lip prior, its loss."""
        if self.cfg.lip_prior <= 0:
            return self.model.drive(b["audio"], b["expression"]), None
        return self.lip_prior.drive(self.model, b, self.rng)

    def _frame_loss(self, ks: np.ndarray, b: dict,
                    quality: bool) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """Stages 1-3: (loss, PSNR or None, each region's retained 2D means in the static
        stage) of batch ``b`` of training rows ``ks``."""
        c, static = self.cfg, self.stage == "static"
        drive, lip = (None, None) if static else self._drive(b)
        windows = None
        if self.stage != "fusion":
            labels = self.data.labels[ks]         # the host's copy, gathered once
            windows = {r: region_window(labels, r, c.window_margin) for r in ("eyes", "mouth")
                       if r in self.model.cfg.regions}
        # stages 1-2 fit each region's own colours; the corrections belong to fusion (at
        # their identity start they change nothing, and skipping them saves kernels)
        res = self.model.render_regions(drive, b["viewmats"], self.K, c.size, c.size,
                                        c.backend, keep_means2d=static, windows=windows,
                                        colour=self.stage == "fusion")
        renders, m2d = res if static else (res, {})
        if self.stage == "fusion":
            out = fuse(renders, b["canvas"])
            net = self.lpips_net
            lpips = None if net is None else \
                (lambda o, i: lpips_patch_loss(net, o, i, c, self.rng))
            interior = self.data.interior(ks, self.device) if c.mouth_interior > 0 else None
            loss = fusion_loss(out, b["image"], renders, b["labels"], c, self.image_loss,
                               lpips, interior)
            psnr = psnr_tensor(out.detach(), b["image"]) if quality else None
        else:
            loss, psnr = region_loss(renders, b["image"], b["labels"], windows, quality, c,
                                     self.image_loss)
        if lip is not None:
            loss = loss + c.lip_prior * lip
        return loss, psnr, m2d

    # -- the loop (:mod:`.loop`) ----------------------------------------------------------
    def train(self) -> Path:
        """Run the schedule from where the run stands to its end, with log lines, previews
        and checkpoints; then the loss curve and the identity (returns the run folder).
        Ctrl-C saves the state first."""
        if self.stage == "hrpa" and self.hrpa is None:
            self._start_hrpa()          # (a run set inside HRPA by hand)
        return run_schedule(self)

    # -- exact resume (:mod:`.checkpoint`) ------------------------------------------------
    def save_state(self):
        """Write ``train_state.safetensors``: everything an exact resume needs."""
        t = {**prefixed("model", self.model.state_dict()),
             **prefixed("lip_head", self.lip_prior.head.state_dict()),
             **optimizer_tensors(self.opt)}
        if self.densify is not None:
            t.update(prefixed("densify", self.densify.state_dict()))
        t.update(rng_tensors(self.device))
        meta = {"config": self.cfg.to_dict(), "stage": self.stage, "step": self.step,
                "extent": self.extent, "history": self.history,
                "counts": {r: len(g) for r, g in self.model.gaussians.items()},
                "lrs": {g["name"]: g["lr"] for g in self.opt.param_groups},
                "rng": self.rng.bit_generator.state, "lpips": self.lpips_info,
                "stage_seconds": self.stage_seconds}
        write_state(self.run / STATE, t, meta)

    def _restore(self, saved: dict):
        meta, t = saved["meta"], saved["tensors"]
        self.stage, self.step = meta["stage"], int(meta["step"])
        self.extent = float(meta["extent"])
        self.history = meta["history"]
        self.stage_seconds = meta.get("stage_seconds", {})
        self.lpips_info = meta.get("lpips")
        self.model = FG3DGS.empty(self.cfg.model, meta["counts"])
        self.model.load_state_dict(with_default_buffers(self.model.state_dict(),
                                                        unprefixed("model", t)))
        self.model.to(self.device)
        head = unprefixed("lip_head", t)
        if head:                        # (runs from before the prior have none)
            self.lip_prior.head.load_state_dict(head)
        self._set_up_stage()
        load_optimizer(self.opt, t, meta["lrs"], self.device)
        if self.densify is not None:
            self.densify.load_state_dict({k: v.to(self.device) for k, v in
                                          unprefixed("densify", t).items()})
        self.rng = restore_rng(t, meta["rng"], self.device)

    # -- outputs (:mod:`.run_outputs`) ----------------------------------------------------
    def render_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(truth, render) [n, S, S, 3] float of dataset frames with the current model."""
        c = self.cfg
        return run_outputs.render_frames(self.model, self.ds, c.size, c.model.audio_features,
                                         frames, c.backend, self.device,
                                         deformed=self.stage != "static")

    def write_preview(self):
        """``preview_<stage>.png``: the preview frames, truth beside render."""
        truth, out = self.render_frames(self.preview_frames)
        run_outputs.write_preview(self.run / f"preview_{self.stage}.png", truth, out)

    def write_loss_curve(self):
        run_outputs.write_loss_curve(self.run / "loss_curve.png", self.history,
                                     self.cfg.iterations)

    def export(self) -> Path:
        """The identity and its replay track in the run folder."""
        meta = run_outputs.identity_meta(
            self.cfg, self.ds, self.data, self.model, self.history, self.stage_seconds,
            self.lpips_info, self.hrpa_skipped, self.hrpa.expert_info if self.hrpa else {})
        return run_outputs.export_identity(self.run, self.model, self.ds, self.data,
                                           self.cfg.size, meta)


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
    out = trainer.train()
    info = json.loads((out / "identity.json").read_text())
    info = refined_records(info, trainer.source_info, trainer.cfg, identity,
                           round(time.perf_counter() - start))
    (out / "identity.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
