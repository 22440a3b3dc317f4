"""FID (Heusel et al. 2017) with pytorch-fid's Inception-v3 and its published weights.

FID = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)), the Frechet distance between
Gaussians fitted (mean, unbiased covariance) to the 2048-d pool_3 features of two image sets
(:mod:`fg3dgs.perceptual.inception`).

Two ways to the trace of the matrix square root, which agree (a test checks):

- :func:`frechet_distance`, the reference: ``scipy.linalg.sqrtm`` of S_r S_f as pytorch-fid
  computes it (on a non-finite result, again with 1e-6 added to both diagonals; an imaginary
  part is dropped when the diagonal's is below 1e-3, else an error);
- :func:`frechet_distance_of_features`, used by :func:`fid`: the eigenvalues of S_r S_f are
  real and non-negative (it is similar to S_r^(1/2) S_f S_r^(1/2)), so tr (S_r S_f)^(1/2) is
  the sum of their square roots, the nuclear norm of A B^T for the centred, 1/sqrt(n - 1)
  scaled feature matrices A [n_r, d], B [n_f, d]: an n_r x n_f SVD instead of a 2048 x 2048
  ``sqrtm`` when there are fewer images than feature dimensions (then both covariances are
  singular and the reference needs its offset), a symmetric eigendecomposition otherwise.

With a few hundred frames FID is biased upwards (its expectation falls with the number of
images); compare numbers only at equal counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .inception import FEATURES, SIZE, FIDInceptionV3
from .weights import check_layout, hub_checkpoints, read_state_dict

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)


def default_weights() -> Path:
    """Where pytorch-fid caches its Inception weights."""
    return hub_checkpoints() / WEIGHTS_FILE


def _obtain() -> str:
    return (f"FID needs pytorch-fid's Inception weights {WEIGHTS_FILE} ({WEIGHTS_URL}; "
            f"pytorch-fid downloads them to {default_weights()} on first use). Download them "
            "where the network is open and put the file there, or give fg3dgs eval its path: "
            "--fid-weights PATH.")


def load_fid_inception(path: str | Path | None = None,
                       device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID Inception network with pytorch-fid's weights (default :func:`default_weights`),
    frozen, in eval mode. Every parameter and running statistic must be there with its shape
    (BatchNorm's ``num_batches_tracked`` counters may be absent). Raises
    :class:`~fg3dgs.perceptual.WeightsUnavailable`."""
    path = Path(path) if path is not None else default_weights()
    what = f"pytorch-fid's Inception-v3 ({WEIGHTS_FILE})"
    state = read_state_dict(path, what, _obtain())
    net = FIDInceptionV3()
    want = {k: v.shape for k, v in net.state_dict().items()}
    full = net.state_dict()
    full.update(check_layout(state, want, path, what, _obtain(),
                             may_lack=("num_batches_tracked",)))
    net.load_state_dict(full)
    net.weights = str(path)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(device)


@torch.no_grad()
def inception_features(net: FIDInceptionV3, images: np.ndarray, batch: int = 32,
                       size: int = SIZE) -> np.ndarray:
    """pool_3 features [N, 2048] (float64) of images [N, H, W, 3] float in [0, 1]."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3], got {images.shape}")
    device = next(net.parameters()).device
    out = []
    for a in range(0, len(images), batch):
        x = torch.from_numpy(images[a:a + batch]).to(device).permute(0, 3, 1, 2)
        out.append(net.pool3(x, size).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURES))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """The reference Frechet distance of N(mu1, sigma1) and N(mu2, sigma2) (means [d],
    covariances [d, d]) through ``scipy.linalg.sqrtm``, as pytorch-fid computes it."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1),) * 2:
        raise ValueError(f"means {mu1.shape}, {mu2.shape} and covariances {s1.shape}, "
                         f"{s2.shape} do not fit together")
    root = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():             # a singular product: offset both diagonals
        offset = np.eye(len(mu1)) * eps
        root = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError("the square root of the covariance product has an imaginary "
                             f"part of {np.abs(root.imag).max():.3g}; the covariances are not "
                             "valid (symmetric positive semi-definite)")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance of Gaussians fitted to feature sets a [n_a, d] and b [n_b, d]
    (n >= 2 each; mean and unbiased covariance), without a general matrix square root."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected feature sets [n, d] of one d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("a covariance needs at least 2 samples in each set, got "
                         f"{len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = (a - mu_a) / np.sqrt(len(a) - 1)          # S_a = ca^T ca
    cb = (b - mu_b) / np.sqrt(len(b) - 1)
    if min(len(a), len(b)) <= a.shape[1]:
        root_trace = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    else:
        sa, sb = ca.T @ ca, cb.T @ cb
        w, v = np.linalg.eigh(sa)
        half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T          # S_a^(1/2)
        root_trace = np.sqrt(np.clip(np.linalg.eigvalsh(half @ sb @ half), 0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + (ca ** 2).sum() + (cb ** 2).sum() - 2 * root_trace)


def fid(real: np.ndarray, fake: np.ndarray, net: FIDInceptionV3 | None = None,
        batch: int = 32, size: int = SIZE) -> float:
    """FID between image sets real and fake [N, H, W, 3] float in [0, 1] (at least 2 each);
    ``net`` defaults to :func:`load_fid_inception` with the default weights."""
    net = net if net is not None else load_fid_inception()
    return frechet_distance_of_features(inception_features(net, real, batch, size),
                                        inception_features(net, fake, batch, size))
