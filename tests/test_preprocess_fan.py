"""The face-alignment landmarker: its real loading path with tiny random-weight TorchScript
networks saved where face-alignment caches its downloads, and the error when they are missing."""

import urllib.error

import numpy as np
import pytest
import torch

pytest.importorskip("face_alignment")

from fg3dgs.preprocess.fan import LandmarkerUnavailable, load_face_alignment, track_faces_fa
from fg3dgs.preprocess.pipeline import PreprocessConfig, PreprocessError, preprocess
from fg3dgs.preprocess.video import iter_frames
from fg3dgs.synth.clip import SynthConfig


class TinyFAN(torch.nn.Module):
    """[B, 3, 256, 256] -> 68 heatmaps [B, 68, 64, 64], FAN's interface."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 68, 1)

    def forward(self, x):
        return self.head(torch.nn.functional.avg_pool2d(x, 4))


class TinyDepth(torch.nn.Module):
    """[B, 3 + 68, 256, 256] -> depth per landmark [B, 68], the depth network's interface."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(71, 68)

    def forward(self, x):
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _save_tiny_weights(torch_home):
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    torch.jit.script(TinyFAN()).save(str(cache / "3DFAN4-4a694010b9.zip"))
    torch.jit.script(TinyDepth()).save(str(cache / "depth-6c4283c0e0.zip"))


@pytest.fixture(scope="module")
def clip(synth_clip):
    return synth_clip(SynthConfig(text="Fold the blue map.", size=256, seed=3))


def test_tracks_68_points_with_cached_weights(torch_home, clip):
    _save_tiny_weights(torch_home)
    fa = load_face_alignment()
    frames = list(iter_frames(clip / "video.mp4"))[:6]
    track = track_faces_fa(frames, model=fa)
    assert track.points.shape == (6, 68, 3) and track.found.all()
    # Random weights put the points anywhere, but always inside the face crop FAN looked at.
    assert np.isfinite(track.points).all()
    assert (track.points[..., :2] > -64).all() and (track.points[..., :2] < 256 + 64).all()


def test_missing_weights_name_the_alternative(torch_home, clip, monkeypatch, tmp_path):
    import face_alignment.api

    def offline(url, *a, **k):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(face_alignment.api, "load_file_from_url", offline)
    with pytest.raises(LandmarkerUnavailable, match="--landmarker mediapipe"):
        load_face_alignment()
    out = tmp_path / "data"
    with pytest.raises(PreprocessError, match="checkpoints"):
        preprocess(clip / "video.mp4", out,
                   PreprocessConfig(size=64, landmarker="face-alignment", min_seconds=0.5),
                   progress=False)
    assert not out.exists() and not list(tmp_path.glob(".data*"))


def test_preprocess_with_face_alignment_writes_a_68_point_dataset(torch_home, clip, tmp_path):
    import json

    _save_tiny_weights(torch_home)
    out = preprocess(clip / "video.mp4", tmp_path / "data",
                     PreprocessConfig(size=64, landmarker="face-alignment", min_seconds=0.5),
                     progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["landmarker"] == "face-alignment-3d-68"
    assert manifest["landmark_scheme"] == "ibug-68"
    assert np.load(out / "landmarks.npy").shape[1:] == (68, 3)
