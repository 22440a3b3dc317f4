"""End to end: a short synthetic clip, its files, truth, determinism and input errors."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from fg3dgs.cli import main
from fg3dgs.media import probe, read_audio
from fg3dgs.synth.check import check_clip
from fg3dgs.synth.clip import SynthConfig, SynthError, generate
from fg3dgs.synth.photo import PhotoError
from fg3dgs.synth.truth import load_truth

TEXT = "Bob ate five ripe plums. Why would we wait?"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "clip"
    assert main(["synth", "--out", str(out), "--text", TEXT, "--size", "256", "--seed", "3",
                 "--quiet"]) == 0
    return out


def test_files_and_truth(clip):
    assert sorted(p.name for p in clip.iterdir()) == ["audio.wav", "truth.json", "truth.npz",
                                                      "video.mp4"]
    info = probe(clip / "video.mp4")
    assert "Video: h264" in info and "25 fps" in info and "Audio: aac" in info
    frames = list(iio.imiter(clip / "video.mp4"))
    truth = load_truth(clip)
    F = truth.n_frames
    assert len(frames) == F and frames[0].shape == (256, 256, 3)
    audio = read_audio(clip / "audio.wav")
    assert len(audio) == F * 640                          # frame-exact: 16000 / 25 per frame
    a = truth.arrays
    assert a["landmarks"].shape == (F, 478, 2) and a["visemes"].shape == (F, 4)
    assert a["R"].shape == (F, 3, 3) and a["t"].shape == (F, 3) and a["K"].shape == (3, 3)
    assert a["eye_open"].shape == (F, 2) and len(a["phonemes"]) == len(a["phoneme_start"])
    assert abs(a["phoneme_end"][-1] - len(audio) / 16000) < 0.05
    lm = a["landmarks"]
    assert (lm > 0).all() and (lm < 256).all()
    masks = truth.masks(F // 2)
    assert masks["face"].sum() > 2000 and masks["eyes"].sum() > 20 and masks["mouth"].sum() > 50
    meta = json.loads((clip / "truth.json").read_text())
    assert meta["text"] == TEXT and meta["frames"] == F and "fields" in meta
    assert meta["registration_error_iod"] < 0.03


def test_measured_against_truth(clip):
    """mediapipe on the rendered frames agrees with the truth; audio matches the phonemes."""
    result = check_clip(clip)
    assert all(isinstance(v, bool) for v in result.passed().values())
    assert result.detection_rate >= 0.99
    assert result.landmark_error < 0.03
    assert result.lip_r > 0.8
    assert result.audio_onset_error_s < 0.02 and abs(result.audio_lag_s) < 0.02


def test_deterministic(clip, tmp_path):
    again = generate(SynthConfig(text=TEXT, size=256, seed=3), tmp_path / "again",
                     progress=False)
    a, b = load_truth(clip).arrays, load_truth(again).arrays
    for key in ("landmarks", "visemes", "R", "eye_open", "regions_data"):
        assert np.array_equal(a[key], b[key]), key
    assert (clip / "audio.wav").read_bytes() == (again / "audio.wav").read_bytes()


@pytest.mark.parametrize("cfg, error, message", [
    (SynthConfig(text="   "), SynthError, "text is empty"),
    (SynthConfig(text="Hi.", voice="xx-nowhere"), SynthError, "does not exist"),
    (SynthConfig(text="Hi.", photo="builtin:nobody"), PhotoError, "unknown built-in"),
    (SynthConfig(text="Hi.", size=100 + 1), SynthError, "even number"),
    (SynthConfig(sentences=0), SynthError, "at least 1"),
])
def test_bad_input_writes_nothing(tmp_path, cfg, error, message):
    with pytest.raises(error, match=message):
        generate(cfg, tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_no_face_and_existing_output(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    iio.imwrite(blank, np.full((200, 200, 3), 90, np.uint8))
    assert main(["synth", "--out", str(tmp_path / "o"), "--photo", str(blank), "--text",
                 "Hi."]) == 2
    assert "no face found" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert main(["synth", "--out", str(tmp_path / "exists"), "--text", "Hi."]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.png", "exists"]


def test_folders_without_truth_say_so(tmp_path, capsys):
    from fg3dgs.synth.truth import TruthError

    with pytest.raises(TruthError, match="not a synthetic clip folder: truth.json is missing"):
        load_truth(tmp_path)
    assert main(["synth-check", str(tmp_path / "nowhere")]) == 2
    assert "not a synthetic clip folder" in capsys.readouterr().err
    (tmp_path / "truth.json").write_text("{")
    (tmp_path / "truth.npz").write_bytes(b"")
    with pytest.raises(TruthError, match="make the clip again"):
        load_truth(tmp_path)


def test_seconds_gives_at_least_that_much_speech():
    from fg3dgs.synth.clip import speak
    for seconds in (3.0, 40.0):
        speech = speak(SynthConfig(seconds=seconds, seed=21, voice="en-us"))
        assert seconds <= speech.duration < seconds + 15


def test_single_frames_are_the_video_frames(clip):
    """render_frames draws any frames of a clip without the rest: the video's, to within
    its H.264 coding."""
    import imageio.v3 as iio

    from fg3dgs.synth.clip import render_frames

    video = iio.imread(clip / "video.mp4")
    picks = [3, len(video) - 2]
    for i, img in zip(picks, render_frames(SynthConfig(text=TEXT, size=256, seed=3), picks)):
        err = np.mean((img.astype(np.float64) - video[i]) ** 2)
        assert 10 * np.log10(255.0 ** 2 / err) > 35.0
