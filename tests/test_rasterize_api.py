"""rasterize(): input validation, backend selection, shapes and info."""

import pytest
import torch
from rasterize_cases import make_case

from fg3dgs.render import RasterizeInputError, rasterize, resolve_backend, sh_to_rgb
from fg3dgs.render.api import camera_centres


def _args(case):
    return [case.means, case.quats, case.scales, case.opacities, case.colors,
            case.viewmats[0], case.Ks[0], case.width, case.height]


def test_unbatched_shapes_and_info():
    case = make_case("random")
    rgb, alpha, info = rasterize(*_args(case))
    assert rgb.shape == (case.height, case.width, 3) and alpha.shape[-1] == 1
    assert rgb.dtype == torch.float32
    N = case.means.shape[0]
    assert info["backend"] == "cpu"
    assert info["means2d"].shape == (1, N, 2) and info["radii"].shape == (1, N, 2)
    assert info["depths"].shape == (1, N) and info["conics"].shape == (1, N, 3)
    assert (info["width"], info["height"]) == (case.width, case.height)


@pytest.mark.parametrize("index, bad, message", [
    (0, torch.zeros(5, 2), "means must have shape [N, 3]"),
    (1, torch.zeros(3, 4), "quats must have shape [60, 4]"),
    (2, torch.zeros(60, 2), "scales must have shape [60, 3]"),
    (3, torch.zeros(60, 1), "opacities must have shape [60]"),
    (4, torch.zeros(60, 4), "colors must have shape [60, 3]"),
    (5, torch.eye(3), "viewmat must have shape [4, 4] or [C, 4, 4]"),
    (6, torch.eye(3)[None].repeat(2, 1, 1), "K must have shape"),
    (0, torch.zeros(60, 3, dtype=torch.float64), "means must be float32"),
    (0, torch.full((60, 3), float("nan")), "means contains NaN"),
    (3, torch.full((60,), 1.5), "opacities must be activated values in [0, 1]"),
    (2, torch.full((60, 3), float("inf")), "scales contains NaN or infinite"),
])
def test_bad_inputs_get_clear_errors(index, bad, message):
    args = _args(make_case("random"))
    args[index] = bad
    with pytest.raises(RasterizeInputError) as err:
        rasterize(*args)
    assert message in str(err.value)


def test_other_bad_inputs():
    args = _args(make_case("random"))
    with pytest.raises(RasterizeInputError, match="positive ints"):
        rasterize(*args[:7], 0, 10)
    with pytest.raises(RasterizeInputError, match="sh_degree must be an int in 0..3"):
        rasterize(*args, sh_degree=4)
    with pytest.raises(RasterizeInputError, match=r"with K >= 9"):
        sh = torch.zeros(60, 4, 3)
        rasterize(*args[:4], sh, *args[5:], sh_degree=2)
    with pytest.raises(RasterizeInputError, match="background must have shape"):
        rasterize(*args, background=torch.zeros(2, 3))
    with pytest.raises(RasterizeInputError, match="is on meta but means is on cpu"):
        rasterize(*args[:4], args[4].to("meta"), *args[5:])
    with pytest.raises(ValueError, match="backend must be one of"):
        rasterize(*args, backend="opengl")


def test_backend_selection_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    assert resolve_backend("cpu", torch.device("cpu")) == "cpu"
    with pytest.raises(RuntimeError, match="backend='gsplat' needs CUDA tensors"):
        rasterize(*_args(make_case("random")), backend="gsplat")


