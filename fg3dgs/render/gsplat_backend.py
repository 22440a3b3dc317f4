"""gsplat backend (CUDA). gsplat is imported only when CUDA tensors ask for it."""

from __future__ import annotations

import functools
import importlib

import torch


@functools.lru_cache(maxsize=1)
def gsplat_status() -> tuple[bool, str]:
    """Whether gsplat can rasterize here, and why not. Builds its CUDA code on first call."""
    if not torch.cuda.is_available():
        return False, "no CUDA device is available"
    try:
        importlib.import_module("gsplat")
        from gsplat.cuda._backend import _C
    except Exception as exc:  # ImportError, or a failed JIT build
        return False, (f"gsplat could not be imported ({type(exc).__name__}: {exc}); "
                       "install it with `pip install -r requirements-cuda.txt` (gsplat==1.5.3 packaging ninja)")
    if _C is None:
        return False, ("gsplat's CUDA extension did not build; it needs nvcc (the CUDA toolkit) "
                       "and ninja on the PATH")
    return True, "ok"


def rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                     sh_degree, background):
    """gsplat 1.5 ``rasterization`` in classic mode, unpacked so info has [..., C, N, ...]
    shapes.

    Args: means [..., N, 3], quats [..., N, 4], scales [..., N, 3], opacities [..., N],
    colors [..., N, 3] or SH [..., N, K, 3], viewmats [..., C, 4, 4], Ks [..., C, 3, 3],
    background [..., C, 3] or None for black (CUDA float32; ``...`` are gsplat's batch
    dimensions, e.g. one per frame when every frame has its own Gaussians).
    Returns rgb [..., C, H, W, 3], alpha [..., C, H, W, 1], info.
    """
    from gsplat import rasterization

    lead, N = viewmats.shape[:-2], means.shape[-2]
    if N == 0:   # gsplat's kernels do not accept empty inputs
        rgb = means.new_zeros(*lead, height, width, 3) if background is None else \
            background[..., None, None, :].expand(*lead, height, width, 3)
        rgb = rgb + 0 * means.sum()
        alpha = means.new_zeros(*lead, height, width, 1)
        info = {"means2d": means.new_zeros(*lead, 0, 2), "conics": means.new_zeros(*lead, 0, 3),
                "depths": means.new_zeros(*lead, 0),
                "radii": torch.zeros(*lead, 0, 2, dtype=torch.int32, device=means.device)}
        return rgb, alpha, info
    rgb, alpha, meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        sh_degree=sh_degree, backgrounds=background, packed=False,
        rasterize_mode="classic", render_mode="RGB")
    info = {"means2d": meta["means2d"], "conics": meta["conics"],
            "depths": meta["depths"], "radii": meta["radii"]}
    return rgb, alpha, info
