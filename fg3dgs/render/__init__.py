"""Gaussian rasterization: one entry point (:func:`rasterize`), a CPU and a gsplat backend."""

from .api import BACKENDS, RasterizeInputError, rasterize, resolve_backend
from .sh import eval_sh, num_sh_bases, rgb_to_sh0, sh_to_rgb

__all__ = ["BACKENDS", "RasterizeInputError", "eval_sh", "num_sh_bases", "rasterize",
           "resolve_backend", "rgb_to_sh0", "sh_to_rgb"]
