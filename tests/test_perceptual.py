"""LPIPS and FID with their published weights (fg3dgs.perceptual): random-weight files saved
in the published layouts load key for key; missing or wrong files give errors that say what
to do; LPIPS and the Frechet distance against references and closed forms; eval's and the
fusion stage's use of them, and their reports when the weights are absent."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fg3dgs.perceptual import (
    LPIPS,
    PerceptualWeightsError,
    WeightsUnavailable,
    frechet_distance,
    frechet_distance_of_features,
    load_fid_inception,
    load_lpips,
)
from fg3dgs.perceptual import fid as fid_module
from fg3dgs.perceptual import lpips as lpips_module
from fg3dgs.perceptual.inception import FIDInceptionV3
from fg3dgs.perceptual.lpips import lpips_reference

# torchvision's alexnet-owt-7be5be79.pth, written out here from torchvision's AlexNet
# (pytorch/vision torchvision/models/alexnet.py), not from fg3dgs's module
ALEXNET_LAYOUT = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}
ALEXNET_PARAMS = 61_100_840                  # torchvision's documented num_params
# lpips/weights/v0.1/alex.pth: NetLinLayer = Sequential(Dropout, Conv2d(C, 1, 1, bias=False))
LPIPS_LAYOUT = {f"lin{k}.model.1.weight": (1, c, 1, 1)
                for k, c in enumerate((64, 192, 384, 256, 256))}
# pytorch-fid's Inception = torchvision's Inception3(num_classes=1008, aux_logits=False):
# torchvision's documented 27,161,264 parameters, less the aux classifier (3,326,696), plus
# the 8 extra classes of the 1008-way fc (8 x 2049)
INCEPTION_PARAMS = 27_161_264 - 3_326_696 + 8 * 2049


def _random(shape, gen, fan_in=None):
    fan_in = fan_in or (int(np.prod(shape[1:])) if len(shape) > 1 else 1)
    return torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)


def alexnet_state(seed=0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in ALEXNET_LAYOUT.items():
        if k.startswith("classifier"):      # unused, 235 MB: one stored zero, expanded
            out[k] = torch.zeros(1).expand(shape)
        else:
            out[k] = _random(shape, gen) if k.endswith("weight") else 0.01 * torch.randn(
                shape, generator=gen)
    return out


def lpips_linear_state(seed=1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.rand(shape, generator=gen) * 0.1 for k, shape in LPIPS_LAYOUT.items()}


def inception_state(seed=2) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in FIDInceptionV3().state_dict().items():
        if k.endswith("conv.weight") or k == "fc.weight":
            out[k] = _random(tuple(v.shape), gen)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(v.shape, generator=gen)
        elif k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
        elif k.endswith("bn.weight"):
            out[k] = torch.ones(v.shape)
        else:                                     # bn bias / running mean, fc bias
            out[k] = 0.05 * torch.randn(v.shape, generator=gen)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Random-weight files in the published layouts, under their default names in a hub
    checkpoints folder (TORCH_HOME/hub/checkpoints)."""
    home = tmp_path_factory.mktemp("torch_home")
    ck = home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    paths = SimpleNamespace(home=home, backbone=ck / "alexnet-owt-7be5be79.pth",
                            linear=ck / "lpips_alex_v0.1.pth",
                            fid=ck / "pt_inception-2015-12-05-6726825d.pth")
    torch.save(alexnet_state(), paths.backbone)
    torch.save(lpips_linear_state(), paths.linear)
    torch.save(inception_state(), paths.fid)
    return paths


@pytest.fixture
def hub_at(monkeypatch):
    """Point torch.hub's folder (and so the default weight paths) at TORCH_HOME=folder, and
    hide any installed lpips package."""
    def point(folder):
        monkeypatch.setenv("TORCH_HOME", str(folder))
        monkeypatch.setattr(lpips_module, "lpips_package_weights", lambda: None)
    return point


# --- layouts ---------------------------------------------------------------------------------

