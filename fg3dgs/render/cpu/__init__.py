"""The CPU rasterization backend: numba kernels behind a torch.autograd.Function."""

from .backend import DEFAULT_TILE_SIZE, rasterize_cpu, rasterize_cpu_frames

__all__ = ["DEFAULT_TILE_SIZE", "rasterize_cpu", "rasterize_cpu_frames"]
