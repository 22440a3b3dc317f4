"""H3: the tri-plane multiresolution hash encoder (docs/design.md), in plain PyTorch.

A point in the head's bounding box is projected onto the xy, yz and xz planes; on each plane
``levels`` grids of growing resolution each hold a small table of learnable features
(``2 ** log2_table`` entries, hashed when the grid has more cells than the table). The point's
feature per plane and level is the bilinear interpolation of its four surrounding grid
corners; the output concatenates all planes and levels: [N, 3 * levels * features].

Speed on the CPU: the corner indices and bilinear weights of a point set are a *plan* that
depends only on the positions, so for fixed canonical Gaussians it is computed once and every
encoding is one ``embedding_bag`` (gather and weighted sum, with a fast backward into the
tables). :func:`reference_encode` is the slow, obviously correct version the tests use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import HashConfig
from .hash_kernels import PlannedEncode

PLANES = ((0, 1), (1, 2), (0, 2))      # xy, yz, xz
PRIME = 2654435761


@dataclass
class HashPlan:
    """Corner indices [N, 3 * levels, 4] into the flattened tables and their bilinear
    weights [N, 3 * levels, 4] (differentiable in the positions when those required grad)."""

    index: torch.Tensor
    weight: torch.Tensor
    n: int


class TriPlaneHash(nn.Module):
    def __init__(self, cfg: HashConfig, bound_min, bound_max):
        super().__init__()
        self.cfg = cfg
        self.table_size = 2 ** cfg.log2_table
        T = self.table_size
        tables = torch.empty(3 * cfg.levels * T, cfg.features).uniform_(-1e-4, 1e-4)
        self.tables = nn.Parameter(tables)
        self.register_buffer("bound_min", torch.as_tensor(bound_min, dtype=torch.float32))
        self.register_buffer("bound_max", torch.as_tensor(bound_max, dtype=torch.float32))
        self.res = cfg.resolutions()

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def _normalise(self, points: torch.Tensor) -> torch.Tensor:
        x = (points - self.bound_min) / (self.bound_max - self.bound_min)
        return x.clamp(0.0, 1.0)

    def plan(self, points: torch.Tensor) -> HashPlan:
        """The corner indices and weights of points [N, 3] (world units)."""
        x = self._normalise(points)
        N, T = points.shape[0], self.table_size
        idx, wts = [], []
        for p, (a, b) in enumerate(PLANES):
            uv = x[:, [a, b]]
            for lvl, res in enumerate(self.res):
                pos = uv * res
                cell = torch.floor(pos).clamp(max=res - 1)
                f = pos - cell
                c = cell.long()
                base = (p * len(self.res) + lvl) * T
                cols, ws = [], []
                for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
                    cx, cy = c[:, 0] + dx, c[:, 1] + dy
                    if (res + 1) ** 2 <= T:
                        h = cx + cy * (res + 1)
                    else:
                        h = (cx ^ (cy * PRIME)) % T
                    cols.append(base + h)
                    ws.append((f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]))
                idx.append(torch.stack(cols, -1))
                wts.append(torch.stack(ws, -1))
        index = torch.stack(idx, 1)                                # [N, 3L, 4]
        weight = torch.stack(wts, 1)                               # [N, 3L, 4]
        return HashPlan(index=index, weight=weight, n=N)

    def encode_plan(self, plan: HashPlan) -> torch.Tensor:
        """[N, 3 * levels * features] features of a planned point set."""
        if plan.weight.requires_grad or self.tables.device.type != "cpu":
            # index_select: its backward is an index_add_, not the sort-based index_put
            rows = self.tables.index_select(0, plan.index.reshape(-1))
            out = (rows.view(*plan.index.shape, -1) * plan.weight[..., None]).sum(-2)
        else:   # fixed positions on the CPU: the numba kernels
            if not hasattr(plan, "_np"):
                plan._np = (plan.index.to(torch.int32).contiguous(),
                            plan.weight.float().contiguous())
            out = PlannedEncode.apply(self.tables, *plan._np)
        return out.reshape(plan.n, -1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.encode_plan(self.plan(points))


def reference_encode(enc: TriPlaneHash, points: torch.Tensor) -> torch.Tensor:
    """Slow per-point, per-plane, per-level bilinear interpolation (for tests)."""
    x = enc._normalise(points)
    T, Fd = enc.table_size, enc.cfg.features
    tables = enc.tables.reshape(3, len(enc.res), T, Fd)
    rows = []
    for n in range(points.shape[0]):
        feats = []
        for p, (a, b) in enumerate(PLANES):
            for lvl, res in enumerate(enc.res):
                u, v = float(x[n, a]) * res, float(x[n, b]) * res
                i, j = min(int(np.floor(u)), res - 1), min(int(np.floor(v)), res - 1)
                fu, fv = u - i, v - j
                acc = torch.zeros(Fd)
                for di, dj, w in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)),
                                  (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
                    ci, cj = i + di, j + dj
                    h = ci + cj * (res + 1) if (res + 1) ** 2 <= T else (ci ^ (cj * PRIME)) % T
                    acc = acc + w * tables[p, lvl, h]
                feats.append(acc)
        rows.append(torch.cat(feats))
    return torch.stack(rows)
