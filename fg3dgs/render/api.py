"""The one rasterization entry point of the project, with a CPU and a gsplat backend."""

from __future__ import annotations

import warnings
from typing import Literal

import torch

from ..options import BACKENDS
from .cpu import DEFAULT_TILE_SIZE, rasterize_cpu, rasterize_cpu_frames
from .gsplat_backend import gsplat_status, rasterize_gsplat
from .sh import num_sh_bases, sh_to_rgb

Backend = Literal["auto", "cpu", "gsplat"]


class RasterizeInputError(ValueError):
    """Raised when the inputs of :func:`rasterize` have a wrong shape, dtype, device or value."""


def _fail(msg: str):
    raise RasterizeInputError(msg)


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _validate(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
              sh_degree, background, check_values=True, frames: tuple = ()):
    """RasterizeInputError unless the inputs are as :func:`rasterize` documents. Values
    (finite, opacities in [0, 1]) are checked on CPU inputs always and elsewhere when
    ``check_values``; ``frames``: per-frame (means, quats, scales) [B, N, .] of which the
    arguments are the first frame, checked for finiteness too."""
    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities,
               "colors": colors, "viewmat": viewmats, "K": Ks}
    if background is not None:
        tensors["background"] = background
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            _fail(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.float32:
            _fail(f"{name} must be float32, got {t.dtype}; convert with .float()")
        if t.device != means.device:
            _fail(f"{name} is on {t.device} but means is on {means.device}; "
                  "put all inputs on one device")
    if not isinstance(width, int) or not isinstance(height, int) or width < 1 or height < 1:
        _fail(f"width and height must be positive ints, got {width!r} x {height!r}")
    if means.dim() != 2 or means.shape[1] != 3:
        _fail(f"means must have shape [N, 3], got {_shape(means)}")
    N = means.shape[0]
    for name, t, tail in (("quats", quats, (4,)), ("scales", scales, (3,)),
                          ("opacities", opacities, ())):
        if tuple(t.shape) != (N, *tail):
            _fail(f"{name} must have shape {[N, *tail]} (N = {N} from means), "
                  f"got {_shape(t)}")
    if sh_degree is None:
        C = viewmats.shape[0] if viewmats.dim() == 3 else None
        if tuple(colors.shape) != (N, 3) and (C is None or tuple(colors.shape) != (C, N, 3)):
            _fail(f"colors must have shape [{N}, 3], or [C, {N}, 3] with viewmat [C, 4, 4] "
                  f"(or SH coefficients [N, K, 3] with sh_degree set), got {_shape(colors)}")
    else:
        if not isinstance(sh_degree, int) or not 0 <= sh_degree <= 3:
            _fail(f"sh_degree must be an int in 0..3 or None, got {sh_degree!r}")
        need = num_sh_bases(sh_degree)
        if colors.dim() != 3 or colors.shape[0] != N or colors.shape[2] != 3 \
                or colors.shape[1] < need:
            _fail(f"with sh_degree={sh_degree}, colors must be SH coefficients [{N}, K, 3] "
                  f"with K >= {need}, got {_shape(colors)}")
    if viewmats.shape[-2:] != (4, 4) or viewmats.dim() not in (2, 3):
        _fail(f"viewmat must have shape [4, 4] or [C, 4, 4], got {_shape(viewmats)}")
    if Ks.shape[-2:] != (3, 3) or Ks.dim() != viewmats.dim() \
            or (Ks.dim() == 3 and Ks.shape[0] != viewmats.shape[0]):
        _fail(f"K must have shape [3, 3] with viewmat [4, 4], or [C, 3, 3] with viewmat "
              f"[C, 4, 4]; got K {_shape(Ks)} and viewmat {_shape(viewmats)}")
    if background is not None:
        C = viewmats.shape[0] if viewmats.dim() == 3 else 1
        if background.shape not in ((3,), (C, 3)):
            _fail(f"background must have shape [3] or [C, 3] (C = {C}), "
                  f"got {_shape(background)}")
    if not check_values and means.device.type != "cpu":
        return
    # (all frames' means, quats and scales in place of the first frame's)
    for name, t in {**tensors, **dict(zip(("means", "quats", "scales"), frames))}.items():
        if not bool(torch.isfinite(t).all()):
            _fail(f"{name} contains NaN or infinite values")
    if N and (bool((opacities < 0).any()) or bool((opacities > 1).any())):
        _fail("opacities must be activated values in [0, 1] (apply torch.sigmoid to logits)")


def camera_centres(viewmats: torch.Tensor) -> torch.Tensor:
    """World positions [..., 3] of cameras given world-to-camera matrices [..., 4, 4].
    ``linalg.inv_ex``: ``linalg.inv`` checks for a singular matrix on the host, which makes
    the CPU wait for a GPU on every call (the matrices are rigid transforms, never singular)."""
    return torch.linalg.inv_ex(viewmats).inverse[..., :3, 3]


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend ("cpu" or "gsplat") a call with ``backend`` on ``device`` uses."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu":
        return "cpu"
    ok, why = gsplat_status() if device.type == "cuda" else (False, "tensors are on the CPU")
    if backend == "gsplat":
        if device.type != "cuda":
            raise RuntimeError("backend='gsplat' needs CUDA tensors; move the inputs to a CUDA "
                               "device or use backend='cpu'")
        if not ok:
            raise RuntimeError(f"backend='gsplat' is unavailable: {why}")
        return "gsplat"
    if device.type == "cuda" and not ok:
        warnings.warn(f"gsplat is unavailable ({why}); rasterizing on the CPU", stacklevel=3)
    return "gsplat" if ok else "cpu"


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
              opacities: torch.Tensor, colors: torch.Tensor, viewmat: torch.Tensor,
              K: torch.Tensor, width: int, height: int, *, sh_degree: int | None = None,
              background: torch.Tensor | None = None, backend: Backend = "auto",
              tile_size: int = DEFAULT_TILE_SIZE, check_values: bool = True):
    """Render 3D Gaussians into one or many pinhole cameras.

    Semantics are those of gsplat 1.5's ``rasterization`` in classic mode, whichever backend
    runs: pixel centres at (x + 0.5, y + 0.5), EWA projection with gsplat's field-of-view
    clamp, 0.3 px^2 blur, near plane 0.01, alpha = min(0.999, o exp(-sigma)) skipped under
    1/255, front-to-back compositing that stops before transmittance reaches 1e-4.

    Args:
        means: [N, 3] centres in world space.
        quats: [N, 4] rotations (w, x, y, z), need not be normalised.
        scales: [N, 3] activated scales (standard deviations along the local axes).
        opacities: [N] activated opacities in [0, 1].
        colors: [N, 3] RGB (or [C, N, 3], one per camera), or SH coefficients [N, K, 3]
            when ``sh_degree`` is given (evaluated from the camera centre, then
            clamp_min(value + 0.5, 0)).
        viewmat: [4, 4] world-to-camera (OpenCV), or [C, 4, 4] for C cameras.
        K: [3, 3] intrinsics in pixels, or [C, 3, 3].
        width, height: image size in pixels.
        sh_degree: None for RGB colours, else 0..3.
        background: [3] or [C, 3] colour behind the Gaussians (black if None).
        backend: "cpu" (ours, numba), "gsplat" (CUDA), or "auto" (gsplat when the tensors are
            on CUDA and gsplat works, else cpu).
        tile_size: CPU backend tile size in pixels.
        check_values: False skips the checks that the inputs are finite and the opacities in
            [0, 1] for tensors on a GPU, where each check makes the CPU wait for the GPU (hot
            loops whose inputs are known good pass False). CPU inputs are always checked: our
            kernels index memory by them.
    Returns:
        rgb [H, W, 3] (or [C, H, W, 3]), alpha [H, W, 1] (or [C, H, W, 1]), and ``info``:
        "backend", "means2d" [C, N, 2] (in the autograd graph; ``retain_grad()`` it for
        densification statistics), "radii" [C, N, 2] int32, "depths" [C, N], "conics"
        [C, N, 3], "width", "height".
    All float inputs must be float32 on one device; differentiable with respect to means,
    quats, scales, opacities, colors and background.
    """
    _validate(means, quats, scales, opacities, colors, viewmat, K, width, height, sh_degree,
              background, check_values)
    return _dispatch(means, quats, scales, opacities, colors, viewmat, K, width, height,
                     sh_degree, background, backend, tile_size)


