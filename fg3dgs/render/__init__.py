"""Gaussian rasterization with a CPU and a gsplat backend: :func:`rasterize` (one set of
Gaussians, one or many cameras) and :func:`rasterize_frames` (every frame its own deformed
Gaussians and camera)."""

from .api import BACKENDS, RasterizeInputError, rasterize, rasterize_frames, resolve_backend
from .sh import eval_sh, num_sh_bases, rgb_to_sh0, sh_to_rgb

__all__ = ["BACKENDS", "RasterizeInputError", "eval_sh", "num_sh_bases", "rasterize",
           "rasterize_frames", "resolve_backend", "rgb_to_sh0", "sh_to_rgb"]