def test_cpu_path_does_not_import_gsplat():
    import subprocess
    import sys
    code = ("import sys, torch\n"
            "from fg3dgs.render import rasterize\n"
            "from fg3dgs.scenes import head_scene, frontal_camera\n"
            "s = head_scene(100); c = frontal_camera(32)\n"
            "rasterize(s.means, s.quats, s.scales, s.opacities, s.colors, c.viewmat, c.K, 32, 32)\n"
            "print('gsplat' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_gradients_reach_every_input():
    case = make_case("background")
    params = [p.clone().requires_grad_(True) for p in case.params()]
    rgb, alpha, _ = rasterize(*params[:5], case.viewmats, case.Ks, case.width, case.height,
                              background=params[5])
    (rgb.sum() + alpha.sum()).backward()
    for p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_no_grad_inference_works():
    case = make_case("random")
    with torch.no_grad():
        rgb, _, _ = rasterize(*_args(case))
    assert not rgb.requires_grad


def test_concurrent_calls_from_threads_agree():
    """The kernels release the GIL; parallel callers (a render thread beside an encoder,
    say) must get the same image as a lone call."""
    import threading
    case = make_case("dense")
    expected = rasterize(*_args(case))[0]
    results = [None] * 3

    def work(i):
        results[i] = rasterize(*_args(case))[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(r, expected) for r in results)


def test_rasterize_frames_equals_one_call_per_frame():
    """Per-frame Gaussians, or a shared set seen from every frame's camera: the same images
    as one rasterize call per frame."""
    from fg3dgs.render import rasterize_frames
    from fg3dgs.scenes import frontal_camera, head_scene

    s = head_scene(800, seed=2)
    gen = torch.Generator().manual_seed(5)
    B, size = 3, 48
    means = s.means[None] + 0.003 * torch.randn(B, 800, 3, generator=gen)
    sh = 0.2 * torch.randn(800, 4, 3, generator=gen)
    viewmats = torch.stack([frontal_camera(size, yaw_deg=10.0 * b).viewmat for b in range(B)])
    K = frontal_camera(size).K
    for m in (means, s.means):
        rgb, alpha, m2d = rasterize_frames(m, s.quats, s.scales, s.opacities, sh, viewmats, K,
                                           size, size, sh_degree=1, backend="cpu")
        assert rgb.shape == (B, size, size, 3) and alpha.shape == (B, size, size, 1)
        assert all(t.shape[-2:] == (800, 2) for t in m2d)
        for b in range(B):
            ref, ref_a, _ = rasterize(m[b] if m.dim() == 3 else m, s.quats, s.scales,
                                      s.opacities, sh, viewmats[b], K, size, size,
                                      sh_degree=1, backend="cpu")
            torch.testing.assert_close(rgb[b], ref, atol=1e-6, rtol=0)
            torch.testing.assert_close(alpha[b], ref_a, atol=1e-6, rtol=0)
        # the same SH evaluated by the caller, one RGB set per frame [B, N, 3]
        cols = sh_to_rgb(1, m.expand(B, 800, 3) - camera_centres(viewmats)[:, None], sh[None])
        rgb2, alpha2, _ = rasterize_frames(m, s.quats, s.scales, s.opacities, cols, viewmats,
                                           K, size, size, backend="cpu")
        torch.testing.assert_close(rgb2, rgb, atol=1e-6, rtol=0)
        torch.testing.assert_close(alpha2, alpha, atol=1e-6, rtol=0)
    # values are checked once per call on every frame, on the CPU even when not asked
    for name in ("means", "colors"):
        bad = {"means": means.clone(), "colors": cols.clone()}
        bad[name][B - 1, 7] = float("nan")
        with pytest.raises(RasterizeInputError, match="NaN or infinite"):
            rasterize_frames(bad["means"], s.quats, s.scales, s.opacities, bad["colors"],
                             viewmats, K, size, size, backend="cpu", check_values=False)


def test_batched_cpu_frames_equal_the_per_frame_reference():
    """Without gradients the CPU renders all frames in one call (rasterize_cpu_frames); with
    them, one differentiable call per frame. Same kernels per tile: the same images, bit for
    bit, also for frames whose Gaussians leave the view or sit behind the camera."""
    from fg3dgs.render import rasterize_frames
    from fg3dgs.scenes import frontal_camera, head_scene

    s = head_scene(600, seed=4)
    gen = torch.Generator().manual_seed(9)
    B, size = 4, 40
    means = s.means[None] + 0.004 * torch.randn(B, 600, 3, generator=gen)
    means[2, :50] += torch.tensor([0.0, 0.0, -5.0])      # behind the camera in frame 2
    means[3, 50:90] += torch.tensor([3.0, 0.0, 0.0])     # off screen in frame 3
    quats = s.quats[None] + 0.05 * torch.randn(B, 600, 4, generator=gen)
    scales = s.scales[None] * torch.exp(0.2 * torch.randn(B, 600, 3, generator=gen))
    cols = torch.rand(B, 600, 3, generator=gen)
    viewmats = torch.stack([frontal_camera(size, yaw_deg=8.0 * b).viewmat for b in range(B)])
    K = frontal_camera(size).K
    with torch.no_grad():
        fast, fast_a, _ = rasterize_frames(means, quats, scales, s.opacities, cols, viewmats,
                                           K, size, size, backend="cpu")
    ref, ref_a, m2d = rasterize_frames(means.clone().requires_grad_(), quats, scales,
                                       s.opacities, cols, viewmats, K, size, size,
                                       backend="cpu")
    assert len(m2d) == B and ref.requires_grad          # the reference path was taken
    assert fast.abs().sum() > 0
    assert torch.equal(fast, ref.detach()) and torch.equal(fast_a, ref_a.detach())


def test_per_camera_colours():
    """colors [C, N, 3]: camera c renders with its own set; shapes that match neither [N, 3]
    nor [C, N, 3] are refused."""
    case = make_case("random")
    args = _args(case)
    C = 2
    view = args[5][None].repeat(C, 1, 1)
    Ks = args[6][None].repeat(C, 1, 1)
    cols = torch.stack([args[4], 1 - args[4]])
    rgb, _, _ = rasterize(*args[:4], cols, view, Ks, case.width, case.height, backend="cpu")
    for c in range(C):
        ref, _, _ = rasterize(*args[:4], cols[c], view[c], Ks[c], case.width, case.height,
                              backend="cpu")
        torch.testing.assert_close(rgb[c], ref, atol=1e-6, rtol=0)
    with pytest.raises(RasterizeInputError, match=r"or \[C, 60, 3\] with viewmat"):
        rasterize(*args[:4], cols[:1].repeat(3, 1, 1), view, Ks, case.width, case.height)
    with pytest.raises(RasterizeInputError, match="colors must have shape"):
        rasterize(*args[:4], cols, *args[5:])       # one camera, two colour sets
