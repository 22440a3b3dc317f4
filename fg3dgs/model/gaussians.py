"""One region's 3D Gaussians in canonical head space, and densification as a strategy object.

Parameters follow docs/design.md: means [N, 3], quaternions (w, x, y, z) [N, 4], log
scales [N, 3], opacity logits [N], SH coefficients [N, (d + 1)^2, 3] (DC first). A buffer
``rigid`` [N] bool marks Gaussians that move with the head only, never with the region's
deformation network: the mouth set's upper teeth (the skull carries them, not the jaw).
"""

from __future__ import annotations

import torch
from torch import nn

from ..render.sh import num_sh_bases
from .config import DensifyConfig

SH_C0 = 0.28209479177387814
PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh")


class GaussianSet(nn.Module):
    def __init__(self, means: torch.Tensor, colors: torch.Tensor, sh_degree: int,
                 scale: torch.Tensor | float, opacity: float = 0.5,
                 rigid: torch.Tensor | None = None):
        """means [N, 3]; colors [N, 3] in [0, 1]; scale: initial std per Gaussian [N] or one
        value (metres); rigid [N] bool (default none)."""
        super().__init__()
        N = means.shape[0]
        self.sh_degree = sh_degree
        sh = torch.zeros(N, num_sh_bases(sh_degree), 3)
        sh[:, 0] = (colors.clamp(0, 1) - 0.5) / SH_C0
        quats = torch.zeros(N, 4)
        quats[:, 0] = 1
        log_s = torch.log(torch.as_tensor(scale, dtype=torch.float32).expand(N)).clone()
        self.means = nn.Parameter(means.float().clone())
        self.quats = nn.Parameter(quats)
        self.log_scales = nn.Parameter(log_s[:, None].repeat(1, 3))
        self.opacity_logits = nn.Parameter(torch.logit(torch.full((N,), opacity)))
        self.sh = nn.Parameter(sh)
        self.register_buffer("rigid", torch.zeros(N, dtype=torch.bool) if rigid is None
                             else torch.as_tensor(rigid, dtype=torch.bool).clone())

    @classmethod
    def empty(cls, n: int, sh_degree: int) -> GaussianSet:
        """A set of n placeholder Gaussians to load a state dict into."""
        return cls(torch.zeros(n, 3), torch.zeros(n, 3), sh_degree, 1.0)

    def __len__(self) -> int:
        return self.means.shape[0]

    def activated(self):
        """(means, quats, scales, opacities, sh) ready for :func:`fg3dgs.render.rasterize`."""
        return (self.means, self.quats, torch.exp(self.log_scales),
                torch.sigmoid(self.opacity_logits), self.sh)

    def replace(self, keep: torch.Tensor | None = None, extra: dict | None = None):
        """Keep the rows ``keep`` [N] bool and append ``extra`` rows (name -> tensor; its
        "rigid" flags default to False); returns the new parameters so the strategy can
        rebuild the optimiser state."""
        rigid = self.rigid if keep is None else self.rigid[keep]
        if extra is not None:
            add = extra.get("rigid")
            if add is None:
                add = rigid.new_zeros(len(extra["means"]))
            rigid = torch.cat([rigid, add.to(rigid)])
        self.rigid = rigid
        new = {}
        for name in PARAMS:
            p = getattr(self, name).data
            if keep is not None:
                p = p[keep]
            if extra is not None:
                p = torch.cat([p, extra[name]])
            new[name] = p
            setattr(self, name, nn.Parameter(p))
        return new


