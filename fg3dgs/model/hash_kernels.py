"""Numba kernels for H3's planned encoding: the gather-and-blend forward and the
scatter-add backward into the tables. The backward runs one (plane, level) block per thread:
blocks own disjoint table rows, so the sums are race-free and deterministic.
:func:`fg3dgs.model.hash_encoding.reference_encode` is the slow reference."""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def _forward(index, weight, table, out):
    """index, weight [N, B, 4]; table [B * T, F]; out [N, B, F]."""
    N, B, _ = index.shape
    Fd = table.shape[1]
    for n in prange(N):
        for b in range(B):
            for f in range(Fd):
                acc = np.float32(0.0)
                for c in range(4):
                    acc += weight[n, b, c] * table[index[n, b, c], f]
                out[n, b, f] = acc


@njit(parallel=True, cache=True, nogil=True)
def _backward(index, weight, grad_out, grad_table):
    N, B, _ = index.shape
    Fd = grad_table.shape[1]
    for b in prange(B):
        for n in range(N):
            for c in range(4):
                row = index[n, b, c]
                w = weight[n, b, c]
                for f in range(Fd):
                    grad_table[row, f] += w * grad_out[n, b, f]


class PlannedEncode(torch.autograd.Function):
    """[N, B, F] = sum_c weight[n, b, c] * table[index[n, b, c]]; gradient to the table only."""

    @staticmethod
    def forward(ctx, table, index, weight):
        t = table.detach().contiguous().numpy()
        out = np.empty((index.shape[0], index.shape[1], t.shape[1]), np.float32)
        _forward(index.numpy(), weight.numpy(), t, out)
        ctx.save_for_backward(index, weight)
        ctx.table_shape = t.shape
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        index, weight = ctx.saved_tensors
        g = np.zeros(ctx.table_shape, np.float32)
        _backward(index.numpy(), weight.numpy(), grad.contiguous().numpy(), g)
        return torch.from_numpy(g), None, None