def test_published_layouts_are_what_the_loaders_expect():
    assert sum(math.prod(s) for s in ALEXNET_LAYOUT.values()) == ALEXNET_PARAMS
    net = LPIPS()
    trunk = {k: tuple(v.shape) for k, v in net.trunk.state_dict().items()}
    assert trunk == {k: s for k, s in ALEXNET_LAYOUT.items() if k.startswith("features")}
    assert sum(p.numel() for p in net.lins.parameters()) == 1152      # 64+192+384+256+256
    inc = FIDInceptionV3()
    assert sum(p.numel() for p in inc.parameters()) == INCEPTION_PARAMS
    sd = inc.state_dict()
    for k, shape in {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
                     "Conv2d_4a_3x3.bn.running_var": (192,),
                     "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
                     "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
                     "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
                     "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
                     "fc.weight": (1008, 2048)}.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.startswith("AuxLogits") for k in sd)


def test_lpips_loads_the_published_files_strictly(files):
    net = load_lpips(files.backbone, files.linear)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.trunk.features[3].weight, alexnet_state()["features.3.weight"])
    assert torch.equal(net.lins[2].weight, lpips_linear_state()["lin2.model.1.weight"])
    assert net.weights == {"backbone": str(files.backbone), "linear": str(files.linear)}
    # a features-only AlexNet file is as good (the classifier is never used)
    feats = {k: v for k, v in alexnet_state().items() if k.startswith("features")}
    path = files.home / "features_only.pth"
    torch.save(feats, path)
    load_lpips(path, files.linear)


def test_lpips_files_missing_or_wrong_say_what_to_do(files, tmp_path):
    with pytest.raises(WeightsUnavailable, match="not found") as e:
        load_lpips(tmp_path / "nope.pth", files.linear)
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and "download.pytorch.org/models" in msg
    assert "--lpips-backbone" in msg
    assert isinstance(e.value, PerceptualWeightsError) and isinstance(e.value, ValueError)
    with pytest.raises(WeightsUnavailable, match="pip install lpips"):
        load_lpips(files.backbone, tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_text("not torch")
    with pytest.raises(WeightsUnavailable, match="not a readable PyTorch file"):
        load_lpips(bad, files.linear)
    state = alexnet_state()
    state["features.6.weight"] = state["features.6.weight"][:10]
    torch.save(state, bad)
    with pytest.raises(WeightsUnavailable, match=r"wrong shape \(e.g. features.6.weight"):
        load_lpips(bad, files.linear)
    lin = lpips_linear_state()
    del lin["lin4.model.1.weight"]
    lin["lin4.model.0.weight"] = torch.zeros(1, 256, 1, 1)
    torch.save(lin, bad)
    with pytest.raises(WeightsUnavailable, match="1 missing .*lin4.model.1.weight.*1 unexpected"):
        load_lpips(files.backbone, bad)
    lin = lpips_linear_state()
    lin["lin0.model.1.weight"][0, 0] = float("nan")
    torch.save(lin, bad)
    with pytest.raises(WeightsUnavailable, match="not finite"):
        load_lpips(files.backbone, bad)


def test_default_places_and_unavailable_message(files, hub_at, tmp_path):
    hub_at(files.home)
    net = load_lpips()
    assert net.weights["backbone"] == str(files.backbone)
    assert net.weights["linear"] == str(files.linear)
    assert load_fid_inception().weights == str(files.fid)
    hub_at(tmp_path)
    with pytest.raises(WeightsUnavailable) as e:
        load_lpips()
    assert str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in str(e.value)
    with pytest.raises(WeightsUnavailable, match="pytorch-fid/releases") as e:
        load_fid_inception()
    assert "--fid-weights" in str(e.value)


# --- LPIPS -----------------------------------------------------------------------------------

def test_lpips_is_zero_for_equal_images_matches_the_reference_and_has_gradients(files):
    net = load_lpips(files.backbone, files.linear)
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(2, 3, 64, 64, generator=gen)
    a[:, :, :24] = 0.0                            # flat areas: features zero in every channel
    b = (a + 0.2 * torch.rand(2, 3, 64, 64, generator=gen)).clamp(0, 1)
    assert net(a, a).abs().max() == 0
    d = net(a, b)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(d, lpips_reference(net, a, b), rtol=1e-4, atol=1e-6)
    x = a.clone().requires_grad_(True)
    net(x, b).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    (ref,) = torch.autograd.grad(lpips_reference(net, x, b).sum(), x)
    torch.testing.assert_close(x.grad, ref, rtol=1e-3, atol=1e-7)
    y = b.clone().requires_grad_(True)
    net(y, y.detach()).sum().backward()          # at equality: zero, finite gradient
    assert torch.isfinite(y.grad).all()
    with pytest.raises(ValueError, match="at least 32 px"):
        net(a[..., :16, :16], b[..., :16, :16])


# --- FID -------------------------------------------------------------------------------------

def test_inception_loads_strictly(files, tmp_path):
    net = load_fid_inception(files.fid)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.Mixed_6c.branch7x7_2.conv.weight,
                       inception_state()["Mixed_6c.branch7x7_2.conv.weight"])
    state = inception_state()
    for k in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[k]                              # older files lack the counters
    path = tmp_path / "w.pth"
    torch.save(state, path)
    load_fid_inception(path)
    del state["Mixed_7b.branch_pool.bn.running_var"]
    state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)   # torchvision's ImageNet file
    torch.save(state, path)
    with pytest.raises(WeightsUnavailable, match="1 missing.*running_var.*1 unexpected.*Aux"):
        load_fid_inception(path)
    with pytest.raises(WeightsUnavailable, match="not found"):
        load_fid_inception(tmp_path / "absent.pth")


