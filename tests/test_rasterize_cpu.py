"""The CPU backend against the brute-force reference: forward output and gradients."""

import pytest
import torch
from rasterize_cases import KINDS, make_case

from fg3dgs.render import rasterize
from fg3dgs.render.reference import rasterize_reference

SEEDS = (0, 1, 2)


def _render_both(case):
    """(fast rgb, alpha, grads), (reference rgb, alpha, grads) for a random linear loss."""
    gen = torch.Generator().manual_seed(123)
    C = case.viewmats.shape[0]
    w_rgb = torch.randn(C, case.height, case.width, 3, generator=gen, dtype=torch.float64)
    w_a = torch.randn(C, case.height, case.width, 1, generator=gen, dtype=torch.float64)
    out = []
    for fn, dtype in ((rasterize, torch.float32), (rasterize_reference, torch.float64)):
        params = [p.detach().to(dtype).requires_grad_(True) for p in case.params()]
        means, quats, scales, opacities, colors = params[:5]
        background = params[5] if len(params) > 5 else None
        if fn is rasterize:
            rgb, alpha, _ = rasterize(means, quats, scales, opacities, colors, case.viewmats,
                                      case.Ks, case.width, case.height,
                                      sh_degree=case.sh_degree, background=background,
                                      backend="cpu")
        else:
            rgb, alpha = rasterize_reference(means, quats, scales, opacities, colors,
                                             case.viewmats.double(), case.Ks.double(),
                                             case.width, case.height,
                                             sh_degree=case.sh_degree, background=background)
        loss = (rgb.double() * w_rgb).sum() + (alpha.double() * w_a).sum()
        if loss.requires_grad:
            loss.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        out.append((rgb.detach().double(), alpha.detach().double(),
                    [g.double() for g in grads]))
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_gradients_match_reference(kind, seed):
    case = make_case(kind, seed)
    (rgb, alpha, grads), (rgb_ref, alpha_ref, grads_ref) = _render_both(case)
    for got, ref in ((rgb, rgb_ref), (alpha, alpha_ref)):
        diff = (got - ref).abs()
        assert diff.mean() < 1e-4, f"mean abs diff {diff.mean():.2e}"
        assert diff.max() < 0.02, f"max abs diff {diff.max():.2e}"
    names = ["means", "quats", "scales", "opacities", "colors", "background"]
    for name, g, g_ref in zip(names, grads, grads_ref):
        ref_norm = g_ref.norm()
        if ref_norm < 1e-8:
            assert g.norm() < 1e-6, f"{name}: reference gradient is zero, ours {g.norm():.2e}"
            continue
        rel = (g - g_ref).norm() / ref_norm
        assert rel < 1e-2, f"{name}: relative gradient error {rel:.2e}"


def test_scenes_exercise_their_edge_cases():
    """Guard the test scenes themselves: each must actually contain what it is named for."""
    dense = make_case("dense")
    rgb, alpha, info = rasterize(dense.means, dense.quats, dense.scales, dense.opacities,
                                 dense.colors, dense.viewmats, dense.Ks, dense.width,
                                 dense.height)
    assert (1 - alpha).min() < 1e-3               # transmittance stop reached
    behind = make_case("behind")
    _, _, info = rasterize(behind.means, behind.quats, behind.scales, behind.opacities,
                           behind.colors, behind.viewmats, behind.Ks, behind.width,
                           behind.height)
    assert (info["depths"] < 0).any() and ((info["depths"] > 0) & (info["depths"] < 0.01)).any()
    assert (info["radii"][info["depths"] < 0.01] == 0).all()
    off = make_case("offscreen")
    _, _, info = rasterize(off.means, off.quats, off.scales, off.opacities, off.colors,
                           off.viewmats, off.Ks, off.width, off.height)
    m2 = info["means2d"][info["radii"].amax(-1) > 0]
    outside = (m2[:, 0] < 0) | (m2[:, 0] > off.width) | (m2[:, 1] < 0) | (m2[:, 1] > off.height)
    assert outside.any()                           # visible Gaussians centred off screen


def test_batched_equals_one_camera_at_a_time():
    case = make_case("batch")
    args = (case.means, case.quats, case.scales, case.opacities, case.colors)
    rgb, alpha, _ = rasterize(*args, case.viewmats, case.Ks, case.width, case.height,
                              background=case.background)
    for c in range(case.viewmats.shape[0]):
        rgb1, alpha1, _ = rasterize(*args, case.viewmats[c], case.Ks[c], case.width,
                                    case.height, background=case.background[c])
        assert rgb1.shape == (case.height, case.width, 3)
        assert torch.equal(rgb1, rgb[c]) and torch.equal(alpha1, alpha[c])


