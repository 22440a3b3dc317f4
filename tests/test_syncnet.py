"""SyncNet with its published layout (LSE-C / LSE-D): loading, MFCCs, crops and the protocol.

The published weights cannot be downloaded here, so every test uses random weights saved in
the exact key layout and shapes of joonson/syncnet_python's ``SyncNetModel.S``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fg3dgs.sync import ExpertError, SyncNet, load_syncnet, lse_scores
from fg3dgs.sync.syncnet import mfcc, scores_from_embeddings, syncnet_crops, syncnet_mfcc


def _published_shapes(counters: bool = True) -> dict[str, tuple]:
    """Key -> shape of syncnet_v2.model, written out from SyncNetModel.S (not from our code)."""
    out = {}

    def conv(name, shape):
        out[f"{name}.weight"], out[f"{name}.bias"] = shape, shape[:1]

    def bn(name, c):
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.{k}"] = (c,)
        if counters:
            out[f"{name}.num_batches_tracked"] = ()

    for i, shape in zip((0, 4, 8, 11, 14, 18), ((64, 1, 3, 3), (192, 64, 3, 3),
                                                  (384, 192, 3, 3), (256, 384, 3, 3),
                                                  (256, 256, 3, 3), (512, 256, 5, 4))):
        conv(f"netcnnaud.{i}", shape)
        bn(f"netcnnaud.{i + 1}", shape[0])
    for i, shape in zip((0, 4, 8, 11, 14, 18), ((96, 3, 5, 7, 7), (256, 96, 1, 5, 5),
                                                  (256, 256, 1, 3, 3), (256, 256, 1, 3, 3),
                                                  (256, 256, 1, 3, 3), (512, 256, 1, 6, 6))):
        conv(f"netcnnlip.{i}", shape)
        bn(f"netcnnlip.{i + 1}", shape[0])
    for head in ("netfcaud", "netfclip"):
        conv(f"{head}.0", (512, 512))
        bn(f"{head}.1", 512)
        conv(f"{head}.3", (1024, 512))
    return out


def _random_state(counters: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in _published_shapes(counters).items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(_random_state(), path)
    return path


def test_a_state_dict_in_the_published_layout_loads_strictly(weights, tmp_path):
    state = _random_state()
    assert set(SyncNet().state_dict()) == set(state)
    net = load_syncnet(weights)
    assert not net.training
    assert torch.equal(net.state_dict()["netfclip.3.weight"], state["netfclip.3.weight"])
    assert torch.equal(net.state_dict()["netcnnaud.19.running_var"],
                       state["netcnnaud.19.running_var"])
    # files saved before PyTorch 0.4.1 have no BatchNorm counters; a checkpoint dict or a
    # DataParallel prefix around the state dict is fine too
    legacy = tmp_path / "legacy.model"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _random_state(False).items()}},
               legacy)
    assert torch.equal(load_syncnet(legacy).state_dict()["netfclip.3.weight"],
                       state["netfclip.3.weight"])


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("netcnnlip.4.weight"), r"1 missing \(e\.g\. netcnnlip\.4\.weight"),
    (lambda s: s.update({"netfcaud.3.weight": torch.zeros(512, 512)}),
     r"1 of the wrong shape \(e\.g\. netfcaud\.3\.weight \(512, 512\) \(expected \(1024, 512\)"),
    (lambda s: s.update({"netcnnvid.0.weight": torch.zeros(3)}),
     r"1 unexpected \(e\.g\. netcnnvid\.0\.weight"),
    (lambda s: s["netfclip.0.bias"].fill_(float("nan")),
     r"1 not finite \(e\.g\. netfclip\.0\.bias"),
])
def test_a_state_dict_that_does_not_fit_is_refused_naming_the_keys(tmp_path, change, message):
    state = _random_state()
    change(state)
    path = tmp_path / "bad.model"
    torch.save(state, path)
    with pytest.raises(ExpertError, match="does not fit SyncNet's layout.*" + message):
        load_syncnet(path)


def test_files_that_are_not_syncnet_weights_are_refused(tmp_path):
    (tmp_path / "text.model").write_text("not a model")
    with pytest.raises(ExpertError, match="not a readable PyTorch file"):
        load_syncnet(tmp_path / "text.model")
    torch.save([torch.zeros(3)], tmp_path / "list.model")
    with pytest.raises(ExpertError, match="holds no state dict"):
        load_syncnet(tmp_path / "list.model")
    with pytest.raises(ExpertError, match="SyncNet weights not found"):
        load_syncnet(tmp_path / "missing.model")


def test_mfcc_runs_at_100_hz_with_13_coefficients():
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)
    feats = syncnet_mfcc(audio)
    assert feats.shape == (13, 99) and feats.dtype == np.float32    # 1 + ceil(15600 / 160)
    assert syncnet_mfcc(audio[:640 * 6]).shape == (13, 23)      # 1 + ceil(3440 / 160)
    # c0 is the log frame energy of the 16-bit samples: x2 amplitude adds log(4)
    assert np.allclose(syncnet_mfcc(audio * 2)[0] - feats[0], np.log(4), atol=1e-4)


def test_mfcc_equals_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(1)
    for n in (1, 400, 401, 6400, 12345):
        x = np.round(rng.standard_normal(n) * 3000)
        assert np.allclose(mfcc(x), psf.mfcc(x, 16000), rtol=1e-10, atol=1e-8)
    x = np.zeros(1000)                          # silence: the log-of-zero guard
    assert np.allclose(mfcc(x), psf.mfcc(x, 16000))


def test_crops_follow_the_published_pipeline():
    frame = np.zeros((1, 200, 200, 3), np.float32)
    frame[..., 0] = 1.0                                  # red
    frame[0, 140:, :, 1] = 1.0                           # rows >= 140 also green
    # box centre (100, 90), side 60 -> s = 30: rows 60..144, columns 58..142
    crop = syncnet_crops(frame, np.array([[100.0, 90.0, 60.0]]))
    assert crop.shape == (1, 224, 224, 3) and crop.dtype == np.uint8
    assert crop[0, :, :, 2].min() == 255 and crop[0, :, :, 0].max() == 0     # BGR
    green = crop[0, :, 112, 1] > 128
    assert abs(int(np.argmax(green)) - (140 - 60) / 84 * 224) <= 2
    edge = syncnet_crops(frame, np.array([[10.0, 10.0, 60.0]]))    # past the frame: grey 110
    assert (edge[0, :20, :20] == 110).all()


def _embed_index_by_pixel(net, n, shift, dim=8):
    """Video window i -> audio embedding i + shift (window i read from its pixel values)."""
    table = torch.randn(n + 40, dim, generator=torch.Generator().manual_seed(3))
    count = {"audio": 0}

    def video(clips):
        first = torch.round(clips[:, 0, 0].mean((1, 2)) / 5.1).long() - 1     # frame index
        assert clips.shape[1:] == (3, 5, 224, 224)
        return table[first + shift + 20]

    def audio(windows):
        assert windows.shape[1:] == (1, 13, 20)
        a = count["audio"]
        count["audio"] += len(windows)
        return table[torch.arange(a, a + len(windows)) + 20]

    net.embed_video, net.embed_audio = video, audio


@pytest.mark.parametrize("shift", [3, -2, 0])
def test_lse_finds_a_planted_offset(shift):
    n_frames = 30
    frames = np.ones((n_frames, 64, 64, 3), np.float32) \
        * ((np.arange(n_frames) + 1) * 0.02)[:, None, None, None]
    boxes = np.tile([32.0, 28.0, 20.0], (n_frames, 1))
    audio = np.zeros(n_frames * 640, np.float32)
    net = SyncNet()
    _embed_index_by_pixel(net, n_frames, shift)
    s = lse_scores(net, frames, boxes, audio)
    # video i looks like audio i + shift: the sound comes `shift` frames after the picture
    assert s.offset == shift and s.distances.shape == (31,)
    assert s.distance == pytest.approx(s.distances.min()) and s.confidence > 0


def test_protocol_on_embeddings_and_its_sign():
    e = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    s = scores_from_embeddings(e[3:33], e[:30])     # video i = audio i + 3: sound comes after
    assert s.offset == 3
    assert scores_from_embeddings(e[:30], e[3:33]).offset == -3     # sound comes first
    # SyncNetInstance.evaluate: zero embeddings past either end, mean over all windows
    expect = torch.cat([torch.zeros(15, 16), e[:30], torch.zeros(15, 16)])
    d0 = torch.nn.functional.pairwise_distance(e[3:33], expect[15:45]).mean()
    assert s.distances[15] == pytest.approx(float(d0), rel=1e-6)


def test_lse_with_random_weights_on_a_short_clip(weights):
    torch.manual_seed(0)
    net = load_syncnet(weights)
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 1, (11, 48, 48, 3)).astype(np.float32)
    boxes = np.tile([24.0, 22.0, 18.0], (11, 1))
    audio = rng.uniform(-0.2, 0.2, 11 * 640).astype(np.float32)
    s = lse_scores(net, frames, boxes, audio)
    # SyncNet's protocol: the offset is the nearest shift, LSE-D its distance, LSE-C the
    # median distance minus the nearest
    assert np.isfinite(s.distances).all() and s.distances.shape == (31,)
    assert s.offset == int(np.argmin(s.distances)) - 15
    assert s.distance == pytest.approx(float(s.distances.min()))
    assert s.confidence == pytest.approx(float(np.median(s.distances) - s.distances.min()))
    with pytest.raises(ValueError, match="at least 6 frames"):
        lse_scores(net, frames[:5], boxes[:5], audio)


def test_eval_helper_and_cli(weights, tmp_path, capsys):
    from fg3dgs.cli import main
    from fg3dgs.evaluate.validation import UNAVAILABLE, _lse
    from fg3dgs.sync.crops import face_boxes, smooth_boxes

    assert "--syncnet PATH/TO/syncnet_v2.model" in UNAVAILABLE["lse"]
    rng = np.random.default_rng(2)
    n = 8
    lm = rng.uniform(14, 34, (n, 68, 2))
    lm[2] = np.nan                               # no face found: the dataset's landmarks
    ds = SimpleNamespace(manifest={"size": 96}, landmarks=rng.uniform(28, 68, (n, 68, 2)))
    frames = rng.uniform(0, 1, (n, 48, 48, 3)).astype(np.float32)
    audio = rng.uniform(-0.2, 0.2, n * 640).astype(np.float32)
    net = load_syncnet(weights)
    out = _lse(net, frames, lm, ds, np.arange(n), 48, audio)
    # the crops' boxes come from the render's landmarks, and from the dataset's where the
    # render has no face (frame 2): a missing face must not move the crop elsewhere
    boxes = smooth_boxes(face_boxes(np.where(np.isnan(lm), ds.landmarks * 0.5, lm)))
    s = lse_scores(net, frames, boxes, audio)
    assert out == {"LSE-C": round(s.confidence, 4), "LSE-D": round(s.distance, 4),
                   "offset": s.offset}
    # a SyncNet file that does not load stops eval before anything else, with exit code 2
    (tmp_path / "bad.model").write_text("nope")
    assert main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "data"),
                 "--syncnet", str(tmp_path / "bad.model")]) == 2
    assert "not a readable PyTorch file" in capsys.readouterr().err


def test_eval_prints_lse_when_available(tmp_path, monkeypatch, capsys):
    import fg3dgs.evaluate.validation as ev
    from fg3dgs.cli import main

    lse = {"available": True, "LSE-C": 7.25, "LSE-D": 6.5, "offset": 1, "weights": "w.model"}
    na = {"available": False, "reason": "no weights"}
    seen = {}

    def fake(run, data, truth, syncnet=None, **kw):
        seen["syncnet"] = syncnet
        return {"frames": 10, "size": 64, "psnr": 30.0, "psnr_head": 28.0, "ssim": 0.9,
                "psnr_jaw_band": 29.0, "psnr_mouth": 27.0, "jitter_px": 0.5,
                "jitter_real_px": 0.6,
                "lmd_px": 1.0, "lpips": na, "fid": na, "sync_expert": {"source": "fg3dgs"},
                "lse": lse, "lse_real_frames": {**lse, "LSE-C": 8.0}}

    monkeypatch.setattr(ev, "evaluate", fake)
    assert main(["eval", str(tmp_path), "--data", str(tmp_path), "--syncnet", "w.model"]) == 0
    out = capsys.readouterr().out
    assert seen["syncnet"] == "w.model"
    assert "[base] PSNR 30.00 dB" in out and "LSE-C 7.250  LSE-D 6.500  offset +1" in out
    assert "LSE-C / LSE-D by SyncNet (w.model); real frames: LSE-C 8.000" in out