def test_fid_of_image_sets(files):
    net = load_fid_inception(files.fid)
    rng = np.random.default_rng(4)
    real = rng.uniform(0, 1, (4, 48, 48, 3)).astype(np.float32)
    fake = np.clip(real[::-1] * 0.5 + 0.3, 0, 1)
    f_real = fid_module.inception_features(net, real, batch=2, size=75)
    assert f_real.shape == (4, 2048) and np.isfinite(f_real).all() and f_real.std() > 0
    assert abs(fid_module.fid(real, real, net, size=75)) < 1e-6
    near = np.clip(real * 0.9 + 0.05, 0, 1)          # FID grows with the distance
    assert fid_module.fid(real, fake, net, size=75) > fid_module.fid(real, near, net, size=75)
    with pytest.raises(ValueError, match="at least 75"):
        net.pool3(torch.zeros(1, 3, 64, 64), size=64)


def test_frechet_distance_closed_forms():
    d = 5
    shift = np.arange(d, dtype=float)
    eye = np.eye(d)
    assert frechet_distance(np.zeros(d), eye, np.zeros(d), eye) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(np.zeros(d), eye, shift, eye) == pytest.approx(shift @ shift)
    va, vb = np.array([1.0, 4.0, 9.0, 0.25, 2.0]), np.array([4.0, 1.0, 9.0, 1.0, 0.5])
    want = shift @ shift + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert frechet_distance(np.zeros(d), np.diag(va), shift, np.diag(vb)) == pytest.approx(want)
    # 1-d: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(4 + 1)
    # samples of a Gaussian and the same samples shifted: the distance is the shift's norm^2
    x = np.random.default_rng(5).normal(size=(50, d))
    assert frechet_distance_of_features(x, x + shift) == pytest.approx(shift @ shift)
    assert frechet_distance_of_features(x, x) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="do not fit"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), eye)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance_of_features(x[:1], x)


@pytest.mark.parametrize("n, d", [(200, 12), (9, 40), (40, 40)])
def test_fast_frechet_distance_matches_the_sqrtm_reference(n, d):
    rng = np.random.default_rng(n + d)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 1.0
    b = rng.normal(size=(n + 3, d)) * 0.7
    ref = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance_of_features(a, b) == pytest.approx(ref, rel=1e-6)


# --- eval ------------------------------------------------------------------------------------