def _dispatch(means, quats, scales, opacities, colors, viewmat, K, width, height, sh_degree,
              background, backend, tile_size=DEFAULT_TILE_SIZE):
    """:func:`rasterize` after its inputs were checked."""
    batched = viewmat.dim() == 3
    viewmats = viewmat if batched else viewmat[None]
    Ks = K if batched else K[None]
    C = viewmats.shape[0]
    bg = None if background is None else background.expand(C, 3)
    chosen = resolve_backend(backend, means.device)

    if chosen == "gsplat":      # (None for black: no zero tensor to allocate per call)
        rgb, alpha, info = rasterize_gsplat(means, quats, scales, opacities, colors, viewmats,
                                            Ks, width, height, sh_degree, bg)
    else:
        if bg is None:
            bg = torch.zeros(C, 3, dtype=means.dtype, device=means.device)
        device = means.device
        if device.type != "cpu":
            means, quats, scales, opacities, colors, viewmats, Ks, bg = (
                t.cpu() for t in (means, quats, scales, opacities, colors, viewmats, Ks, bg))
        if sh_degree is None:
            cols = colors if colors.dim() == 3 else colors[None].expand(C, -1, -1)
        else:
            centres = camera_centres(viewmats)                              # [C, 3]
            cols = sh_to_rgb(sh_degree, means[None] - centres[:, None], colors[None])
        rgb, alpha, info = rasterize_cpu(means, quats, scales, opacities, cols, viewmats, Ks,
                                         width, height, bg, tile_size)
        if device.type != "cpu":
            rgb, alpha = rgb.to(device), alpha.to(device)
    info.update(backend=chosen, width=width, height=height)
    if not batched:
        rgb, alpha = rgb[0], alpha[0]
    return rgb, alpha, info


