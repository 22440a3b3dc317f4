"""Image losses: L1, SSIM (Gaussian window 11, sigma 1.5, as 3DGS and the field use)."""

from __future__ import annotations

import functools

import numpy as np
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
              dssim: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    smap = _ssim_formula(blurred, render.shape[-1])                  # [B, C, H, W]
    if weight is None:
        return (render - target).abs().mean() + dssim * (1 - smap.mean())
    C = render.shape[-1]
    w = weight.reshape(-1, *weight.shape[-2:])                       # [B, H, W]
    l1 = ((render - target).abs().reshape(-1, *render.shape[-3:]) * w[..., None]).sum() / C
    return l1 + dssim * (w.sum() - (smap * w[:, None]).sum() / C)


def photometric_reference(render: torch.Tensor, target: torch.Tensor, dssim: float = 0.2,
                          weight: torch.Tensor | None = None):
    """:func:`photometric` as autograd sees the formula: the reference for the written-out
    backward, and what a target that needs gradients gets."""
    return _l1_dssim(render, target, _blur(_moments(render, target)), dssim, weight)


def photometric(render: torch.Tensor, target: torch.Tensor, dssim: float = 0.2,
                weight: torch.Tensor | None = None):
    """L1 + dssim * (1 - SSIM): the paper's loss, of images [..., H, W, C], differentiable
    with respect to ``render``. Its backward is written out (:class:`_Photometric`): about
    55 tensor operations per call where autograd of the formula takes about 80, and a
    training step on a GPU is bound by kernel launches.

    ``weight`` [..., H, W] (None: the mean over all pixels): the loss is then the sum over
    pixels of weight x (L1 + dssim x (1 - SSIM)), each term averaged over the channels. With
    zeros around images padded to one size and weights 1 / (its pixels) inside each, that is
    the sum of each image's own loss: SSIM filters with zero padding, so the padding changes
    nothing inside (:func:`padded_batch`)."""
    if target.requires_grad:
        return photometric_reference(render, target, dssim, weight)
    return _Photometric.apply(render, target, dssim, weight)


