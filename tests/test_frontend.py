"""The speech front-end: its augmentations keep time, its file format, its features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fg3dgs.audio_features import AudioFeatureError, extract
from fg3dgs.frontend import (
    ArticulationNet,
    FrontendConfig,
    FrontendError,
    articulation,
    load_frontend,
    save_frontend,
)
from fg3dgs.frontend import augment as aug
from fg3dgs.mel import log_mel, n_frames

SR = 16000


def _clicks(seconds: float = 2.0, every: float = 0.31) -> np.ndarray:
    x = np.zeros(int(seconds * SR), np.float32)
    for t in np.arange(0.1, seconds - 0.1, every):
        i = int(t * SR)
        x[i:i + 160] = np.hanning(160) * np.sin(np.arange(160) * 0.9)
    return x


def _lag(y: np.ndarray, x: np.ndarray) -> int:
    c = np.correlate(y, x, mode="full")
    return int(np.argmax(c)) - (len(x) - 1)


def test_unwarped_mel_is_the_feature_mel():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, SR).astype(np.float32)
    assert np.array_equal(aug.log_mel_warped(a, 1.0), log_mel(a))
    warped = aug.log_mel_warped(a, 1.15)
    assert warped.shape == log_mel(a).shape and not np.allclose(warped, log_mel(a))


@pytest.mark.parametrize("name", ["reverb", "telephone", "codec", "noise", "eq", "voice",
                                  "all"])
def test_augmentations_keep_the_timing(name):
    rng = np.random.default_rng(3)
    x = _clicks()
    if name == "reverb":
        y = aug.reverberate(x, 0.6, rng)
    elif name == "telephone":
        y = aug.telephone(x)
    elif name == "codec":
        y = aug.codec(x, rng)
    elif name == "noise":
        y = aug.add_noise(x, 20.0, rng)
    elif name == "eq":
        y = aug.equalize(x, rng, aug.AugmentConfig(peak_db=12.0))
    elif name == "voice":
        y = aug.voice_quality(x, rng)
    else:
        y, alpha = aug.augment(x, rng, aug.AugmentConfig(p_eq=0.5))
        assert 0.8 <= alpha <= 1.25
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(_lag(y, x)) <= 16            # within 1 ms
    if name == "noise":                     # 20 dB under the signal's power
        snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
        assert snr == pytest.approx(20.0, abs=0.5)
    if name == "voice":                     # breath only where the voice is
        quiet = np.abs(np.convolve(x, np.ones(400), "same")) == 0
        assert np.abs(y[quiet]).max() < 0.02 * np.abs(y).max() and not np.allclose(y, x)


def test_targets_mark_speech_and_follow_the_mouth():
    from fg3dgs.frontend.train import targets
    from fg3dgs.synth.speech import PAUSE, Phoneme

    ph = [Phoneme(PAUSE, 0.0, 0.3), Phoneme("a", 0.3, 0.6), Phoneme("m", 0.6, 0.7),
          Phoneme(PAUSE, 0.7, 1.0)]
    t = targets(ph, SR)
    assert t.shape == (n_frames(SR), 5)
    k = np.arange(len(t)) / 50
    assert (t[(k >= 0.3) & (k < 0.7), 4] == 1).all() and (t[k < 0.3, 4] == 0).all()
    assert t[22, 0] > 0.5 > t[5, 0]          # jaw open on /a/ (0.44 s), closed at rest
    assert t[33, 3] > 0.5                    # lips closed on /m/ (0.66 s)


def test_saved_frontend_loads_and_bad_files_are_refused(tmp_path, refuses_bad_files):
    torch.manual_seed(0)
    net = ArticulationNet(FrontendConfig(width=16, dilations=(1, 2)))
    path = save_frontend(net, tmp_path / "fe.safetensors", {"note": "random"})
    loaded, meta = load_frontend(path)
    assert meta["info"] == {"note": "random"} and loaded.cfg == net.cfg
    mel = torch.randn(1, 50, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), net.half().float()(mel), atol=1e-3, rtol=0)
    refuses_bad_files(load_frontend, FrontendError, tmp_path / "junk.safetensors",
                      missing="train-audio")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(FrontendError, match="not an fg3dgs speech front-end"):
        load_frontend(tmp_path / "other.safetensors")
    with pytest.raises(AudioFeatureError, match="'artic'.*train-audio"):
        extract(np.zeros(SR, np.float32), "artic", str(tmp_path / "missing.safetensors"))


def test_chunked_articulation_equals_the_whole_clip(tmp_path):
    """Through AudioInput's chunks (with their margin) the features are the whole clip's;
    the margin is the network's receptive field."""
    from fg3dgs.audio_features import CONTEXT_FRAMES
    from fg3dgs.frontend import MARGIN

    assert CONTEXT_FRAMES["artic"] == MARGIN == FrontendConfig().context * 2 + 4
    from fg3dgs.media import write_wav
    from fg3dgs.pipeline.audio_input import AudioInput

    torch.manual_seed(1)
    path = save_frontend(ArticulationNet(FrontendConfig(width=16)), tmp_path / "fe.safetensors")
    rng = np.random.default_rng(2)
    audio = (0.2 * rng.normal(size=5 * SR) * np.sin(np.arange(5 * SR) / 900) ** 2)
    write_wav(tmp_path / "a.wav", audio)
    with AudioInput(tmp_path / "a.wav") as speech:
        whole = articulation(speech.audio(), path)
        assert whole.shape == (speech.feature_frames, 5)
        parts = np.concatenate([speech.features("artic", k, min(k + 37, speech.feature_frames),
                                                str(path))
                                for k in range(0, speech.feature_frames, 37)])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=2e-6)
    assert ((whole >= 0) & (whole <= 1)).all()


