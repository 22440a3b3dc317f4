"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), version 0.1 with the AlexNet trunk, as the ``lpips`` package computes it.

Two published files, loaded key for key:

- the trunk: torchvision's ImageNet AlexNet, ``alexnet-owt-7be5be79.pth``; of its
  ``features`` stack (conv at indices 0, 3, 6, 8, 10, each followed by a ReLU; 3x3 / 2 max
  pools at 2 and 5) the five ReLU outputs are used. Its ``classifier.*`` keys are ignored.
- the calibration: the lpips package's ``weights/v0.1/alex.pth``, five 1x1 convolutions
  without bias, ``lin{k}.model.1.weight`` of shape [1, C_k, 1, 1], C = 64, 192, 384, 256, 256
  (index 1 because a dropout sits at index 0 of each ``model``).

The distance of images x0, x1 in [0, 1], [B, 3, H, W]: both go to [-1, 1] and through the
scaling layer ((x - shift) / scale, the ImageNet statistics in that range); at each of the five
layers the features are divided by their channel norm (+ 1e-10), their squared difference is
weighted by the layer's 1x1 convolution and averaged over space; the five are summed ([B]).
Inputs need at least 32 px a side (the trunk's last layers work on 1x1 maps there).

The weights cannot be downloaded here: without them LPIPS is reported unavailable, never
replaced by another network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from .weights import check_layout, hub_checkpoints, read_state_dict

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_URL = "https://download.pytorch.org/models/" + BACKBONE_FILE
LINEAR_FILE = "lpips_alex_v0.1.pth"          # our name for lpips/weights/v0.1/alex.pth
VERSION = "0.1"
# torchvision's AlexNet ``features``: index of each conv and (in, out, kernel, stride, padding)
ALEX_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
              8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}
ALEX_POOLS = (2, 5)                           # max pool 3 / 2 before these indices
CHANNELS = tuple(c[1] for c in ALEX_CONVS.values())        # 64, 192, 384, 256, 256
LINEAR_KEY = "lin{}.model.1.weight"
SHIFT = (-0.030, -0.088, -0.188)             # lpips' ScalingLayer, for inputs in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
MIN_SIZE = 32


def default_backbone() -> Path:
    """Where torchvision caches the AlexNet weights."""
    return hub_checkpoints() / BACKBONE_FILE