def masked_l1(render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |render - target| over the pixels of ``mask`` [B, H, W, 1] (images [B, H, W, C]);
    0 where the mask is empty."""
    return ((render - target).abs() * mask).sum() / (mask.sum() * render.shape[-1]).clamp_min(1)


def padded_batch(images: list[torch.Tensor]) -> torch.Tensor:
    """Image batches [B_i, h_i, w_i, C] -> one [sum B_i, H, W, C], each zero-padded at its
    bottom and right to the largest height and width."""
    H = max(t.shape[-3] for t in images)
    W = max(t.shape[-2] for t in images)
    return torch.cat([F.pad(t, (0, 0, 0, W - t.shape[-2], 0, H - t.shape[-3]))
                      for t in images])


def mean_weights(shapes: list[tuple[int, int, int]], dtype=np.float32) -> np.ndarray:
    """[sum B_i, H, W] weights for :func:`padded_batch` of batches of shapes (B_i, h_i, w_i):
    1 / (B_i h_i w_i) inside each image, 0 in the padding, so that a weighted sum is the sum
    of each batch's mean."""
    H, W = max(h for _, h, _ in shapes), max(w for _, _, w in shapes)
    out = np.zeros((sum(b for b, _, _ in shapes), H, W), dtype)
    k = 0
    for b, h, w in shapes:
        out[k:k + b, :h, :w] = 1.0 / (b * h * w)
        k += b
    return out


@functools.lru_cache(maxsize=32)
def _grad_scale(C: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[1, 5C, 1, 1]: 2 for the means and xy, -1 for x^2 and y^2 (see _Photometric)."""
    return torch.tensor([2.0] * (2 * C) + [-1.0] * (2 * C) + [2.0] * C,
                        dtype=dtype).view(1, -1, 1, 1).to(device)


class _Photometric(torch.autograd.Function):
    """:func:`photometric_reference` with the backward written out.

    With A1 = 2 mx my + C1, A2 = 2 (exy - mx my) + C2, B1 = mx^2 + my^2 + C1 and
    B2 = exx + eyy - mx^2 - my^2 + C2, SSIM = A1 A2 / (B1 B2), so for an upstream k:
    dA1 = k A2 / (B1 B2), dA2 = k A1 / (B1 B2), dB1 = -k SSIM / B1, dB2 = -k SSIM / B2 and
    d mx = 2 (my (dA1 - dA2) + mx (dB1 - dB2)) (my likewise), d exx = d eyy = dB2,
    d exy = 2 dA2. The filter is its own adjoint (a symmetric window, zero padding), so the
    five gradient maps are blurred in one call, and x gets d mx + 2 x d exx + y d exy.
    """

    @staticmethod
    def forward(ctx, render, target, dssim, weight=None):
        C = render.shape[-1]
        stack = _moments(render, target)
        x, y = stack[:, :C], stack[:, C:2 * C]
        blurred = _blur(stack)
        m = blurred[:, :2 * C]
        mx, my = m[:, :C], m[:, C:]
        exx, eyy, exy = blurred[:, 2 * C:].split(C, 1)
        mxy = mx * my
        sq = m * m
        s = sq[:, :C] + sq[:, C:]
        a1 = mxy.mul(2).add_(C1)
        a2 = (exy - mxy).mul_(2).add_(C2)
        b1 = s + C1
        b2 = (exx + eyy).sub_(s).add_(C2)
        den = b1 * b2
        smap = (a1 * a2).div_(den)
        d = render - target
        if weight is not None:          # per pixel [B, 1, H, W], over the channels too
            weight = weight.reshape(-1, 1, *weight.shape[-2:]) / C
        ctx.save_for_backward(x, y, mx, my, a1, a2, b1, b2, den, smap, d, weight)
        ctx.dssim = dssim
        if weight is None:
            return d.abs().mean() + dssim * (1 - smap.mean())
        l1 = (d.abs().reshape(-1, *d.shape[-3:]) * weight.permute(0, 2, 3, 1)).sum()
        return l1 + dssim * (weight.sum() * C - (smap * weight).sum())

    @staticmethod
    def backward(ctx, g):
        x, y, mx, my, a1, a2, b1, b2, den, smap, d, weight = ctx.saved_tensors
        C = x.shape[1]
        # d loss / d SSIM per pixel and channel: a number, or a map with weights
        k = g * (-ctx.dssim / smap.numel()) if weight is None else (-ctx.dssim * g) * weight
        t = k / den
        da1, da2 = t * a2, t * a1
        w = k * smap                      # dB1 = -w / B1, dB2 = -w / B2
        r2 = w / b2
        u, v = da1 - da2, r2 - w / b1     # dA1 - dA2, dB1 - dB2
        grads = torch.cat([torch.addcmul(my * u, mx, v), torch.addcmul(mx * u, my, v),
                           r2, r2, da2], 1) * _grad_scale(C, x.device, x.dtype)
        gb = _blur(grads)
        gx = torch.addcmul(torch.addcmul(gb[:, :C], x, gb[:, 2 * C:3 * C], value=2),
                           y, gb[:, 4 * C:])
        gx = gx.permute(0, 2, 3, 1).reshape(d.shape)
        l1 = g / d.numel() if weight is None else \
            (g * weight.permute(0, 2, 3, 1)).reshape(*d.shape[:-1], 1)
        return torch.addcmul(gx, d.sign(), l1), None, None, None


@functools.cache
def compiled_photometric(backend: str = "inductor", mode: str = "default"):
    """:func:`photometric` with its pointwise parts (the moments before the filter, the SSIM
    formula and the L1 after it) each compiled into a few fused kernels by torch.compile.
    The filter stays eager: compiling it would specialise on the image size, and the eye and
    mouth windows change size from step to step. Built once per torch.compile ``backend``
    and ``mode`` (the first calls compile)."""
    how = {"backend": backend, "mode": None if mode == "default" else mode, "dynamic": True}
    moments, tail = torch.compile(_moments, **how), torch.compile(_l1_dssim, **how)

    def loss(render: torch.Tensor, target: torch.Tensor, dssim: float = 0.2,
             weight: torch.Tensor | None = None):
        return tail(render, target, _blur(moments(render, target)), dssim, weight)
    return loss


def psnr_tensor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] as a 0-dim tensor on their device (inf if equal):
    reading it as a number waits for the device, so a training step leaves that to its log."""
    return -10.0 * torch.log10(((a - b) ** 2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(psnr_tensor(a, b))