def test_many_utterances_from_one_worker_are_reproducible():
    from fg3dgs.synth.speech import Voice, synthesize, synthesize_many

    items = [("Bob ate a plum.", Voice("en-us", "m2")), ("Hallo Welt.", Voice("de", "f3"))]
    a, b = synthesize_many(items), synthesize_many(items)
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert np.array_equal(a[0].audio, synthesize(*items[0]).audio)
    assert not any(p.symbol.startswith("(") for s in a for p in s.phonemes)


def test_a_tiny_training_run_reports_held_out_accuracy(tmp_path, monkeypatch):
    import soundfile as sf

    from fg3dgs.frontend.train import FrontendTrainConfig, train_frontend

    # a recorded corpus of ten one-second recordings in the cache: its tenth is measured
    corpus = tmp_path / "cache" / "festvox-ru"
    (corpus / "wav").mkdir(parents=True)
    (corpus / "lab").mkdir()
    for i in range(10):
        sf.write(corpus / "wav" / f"ru_{i:04d}.wav",
                 0.1 * np.random.default_rng(i).standard_normal(16000), 16000)
        (corpus / "lab" / f"ru_{i:04d}.lab").write_text("#\n0.3 125 pau\n0.6 125 aa\n")
    monkeypatch.setenv("FG3DGS_CACHE", str(tmp_path / "cache"))

    import fg3dgs.frontend.train as T

    cfg = FrontendTrainConfig(minutes=0.15, copies=1, steps=4, batch=4, heldout_minutes=0.1,
                              width=16, recorded=True)
    asked = []
    real = T.recorded_material
    monkeypatch.setattr(T, "recorded_material",
                        lambda held_out: asked.append(held_out) or real(held_out))
    report = train_frontend(cfg, tmp_path / "fe", progress=False)
    assert asked == [False, True]             # the nine tenths trained, the tenth measured
    assert "his others heard in training" in report["recorded"]["voices"]
    for kind in ("clean", "augmented"):
        acc = report["heldout"][kind]
        assert set(acc) >= {"jaw_open", "lip_closure", "speech", "frames"}
        assert acc["frames"] > 100 and 0 <= acc["speech"]["accuracy"] <= 1
    loaded, meta = load_frontend(tmp_path / "fe" / "speech_frontend.safetensors")
    assert meta["info"]["utterances"] == report["utterances"]
    from fg3dgs.synth.flite import flite_available

    if flite_available():       # the check on another engine's voices
        assert report["flite"]["clean"]["frames"] > 100
        assert "never heard in training" in report["flite"]["voices"]
    else:
        assert "flite program is not installed" in report["flite"]
    assert report["recorded"]["utterances"] == 1 and report["recorded"]["clean"]["frames"] == 50
    with pytest.raises(ValueError, match="--force"):
        train_frontend(cfg, tmp_path / "fe", progress=False)
    monkeypatch.setenv("FG3DGS_CACHE", str(tmp_path / "empty"))     # not downloaded: said
    from fg3dgs.frontend.train import recorded_heldout
    assert "recorded Russian speech" in recorded_heldout() and "not downloaded" in \
        recorded_heldout()