def lpips_package_weights() -> Path | None:
    """``lpips/weights/v0.1/alex.pth`` of an installed lpips package (found without importing
    it), or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "weights" / f"v{VERSION}" / "alex.pth"


def default_linear() -> Path:
    """The lpips package's alex.pth where that package is installed, else
    ``hub_checkpoints()/lpips_alex_v0.1.pth``."""
    return lpips_package_weights() or hub_checkpoints() / LINEAR_FILE


def _obtain_backbone() -> str:
    return (f"LPIPS needs torchvision's ImageNet AlexNet weights {BACKBONE_FILE} ({BACKBONE_URL};"
            f" torchvision.models.alexnet(weights='DEFAULT') downloads them to "
            f"{default_backbone()}). Download them where the network is open and put the file "
            "there (training looks only there), or give fg3dgs eval its path: "
            "--lpips-backbone PATH.")


def _obtain_linear() -> str:
    return ("LPIPS needs its v0.1 AlexNet calibration layers, lpips/weights/v0.1/alex.pth of "
            "the lpips package (pip install lpips, or richzhang/PerceptualSimilarity on "
            f"GitHub). Install the package where it can be, or copy that file to "
            f"{hub_checkpoints() / LINEAR_FILE}, or give fg3dgs eval its path: "
            "--lpips-linear PATH.")


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet ``features`` up to its last ReLU (module indices as in the
    published file); returns the five ReLU outputs [B, C_k, h_k, w_k]."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout, k, s, p) in ALEX_CONVS.items():
            if len(layers) < i:                     # a max pool between conv + ReLU pairs
                layers.append(nn.MaxPool2d(3, 2))
            layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
        assert [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)] == \
            list(ALEX_POOLS)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                out.append(x)
        return out


class LPIPS(nn.Module):
    """LPIPS v0.1, AlexNet. ``forward(x0, x1)``: images [B, 3, H, W] in [0, 1] (H, W >= 32)
    -> distances [B] (0 for identical images). Differentiable in both inputs."""

    def __init__(self):
        super().__init__()
        self.trunk = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.weights: dict[str, str] = {}           # the files it was loaded from

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        if x0.shape != x1.shape or x0.dim() != 4 or x0.shape[1] != 3:
            raise ValueError("LPIPS compares two image batches [B, 3, H, W] of one shape, got "
                             f"{tuple(x0.shape)} and {tuple(x1.shape)}")
        if min(x0.shape[2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS needs images of at least {MIN_SIZE} px a side, got "
                             f"{tuple(x0.shape[2:])}")
        # both batches through the trunk in one pass: half the kernel launches of two
        # (a training step with this loss is bound by them on a GPU)
        B = x0.shape[0]
        total = 0
        for lin, f in zip(self.lins, self.trunk(self._scaled(torch.cat([x0, x1])))):
            a, b = _unit(f).split(B)
            total = total + lin((a - b) ** 2).mean((2, 3))  # [B, 1]
        return total[:, 0]

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        return ((2 * x - 1) - self.shift) / self.scale


def _unit(f: torch.Tensor) -> torch.Tensor:
    """Features divided by their norm over channels, as lpips' ``normalize_tensor`` (where a
    ReLU output is zero in every channel its gradient is masked by that ReLU)."""
    return f / (torch.sqrt((f ** 2).sum(1, keepdim=True)) + 1e-10)


def lpips_reference(net: LPIPS, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The same distance spelled out one image, one layer and one channel at a time (the
    slow, obviously correct version :class:`LPIPS` is tested against). [B]."""
    out = []
    for a, b in zip(x0, x1):
        fa = net.trunk(net._scaled(a[None]))
        fb = net.trunk(net._scaled(b[None]))
        total = 0.0
        for lin, u, v in zip(net.lins, fa, fb):
            w = lin.weight[0, :, 0, 0]
            nu = torch.sqrt((u[0] ** 2).sum(0)) + 1e-10     # [h, w]
            nv = torch.sqrt((v[0] ** 2).sum(0)) + 1e-10
            layer = 0.0
            for c in range(u.shape[1]):
                layer = layer + w[c] * (u[0, c] / nu - v[0, c] / nv) ** 2
            total = total + layer.mean()
        out.append(total)
    return torch.stack(out)


def load_lpips(backbone: str | Path | None = None, linear: str | Path | None = None,
               device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS (v0.1, AlexNet) with the published weights, frozen, in eval mode, on ``device``.

    ``backbone``: torchvision's ``alexnet-owt-7be5be79.pth`` (default
    :func:`default_backbone`); ``linear``: lpips' ``weights/v0.1/alex.pth`` (default
    :func:`default_linear`). Raises :class:`~fg3dgs.perceptual.WeightsUnavailable` naming the
    file, what is wrong and how to obtain it."""
    backbone = Path(backbone) if backbone is not None else default_backbone()
    linear = Path(linear) if linear is not None else default_linear()
    net = LPIPS()
    what = f"torchvision's AlexNet ({BACKBONE_FILE})"
    state = read_state_dict(backbone, what, _obtain_backbone())
    want = {k: v.shape for k, v in net.trunk.state_dict().items()}
    net.trunk.load_state_dict(check_layout(state, want, backbone, what, _obtain_backbone(),
                                           ignored=("classifier.",)))
    what = f"the LPIPS v{VERSION} AlexNet linear layers (lpips/weights/v{VERSION}/alex.pth)"
    state = read_state_dict(linear, what, _obtain_linear())
    want = {LINEAR_KEY.format(k): torch.Size((1, c, 1, 1)) for k, c in enumerate(CHANNELS)}
    lins = check_layout(state, want, linear, what, _obtain_linear())
    net.lins.load_state_dict({f"{k}.weight": lins[LINEAR_KEY.format(k)]
                              for k in range(len(CHANNELS))})
    net.weights = {"backbone": str(backbone), "linear": str(linear)}
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


def patch_pairs(a: torch.Tensor, b: torch.Tensor, corners, size: int):
    """Square crops of two image batches [B, H, W, 3] at the same places: ``corners`` a
    sequence of (y, x) top-left corners -> two batches [B * len(corners), 3, size, size] for
    :class:`LPIPS`."""
    def crop(img):
        return torch.cat([img[:, y:y + size, x:x + size] for y, x in corners]).permute(0, 3, 1, 2)

    return crop(a), crop(b)


__all__ = ["LPIPS", "AlexNetFeatures", "load_lpips", "lpips_reference", "default_backbone",
           "default_linear", "patch_pairs"]