@pytest.mark.parametrize("tile_size", [4, 8, 32])
def test_tile_size_does_not_change_the_image(tile_size):
    case = make_case("dense", 1)
    args = (case.means, case.quats, case.scales, case.opacities, case.colors, case.viewmats,
            case.Ks, case.width, case.height)
    rgb16, _, _ = rasterize(*args)
    rgb, _, _ = rasterize(*args, tile_size=tile_size)
    assert torch.equal(rgb, rgb16)


def test_means2d_gradient_is_exposed_for_densification():
    case = make_case("random")
    means = case.means.clone().requires_grad_(True)
    rgb, _, info = rasterize(means, case.quats, case.scales, case.opacities, case.colors,
                             case.viewmats, case.Ks, case.width, case.height)
    info["means2d"].retain_grad()
    rgb.sum().backward()
    g = info["means2d"].grad
    assert g.shape == (1, case.means.shape[0], 2)
    assert g.abs().sum() > 0
    assert (g[info["radii"].amax(-1) == 0] == 0).all()


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_transmittance_stop_excludes_the_stopping_gaussian(backend):
    """Four wide layers of opacity 0.95, centred on a pixel centre: after three layers T is
    0.05^3 = 1.25e-4; the fourth would bring it to 6.25e-6 <= 1e-4, so the pixel stops
    without it."""
    f = 50.0
    K = torch.tensor([[f, 0.0, 8.0], [0.0, f, 8.0], [0.0, 0.0, 1.0]])
    depths = torch.tensor([1.0, 1.1, 1.2, 1.3])
    # Means on the optical axis project to (8, 8), the corner of pixel (7, 7); shift half a
    # pixel so they land on its centre (7.5, 7.5).
    means = torch.stack([-0.5 * depths / f, -0.5 * depths / f, depths], dim=-1)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(4, 1)
    scales = torch.full((4, 3), 5.0)
    opacities = torch.full((4,), 0.95)
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    bg = torch.tensor([0.5, 0.5, 0.5])
    if backend == "cpu":
        rgb, alpha, _ = rasterize(means, quats, scales, opacities, colors, torch.eye(4), K,
                                  16, 16, background=bg, backend="cpu")
    else:
        rgb, alpha = rasterize_reference(means.double(), quats.double(), scales.double(),
                                         opacities.double(), colors.double(),
                                         torch.eye(4, dtype=torch.float64)[None],
                                         K.double()[None], 16, 16, background=bg.double())
        rgb, alpha = rgb[0], alpha[0]
    T = [1.0, 0.05, 0.0025]
    expected = sum(0.95 * t * colors[i].double() for i, t in enumerate(T)) \
        + 0.05 ** 3 * bg.double()
    assert torch.allclose(rgb[7, 7].double(), expected, atol=1e-6), (rgb[7, 7], expected)
    assert abs(float(alpha[7, 7]) - (1 - 0.05 ** 3)) < 1e-6


@pytest.mark.parametrize("n_parts", [1, 2, 3, 8])
def test_tiles_are_dealt_into_balanced_parts(n_parts):
    """Every tile lands in exactly one part, and the parts' work differs by at most one
    tile's (greedy, heaviest first). A heaviest-first order split into contiguous halves, as
    numba's OpenMP layer splits a prange, gave one thread all the work of a small region."""
    import numpy as np

    from fg3dgs.render.cpu.kernels import balance_tiles

    rng = np.random.default_rng(n_parts)
    counts = np.where(rng.random(300) < 0.3, rng.integers(1, 500, 300), 0).astype(np.int64)
    work, parts = balance_tiles(counts, n_parts)
    assert sorted(work.tolist()) == list(range(len(counts)))
    assert parts[0] == 0 and parts[-1] == len(counts) and np.all(np.diff(parts) >= 0)
    load = [int((counts[work[a:b]] + 8).sum()) for a, b in zip(parts[:-1], parts[1:])]
    assert max(load) - min(load) <= counts.max() + 8
    if n_parts == 2:   # the old contiguous split of a heaviest-first order: 100 % vs 0 %
        assert min(load) > 0.45 * sum(load)