@pytest.mark.parametrize("kind", ["silence", "music", "short", "telephone-8k", "stereo-48k"])
def test_awkward_inputs_give_finite_articulation(tmp_path, kind):
    """Through AudioInput as a render sees them: silence, music, a 0.3 s clip, 8 kHz
    telephone speech, 48 kHz stereo; the front-end gives finite values in [0, 1] for every
    feature frame (AudioInput itself refuses all-silent files with its own message)."""
    import soundfile as sf

    from fg3dgs.pipeline.audio_input import AudioInput, AudioInputError

    torch.manual_seed(3)
    path = save_frontend(ArticulationNet(FrontendConfig(width=16)), tmp_path / "fe.safetensors")
    rng = np.random.default_rng(4)
    rate, seconds, channels = 16000, 2.0, 1
    if kind == "telephone-8k":
        rate = 8000
    elif kind == "stereo-48k":
        rate, channels = 48000, 2
    elif kind == "short":
        seconds = 0.3
    t = np.arange(int(rate * seconds)) / rate
    if kind == "silence":
        x = np.zeros_like(t)
    elif kind == "music":
        x = 0.3 * sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) / 3
    else:
        x = 0.2 * rng.normal(size=t.shape) * (np.sin(2 * np.pi * 3 * t) > 0)
    data = np.stack([x, 0.5 * x], 1) if channels == 2 else x
    sf.write(tmp_path / "in.wav", data, rate)
    if kind == "silence":
        with pytest.raises(AudioInputError, match="silent"):
            AudioInput(tmp_path / "in.wav")
        out = extract(np.zeros(16000, np.float32), "artic", str(path))
    else:
        with AudioInput(tmp_path / "in.wav") as speech:
            out = speech.features("artic", 0, speech.feature_frames, str(path))
            assert len(out) == speech.feature_frames
    assert out.shape[1] == 5 and np.isfinite(out).all()
    assert (out >= 0).all() and (out <= 1).all()


def test_the_default_front_end_follows_the_checkpoints_folder(tmp_path, monkeypatch):
    """The default front-end is cached per resolved file: a checkpoints folder set later
    ($FG3DGS_CHECKPOINTS) gets its own front-end, not the one loaded before."""
    from fg3dgs.frontend import ArticulationNet, FrontendConfig, articulation, save_frontend

    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32)
    outs = []
    for seed in (0, 1):
        ckpt = tmp_path / f"ckpt{seed}"
        ckpt.mkdir()
        torch.manual_seed(seed)
        save_frontend(ArticulationNet(FrontendConfig(width=16)),
                      ckpt / "speech_frontend.safetensors")
        monkeypatch.setenv("FG3DGS_CHECKPOINTS", str(ckpt))
        outs.append(articulation(audio))
    assert not np.allclose(outs[0], outs[1])
    monkeypatch.setenv("FG3DGS_CHECKPOINTS", str(tmp_path / "ckpt0"))
    np.testing.assert_array_equal(articulation(audio), outs[0])


