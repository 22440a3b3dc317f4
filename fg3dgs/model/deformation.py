"""Per-region deformation networks (docs/design.md).

All take the H3 features h [N, Dh] of the region's canonical Gaussians and the driving
features of B frames, and return deltas for each (frame, Gaussian): mean [B, N, 3] and, for
the low-frequency networks, log-scale [B, N, 3] and quaternion [B, N, 4] (None otherwise).
The last layers start at zero, so training starts from the static Gaussians.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MEAN_UNIT = 0.01      # network outputs are in centimetres: better conditioned than metres
DECODE_ROWS = 8192    # Gaussians per block of the face network on the CPU (see below)


def relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU, in place when rendering: fresh [B, N, hidden] buffers cost more than the op on
    the CPU. Not in training: in place on a linear layer's (reshaped) output, autograd adds
    copies, and a GPU step is bound by its kernel launches."""
    return torch.relu(x) if torch.is_grad_enabled() else x.relu_()


class _ReLU(nn.Module):
    """:func:`relu` as a layer (it has no parameters: checkpoints are as with nn.ReLU)."""

    def forward(self, x):
        return relu(x)


def _mlp(i: int, hidden: int, o: int, layers: int = 2) -> nn.Sequential:
    mods, c = [], i
    for _ in range(layers):
        mods += [nn.Linear(c, hidden), _ReLU()]
        c = hidden
    mods.append(nn.Linear(c, o))
    nn.init.zeros_(mods[-1].weight)
    nn.init.zeros_(mods[-1].bias)
    return nn.Sequential(*mods)


def _split(out: torch.Tensor):
    """[..., 10] -> delta mean (metres), log-scale, quaternion. One ``split``, not three
    slices: its backward is one concatenation where slices take a zero-filled copy each."""
    dmu, ds, dq = out.split((3, 3, 4), -1)
    return dmu * MEAN_UNIT, ds, dq


class RegionAttentionDeform(nn.Module):
    """Low-frequency face network: per-Gaussian channel weights s_a = sigma(MLP_a(h)),
    s_e = sigma(MLP_e(h)) pick what of the audio and expression each Gaussian listens to;
    z = [h, s_a * f_a, s_e * f_e] is decoded into delta mean, log-scale and rotation."""

    def __init__(self, h_dim: int, a_dim: int, e_dim: int, hidden: int = 64):
        super().__init__()
        self.att_a = nn.Linear(h_dim, a_dim)
        self.att_e = nn.Linear(h_dim, e_dim)
        # The first decoder layer is split by input block so the h part runs once, not
        # once per frame (the same linear map as on the concatenation).
        self.in_h = nn.Linear(h_dim, hidden)
        self.in_a = nn.Linear(a_dim, hidden, bias=False)
        self.in_e = nn.Linear(e_dim, hidden, bias=False)
        self.decode = _mlp(hidden, hidden, 10, layers=1)

    def forward(self, h, f_a, f_e, tokens_a=None, tokens_e=None):
        """h [N, Dh], f_a [B, A], f_e [B, E] -> deltas [B, N, .]."""
        if torch.is_grad_enabled():     # training: the formula (its backward, fewer kernels)
            return _split(self.decode(relu(self.first_layer(h, f_a, f_e))))
        # rendering: [s_a, s_e] [N, A + E] times each frame's weights scaled by its
        # features [B, A + E, hidden], the same sum without the [B, N, A + E] products
        # (about half the network's time on the CPU)
        s = torch.cat([torch.sigmoid(self.att_a(h)), torch.sigmoid(self.att_e(h))], -1)
        w = torch.cat([f_a[:, :, None] * self.in_a.weight.T,
                       f_e[:, :, None] * self.in_e.weight.T], 1)           # [B, A + E, hidden]
        if h.device.type != "cpu":
            return _split(self.decode(relu(torch.matmul(s, w).add_(self.in_h(h)))))
        return _split(self._decode_in_blocks(s, w, self.in_h(h)))

    def _decode_in_blocks(self, s, w, h_part) -> torch.Tensor:
        """decode(relu(s @ w[b] + h_part)) [B, N, 10], one frame and DECODE_ROWS Gaussians at a
        time: the [rows, hidden] intermediates stay in the core's cache where whole
        [B, N, hidden] ones went through memory several times (the same numbers, half the
        time on the CPU). s [N, A + E], w [B, A + E, hidden], h_part [N, hidden]."""
        mid, last = self.decode[0], self.decode[-1]
        B, N, rows = w.shape[0], s.shape[0], DECODE_ROWS
        out = s.new_empty(B, N, last.out_features)
        for b in range(B):
            for n0 in range(0, N, rows):
                x = torch.addmm(h_part[n0:n0 + rows], s[n0:n0 + rows], w[b]).relu_()
                x = torch.addmm(mid.bias, x, mid.weight.T).relu_()
                torch.addmm(last.bias, x, last.weight.T, out=out[b, n0:n0 + rows])
        return out

    def first_layer(self, h, f_a, f_e) -> torch.Tensor:
        """in_h(h) + in_a(s_a * f_a) + in_e(s_e * f_e) [B, N, hidden], before its ReLU."""
        s_a, s_e = torch.sigmoid(self.att_a(h)), torch.sigmoid(self.att_e(h))   # [N, .]
        return self.in_h(h)[None] + self.in_a(s_a[None] * f_a[:, None]) \
            + self.in_e(s_e[None] * f_e[:, None])


