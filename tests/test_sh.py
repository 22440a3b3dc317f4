"""Spherical harmonics: an orthonormal real basis in the 3DGS ordering and signs."""

import math

import torch

from fg3dgs.render.sh import eval_sh, rgb_to_sh0, sh_basis, sh_basis_reference, sh_to_rgb


def _sphere_quadrature(n_theta=64, n_phi=128):
    """Gauss-Legendre in cos(theta) x uniform phi: exact for these low-degree products."""
    import numpy as np
    x, w = np.polynomial.legendre.leggauss(n_theta)
    phi = torch.arange(n_phi, dtype=torch.float64) * (2 * math.pi / n_phi)
    ct = torch.tensor(x).repeat_interleave(n_phi)
    st = torch.sqrt(1 - ct ** 2)
    ph = phi.repeat(n_theta)
    dirs = torch.stack([st * torch.cos(ph), st * torch.sin(ph), ct], dim=-1)
    weights = torch.tensor(w).repeat_interleave(n_phi) * (2 * math.pi / n_phi)
    return dirs, weights


def test_basis_is_orthonormal():
    dirs, w = _sphere_quadrature()
    for basis in (sh_basis, sh_basis_reference):
        Y = basis(3, dirs)                                # [P, 16]
        gram = (Y * w[:, None]).T @ Y
        assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=1e-9)


def test_polynomial_basis_equals_the_reference_with_its_gradients():
    """The fast form (monomials and one matrix product) gives the function-by-function
    formulas' values and gradients, at every degree, for batched directions of any length."""
    gen = torch.Generator().manual_seed(4)
    for degree in range(1, 4):
        d = (3 * torch.randn(2, 50, 3, generator=gen, dtype=torch.float64)).requires_grad_()
        up = torch.randn(2, 50, (degree + 1) ** 2, generator=gen, dtype=torch.float64)
        fast = sh_basis(degree, d)
        g_fast, = torch.autograd.grad((fast * up).sum(), d)
        ref = sh_basis_reference(degree, d)
        g_ref, = torch.autograd.grad((ref * up).sum(), d)
        torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
        torch.testing.assert_close(g_fast, g_ref, atol=1e-12, rtol=0)
    d = torch.randn(3, 3, dtype=torch.float64)
    assert torch.equal(sh_basis(0, d), sh_basis_reference(0, d))
    assert sh_basis(3, torch.randn(7, 3)).dtype == torch.float32


def test_polynomial_basis_stays_small_in_kernel_count():
    """A training step is bound by kernel launches on a GPU: the degree-3 basis and its
    backward take a handful of operations, not one per monomial term."""
    from fg3dgs.bench.ops import OpCounter

    d = torch.randn(1, 100, 3, requires_grad=True)
    sh_basis(3, d)          # builds the cached plan outside the count
    with OpCounter() as fast_ops:
        sh_basis(3, d).sum().backward()
    with OpCounter() as ref_ops:
        sh_basis_reference(3, d).sum().backward()
    fast, ref = fast_ops.total, ref_ops.total
    assert fast <= 30 and 5 * fast < ref, (fast, ref)


def test_known_values_and_signs():
    # The 3DGS convention: Y_1 = -C1 y, Y_2 = C1 z, Y_3 = -C1 x.
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    Y = sh_basis(1, d)
    c1 = 0.4886025119029199
    assert torch.allclose(Y[:, 1:], torch.tensor([[0, c1, 0], [0, 0, -c1], [-c1, 0, 0]],
                                                 dtype=torch.float64))


def test_direction_is_normalised_and_degree_uses_first_coefficients():
    coeffs = torch.randn(5, 16, 3, dtype=torch.float64)
    d = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(eval_sh(2, d, coeffs), eval_sh(2, 7.0 * d, coeffs[:, :9]))


def test_dc_round_trip_and_clamp():
    rgb = torch.rand(10, 3, dtype=torch.float64)
    sh = rgb_to_sh0(rgb)[:, None]
    d = torch.randn(10, 3, dtype=torch.float64)
    assert torch.allclose(sh_to_rgb(0, d, sh), rgb)
    assert (sh_to_rgb(0, d, -10 * torch.ones(10, 1, 3)) == 0).all()