def test_a_crashed_espeak_worker_is_named_and_skipped_in_bulk(monkeypatch):
    """A worker that dies on a signal (eSpeak NG crashes on rare voice / text pairs) is a
    SpeechEngineCrash with its exit status; make_material skips that batch and goes on."""
    import subprocess

    from fg3dgs.frontend import train as frontend_train
    from fg3dgs.synth import speech

    def died(*args, **kwargs):
        return subprocess.CompletedProcess(args, -11, b"", b"")

    with monkeypatch.context() as m:
        m.setattr(speech.subprocess, "run", died)
        with pytest.raises(speech.SpeechEngineCrash, match=r"exit status -11.*said nothing"):
            speech.synthesize("Hello there.")

    real, calls = speech.synthesize_many, []

    def once_crashing(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise speech.SpeechEngineCrash("the eSpeak worker process failed (exit status -11)")
        return real(items[:2])

    monkeypatch.setattr(speech, "synthesize_many", once_crashing)
    got = frontend_train.make_material(0.05, held_out=True, seed=0, progress=False)
    assert len(calls) >= 2 and got and all(t.shape[1] == 5 for _, t in got)


def test_the_equaliser_colours_the_spectrum_as_drawn():
    """Tilt, a peak, the low cut and the band limit, each where it belongs; augment applies
    it when drawn; the level is kept and the spectrum changes."""
    f = np.array([100.0, 500.0, 1000.0, 2000.0, 8000.0])
    assert np.allclose(aug.eq_gain_db(f, 3.0, []), 3.0 * np.log2(f / 1000))
    g = aug.eq_gain_db(f, 0.0, [(2000.0, 6.0, 0.5)])
    assert g[3] == pytest.approx(6.0) and abs(g[0]) < 1e-6
    g = aug.eq_gain_db(f, 0.0, [], low_cut=200.0, high_cut=4000.0)
    assert g[0] == pytest.approx(-12.0) and g[4] == pytest.approx(-24.0) and g[2] == 0.0
    x = _clicks()
    a, _ = aug.augment(x, np.random.default_rng(5))
    b, _ = aug.augment(x, np.random.default_rng(5), aug.AugmentConfig(p_eq=1.0))
    assert not np.allclose(a, b)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=32000).astype(np.float32)
    y = aug.equalize(noise, rng)
    assert np.mean(y ** 2) == pytest.approx(np.mean(noise ** 2), rel=1e-3)   # level kept
    assert not np.allclose(np.abs(np.fft.rfft(y)), np.abs(np.fft.rfft(noise)), rtol=0.1)


def test_train_audio_passes_its_speech_and_augmentation_shares(tmp_path, monkeypatch, capsys):
    import fg3dgs.frontend.train as ft
    from fg3dgs.cli import main

    seen = {}
    acc = {k: {"r": 0.5, "spread": 1.0} for k in ("jaw_open", "lip_spread", "lip_round",
                                                 "lip_closure")}
    acc["speech"] = {"accuracy": 0.9}

    def fake(cfg, out, progress=True, force=False):
        seen["cfg"] = cfg
        return {"heldout": {"clean": acc, "augmented": acc}, "flite": "not measured: x",
                "recorded": {"clean": acc, "augmented": acc}}

    monkeypatch.setattr(ft, "train_frontend", fake)
    assert main(["train-audio", "--out", str(tmp_path), "--flite", "0.2", "--voice-quality",
                 "0.5", "--quiet"]) == 0
    assert (seen["cfg"].flite, seen["cfg"].voice_quality, seen["cfg"].eq) == (0.2, 0.5, 0.5)
    assert seen["cfg"].recorded is False
    out = capsys.readouterr().out
    assert "Flite's voices (heard in training), held-out sentences: not measured: x" in out
    assert "recorded speech, a person (never heard in training), held-out sentences, clean: " \
        "jaw_open r" in out
    for bad in (["--eq", "3"], ["--voice-quality", "-1"], ["--flite", "1.5"]):
        with pytest.raises(SystemExit) as exit_:
            main(["train-audio", "--out", str(tmp_path), *bad])
        assert exit_.value.code == 2 and "a share from 0 to 1" in capsys.readouterr().err


def test_frame_accuracy_also_scores_the_mouth_while_speaking():
    """A 'front-end' that only tells speech from pauses scores well over all frames and
    near 0 over the speaking ones; r_speaking tells the two apart."""
    from fg3dgs.frontend.train import frame_accuracy

    rng = np.random.default_rng(0)
    T = 400
    speech = (np.arange(T) // 50 % 2).astype(np.float32)                 # on / off, 1 s
    truth = np.zeros((T, 5), np.float32)
    truth[:, 0] = speech * rng.uniform(0.3, 1.0, T)                       # jaw while speaking
    truth[:, 4] = speech

    class SpeechDetector(torch.nn.Module):
        def forward(self, mel):
            out = torch.zeros(1, T, 5)
            out[0, :, 0] = torch.from_numpy(speech * 0.6 + rng.normal(0, 1e-3, T))
            out[0, :, 4] = torch.from_numpy(speech)
            return out

    acc = frame_accuracy(SpeechDetector(), [(np.zeros((T, 80), np.float32), truth)])
    assert acc["jaw_open"]["r"] > 0.6 and abs(acc["jaw_open"]["r_speaking"]) < 0.2
    assert "r_speaking" not in acc["speech"]
