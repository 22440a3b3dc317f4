"""CPU backend: differentiable projection in PyTorch, tile compositing in numba kernels."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

from ..projection import Projection
from . import kernels, projection_kernels

DEFAULT_TILE_SIZE = 16


@dataclass
class TileBins:
    """Per-tile, depth-ordered Gaussian lists for one rasterization call (non-differentiable).

    offsets [C * tiles + 1] int64 and ids [M] int32 hold the lists, bbox [C, N, 4] the pixel
    boxes, sigma_max [N] the per-Gaussian cut-off of the Mahalanobis term, work [T] and
    parts [P + 1] the tiles dealt into one part of about equal work per thread.
    """

    offsets: np.ndarray
    ids: np.ndarray
    bbox: np.ndarray
    sigma_max: np.ndarray
    work: np.ndarray
    parts: np.ndarray
    tile: int
    tiles_x: int


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Project(torch.autograd.Function):
    """(means [N,3], quats [N,4], scales [N,3], opacities [N], viewmats [C,4,4], Ks [C,3,3])
    -> means2d [C,N,2], conics [C,N,3] (differentiable), depths, radii, bbox, valid."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width: int, height: int):
        C, N = viewmats.shape[0], opacities.shape[0]
        means2d = np.empty((C, N, 2), np.float32)
        conics = np.empty((C, N, 3), np.float32)
        depths = np.empty((C, N), np.float32)
        radii = np.empty((C, N, 2), np.int32)
        bbox = np.empty((C, N, 4), np.int32)
        valid = np.empty((C, N), np.bool_)
        projection_kernels.project_fwd(_np(means), _np(quats), _np(scales), _np(opacities),
                                       _np(viewmats), _np(Ks), width, height, means2d, conics,
                                       depths, radii, bbox, valid)
        outs = tuple(torch.from_numpy(a) for a in (means2d, conics, depths, radii, bbox, valid))
        ctx.mark_non_differentiable(*outs[2:])
        ctx.size = (width, height)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, outs[5])
        return outs

    @staticmethod
    def backward(ctx, v_means2d, v_conics, *_):
        means, quats, scales, viewmats, Ks, valid = ctx.saved_tensors
        v_means2d = torch.zeros(valid.shape + (2,)) if v_means2d is None else v_means2d
        v_conics = torch.zeros(valid.shape + (3,)) if v_conics is None else v_conics
        v_means = np.empty(means.shape, np.float32)
        v_quats = np.empty(quats.shape, np.float32)
        v_scales = np.empty(scales.shape, np.float32)
        projection_kernels.project_bwd(_np(means), _np(quats), _np(scales), _np(viewmats),
                                       _np(Ks), *ctx.size, valid.numpy(), _np(v_means2d),
                                       _np(v_conics), v_means, v_quats, v_scales)
        return (torch.from_numpy(v_means), torch.from_numpy(v_quats), torch.from_numpy(v_scales),
                None, None, None, None, None)


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
            opacities: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int,
            height: int) -> Projection:
    """Project N Gaussians into C cameras (differentiable in means, quats and scales).

    Args: means [N, 3], quats [N, 4], scales [N, 3], opacities [N] (activated),
        viewmats [C, 4, 4] world-to-camera, Ks [C, 3, 3]; float32 CPU tensors.
    """
    return Projection(*_Project.apply(means, quats, scales, opacities, viewmats, Ks, width,
                                      height))


def build_bins(proj: Projection, opacities: torch.Tensor, width: int, height: int,
               tile: int) -> TileBins:
    """Bin Gaussians into depth-ordered tile lists."""
    tiles_x = (width + tile - 1) // tile
    tiles_y = (height + tile - 1) // tile
    bbox = proj.bbox.numpy()
    offsets, ids = kernels.bin_gaussians(proj.valid.numpy(), proj.depths.numpy(), bbox, tile,
                                         tiles_x, tiles_y)
    work, parts = kernels.balance_tiles(np.diff(offsets), numba.get_num_threads())
    op = opacities.detach().to(torch.float64).clamp_min(1e-30).numpy()
    # alpha = o * exp(-sigma) >= 1/255  <=>  sigma <= log(255 o); margin for float32 rounding.
    sigma_max = (np.log(255.0 * op) + 1e-4).astype(np.float32)
    return TileBins(offsets, ids, bbox, sigma_max, work, parts, tile, tiles_x)


