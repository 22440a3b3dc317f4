"""The textured-triangle rasterizer against its numpy reference."""

import numpy as np
import pytest

from fg3dgs.synth.raster import (
    downsample,
    downsample_labels,
    downsample_labels_reference,
    downsample_reference,
    rasterize_reference,
    render,
)


def _scene(seed, n=40, size=(37, 29)):
    rng = np.random.default_rng(seed)
    w, h = size
    V = 3 * n
    xy = rng.uniform(-8, [w + 8, h + 8], size=(V, 2))
    depth = rng.uniform(0.5, 3.0, V)
    tris = np.arange(V, dtype=np.int32).reshape(n, 3)
    tris[::2] = tris[::2, ::-1]                    # both windings
    uv = rng.uniform(0, 16, size=(V, 2))
    colors = rng.uniform(0, 1, size=(V, 3)).astype(np.float32)
    textured = rng.uniform(size=n) < 0.5
    labels = rng.integers(1, 5, size=n).astype(np.uint8)
    texture = rng.uniform(0, 1, size=(16, 16, 3)).astype(np.float32)
    return xy, depth, tris, uv, colors, textured, labels, texture, w, h


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference(seed):
    args = _scene(seed)
    rgb, z, lab = render(*args, background=(0.2, 0.3, 0.4))
    rgb_r, z_r, lab_r = rasterize_reference(*args, background=(0.2, 0.3, 0.4))
    assert np.array_equal(np.isinf(z), np.isinf(z_r))
    assert (lab == lab_r).mean() > 0.999            # ties at shared depths may differ
    same = lab == lab_r
    assert np.abs(rgb - rgb_r)[same].max() < 1e-4
    assert np.allclose(z[np.isfinite(z)], z_r[np.isfinite(z_r)])
    assert (lab > 0).mean() > 0.3


def test_perspective_correct_texture_and_occlusion():
    # A quad textured with a horizontal ramp, tilted in depth: texel u at the pixel centre
    # must follow perspective, not screen-space, interpolation.
    tex = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (4, 1, 3))
    xy = np.array([[0, 0], [32, 0], [32, 8], [0, 8]], float)
    depth = np.array([1.0, 3.0, 3.0, 1.0])
    uv = np.array([[0, 2], [64, 2], [64, 2], [0, 2]], float)
    tris = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    rgb, _, _ = render(xy, depth, tris, uv, np.zeros((4, 3), np.float32), [True, True],
                       [1, 1], tex, 32, 8)
    # Screen-space middle (x = 16) is at depth 1.5 -> texture parameter 0.25 of the way.
    assert abs(rgb[4, 16, 0] - 0.25 * 64 / 64) < 0.03
    # A nearer coloured triangle hides the quad.
    xy2 = np.vstack([xy, [[4, 0], [12, 0], [8, 8]]])
    depth2 = np.concatenate([depth, [0.5, 0.5, 0.5]])
    cols = np.zeros((7, 3), np.float32)
    cols[4:] = [1, 0, 0]
    tris2 = np.vstack([tris, [[4, 5, 6]]]).astype(np.int32)
    rgb2, _, lab2 = render(xy2, depth2, tris2, np.vstack([uv, np.zeros((3, 2))]), cols,
                           [True, True, False], [1, 1, 2], tex, 32, 8)
    assert lab2[2, 8] == 2 and np.allclose(rgb2[2, 8], [1, 0, 0])


def test_downsample_is_a_box_filter():
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.array_equal(downsample(img, 2), [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_downsample_matches_its_reference(factor):
    """Strided sums equal numpy's mean over the reshaped axes to float32 rounding (4 adds
    and a division; the mean sums in another order), on RGB and single-channel images whose
    sides are not multiples of the factor."""
    rng = np.random.default_rng(factor)
    img = rng.random((31, 29, 3), dtype=np.float32)
    for x in (img, img[..., 0]):
        got, want = downsample(x, factor), downsample_reference(x, factor)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-7)


@pytest.mark.parametrize("ss", [1, 2, 3])
def test_label_downsampling_matches_its_reference(ss):
    """The block mode (ties to the higher label) equals the numpy formula, exactly, on
    labels with many ties and on a flat image."""
    rng = np.random.default_rng(ss)
    lab = rng.integers(0, 5, (3 * 17 + 1, 3 * 13 + 2)).astype(np.uint8)
    for x in (lab, np.zeros_like(lab)):
        got, want = downsample_labels(x, ss), downsample_labels_reference(x, ss)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