class DensifyStrategy:
    """The 3DGS recipe: accumulate the screen-space gradient of each Gaussian's centre; every
    ``every`` steps clone small Gaussians and split large ones whose mean gradient exceeds
    the threshold, and prune transparent or huge ones. Works on one GaussianSet and keeps
    its optimiser's per-parameter Adam state in step."""

    def __init__(self, cfg: DensifyConfig, extent: float, prefix: str):
        """prefix: the optimiser groups of this set are named ``prefix + "." + param``."""
        self.cfg = cfg
        self.prefix = prefix
        self.extent = extent
        self.grad_sum = None
        self.count = None

    def _reset(self, n: int, device="cpu"):
        self.grad_sum = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The gradient statistics since the last pass, ``grad_sum`` and ``count`` [N] (empty
        before the first observation)."""
        if self.grad_sum is None:
            return {}
        return {"grad_sum": self.grad_sum, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        """Take the statistics of :meth:`state_dict` back (as they are: move them to the
        set's device first); an empty state leaves them as they were."""
        if "grad_sum" in state:
            self.grad_sum, self.count = state["grad_sum"], state["count"]

    def observe(self, gs: GaussianSet, means2d: torch.Tensor, width: int, height: int):
        """Accumulate after backward; ``means2d`` [C, N, 2] retained from the render."""
        if self.grad_sum is None or len(self.grad_sum) != len(gs):
            self._reset(len(gs), gs.means.device)
        if means2d.grad is None:
            return
        g = means2d.grad.detach().clone()
        g[..., 0] *= width / 2          # d loss / d pixel -> d loss / d NDC, as 3DGS measures
        g[..., 1] *= height / 2
        g = g.reshape(-1, len(gs), 2).norm(dim=-1)
        seen = g > 0                    # count only the views that saw the Gaussian
        self.grad_sum += g.sum(0)
        self.count += seen.sum(0)

    def step(self, step: int, gs: GaussianSet, optimizer: torch.optim.Optimizer) -> bool:
        """Densify / prune at the configured steps; returns True when the set changed."""
        c = self.cfg
        if step not in c.due_steps(step) or self.grad_sum is None:
            return False
        with torch.no_grad():
            grad = self.grad_sum / self.count.clamp(min=1)
            scales = torch.exp(gs.log_scales).max(1).values
            hot = grad >= c.grad_threshold
            room = max(0, c.max_gaussians[self.prefix] - len(gs))
            if hot.sum() > room // 2:        # split adds 1 net, clone adds 1: cap additions
                thr = torch.topk(grad, max(room // 2, 0) + 1).values[-1] if room > 1 else 1e9
                hot &= grad > thr
            small = scales <= c.percent_dense * self.extent
            clone, split = hot & small, hot & ~small
            extra = {n: [] for n in (*PARAMS, "rigid")}
            if clone.any():
                for n in extra:
                    extra[n].append(getattr(gs, n).data[clone])
            if split.any():
                for _ in range(2):
                    s = torch.exp(gs.log_scales.data[split])
                    q = nn.functional.normalize(gs.quats.data[split], dim=-1)
                    offset = _rotate(q, torch.randn_like(s) * s)
                    extra["means"].append(gs.means.data[split] + offset)
                    extra["quats"].append(gs.quats.data[split])
                    extra["log_scales"].append(gs.log_scales.data[split] - torch.log(
                        torch.tensor(1.6)))
                    extra["opacity_logits"].append(gs.opacity_logits.data[split])
                    extra["sh"].append(gs.sh.data[split])
                    extra["rigid"].append(gs.rigid[split])
            extra = {n: torch.cat(v) if v else getattr(gs, n).data[:0] for n, v in
                     extra.items()}
            keep = ~split
            keep &= torch.sigmoid(gs.opacity_logits.data) > c.min_opacity
            keep &= scales < 0.1 * self.extent
            gs.replace(keep, extra)
            _rebuild_optimizer(optimizer, gs, self.prefix, keep, len(extra["means"]))
            if c.reset_opacity_every and step % c.reset_opacity_every == 0:
                gs.opacity_logits.data.clamp_(max=float(torch.logit(torch.tensor(0.01))))
        self._reset(len(gs), gs.means.device)
        return True


class DensifyRegions:
    """Densification of a model's regions as one strategy object: a :class:`DensifyStrategy`
    per region (each with its optimiser groups named ``region + "." + param``), whose
    statistics :meth:`state_dict` gives as ``"<region>.grad_sum"`` / ``"<region>.count"``
    for an exact resume."""

    def __init__(self, cfg: DensifyConfig, extent: float, regions):
        self.strategies = {r: DensifyStrategy(cfg, extent, r) for r in regions}

    def step_post_backward(self, step: int, gaussians: dict[str, GaussianSet],
                           means2d: dict[str, list[torch.Tensor]],
                           optimizer: torch.optim.Optimizer, width: int, height: int) -> bool:
        """After a step's backward: accumulate each region's ``means2d`` ([C, N, 2] each,
        retained from its renders), then densify / prune where ``step`` (1-based) is due.
        True when a set changed (the model's caches are then stale)."""
        for r, strat in self.strategies.items():
            for m in means2d[r]:
                strat.observe(gaussians[r], m, width, height)
        return self.run_pass(step, gaussians, optimizer)

    def run_pass(self, step: int, gaussians: dict[str, GaussianSet],
                 optimizer: torch.optim.Optimizer) -> bool:
        """One pass over every region at ``step`` with the statistics gathered so far."""
        changed = False
        for r, strat in self.strategies.items():
            changed |= strat.step(step, gaussians[r], optimizer)
        return changed

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{r}.{k}": v for r, s in self.strategies.items()
                for k, v in s.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        for r, s in self.strategies.items():
            s.load_state_dict({k[len(r) + 1:]: v for k, v in state.items()
                               if k.startswith(r + ".")})


def _rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate v [N, 3] by unit quaternions q [N, 4] (w, x, y, z)."""
    w, xyz = q[:, :1], q[:, 1:]
    t = 2 * torch.cross(xyz, v, dim=-1)
    return v + w * t + torch.cross(xyz, t, dim=-1)


def _rebuild_optimizer(opt: torch.optim.Optimizer, gs: GaussianSet, prefix: str,
                       keep: torch.Tensor, n_extra: int):
    """Point the optimiser's groups at the new parameters, keeping the Adam moments of kept
    rows and starting new rows at zero."""
    for group in opt.param_groups:
        owner, _, name = group.get("name", "").rpartition(".")
        if owner != prefix or name not in PARAMS:
            continue
        old = group["params"][0]
        new = getattr(gs, name)
        state = opt.state.pop(old, None)
        group["params"][0] = new
        if state:
            for k in ("exp_avg", "exp_avg_sq"):
                v = state[k]
                state[k] = torch.cat([v[keep], v.new_zeros((n_extra, *v.shape[1:]))])
            opt.state[new] = state
