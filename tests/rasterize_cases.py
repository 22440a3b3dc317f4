"""Small random Gaussian scenes covering the rasterizer's edge cases (shared by tests)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

WIDTH, HEIGHT = 37, 29   # not multiples of the tile size, not square


@dataclass
class Case:
    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    viewmats: torch.Tensor
    Ks: torch.Tensor
    width: int = WIDTH
    height: int = HEIGHT
    sh_degree: int | None = None
    background: torch.Tensor | None = None

    def params(self):
        """The differentiable inputs, in rasterize() order."""
        p = [self.means, self.quats, self.scales, self.opacities, self.colors]
        return p + ([self.background] if self.background is not None else [])


def _look_at(eye, target=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """World-to-camera [4, 4] (OpenCV: y down) for a camera at ``eye`` looking at target."""
    eye, target = torch.tensor(eye), torch.tensor(target)
    fwd = target - eye
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), fwd)
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd])            # rows: camera axes in world
    vm = torch.eye(4)
    vm[:3, :3] = R
    vm[:3, 3] = -R @ eye
    return vm


def _intrinsics(C: int, f: float = 30.0, width: int = WIDTH, height: int = HEIGHT):
    K = torch.tensor([[f, 0.0, width / 2 + 0.7], [0.0, f * 1.1, height / 2 - 0.4],
                      [0.0, 0.0, 1.0]])
    return K.expand(C, 3, 3).clone()


def make_case(kind: str, seed: int = 0) -> Case:
    """Build one scene; ``kind`` names the situation it exercises."""
    g = torch.Generator().manual_seed(seed)

    def rand(*s):
        return torch.rand(*s, generator=g)

    def randn(*s):
        return torch.randn(*s, generator=g)

    n = {"empty": 0, "single": 1, "dense": 150}.get(kind, 60)
    means = randn(n, 3) * 0.35
    quats = randn(n, 4)
    scales = torch.exp(rand(n, 3) * 2.5 - 4.5)       # ~1 cm .. 12 cm
    opacities = 0.05 + 0.95 * rand(n)
    colors = rand(n, 3)
    viewmats = _look_at((0.1, -0.2, -2.5))[None]
    case = Case(means, quats, scales, opacities, colors, viewmats, _intrinsics(1))

    if kind == "behind":
        # Some Gaussians behind the camera and some between it and the near plane.
        means[: n // 3, 2] = -2.5 - rand(n // 3) * 0.5
        means[n // 3: n // 2, 2] = -2.5 + 0.005 * rand(n // 2 - n // 3)
    elif kind == "offscreen":
        # Beyond the image borders, far enough for gsplat's field-of-view clamp to act.
        means[:, 0] = (rand(n) * 2 - 1) * 2.5
        means[:, 1] = (rand(n) * 2 - 1) * 2.0
        scales = scales * 3
    elif kind == "tiny_huge":
        scales[: n // 2] = 1e-5 * (1 + rand(n // 2, 3))
        scales[n // 2: n // 2 + 4] = 0.8 + rand(4, 3)  # each covers the whole image
    elif kind == "degenerate":
        scales[:, 0] = 1e-8                          # flat discs and needles
        scales[: n // 2, 1] = 1e-8
    elif kind == "dense":
        # Many opaque, overlapping Gaussians: pixels reach the 1e-4 transmittance stop.
        means = randn(n, 3) * 0.08
        scales = 0.05 + 0.1 * rand(n, 3)
        opacities = 0.6 + 0.4 * rand(n)
        opacities[:5] = 1.0                          # alpha clamped at 0.999
    elif kind == "saturated":
        # Opacity 1 and wide footprints: alpha is clamped at 0.999 over many pixels, where
        # it passes no gradient to opacity, conic and position.
        means[:4] = randn(4, 3) * 0.05
        scales[:4] = 2.0 + rand(4, 3)
        opacities[:4] = 1.0
    elif kind == "batch":
        eyes = [(0.0, 0.0, -2.5), (1.5, -0.5, -2.0), (-2.0, 0.3, 0.5)]
        viewmats = torch.stack([_look_at(e) for e in eyes])
        case.viewmats, case.Ks = viewmats, _intrinsics(3)
        case.background = rand(3, 3)
    elif kind.startswith("sh"):
        degree = int(kind[2:])
        case.sh_degree = degree
        colors = randn(n, (degree + 1) ** 2 + 1, 3) * 0.4   # one spare coefficient
        eyes = [(0.3, 0.1, -2.5), (-1.8, -0.6, -1.6)]
        case.viewmats = torch.stack([_look_at(e) for e in eyes])
        case.Ks = _intrinsics(2)
    elif kind == "background":
        case.background = rand(3)
    elif kind not in ("random", "empty", "single"):
        raise ValueError(kind)
    case.means, case.scales, case.opacities, case.colors = means, scales, opacities, colors
    return case


KINDS = ["random", "behind", "offscreen", "tiny_huge", "degenerate", "dense", "saturated", "empty",
         "single", "batch", "sh0", "sh1", "sh2", "sh3", "background"]

