"""Image losses: L1, SSIM (Gaussian window 11, sigma 1.5, as 3DGS and the field use)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

C1, C2 = 0.01 ** 2, 0.03 ** 2


@functools.lru_cache(maxsize=8)
def _window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """[size] normalised Gaussian window, on the CPU (cached: built once, not per call)."""
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
    return _ssim_formula(_blur(_moments(a, b), size), a.shape[-1])


def _moments(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Images [..., H, W, C] -> [B, 5C, H, W]: x, y, x^2, y^2, xy, whose local means SSIM
    compares (stacked so that one filter call blurs all five: a training step is bound by
    kernel launches)."""
    x, y = (t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2) for t in (a, b))
    return torch.cat([x, y, x * x, y * y, x * y], 1)


def _blur(stack: torch.Tensor, size: int = 11) -> torch.Tensor:
    """Zero-padded 'same' Gaussian filtering of [B, K, H, W] over H and W."""
    H, W = stack.shape[-2:]
    if stack.is_cuda:
        # the separable filter as two banded matrix products: cuDNN's grouped-convolution
        # backward costs milliseconds of CPU time per call
        bh, bw = (_band_cached(n, size, stack.device).to(stack.dtype) for n in (H, W))
        return bh @ stack @ bw
    g = _window(size).to(stack)
    k = stack.shape[1]
    out = F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), padding=(0, size // 2),
                   groups=k)
    return F.conv2d(out, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), padding=(size // 2, 0),
                    groups=k)


def _ssim_formula(blurred: torch.Tensor, C: int) -> torch.Tensor:
    """SSIM [B, C, H, W] from the blurred moments [B, 5C, H, W] (:func:`_moments`)."""
    mx, my, exx, eyy, exy = blurred.split(C, 1)
    mxy, mxx, myy = mx * my, mx * mx, my * my
    return ((2 * mxy + C1) * (2 * (exy - mxy) + C2)) \
        / ((mxx + myy + C1) * (exx - mxx + eyy - myy + C2))


def _l1_dssim(render: torch.Tensor, target: torch.Tensor, blurred: torch.Tensor,
              dssim: float) -> torch.Tensor:
    return (render - target).abs().mean() \
        + dssim * (1 - _ssim_formula(blurred, render.shape[-1]).mean())


def photometric(render: torch.Tensor, target: torch.Tensor, dssim: float = 0.2):
    """L1 + dssim * (1 - SSIM): the paper's loss, of images [..., H, W, C]."""
    return _l1_dssim(render, target, _blur(_moments(render, target)), dssim)


@functools.lru_cache(maxsize=None)
def compiled_photometric(backend: str = "inductor", mode: str = "default"):
    """:func:`photometric` with its pointwise parts (the moments before the filter, the SSIM
    formula and the L1 after it) each compiled into a few fused kernels by torch.compile.
    The filter stays eager: compiling it would specialise on the image size, and the eye and
    mouth windows change size from step to step. Built once per torch.compile ``backend``
    and ``mode`` (the first calls compile)."""
    how = {"backend": backend, "mode": None if mode == "default" else mode, "dynamic": True}
    moments, tail = torch.compile(_moments, **how), torch.compile(_l1_dssim, **how)

    def loss(render: torch.Tensor, target: torch.Tensor, dssim: float = 0.2):
        return tail(render, target, _blur(moments(render, target)), dssim)
    return loss


def psnr_tensor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] as a 0-dim tensor on their device (inf if equal):
    reading it as a number waits for the device, so a training step leaves that to its log."""
    return -10.0 * torch.log10(((a - b) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(psnr_tensor(a, b))
