"""Model pieces against slow references: H3, SSIM, driving windows, densification, fusion."""

import numpy as np
import pytest
import torch

from fg3dgs.audio_features import window
from fg3dgs.model.deformation import GatedCrossAttentionDeform, PlainDeform, RegionAttentionDeform
from fg3dgs.model.encoders import AUDIO_CONTEXT, AudioEncoder, ExpressionEncoder
from fg3dgs.model.fusion import fuse
from fg3dgs.model.gaussians import DensifyConfig, DensifyStrategy, GaussianSet
from fg3dgs.model.hash_encoding import HashConfig, TriPlaneHash, reference_encode
from fg3dgs.model.windows import audio_windows
from fg3dgs.train.losses import ssim, ssim_map


def _encoder(log2_table=10):
    torch.manual_seed(0)
    enc = TriPlaneHash(HashConfig(levels=4, features=2, log2_table=log2_table,
                                  base_resolution=4, max_resolution=64), [-1] * 3, [1] * 3)
    torch.nn.init.normal_(enc.tables)
    return enc


@pytest.mark.parametrize("log2_table", [6, 10])      # hashed and direct-indexed levels
def test_h3_matches_reference_and_gradients_agree(log2_table):
    enc = _encoder(log2_table)
    pts = torch.rand(40, 3) * 2.2 - 1.1                  # some outside the bound (clamped)
    plan = enc.plan(pts)
    fast = enc.encode_plan(plan)
    assert fast.shape == (40, enc.out_dim)
    assert torch.allclose(fast, reference_encode(enc, pts), atol=1e-5)
    g = torch.randn_like(fast)
    (fast * g).sum().backward()
    g_fast = enc.tables.grad.clone()
    enc.tables.grad = None
    (reference_encode(enc, pts) * g).sum().backward()
    assert torch.allclose(g_fast, enc.tables.grad, atol=1e-5)