def _frames(seed, n=3, size=64):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def test_eval_entries_with_weights(files, monkeypatch):
    import fg3dgs.perceptual as P
    from fg3dgs.perceptual.metrics import load_perceptual, perceptual_metrics

    small = P.inception_features
    monkeypatch.setattr(P, "inception_features",            # keep the test's Inception cheap
                        lambda net, x, batch=32: small(net, x, batch, size=75))
    nets = load_perceptual(files.backbone, files.linear, files.fid)
    truth, render = _frames(6), _frames(7)
    shared = {}
    m = perceptual_metrics(nets, truth, render, shared)
    assert m["lpips"]["available"] is True and m["lpips"]["value"] > 0
    assert m["lpips"]["weights"] == {"backbone": str(files.backbone), "linear": str(files.linear)}
    assert m["lpips"]["frames"] == 3 and m["fid"]["available"] is True
    assert m["fid"]["value"] == pytest.approx(fid_module.fid(truth, render, nets.fid, size=75),
                                              rel=1e-4)
    assert m["fid"]["weights"] == str(files.fid)
    assert shared["fid_truth"].shape == (3, 2048)
    same = perceptual_metrics(nets, truth, truth, shared)
    assert same["lpips"]["value"] == 0 and abs(same["fid"]["value"]) < 1e-6


def test_eval_entries_without_weights(hub_at, tmp_path, files):
    from fg3dgs.perceptual.metrics import load_perceptual, perceptual_metrics

    hub_at(tmp_path)
    nets = load_perceptual()
    m = perceptual_metrics(nets, _frames(6), _frames(7))
    with pytest.raises(WeightsUnavailable) as lp:
        load_lpips()
    with pytest.raises(WeightsUnavailable) as fi:
        load_fid_inception()
    assert m["lpips"] == {"available": False, "reason": str(lp.value)}
    assert m["fid"] == {"available": False, "reason": str(fi.value)}
    # a path that was given and does not load is an error, not "unavailable"
    with pytest.raises(WeightsUnavailable):
        load_perceptual(lpips_linear=tmp_path / "missing.pth")
    with pytest.raises(WeightsUnavailable):
        load_perceptual(fid_weights=tmp_path / "missing.pth")
    # only LPIPS given: FID still reported unavailable
    nets = load_perceptual(files.backbone, files.linear)
    assert nets.lpips is not None and nets.fid is None and "fid" in nets.reasons


def test_cli_eval_options(tmp_path, monkeypatch, capsys, hub_at):
    import fg3dgs.evaluate.validation as ev
    from fg3dgs.cli import main
    from fg3dgs.pipeline.export import _metrics_table

    hub_at(tmp_path)
    assert main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "data"),
                 "--fid-weights", str(tmp_path / "absent.pth")]) == 2
    err = capsys.readouterr().err
    assert "absent.pth does not exist" in err and "pytorch-fid" in err
    seen = {}
    lp = {"available": True, "value": 0.0312, "frames": 10, "net": "alex", "version": "0.1",
          "weights": {"backbone": "a.pth", "linear": "l.pth"}}
    na = {"available": False, "reason": "no file"}

    def fake(run, data, truth, **kw):
        seen.update(kw)
        return {"frames": 10, "size": 64, "psnr": 30.0, "psnr_head": 28.0, "ssim": 0.9,
                "psnr_jaw_band": 29.0, "psnr_mouth": 27.0, "jitter_px": 0.5,
                "jitter_real_px": 0.6,
                "lmd_px": 1.0, "lpips": lp, "fid": na, "sync_expert": {"source": "fg3dgs"},
                "lse": na}

    monkeypatch.setattr(ev, "evaluate", fake)
    assert main(["eval", "r", "--data", "d", "--lpips-backbone", "a.pth",
                 "--lpips-linear", "l.pth"]) == 0
    out = capsys.readouterr().out
    assert seen["lpips_backbone"] == "a.pth" and seen["lpips_linear"] == "l.pth"
    assert seen["fid_weights"] is None
    assert "LPIPS weights: a.pth, l.pth" in out and "FID: unavailable (no file)" in out
    base = next(line for line in out.splitlines() if line.startswith("[base]"))
    assert base.endswith("LMD 1.00 px  LPIPS 0.0312")
    card = _metrics_table(fake(None, None, None))
    assert "LPIPS 0.0312 (base); FID unavailable" in card


