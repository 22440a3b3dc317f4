"""fg3dgs preprocess end to end on a synthetic clip; the dataset reader; bad input."""

import json

import numpy as np
import pytest

from fg3dgs.cli import main
from fg3dgs.media import write_video
from fg3dgs.preprocess.dataset import Dataset, DatasetError
from fg3dgs.preprocess.evaluate import evaluate_against_truth
from fg3dgs.preprocess.pipeline import PreprocessConfig, PreprocessError, preprocess
from fg3dgs.synth.clip import SynthConfig

CLIP = SynthConfig(sentences=2, size=256, seed=9)


@pytest.fixture(scope="module")
def synth(synth_clip):
    return synth_clip(CLIP)


@pytest.fixture(scope="module")
def dataset(synth_dataset):
    return synth_dataset(CLIP, PreprocessConfig(size=128, min_seconds=2.0))


def test_dataset_files_and_manifest(dataset, synth):
    names = {p.name for p in dataset.iterdir()}
    assert {"frames", "labels", "landmarks.npy", "cameras.npz", "expression.npy", "audio.wav",
            "features", "background.png", "manifest.json"} <= names
    m = json.loads((dataset / "manifest.json").read_text())
    F = m["frames"]
    assert len(list((dataset / "frames").iterdir())) == F
    assert m["split"]["validation"][1] == F and m["split"]["train"][1] == m["split"]["validation"][0]
    assert abs((F - m["split"]["validation"][0]) - F / 11) <= 1
    assert len(m["source"]["sha256"]) == 64 and m["landmarker"].startswith("mediapipe")
    assert m["config"]["mirror_landmarks"] is True
    assert np.load(dataset / "features" / "mel.npy").shape == (2 * F, 80)


def test_reader_gives_each_frame(dataset):
    ds = Dataset(dataset)
    item = ds[len(ds) // 2]
    assert item["image"].shape == (128, 128, 3) and item["image"].max() <= 1.0
    m = item["masks"]
    assert m["face"].sum() > 500 and m["mouth"].sum() > 20 and m["eyes"].sum() > 5
    assert m["torso"].any() and not (m["face"] & m["torso"]).any()
    assert item["viewmat"].shape == (4, 4) and item["K"].shape == (3, 3)
    assert np.allclose(item["viewmat"][:3, :3] @ item["viewmat"][:3, :3].T, np.eye(3),
                       atol=1e-5)
    assert item["audio"].shape == (16, 80) and item["expression"].shape == (3,)
    # Projecting the canonical landmarks with the frame's camera lands near the measured ones.
    canon = np.load(dataset / "cameras.npz")["canonical"]
    cam = canon @ item["viewmat"][:3, :3].T + item["viewmat"][:3, 3]
    proj = cam[:, :2] / cam[:, 2:3] * np.diag(ds.K)[:2] + ds.K[:2, 2]
    iod = np.linalg.norm(item["landmarks"][468, :2] - item["landmarks"][473, :2])
    assert np.median(np.linalg.norm(proj - item["landmarks"][:, :2], axis=-1)) < 0.15 * iod
    with pytest.raises(DatasetError, match="no 'hubert' features"):
        ds.audio_window(0, "hubert")


def test_against_truth(dataset, synth):
    r = evaluate_against_truth(dataset, synth, mask_stride=3)
    assert r["rotation_median_deg"] < 1.5 and r["rotation_p95_deg"] < 4.0
    assert r["landmark_error_median_iod"] < 0.03
    assert r["iou_mouth"] > 0.8 and r["iou_eyes"] > 0.6


def test_bad_inputs(synth, tmp_path, capsys):
    with pytest.raises(PreprocessError, match="at least 10 s"):
        preprocess(synth / "video.mp4", tmp_path / "a", progress=False)
    silent = tmp_path / "silent.mp4"
    write_video(silent, [np.zeros((64, 64, 3), np.uint8)] * 30)
    with pytest.raises(PreprocessError, match="no audio track"):
        preprocess(silent, tmp_path / "b", progress=False)
    with pytest.raises(PreprocessError, match="unknown audio features"):
        preprocess(synth / "video.mp4", tmp_path / "c",
                   PreprocessConfig(audio_features=("deepspeech",)), progress=False)
    (tmp_path / "exists").mkdir()
    assert main(["preprocess", str(synth / "video.mp4"), "--out", str(tmp_path / "exists")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["preprocess", str(tmp_path / "missing.mp4"), "--out",
                 str(tmp_path / "d")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "silent.mp4"]
    with pytest.raises(DatasetError, match="not a dataset"):
        Dataset(tmp_path / "exists")


def test_preview_sheet(dataset, tmp_path):
    import imageio.v3 as iio

    from fg3dgs.preprocess.preview import preview_sheet
    out = preview_sheet(dataset, tmp_path / "preview.png", n=3, tile=64)
    image = iio.imread(out)
    assert image.shape == (64, 192, 3) and image.std() > 10


def test_downscaled_tracking_maps_back_to_source_pixels(synth, tmp_path):
    """Large sources are tracked letterboxed and downscaled; landmarks must map back."""
    out = preprocess(synth / "video.mp4", tmp_path / "small",
                     PreprocessConfig(size=128, min_seconds=2.0, track_max_side=200),
                     progress=False)
    r = evaluate_against_truth(out, synth, mask_stride=6)
    assert r["landmark_error_median_iod"] < 0.05 and r["rotation_median_deg"] < 2.0


def test_cli_passes_the_mirror_choice(tmp_path, monkeypatch, capsys):
    import fg3dgs.preprocess.pipeline as P

    seen = []
    monkeypatch.setattr(P, "preprocess", lambda video, out, cfg, **kw: seen.append(cfg) or out)
    for extra in ([], ["--no-mirror"]):
        assert main(["preprocess", "clip.mp4", "--out", str(tmp_path / "d"), *extra]) == 0
    assert [c.mirror_landmarks for c in seen] == [True, False]