def test_h3_gradient_to_positions_when_they_learn():
    enc = _encoder().double()
    pts = (torch.rand(5, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    torch.autograd.gradcheck(lambda p: enc(p), (pts,), eps=1e-6, atol=1e-5)


def test_ssim_matches_skimage_away_from_the_border():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((48, 48, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.normal(size=a.shape), 0, 1).astype(np.float32)
    _, full = structural_similarity(a, b, channel_axis=2, data_range=1.0, full=True,
                                    gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    # Where the 11 x 11 window lies inside the image, the maps agree.
    got = ssim_map(torch.from_numpy(a), torch.from_numpy(b))[0].permute(1, 2, 0).numpy()
    assert np.allclose(got[5:-5, 5:-5], full[5:-5, 5:-5], atol=1e-4)
    assert abs(float(ssim(torch.from_numpy(a), torch.from_numpy(a))) - 1) < 1e-6


def test_ssim_banded_matrix_filter_equals_the_convolution():
    """The GPU path filters with banded matrices; on any input it is the CPU convolution."""
    import torch.nn.functional as F

    from fg3dgs.train.losses import _band, _window

    g = _window(11).double()
    x = torch.rand(2, 3, 37, 52, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    wx, wy = g.view(1, 1, 1, -1).repeat(3, 1, 1, 1), g.view(1, 1, -1, 1).repeat(3, 1, 1, 1)
    conv = F.conv2d(F.conv2d(x, wx, padding=(0, 5), groups=3), wy, padding=(5, 0), groups=3)
    torch.testing.assert_close(_band(37, g) @ x @ _band(52, g), conv, atol=1e-12, rtol=0)



@pytest.mark.parametrize("shape", [(1, 13, 17, 3), (2, 20, 11, 3), (2, 1, 9, 12, 3)])
def test_photometric_backward_written_out_equals_autograd(shape):
    """The written-out backward of the L1 + D-SSIM loss gives autograd's gradient of the
    formula (its reference), passes gradcheck, and takes fewer tensor operations."""
    from fg3dgs.bench.ops import OpCounter
    from fg3dgs.train.losses import photometric, photometric_reference

    gen = torch.Generator().manual_seed(len(shape))
    a = torch.rand(*shape, dtype=torch.float64, generator=gen).requires_grad_()
    b = torch.rand(*shape, dtype=torch.float64, generator=gen)
    for dssim in (0.0, 0.2, 1.0):
        got, want = photometric(a, b, dssim), photometric_reference(a, b, dssim)
        torch.testing.assert_close(got, want, atol=1e-14, rtol=0)
        torch.testing.assert_close(torch.autograd.grad(got, a)[0],
                                   torch.autograd.grad(want, a)[0], atol=1e-15, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda r: photometric(r, b, 0.3), (a,))
    counts = []
    for f in (photometric, photometric_reference):
        with OpCounter() as c:
            f(a, b).backward()
        counts.append(c.total)
    assert counts[0] < 0.75 * counts[1], counts
    # a target that needs gradients gets them (autograd of the formula)
    t = b.clone().requires_grad_()
    assert torch.autograd.grad(photometric(a, t), t)[0].abs().sum() > 0


def test_weighted_photometric_of_a_padded_batch_is_the_sum_of_the_images_losses():
    """Eye and mouth windows of different sizes in one call: zero-padded to one size, with
    weights 1 / (pixels) inside each, the loss and its gradients are those of the two
    separate calls (SSIM pads with zeros itself); the written-out backward equals autograd
    of the weighted formula and passes gradcheck."""
    from fg3dgs.train.losses import mean_weights, padded_batch, photometric, photometric_reference

    gen = torch.Generator().manual_seed(8)
    shapes = [(2, 13, 21), (2, 19, 9)]
    rs = [torch.rand(*s, 3, dtype=torch.float64, generator=gen).requires_grad_()
          for s in shapes]
    ts = [torch.rand(*s, 3, dtype=torch.float64, generator=gen) for s in shapes]
    w = torch.from_numpy(mean_weights(shapes, np.float64))
    assert w.shape == (4, 19, 21) and torch.allclose(w.sum(), torch.tensor(2.0).double())
    for dssim in (0.0, 0.2, 1.0):
        want = sum(photometric(r, t, dssim) for r, t in zip(rs, ts))
        want_grads = torch.autograd.grad(want, rs)
        for f in (photometric, photometric_reference):
            got = f(padded_batch(rs), padded_batch(ts), dssim, w)
            torch.testing.assert_close(got, want, atol=1e-13, rtol=0)
            for a, b in zip(torch.autograd.grad(got, rs), want_grads):
                torch.testing.assert_close(a, b, atol=1e-15, rtol=1e-9)
    x = torch.rand(2, 7, 9, 3, dtype=torch.float64, generator=gen).requires_grad_()
    t, ww = torch.rand_like(x.detach()), torch.rand(2, 7, 9, dtype=torch.float64,
                                                     generator=gen)
    assert torch.autograd.gradcheck(lambda r: photometric(r, t, 0.3, ww), (x,))
    torch.testing.assert_close(torch.autograd.grad(photometric(x, t, 0.3, ww), x)[0],
                               torch.autograd.grad(photometric_reference(x, t, 0.3, ww), x)[0],
                               atol=1e-15, rtol=1e-9)


def test_masked_l1_is_the_mean_error_over_the_masked_pixels():
    from fg3dgs.train.losses import masked_l1

    gen = torch.Generator().manual_seed(3)
    x, t = (torch.rand(2, 5, 6, 3, dtype=torch.float64, generator=gen) for _ in range(2))
    m = torch.zeros(2, 5, 6, 1, dtype=torch.float64)
    m[0, 1:3, 2:5] = 1
    m[1, 4, 0] = 1
    sel = m[..., 0].bool()
    torch.testing.assert_close(masked_l1(x, t, m), (x - t).abs()[sel].mean())
    assert masked_l1(x, t, torch.zeros_like(m)).item() == 0.0


def test_ssim_filter_is_its_own_adjoint():
    """The written-out backward blurs the gradient maps with the forward's filter: right
    only because the zero-padded filter by a symmetric window is self-adjoint."""
    from fg3dgs.train.losses import _blur

    gen = torch.Generator().manual_seed(5)
    u, v = (torch.rand(2, 4, 23, 31, dtype=torch.float64, generator=gen) for _ in range(2))
    torch.testing.assert_close((_blur(u) * v).sum(), (u * _blur(v)).sum(), atol=1e-12, rtol=0)

def test_audio_windows_match_the_per_frame_window():
    feats = np.arange(200 * 3, dtype=np.float32).reshape(200, 3)
    frames = np.array([0, 7, 99])
    w = audio_windows(feats, frames)
    assert w.shape == (3, AUDIO_CONTEXT, 16, 3)
    for k, f in enumerate(frames):
        for j in range(AUDIO_CONTEXT):
            nb = int(np.clip(f + j - AUDIO_CONTEXT // 2, 0, 99))
            assert np.array_equal(w[k, j], window(feats, nb, 16))


def test_networks_start_at_zero_and_have_the_right_shapes():
    torch.manual_seed(0)
    N, B = 30, 2
    h = torch.randn(N, 24)
    aud = AudioEncoder(80, 32)
    f_a, tok_a = aud(torch.randn(B, AUDIO_CONTEXT, 16, 80))
    f_e, tok_e = ExpressionEncoder(3, 16)(torch.randn(B, 5, 3))
    assert f_a.shape == (B, 32) and tok_a.shape == (B, AUDIO_CONTEXT, 32)
    for net, args in ((RegionAttentionDeform(24, 32, 16), (h, f_a, f_e)),
                      (PlainDeform(24, 32, 16), (h, f_a, f_e)),
                      (GatedCrossAttentionDeform(24, 32), (h, f_a, tok_a))):
        dmu, ds, dq = net(*args)
        assert dmu.shape == (B, N, 3) and float(dmu.detach().abs().max()) == 0
        if ds is not None:
            assert ds.shape == (B, N, 3) and dq.shape == (B, N, 4)


@pytest.mark.parametrize("rows", [3, 8192])
def test_face_network_renders_what_it_trains(rows, monkeypatch):
    """Without autograd the face network's first layer is each frame's feature-scaled
    weights applied to the gates, with in-place ReLUs, decoded in blocks of ``rows``
    Gaussians (here several blocks and a partial one, or one); it gives what the training
    path gives (float64), whose gradients are those of the written-out formula."""
    from fg3dgs.model import deformation

    monkeypatch.setattr(deformation, "DECODE_ROWS", rows)
    torch.manual_seed(3)
    net = RegionAttentionDeform(12, 8, 4, hidden=16).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    N, B = 7, 3
    h = torch.randn(N, 12, dtype=torch.float64, requires_grad=True)
    f_a = torch.randn(B, 8, dtype=torch.float64, requires_grad=True)
    f_e = torch.randn(B, 4, dtype=torch.float64, requires_grad=True)
    trained = torch.cat(net(h, f_a, f_e), -1)
    with torch.no_grad():
        rendered = torch.cat(net(h, f_a, f_e), -1)
    torch.testing.assert_close(rendered, trained.detach(), atol=1e-12, rtol=1e-10)

    def written_out(h, f_a, f_e):
        lin1, _, lin2 = net.decode
        x = lin2(torch.relu(lin1(torch.relu(net.first_layer(h, f_a, f_e)))))
        return torch.cat([t * s for t, s in zip(x.split((3, 3, 4), -1), (0.01, 1, 1))], -1)

    up = torch.randn_like(trained)
    wrt = [h, f_a, f_e, *net.parameters()]
    for a, b in zip(torch.autograd.grad((trained * up).sum(), wrt),
                    torch.autograd.grad((written_out(h, f_a, f_e) * up).sum(), wrt)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_gated_cross_attention_matches_a_per_gaussian_reference():
    """The fused attention call gives, with its gradients, what each Gaussian's query attending
    each frame's tokens head by head gives when written out (float64)."""
    torch.manual_seed(1)
    net = GatedCrossAttentionDeform(12, 8, width=8, heads=2).double()
    torch.nn.init.normal_(net.out.weight)
    N, B, T = 5, 3, 4
    h = torch.randn(N, 12, dtype=torch.float64)
    f = torch.randn(B, 8, dtype=torch.float64)
    tok = torch.randn(B, T, 8, dtype=torch.float64, requires_grad=True)

    def reference(h, f, tok):
        C = net.width // net.heads
        rows = []
        for b in range(B):
            per_n = []
            for n in range(N):
                heads = []
                for hd in range(net.heads):
                    sl = slice(hd * C, (hd + 1) * C)
                    q = net.q(h[n])[sl]
                    k, v = net.k(tok[b])[:, sl], net.v(tok[b])[:, sl]
                    w = torch.softmax(k @ q / C ** 0.5, 0)                  # [T]
                    heads.append(w @ v)
                per_n.append(torch.cat(heads))
            rows.append(torch.stack(per_n))
        x = net.h_in(h)[None] + torch.sigmoid(net.gate(f))[:, None] * torch.stack(rows)
        for block in net.ffn:
            x = x + block(x)
        return net.out(x) * 0.01

    got, _, _ = net(h, f, tok)
    ref = reference(h, f, tok)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-10)
    up = torch.randn_like(ref)
    g_got = torch.autograd.grad((got * up).sum(), [tok, *net.parameters()])
    g_ref = torch.autograd.grad((ref * up).sum(), [tok, *net.parameters()])
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_fusion_order():
    """Mouth over eyes, face over both, all over the canvas."""
    one = torch.ones(1, 1, 1, 1)
    col = lambda v: torch.full((1, 1, 1, 3), v)    # noqa: E731
    canvas = col(0.0)
    r = {"face": (col(0.0), 0 * one), "eyes": (col(0.2), one), "mouth": (col(0.7), one)}
    assert float(fuse(r, canvas)[0, 0, 0, 0]) == pytest.approx(0.7)
    r["face"] = (col(0.5) * 0.5, 0.5 * one)         # half-transparent face in front
    assert float(fuse(r, canvas)[0, 0, 0, 0]) == pytest.approx(0.25 + 0.5 * 0.7)


def test_densify_clones_splits_prunes_and_keeps_adam_state_aligned():
    torch.manual_seed(0)
    n = 6
    gs = GaussianSet(torch.randn(n, 3), torch.rand(n, 3), 1,
                     torch.tensor([0.001, 0.001, 0.05, 0.05, 0.001, 0.001]),
                     rigid=torch.tensor([True, False, True, False, False, True]))
    gs.opacity_logits.data[5] = -10                  # transparent: pruned
    opt = torch.optim.Adam([{"name": f"r.{k}", "params": [getattr(gs, k)], "lr": 1e-3}
                            for k in ("means", "quats", "log_scales", "opacity_logits", "sh")])
    sum(p.sum() for p in gs.parameters()).backward()
    opt.step()
    marker = opt.state[gs.means]["exp_avg"].clone()
    strat = DensifyStrategy(DensifyConfig(start=0, every=1, grad_threshold=1e-3,
                                          percent_dense=0.01, max_gaussians={"r": 100}),
                            extent=1.0, prefix="r")
    m2d = torch.zeros(1, n, 2, requires_grad=True)
    (m2d * torch.tensor([1.0, 0, 1, 0, 0, 0])[None, :, None]).sum().backward()
    strat.observe(gs, m2d, 2, 2)                     # Gaussians 0 (small), 2 (large) hot
    assert strat.step(1, gs, opt)
    # kept: 0, 1, 3, 4 (2 split away, 5 pruned); added: clone of 0, two halves of 2.
    assert len(gs) == 4 + 1 + 2
    st = opt.state[gs.means]["exp_avg"]
    assert st.shape == (7, 3) and torch.equal(st[:4], marker[[0, 1, 3, 4]])
    assert float(st[4:].abs().sum()) == 0
    assert opt.param_groups[0]["params"][0] is gs.means
    # the rigid flags travel with their rows: kept 0, 1, 3, 4; clone of 0; halves of 2
    assert gs.rigid.tolist() == [True, False, False, False, True, True, True]


def test_lip_shapes_ignore_head_position_roll_and_scale():
    from fg3dgs.landmark_schemes import IBUG68
    from fg3dgs.train.mouth_prior import lip_shapes, lip_targets

    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 68, 2)) * 10 + 100
    a = np.deg2rad(12)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = 1.7 * base @ rot.T + np.array([30.0, -12.0])
    assert np.allclose(lip_shapes(base, IBUG68), lip_shapes(moved, IBUG68), atol=1e-9)
    # an opening mouth moves the shape; the targets are whitened on the fit rows only
    opened = base.copy()
    opened[:, [57, 66], 1] += np.linspace(0, 8, 6)[:, None]
    t = lip_targets(np.concatenate([base, opened]), IBUG68, np.arange(12), components=4)
    assert t.shape == (12, 4)
    assert np.allclose(t.mean(0), 0, atol=1e-6) and np.allclose(t.std(0, ddof=1), 1, atol=1e-6)
    held = lip_targets(np.concatenate([base, opened]), IBUG68, np.arange(6), components=4)
    assert not np.allclose(held[6:].mean(0), 0, atol=1e-3)   # unseen rows are not refitted


def test_rigid_gaussians_keep_their_place_under_any_drive():
    """The mouth set's rigid Gaussians (upper teeth) get no delta from the mouth network,
    whatever the speech; the others move."""
    from fg3dgs.model.config import ModelConfig
    from fg3dgs.model.hash_encoding import HashConfig
    from fg3dgs.model.identity import FG3DGS

    torch.manual_seed(0)
    cfg = ModelConfig(sh_degree=0, hash=HashConfig(levels=2, log2_table=8, max_resolution=32))
    sets = {r: GaussianSet(torch.rand(12, 3) * 0.1, torch.rand(12, 3), 0, 0.01,
                           rigid=(torch.arange(12) % 3 == 0) if r == "mouth" else None)
            for r in cfg.regions}
    model = FG3DGS(cfg, sets, [0.0] * 3, [0.1] * 3)
    for p in model.nets["mouth"].out.parameters():       # a network that moves everything
        torch.nn.init.normal_(p, std=0.5)
    drive = model.drive(torch.randn(2, AUDIO_CONTEXT, 16, 80), torch.randn(2, 5, 3))
    means = model.deform("mouth", drive)[0]
    rigid = sets["mouth"].rigid
    canonical = sets["mouth"].means.detach()
    assert torch.equal(means[:, rigid].detach(), canonical[rigid].expand(2, -1, -1))
    assert (means[:, ~rigid] - canonical[~rigid]).abs().amax(-1).min() > 0


def test_initial_upper_teeth_are_the_rigid_points_behind_and_above_the_lips():
    from fg3dgs.model.init_points import (
        LOWER_INNER_LIP,
        MOUTH_DEPTH,
        UPPER_INNER_LIP,
        initial_points,
    )
    from fg3dgs.synth.face import build_rig
    from fg3dgs.synth.photo import detect_face, load_photo

    photo = load_photo("builtin:astronaut")
    canonical = build_rig(photo, detect_face(photo)).rest[:478].astype(np.float64)
    counts = {"face": 50, "eyes": 20, "mouth": 400, "head_rest": 0}
    img, lab = np.full((64, 64, 3), 0.5, np.float32), np.zeros((64, 64), np.uint8)
    K = np.array([[80.0, 0, 32], [0, 80.0, 32], [0, 0, 1]])
    pts = initial_points(canonical, [(img, lab, np.eye(3), np.array([0, 0, 0.5]), K)], counts)
    for name in ("face", "eyes", "head_rest"):
        assert not pts[name][2].any()
    p, _, rigid = pts["mouth"]
    meet = 0.5 * (canonical[UPPER_INNER_LIP, 1] + canonical[LOWER_INNER_LIP, 1])
    assert 0.1 * len(p) < rigid.sum() < 0.55 * len(p)       # of the back half, the upper part
    assert (p[rigid, 1] < meet).all()
    front = p[~rigid & (p[:, 1] < meet)]          # the upper lip's own points move
    # the rigid ones lie behind them (head space: z points away from the camera)
    assert len(front) and p[rigid, 2].mean() > front[:, 2].mean() + 0.5 * MOUTH_DEPTH


def test_rigid_flags_are_saved_and_identities_without_them_load_with_none(tmp_path):
    from safetensors.torch import load_file, save_file

    from fg3dgs.model.config import ModelConfig
    from fg3dgs.model.hash_encoding import HashConfig
    from fg3dgs.model.identity import FG3DGS
    from fg3dgs.model.io import WEIGHTS

    cfg = ModelConfig(sh_degree=0, hash=HashConfig(levels=2, log2_table=8, max_resolution=32))
    sets = {r: GaussianSet(torch.rand(5, 3), torch.rand(5, 3), 0, 0.01,
                           rigid=torch.tensor([1, 0, 1, 0, 0]) if r == "mouth" else None)
            for r in cfg.regions}
    FG3DGS(cfg, sets, [0.0] * 3, [1.0] * 3).save_pretrained(tmp_path, {}, {"size": 8})
    model = FG3DGS.from_pretrained(tmp_path)
    assert model.gaussians["mouth"].rigid.tolist() == [True, False, True, False, False]
    tensors = load_file(str(tmp_path / WEIGHTS))          # as written before rigid flags
    save_file({k: v for k, v in tensors.items() if not k.endswith(".rigid")},
              str(tmp_path / WEIGHTS))
    model = FG3DGS.from_pretrained(tmp_path, verify=False)
    assert not any(model.gaussians[r].rigid.any() for r in cfg.regions)


def test_feature_adapter_starts_as_the_identity_and_matches_a_loop_reference():
    """FeatureAdapter: the identity when new; otherwise each frame's features are the
    replicate-padded depthwise filter's output, then mixed and shifted."""
    from fg3dgs.model.encoders import FeatureAdapter

    torch.manual_seed(0)
    w = torch.randn(2, 3, 16, 5)
    ad = FeatureAdapter(5, taps=5)
    assert torch.equal(ad(w), w)
    with torch.no_grad():
        for p in ad.parameters():
            p.add_(0.1 * torch.randn_like(p))
    got = ad(w)
    want = torch.empty_like(w)
    k, M, b = ad.kernel.detach(), ad.mix.detach(), ad.bias.detach()
    for i in range(16):
        filt = torch.zeros(2, 3, 5)
        for j in range(5):
            src = min(max(i + j - 2, 0), 15)
            filt += k[:, j] * w[:, :, src]
        want[:, :, i] = filt @ M + b
    assert torch.allclose(got, want, atol=1e-5)