# --- the fusion stage ------------------------------------------------------------------------

class _Data:
    """Stands in for TrainData: one fixed 64x64 frame (a single "head" region)."""

    def __init__(self):
        gen = torch.Generator().manual_seed(8)
        self.img = torch.rand(1, 64, 64, 3, generator=gen)
        self.labels = torch.zeros(1, 64, 64, dtype=torch.long)
        self.labels[:, 16:48, 16:48] = 1
        self.inside = torch.zeros(1, 64, 64, 1)
        self.inside[:, 36:42, 24:40] = 1                     # an open mouth

    def __len__(self):
        return 4

    def batch(self, ks, device, variants=None):
        return {"image": self.img, "canvas": torch.zeros_like(self.img),
                "labels": self.labels, "audio": None, "expression": None, "viewmats": None}

    def interior(self, ks, device):
        return self.inside


class _Model:
    """Stands in for FG3DGS: the "head" render is one learnable colour at full opacity."""

    def __init__(self):
        self.colour = torch.nn.Parameter(torch.zeros(3))

    def drive(self, audio, expression):
        return None

    def render_regions(self, drive, viewmats, K, W, H, backend, keep_means2d=False,
                       windows=None, colour=True):
        rgb = torch.sigmoid(self.colour).expand(1, H, W, 3)
        return {"head": (rgb, torch.ones(1, H, W, 1))}


def _fusion_trainer(seed=0):
    from fg3dgs.train.config import preset
    from fg3dgs.train.trainer import Trainer

    t = Trainer.__new__(Trainer)                  # the fusion step's state, without a dataset
    t.cfg = preset("cpu", size=64, lip_prior=0.0, lpips_patch=32, audio_copies=0)
    t.device = torch.device("cpu")
    t.stage, t.step = "fusion", 0
    t.lip_warmup_due = False
    t.rng = np.random.default_rng(seed)
    t.data, t.model, t.K = _Data(), _Model(), None
    t.opt = torch.optim.Adam([t.model.colour], lr=1e-2)
    t.lpips_net, t.lpips_info, t.lpips_tried = None, None, False
    return t


def test_fusion_loss_adds_lpips_on_patches_when_its_weights_are_there(files, hub_at, tmp_path,
                                                                     monkeypatch):
    import fg3dgs.perceptual as P

    hub_at(files.home)
    calls = {"load": 0, "forward": []}
    real_load = P.load_lpips

    def counting_load(*a, **kw):
        calls["load"] += 1
        return real_load(*a, **kw)

    monkeypatch.setattr(P, "load_lpips", counting_load)
    monkeypatch.setattr(LPIPS, "forward", lambda self, x0, x1, f=LPIPS.forward:
                        calls["forward"].append(tuple(x0.shape)) or f(self, x0, x1))
    with_lpips = _fusion_trainer()
    with_lpips.start_lpips()
    with_lpips.start_lpips()                     # once per run
    assert calls["load"] == 1 and with_lpips.lpips_info["used"] is True
    assert with_lpips.lpips_info["weights"]["backbone"] == str(files.backbone)
    loss_with, _ = with_lpips.step_once()
    assert calls["forward"] == [(2, 3, 32, 32)]    # 2 patches of 32 px, one LPIPS call

    hub_at(tmp_path)                              # no weights: a warning, nothing else changes
    without = _fusion_trainer()
    with pytest.warns(UserWarning, match="without its LPIPS term"):
        without.start_lpips()
    without.start_lpips()
    assert without.lpips_net is None and without.lpips_info["used"] is False
    assert "alexnet-owt-7be5be79.pth" in without.lpips_info["reason"]
    loss_without, _ = without.step_once()
    assert len(calls["forward"]) == 1
    # the same batch (the generators agree up to the patch corners): the difference is the term
    assert loss_with > loss_without
    untouched = np.random.default_rng(0)
    untouched.integers(0, 4, 1)                   # the batch draw only
    assert without.rng.bit_generator.state == untouched.bit_generator.state
