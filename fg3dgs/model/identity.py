"""The FG-3DGS model of one identity: region Gaussians, H3 encoders, driving encoders,
deformation networks and colour corrections (docs/design.md)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..device import to_device
from ..render import rasterize_frames, sh_to_rgb
from ..render.api import camera_centres
from ..timing import NO_CLOCK
from .config import ModelConfig
from .deformation import GatedCrossAttentionDeform, PlainDeform, RegionAttentionDeform
from .encoders import AudioEncoder, ExpressionEncoder, FeatureAdapter
from .fusion import ColourCorrection, fuse
from .gaussians import GaussianSet
from .hash_encoding import TriPlaneHash
from .info import FORMAT_VERSION, IdentityInfo
from .io import WEIGHTS, checked_state, read_identity, write_identity

# Which region labels (docs/design.md, dataset) each Gaussian set is fitted to.
REGION_LABELS = {"face": (1, 4), "eyes": (2,), "mouth": (3,), "head": (1, 2, 3, 4)}


class FG3DGS(nn.Module):
    def __init__(self, cfg: ModelConfig, gaussians: dict[str, GaussianSet], bound_min,
                 bound_max):
        super().__init__()
        self.cfg = cfg
        self.gaussians = nn.ModuleDict(gaussians)
        self.audio = AudioEncoder(cfg.audio_in_dim, cfg.audio_dim)
        self.expression = ExpressionEncoder(cfg.expr_in_dim, cfg.expr_dim)
        self.hash = nn.ModuleDict({r: TriPlaneHash(cfg.hash, bound_min, bound_max)
                                   for r in cfg.regions})
        h = cfg.hash.out_dim
        nets = {}
        for r in cfg.regions:
            if not cfg.frequency_aware:
                nets[r] = PlainDeform(h, cfg.audio_dim, cfg.expr_dim, cfg.hidden)
            elif r in ("face", "head"):
                nets[r] = RegionAttentionDeform(h, cfg.audio_dim, cfg.expr_dim, cfg.hidden)
            else:
                d = cfg.audio_dim if r == "mouth" else cfg.expr_dim
                nets[r] = GatedCrossAttentionDeform(h, d, cfg.attn_width, cfg.attn_heads)
        self.nets = nn.ModuleDict(nets)
        self.colour = nn.ModuleDict({r: ColourCorrection() for r in cfg.regions})
        # HRPA's branch: a copy of the mouth network and of the colour corrections, refined
        # with the sync expert; the base ones stay as they were ("without refinement").
        self.refined = self._refined_branch() if cfg.refined else None
        self.variant = "base"
        self._plans: dict = {}
        self._h_cache: dict | None = None
        self._compiled: dict = {}       # id(module) -> (module, its torch.compile wrapper)
        # what from_pretrained read beside the weights: identity.json, the extras (background
        # plate "background" [H, W, 3], pose track "track_R" [F, 3, 3] / "track_t" [F, 3],
        # intrinsics "K" [3, 3], "expression" [F, E], "canonical" landmarks) and the folder
        self.info: IdentityInfo | None = None
        self.extras: dict[str, torch.Tensor] = {}
        self.path: Path | None = None

    # -- loading and saving ---------------------------------------------------------------
    @classmethod
    def empty(cls, cfg: ModelConfig, counts: dict[str, int]) -> FG3DGS:
        """A model of the right shapes (placeholder values) to load a state dict into."""
        gs = {r: GaussianSet.empty(counts[r], cfg.sh_degree) for r in cfg.regions}
        return cls(cfg, gs, [0.0] * 3, [1.0] * 3)

    @classmethod
    def from_pretrained(cls, identity: str | Path, verify: bool = True,
                        features: bool = True) -> FG3DGS:
        """An identity in eval mode, without gradients: from a run folder (or its
        identity.json / identity.safetensors), or a zoo id (pulled from the Hub when it is
        not cached). ``verify``: check the weight files against the sha256 identity.json
        records (False: developers editing weights in place); ``features``: and that this
        installation computes the audio features it was made for (False: re-targeting).
        Raises :class:`~fg3dgs.model.info.IdentityError` saying what does not fit."""
        from ..zoo import resolve_identity

        p = Path(identity)
        if not (p.exists() or p.is_absolute() or len(p.parts) > 1 or
                p.suffix in (".json", ".safetensors")):
            p = resolve_identity(identity)        # a zoo id
        run, info, weights, extras = read_identity(p, verify, features)
        model = cls.empty(info.config, info.counts)
        model.load_state_dict(checked_state(model.state_dict(), weights, run / WEIGHTS))
        model.eval()
        for q in model.parameters():
            q.requires_grad_(False)
        model.info, model.extras, model.path = info, extras, run
        return model

    def save_pretrained(self, run: str | Path, extras: dict | None = None,
                        meta: IdentityInfo | dict | None = None, half: bool = False) -> Path:
        """Write RUN/identity.safetensors + RUN/identity.json (the folder must exist).
        ``extras``: arrays stored beside the weights (default: those it was loaded with);
        ``meta``: identity.json's records beside the model's config and counts (an
        :class:`IdentityInfo`, or a dict of its keys; default: those it was loaded with);
        ``half``: weights in float16. The replay track is not written here
        (:func:`fg3dgs.train.replay_writer.write_replay`)."""
        extras = self.extras if extras is None else extras
        meta = self.info if meta is None else meta
        if isinstance(meta, IdentityInfo):
            meta = meta.meta()
        info = {"format_version": FORMAT_VERSION, "config": self.cfg.to_dict(),
                "counts": {r: len(self.gaussians[r]) for r in self.cfg.regions},
                **{k: v for k, v in (meta or {}).items() if k not in
                   ("format_version", "config", "counts", "dtype", "files")}}
        return write_identity(self.state_dict(), run,
                              {k: np.asarray(v) for k, v in extras.items()}, info, half)

    # -- H3 features of the canonical Gaussians -----------------------------------------
    def invalidate(self):
        """Call when Gaussian positions or counts change."""
        self._plans.clear()
        self._h_cache = None

    def features(self, region: str) -> torch.Tensor:
        """H3(mu) [N, Dh]; the plan is cached while the canonical means are frozen, and the
        whole encoding in inference (:meth:`freeze_features`)."""
        if self._h_cache is not None:
            return self._h_cache[region]
        gs = self.gaussians[region]
        if gs.means.requires_grad:
            return self.hash[region](gs.means)
        if region not in self._plans:
            self._plans[region] = self.hash[region].plan(gs.means.detach())
        return self.hash[region].encode_plan(self._plans[region])

    @torch.no_grad()
    def freeze_features(self):
        """Encode every region's static Gaussians once, for inference."""
        self._h_cache = None
        self._h_cache = {r: self.features(r) for r in self.cfg.regions}

    def for_inference(self, device: torch.device | str = "cpu") -> FG3DGS:
        """Cache the H3 encodings (computed on the CPU) and move everything to ``device``."""
        self.freeze_features()
        self.to(device)
        self._h_cache = {r: h.to(device) for r, h in self._h_cache.items()}
        return self

    # -- variants (base / HRPA-refined) ---------------------------------------------------
    @property
    def variants(self) -> tuple[str, ...]:
        return ("base", "refined") if self.refined is not None else ("base",)

    def _refined_branch(self) -> nn.ModuleDict:
        branch = {"net": copy.deepcopy(self.nets[self.cfg.refined_region]),
                  "colour": copy.deepcopy(self.colour)}
        if self.cfg.refined_adapter:
            branch["adapter"] = FeatureAdapter(self.cfg.audio_in_dim)
        return nn.ModuleDict(branch)

    def add_refined(self, adapter: bool = False):
        """Start the refined branch as a copy of the current mouth network and colours
        (``adapter``: with an identity :class:`FeatureAdapter` on the mouth's features)."""
        self.cfg.refined_adapter = adapter
        self.refined = self._refined_branch()
        self.cfg.refined = True

    def set_variant(self, variant: str) -> FG3DGS:
        """Render the base model or the HRPA-refined one from now on, where a call names no
        ``variant`` (training; rendering names it per call, so that threads can share a
        model)."""
        self._check_variant(variant)
        self.variant = variant
        return self

    def _check_variant(self, variant: str):
        if variant not in self.variants:
            raise ValueError(f"this identity has no {variant!r} variant; it has "
                             f"{', '.join(self.variants)}")

    def _net(self, region: str, variant: str) -> nn.Module:
        if variant == "refined" and region == self.cfg.refined_region:
            return self.refined["net"]
        return self.nets[region]

    # -- torch.compile ------------------------------------------------------------------
    def compile_networks(self, backend: str = "inductor", mode: str = "default"):
        """Run the encoders and deformation networks (the refined branch's too) through
        torch.compile from now on. A training step on a GPU is bound by kernel launches;
        compiling fuses each network's pointwise work into few kernels. The modules and
        their weights stay as they are (checkpoints do not change); a branch added later
        (:meth:`add_refined`) runs eagerly until this is called again. ``backend`` and
        ``mode`` are torch.compile's."""
        mods = [self.audio, self.expression, *self.nets.values()]
        if self.refined is not None:
            mods.append(self.refined["net"])
        how = {"backend": backend, "mode": None if mode == "default" else mode}
        self._compiled = {id(m): (m, torch.compile(m, **how)) for m in mods}

    def _run(self, module: nn.Module):
        """``module``, or its compiled wrapper where :meth:`compile_networks` made one and
        gradients are on (previews and evaluation run eagerly: each new combination of
        grad mode and batch size would be one more compilation)."""
        pair = self._compiled.get(id(module))
        if pair is None or pair[0] is not module or not torch.is_grad_enabled():
            return module
        return pair[1]

    def _colour(self, region: str, variant: str) -> nn.Module:
        return self.refined["colour"][region] if variant == "refined" else self.colour[region]

    # -- deformation --------------------------------------------------------------------
    def drive(self, audio_windows: torch.Tensor, expr_windows: torch.Tensor) -> dict:
        """audio_windows [B, 8, 16, D]; expr_windows [B, 5, E] -> encoded driving features."""
        f_a, tok_a = self._run(self.audio)(audio_windows)
        f_e, tok_e = self._run(self.expression)(expr_windows)
        return {"f_a": f_a, "tok_a": tok_a, "f_e": f_e, "tok_e": tok_e,
                "audio": audio_windows}     # (re-encoded through a refined adapter)

    def deform(self, region: str, drive: dict | None, variant: str | None = None):
        """Gaussians of a region for B frames: means [B, N, 3], quats [B, N, 4],
        scales [B, N, 3] (or [N, ...] when drive is None: the static set), opacities [N],
        SH [N, K, 3]. ``variant``: base or refined (default: :meth:`set_variant`'s)."""
        gs = self.gaussians[region]
        means, quats, scales, opac, sh = gs.activated()
        if drive is None:
            return means, quats, scales, opac, sh
        h = self.features(region)
        net = self._net(region, variant or self.variant)
        f_a, tok_a = drive["f_a"], drive["tok_a"]
        if net is not self.nets[region] and "adapter" in self.refined:
            f_a, tok_a = self._run(self.audio)(self.refined["adapter"](drive["audio"]))
        if isinstance(net, GatedCrossAttentionDeform):
            f, tok = (f_a, tok_a) if region == "mouth" else (drive["f_e"], drive["tok_e"])
            dmu, ds, dq = self._run(net)(h, f, tok)
        else:
            dmu, ds, dq = self._run(net)(h, f_a, drive["f_e"])
        B = dmu.shape[0]
        # rigid Gaussians (upper teeth) keep their canonical place: no delta at all
        moves = (~gs.rigid)[None, :, None].to(dmu.dtype)
        dmu = dmu * moves
        ds = None if ds is None else ds * moves
        dq = None if dq is None else dq * moves
        means = means[None] + dmu
        quats = quats[None].expand(B, -1, -1) if dq is None else quats[None] + dq
        scales = scales[None].expand(B, -1, -1) if ds is None else \
            torch.exp(gs.log_scales[None] + ds)
        return means, quats, scales, opac, sh

    # -- rendering ----------------------------------------------------------------------
    def render_regions(self, drive: dict | None, viewmats: torch.Tensor, K: torch.Tensor,
                       width: int, height: int, backend: str = "auto",
                       keep_means2d: bool = False, windows: dict | None = None,
                       colour: bool = True, variant: str | None = None):
        """Per region: (rgb [B, H, W, 3] colour-corrected, premultiplied; alpha [B, H, W, 1]),
        plus the screen-space means per region and frame when ``keep_means2d``.
        viewmats [B, 4, 4]; K [3, 3]. ``windows``: region -> (x0, y0, w, h) renders only
        that part of the image for the region (training small regions costs less).
        ``colour=False``: without the colour corrections (stages 1-2 fit the regions before
        fusion learns them)."""
        raw = self._rasterize_regions(self.cfg.regions, drive, viewmats, K, width, height,
                                      backend, keep_means2d, windows, colour=colour,
                                      variant=variant)
        out = {r: (rgb, alpha) for r, (rgb, alpha, _) in raw.items()}
        return (out, {r: m2d for r, (_, _, m2d) in raw.items()}) if keep_means2d else out

    def _colours(self, parts: dict, viewmats: torch.Tensor) -> dict:
        """region -> RGB [B, N_r, 3] of its (deformed) Gaussians seen from each frame's
        camera, from the SH of all the regions of ``parts`` (region -> :meth:`deform`'s
        output) in one evaluation: one set of kernels where a call per region took one each."""
        B = viewmats.shape[0]
        means = torch.cat([p[0].expand(B, -1, 3) for p in parts.values()], 1)   # [B, N, 3]
        sh = torch.cat([p[4] for p in parts.values()])                          # [N, K, 3]
        dirs = means - camera_centres(viewmats)[:, None]
        cols = sh_to_rgb(self.cfg.sh_degree, dirs, sh[None])
        return dict(zip(parts, cols.split([p[4].shape[0] for p in parts.values()], 1)))

    def _rasterize_regions(self, regions, drive: dict | None, viewmats, K, width, height,
                           backend, keep_means2d=False, windows=None, clock=None,
                           colour: bool = False, variant: str | None = None) -> dict:
        """region -> (rgb [B, h, w, 3] premultiplied, alpha [B, h, w, 1], screen-space means
        per frame when ``keep_means2d``, else []) for each of ``regions``. ``colour``: with
        the variant's colour corrections, applied to the Gaussians' colours (the
        same image as applying them to the render, see :class:`ColourCorrection`).
        ``windows``: as for :meth:`render_regions`; ``clock``: a :class:`StageClock` that
        is told where the time goes."""
        if not regions:
            return {}
        clock = clock or NO_CLOCK
        variant = variant or self.variant
        with clock("networks"):
            parts = {r: self.deform(r, drive, variant) for r in regions}
        out = {}
        with clock("rasterize"):
            cols = self._colours(parts, viewmats)
            if colour:
                cols = {r: self._colour(r, variant)(c, 1.0) for r, c in cols.items()}
            Ks = _window_intrinsics(K, {r: w for r, w in (windows or {}).items()
                                        if r in parts})
            for r, (means, quats, scales, opac, _) in parts.items():
                Kr, wr, hr = Ks.get(r, K), width, height
                if r in Ks:
                    wr, hr = windows[r][2:]
                # no value checks: they would make the CPU wait for the GPU on every call,
                # and the Gaussians come from a checked checkpoint or a step whose loss the
                # trainer checks
                rgb, alpha, m2d = rasterize_frames(means, quats, scales, opac, cols[r],
                                                   viewmats, Kr, wr, hr, backend=backend,
                                                   check_values=False)
                if keep_means2d and m2d[0].requires_grad:
                    for m in m2d:
                        m.retain_grad()
                else:
                    m2d = []
                out[r] = (rgb, alpha, m2d)
        return out

    @torch.no_grad()
    def render_variants(self, drive, viewmats, K, width, height, canvas,
                        variants: tuple[str, ...], backend="auto", clock=None) -> dict:
        """variant -> fused frames [B, H, W, 3]. The regions whose network the variants
        share are deformed and rasterized once. The colour corrections go into the
        Gaussians' colours (cheaper than correcting renders) unless a shared region's
        correction differs between the variants; then they are applied to the renders. The
        model's state is not touched: threads may render one model at once."""
        clock = clock or NO_CLOCK
        for v in variants:
            self._check_variant(v)
        fold = self._shared_colours_agree(variants)
        raw, out = {}, {}
        for v in variants:
            keys = {r: (r, v if r == self.cfg.refined_region else "shared")
                    for r in self.cfg.regions}
            todo = [r for r, key in keys.items() if key not in raw]
            for r, res in self._rasterize_regions(todo, drive, viewmats, K, width, height,
                                                  backend, clock=clock, colour=fold,
                                                  variant=v).items():
                raw[keys[r]] = res[:2]
            with clock("fusion"):
                regions = {r: raw[key] if fold else
                           (self._colour(r, v)(*raw[key]), raw[key][1])
                           for r, key in keys.items()}
                out[v] = fuse(regions, canvas)
        return out

    def _shared_colours_agree(self, variants: tuple[str, ...]) -> bool:
        """Whether every region the variants share has the same colour correction in each
        (HRPA refines only the mouth's; its copies of the others stay as they were)."""
        if len(variants) < 2 or self.refined is None:
            return True
        return all(torch.equal(a, b) for r in self.cfg.regions
                   if r != self.cfg.refined_region
                   for a, b in zip(self.colour[r].parameters(),
                                   self.refined["colour"][r].parameters()))

    def render(self, drive, viewmats, K, width, height, canvas, backend="auto",
               variant: str | None = None):
        """Fused frames [B, H, W, 3] over canvas [B, H, W, 3]."""
        return fuse(self.render_regions(drive, viewmats, K, width, height, backend,
                                        variant=variant), canvas)


def _window_intrinsics(K: torch.Tensor, windows: dict) -> dict:
    """region -> K [3, 3] of its window (x0, y0, w, h): the principal point moved by the
    window's corner. All in one subtraction from one upload (a clone and two in-place
    edits per window were five kernels on a GPU)."""
    if not windows:
        return {}
    shift = np.zeros((len(windows), 3, 3), np.float32)
    for i, (x0, y0, _, _) in enumerate(windows.values()):
        shift[i, 0, 2], shift[i, 1, 2] = x0, y0
    Ks = K - to_device(shift, K.device).to(K.dtype)
    return dict(zip(windows, Ks.unbind()))