def rasterize_frames(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                     opacities: torch.Tensor, colors: torch.Tensor, viewmats: torch.Tensor,
                     K: torch.Tensor, width: int, height: int, *, sh_degree: int | None = None,
                     backend: Backend = "auto", check_values: bool = True):
    """Render B frames, each with its own (deformed) Gaussians and its own camera.

    Args:
        means [B, N, 3], quats [B, N, 4], scales [B, N, 3]: per frame, or [N, ...] shared by
            all frames (a static set); opacities [N] shared; colors [N, 3] or [B, N, 3] (per
            frame), or SH [N, K, 3] shared.
        viewmats [B, 4, 4] world-to-camera; K [3, 3] intrinsics shared by the frames.
        check_values: as for :func:`rasterize`.
    Returns:
        rgb [B, H, W, 3], alpha [B, H, W, 1] and ``means2d``: a list of screen-space centre
        tensors in the autograd graph whose rows are [..., N, 2] (one per call made; retain
        their gradients for densification statistics).

    On gsplat all frames go to one call (gsplat's batch dimensions; the SH are evaluated per
    frame here first, from each frame's camera to its deformed centres, with the same
    formula). On the CPU without gradients (rendering) all frames go to one call of
    :func:`~fg3dgs.render.cpu.rasterize_cpu_frames` too. Otherwise, and as the reference for
    both, it is one :func:`rasterize` per frame; a shared set is one multi-camera call on
    every backend.
    """
    B = viewmats.shape[0]
    Ks = K.expand(B, 3, 3)
    per_frame = means.dim() == 3 or quats.dim() == 3 or scales.dim() == 3
    if not per_frame:
        rgb, alpha, info = rasterize(means, quats, scales, opacities, colors, viewmats, Ks,
                                     width, height, sh_degree=sh_degree, backend=backend,
                                     check_values=check_values)
        return rgb, alpha, [info["means2d"]]
    N = opacities.shape[0]
    means, quats, scales = (t.expand(B, N, d) for t, d in ((means, 3), (quats, 4),
                                                           (scales, 3)))
    # shapes and values checked on the first frame, finiteness on all of them: once per
    # call, not per frame (CPU inputs always: our kernels index memory by them)
    _validate(means[0], quats[0], scales[0], opacities, colors, viewmats, Ks, width, height,
              sh_degree, None, check_values, frames=(means, quats, scales))
    chosen = resolve_backend(backend, means.device)
    differentiable = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means, quats, scales, opacities, colors))
    if chosen == "cpu" and means.device.type == "cpu" and not differentiable:
        cols = colors.expand(B, N, 3) if sh_degree is None else _frame_colours(
            sh_degree, means, colors, viewmats)
        rgb, alpha, info = rasterize_cpu_frames(
            means, quats, scales, opacities, cols, viewmats, Ks, width, height,
            torch.zeros(B, 3, dtype=means.dtype))
        return rgb, alpha, [info["means2d"]]
    if chosen != "gsplat":
        rgbs, alphas, m2d = [], [], []
        for b in range(B):
            cols = colors[b] if sh_degree is None and colors.dim() == 3 else colors
            rgb, alpha, info = _dispatch(means[b], quats[b], scales[b], opacities, cols,
                                         viewmats[b], K, width, height, sh_degree, None,
                                         backend)
            rgbs.append(rgb)
            alphas.append(alpha)
            m2d.append(info["means2d"])
        return torch.stack(rgbs), torch.stack(alphas), m2d
    cols = colors.expand(B, N, 3) if sh_degree is None else _frame_colours(
        sh_degree, means, colors, viewmats)
    rgb, alpha, info = rasterize_gsplat(means, quats, scales, opacities.expand(B, N), cols,
                                        viewmats[:, None], Ks[:, None], width, height, None,
                                        None)
    return rgb[:, 0], alpha[:, 0], [info["means2d"]]


def _frame_colours(sh_degree: int, means: torch.Tensor, sh: torch.Tensor,
                   viewmats: torch.Tensor) -> torch.Tensor:
    """RGB [B, N, 3] of SH [N, K, 3] seen from each frame's camera at its deformed centres
    means [B, N, 3]."""
    centres = camera_centres(viewmats)                                       # [B, 3]
    return sh_to_rgb(sh_degree, means - centres[:, None], sh[None])