class _Composite(torch.autograd.Function):
    """(means2d [C,N,2], conics [C,N,3], colors [C,N,3], opacities [N], background [C,3])
    -> (rgb [C,H,W,3], alpha [C,H,W,1])."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, background, bins: TileBins,
                width: int, height: int):
        C = means2d.shape[0]
        rgb = np.empty((C, height, width, 3), np.float32)
        T = np.empty((C, height, width), np.float32)
        last = np.empty((C, height, width), np.int32)
        kernels.rasterize_fwd(bins.offsets, bins.ids, _np(means2d), _np(conics), _np(colors),
                              _np(opacities), bins.sigma_max, bins.bbox, _np(background),
                              width, height, bins.tile, bins.tiles_x, bins.work, bins.parts,
                              rgb, T, last)
        rgb_t, T_t = torch.from_numpy(rgb), torch.from_numpy(T)
        ctx.bins, ctx.size = bins, (width, height)
        ctx.save_for_backward(means2d, conics, colors, opacities, background, rgb_t, T_t,
                              torch.from_numpy(last))
        return rgb_t, (1.0 - T_t).unsqueeze(-1)

    @staticmethod
    def backward(ctx, v_rgb, v_alpha):
        means2d, conics, colors, opacities, background, rgb, T, last = ctx.saved_tensors
        bins: TileBins = ctx.bins
        width, height = ctx.size
        C, N = means2d.shape[:2]
        v_rgb = torch.zeros_like(rgb) if v_rgb is None else v_rgb
        v_alpha = torch.zeros_like(T) if v_alpha is None else v_alpha.squeeze(-1)
        entry = np.zeros((bins.ids.shape[0], kernels.N_GRAD), np.float32)
        kernels.rasterize_bwd(bins.offsets, bins.ids, _np(means2d), _np(conics), _np(colors),
                              _np(opacities), bins.sigma_max, bins.bbox, _np(background),
                              width, height, bins.tile, bins.tiles_x, bins.work, bins.parts,
                              rgb.numpy(), T.numpy(), last.numpy(), _np(v_rgb.float()),
                              _np(v_alpha.float()), entry)
        per = torch.from_numpy(kernels.sum_entry_grads(bins.offsets, bins.ids, entry, C, N))
        v_background = (v_rgb * T.unsqueeze(-1)).sum(dim=(1, 2))
        return (per[..., 0:2], per[..., 2:5], per[..., 6:9], per[..., 5].sum(0), v_background,
                None, None, None)


def rasterize_cpu(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                  opacities: torch.Tensor, colors: torch.Tensor, viewmats: torch.Tensor,
                  Ks: torch.Tensor, width: int, height: int, background: torch.Tensor,
                  tile_size: int = DEFAULT_TILE_SIZE):
    """Rasterize on the CPU. Inputs are float32 CPU tensors, already validated.

    Args:
        means [N, 3], quats [N, 4], scales [N, 3], opacities [N], colors [C, N, 3]
        (per camera, SH already evaluated), viewmats [C, 4, 4], Ks [C, 3, 3],
        background [C, 3].
    Returns:
        rgb [C, H, W, 3], alpha [C, H, W, 1], info dict.
    """
    proj = project(means, quats, scales, opacities, viewmats, Ks, width, height)
    return _composite(proj, opacities, colors, background, width, height, tile_size)


def _composite(proj: Projection, opacities, colors, background, width, height, tile_size):
    bins = build_bins(proj, opacities, width, height, tile_size)
    rgb, alpha = _Composite.apply(proj.means2d, proj.conics, colors, opacities, background,
                                  bins, width, height)
    info = {"means2d": proj.means2d, "conics": proj.conics, "depths": proj.depths,
            "radii": proj.radii, "n_intersections": int(bins.ids.shape[0]),
            "tile_size": tile_size}
    return rgb, alpha, info


@torch.no_grad()
def rasterize_cpu_frames(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                         opacities: torch.Tensor, colors: torch.Tensor,
                         viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int,
                         background: torch.Tensor, tile_size: int = DEFAULT_TILE_SIZE):
    """Rasterize C frames, each with its own Gaussians and camera, in one call (forward
    only: no gradients). The same images as :func:`rasterize_cpu` frame by frame, which
    is its reference; one call lets the threads share out the tiles of all the frames
    (a small region's few tiles kept one thread busy and the other idle) and pays the
    per-call work once.

    Args:
        means [C, N, 3], quats [C, N, 4], scales [C, N, 3], opacities [N],
        colors [C, N, 3], viewmats [C, 4, 4], Ks [C, 3, 3], background [C, 3].
    Returns:
        rgb [C, H, W, 3], alpha [C, H, W, 1], info dict.
    """
    C, N = means.shape[:2]
    proj = project(means.reshape(C * N, 3), quats.reshape(C * N, 4),
                   scales.reshape(C * N, 3), opacities, viewmats, Ks, width, height)
    return _composite(proj, opacities, colors, background, width, height, tile_size)