class GatedCrossAttentionDeform(nn.Module):
    """High-frequency eye / mouth network: Gaussian features query the driving tokens
    (audio for the mouth, expression for the eyes); a gate lambda = sigma(MLP(f)) scales the
    attended signal; two residual feed-forward blocks; a decoder gives delta mean only."""

    def __init__(self, h_dim: int, d_dim: int, width: int = 32, heads: int = 2):
        super().__init__()
        self.heads, self.width = heads, width
        self.q = nn.Linear(h_dim, width)
        self.k = nn.Linear(d_dim, width)
        self.v = nn.Linear(d_dim, width)
        self.h_in = nn.Linear(h_dim, width)
        self.gate = nn.Sequential(nn.Linear(d_dim, width), _ReLU(), nn.Linear(width, width))
        self.ffn = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), _ReLU(),
                          nn.Linear(2 * width, width)) for _ in range(2))
        self.out = nn.Linear(width, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h, f, tokens):
        """h [N, Dh]; f [B, Dd] pooled driving feature; tokens [B, T, Dd]."""
        B, T, _ = tokens.shape
        N, H, C = h.shape[0], self.heads, self.width // self.heads
        q = self.q(h).reshape(N, H, C).transpose(0, 1).expand(B, H, N, C)
        k = self.k(tokens).reshape(B, T, H, C).transpose(1, 2)             # [B, H, T, C]
        v = self.v(tokens).reshape(B, T, H, C).transpose(1, 2)
        # softmax(q k^T / sqrt(C)) v in one fused call (one kernel where einsums took many)
        ctx = F.scaled_dot_product_attention(q, k, v)                      # [B, H, N, C]
        ctx = ctx.transpose(1, 2).reshape(B, N, self.width)
        lam = torch.sigmoid(self.gate(f))[:, None]                         # [B, 1, W]
        x = self.h_in(h)[None] + lam * ctx
        for block in self.ffn:
            x = x + block(x)
        return self.out(x) * MEAN_UNIT, None, None


class PlainDeform(nn.Module):
    """Ablation (--no-frequency-aware): an MLP on [h, f_a, f_e] -> delta mean, scale, rotation
    for every region."""

    def __init__(self, h_dim: int, a_dim: int, e_dim: int, hidden: int = 64):
        super().__init__()
        self.in_h = nn.Linear(h_dim, hidden)
        self.in_d = nn.Linear(a_dim + e_dim, hidden, bias=False)
        self.decode = _mlp(hidden, hidden, 10, layers=1)

    def forward(self, h, f_a, f_e, tokens_a=None, tokens_e=None):
        x = self.in_h(h)[None] + self.in_d(torch.cat([f_a, f_e], -1))[:, None]
        return _split(self.decode(relu(x)))
