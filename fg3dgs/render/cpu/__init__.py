"""The CPU rasterization backend: numba kernels behind a torch.autograd.Function."""

from .backend import DEFAULT_TILE_SIZE, rasterize_cpu

__all__ = ["DEFAULT_TILE_SIZE", "rasterize_cpu"]
