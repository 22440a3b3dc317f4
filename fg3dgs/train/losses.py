"""Image losses: L1, SSIM (Gaussian window 11, sigma 1.5, as 3DGS and the field use)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

C1, C2 = 0.01 ** 2, 0.03 ** 2


def _window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


@functools.lru_cache(maxsize=32)
def _band_cached(n: int, size: int, device: torch.device) -> torch.Tensor:
    return _band(n, _window(size).to(device))


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """[n, n] matrix M with (x @ M)[i] = sum_k g[k] x[i + k - r], x zero outside [0, n):
    'same' filtering by the symmetric window g [2r + 1] as a matrix product."""
    r = len(g) // 2
    i = torch.arange(n, device=g.device)
    d = i[:, None] - i[None, :] + r
    return torch.where((d >= 0) & (d <= 2 * r), g[d.clamp(0, 2 * r)], g.new_zeros(()))


def ssim(a: torch.Tensor, b: torch.Tensor, size: int = 11) -> torch.Tensor:
    """Mean SSIM of images [..., H, W, C] in [0, 1] (zero-padded 'same' filtering, as 3DGS)."""
    return ssim_map(a, b, size).mean()


def ssim_map(a: torch.Tensor, b: torch.Tensor, size: int = 11) -> torch.Tensor:
    """Per-pixel SSIM [B, C, H, W] of images [..., H, W, C]."""
    shp = a.shape
    x = a.reshape(-1, *shp[-3:]).permute(0, 3, 1, 2)
    y = b.reshape(-1, *shp[-3:]).permute(0, 3, 1, 2)
    C, H, W = x.shape[1:]
    # the five local means filtered in one call: a training step is bound by kernel launches
    stack = torch.cat([x, y, x * x, y * y, x * y], 1)                 # [B, 5C, H, W]
    if x.is_cuda:
        # the same zero-padded separable filter as two banded matrix products: cuDNN's
        # grouped-convolution backward costs milliseconds of CPU time per call
        bh, bw = (_band_cached(n, size, x.device).to(x.dtype) for n in (H, W))
        blurred = bh @ stack @ bw
    else:
        g = _window(size).to(x)
        k = 5 * C
        blurred = F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, -1),
                           padding=(0, size // 2), groups=k)
        blurred = F.conv2d(blurred, g.view(1, 1, -1, 1).expand(k, 1, -1, 1),
                           padding=(size // 2, 0), groups=k)
    mx, my, exx, eyy, exy = blurred.split(C, 1)
    mxy, mxx, myy = mx * my, mx * mx, my * my
    return ((2 * mxy + C1) * (2 * (exy - mxy) + C2)) \
        / ((mxx + myy + C1) * (exx - mxx + eyy - myy + C2))


def photometric(render: torch.Tensor, target: torch.Tensor, dssim: float = 0.2):
    """L1 + dssim * (1 - SSIM): the paper's loss."""
    return (render - target).abs().mean() + dssim * (1 - ssim(render, target))


def psnr_tensor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] as a 0-dim tensor on their device (inf if equal):
    reading it as a number waits for the device, so a training step leaves that to its log."""
    return -10.0 * torch.log10(((a - b) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(psnr_tensor(a, b))
