"""The second speech engine (CMU Flite): its phone timings read into the generator's
phonemes, every phone with a mouth target, speech whose sound starts where its first phone
does, and a clear error where flite is not installed."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from fg3dgs.synth import flite
from fg3dgs.synth.speech import PAUSE, SpeechError
from fg3dgs.synth.visemes import TARGETS, is_known


def test_segments_become_phonemes_over_the_whole_audio():
    segs = flite.parse_segments("pau:0.20 hh:0.30 ax:0.36 l:0.50 ow:0.63 pau:0.80 pau:0.9 "
                                "junk m:1.1\n")
    assert segs[:2] == [("pau", 0.20), ("hh", 0.30)] and len(segs) == 8
    ph = flite.phonemes_from_segments(segs, duration=1.25)
    assert [p.symbol for p in ph] == [PAUSE, "h", "ə", "l", "oʊ", PAUSE, "m", PAUSE]
    # contiguous, from 0 to the audio's end; the two pauses merged
    assert ph[0].start == 0 and ph[-1].end == 1.25
    assert all(a.end == b.start for a, b in zip(ph, ph[1:]))
    assert ph[5].start == pytest.approx(0.63) and ph[5].end == pytest.approx(0.9)
    # a phone running past the audio is cut at its end
    cut = flite.phonemes_from_segments([("aa", 0.5), ("m", 2.0)], duration=1.0)
    assert cut[-1].symbol == "m" and cut[-1].end == 1.0
    with pytest.raises(SpeechError, match="'qq' has no mouth target"):
        flite.phonemes_from_segments([("qq", 0.5)], 1.0)


def test_every_flite_phone_has_its_own_mouth_target():
    for phone, symbol in flite.ARPABET.items():
        assert is_known(symbol), (phone, symbol)
    # distinct mouths where they must differ: lips closed for /m/, rounded for /uw/
    assert TARGETS[flite.ARPABET["m"]].lip_closure == 1.0
    assert TARGETS[flite.ARPABET["uw"]].lip_round > 0.9


def test_random_voices_cover_the_voices_and_rates():
    rng = random.Random(0)
    voices = [flite.random_voice(rng) for _ in range(200)]
    assert {v.name for v in voices} == set(flite.VOICES)
    assert all(0.75 <= v.stretch <= 1.4 for v in voices)
    assert all((v.f0 is None) == (v.name != "kal16") for v in voices)


def test_a_missing_flite_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(flite.FliteMissing, match="apt-get install flite"):
        flite.synthesize_flite("Hello there.")
    from fg3dgs.frontend.train import FrontendTrainConfig, train_frontend

    with pytest.raises(flite.FliteMissing, match="--flite 0"):
        train_frontend(FrontendTrainConfig(minutes=0.1, flite=0.5), tmp_path / "fe",
                       progress=False)
    with pytest.raises(ValueError, match="within 0-1"):
        train_frontend(FrontendTrainConfig(minutes=0.1, flite=1.5), tmp_path / "fe",
                       progress=False)


@pytest.mark.skipif(not flite.flite_available(), reason="flite is not installed "
                    "(apt-get install flite)")
@pytest.mark.parametrize("name", flite.VOICES)
def test_flite_speech_starts_where_its_first_phone_does(name):
    audio, ph = flite.synthesize_flite("Bob saw it. Then we left at once.",
                                       flite.FliteVoice(name, 1.2, 150.0))
    assert audio.dtype == np.float32 and ph[-1].end == pytest.approx(len(audio) / 16000)
    env = np.sqrt(np.convolve(audio ** 2, np.ones(160) / 160, "same"))
    onset = np.argmax(env > 0.05 * env.max()) / 16000
    first = next(p for p in ph if p.symbol != PAUSE)
    assert first.symbol == "b" and abs(onset - first.start) < 0.05, (onset, first)
    # the sound is in the phones, the pauses are quiet
    t = np.arange(len(audio)) / 16000
    quiet = np.zeros(len(audio), bool)
    for p in ph:
        if p.symbol == PAUSE:
            quiet |= (t >= p.start + 0.02) & (t < p.end - 0.02)
    assert env[quiet].mean() < 0.1 * env[~quiet].mean()


@pytest.mark.skipif(not flite.flite_available(), reason="flite is not installed "
                    "(apt-get install flite)")
def test_a_share_of_the_front_ends_speech_from_flite(tmp_path, monkeypatch):
    """``--flite SHARE``: that share of the training speech is Flite's, the rest eSpeak's,
    and the report says Flite's voices were heard."""
    from fg3dgs.frontend import train as ft

    spoken = {}
    real_espeak, real_flite = ft.make_material, ft.make_flite_material

    def espeak(minutes, held_out, seed, progress=True):
        spoken.setdefault(("espeak", held_out), minutes)
        return real_espeak(minutes, held_out, seed, progress)

    def flite_(minutes, held_out, seed, progress=True):
        spoken.setdefault(("flite", held_out), minutes)
        return real_flite(minutes, held_out, seed, progress)

    monkeypatch.setattr(ft, "make_material", espeak)
    monkeypatch.setattr(ft, "make_flite_material", flite_)
    cfg = ft.FrontendTrainConfig(minutes=0.2, flite=0.25, copies=0, steps=2, batch=2,
                                 heldout_minutes=0.05, width=8)
    report = ft.train_frontend(cfg, tmp_path / "fe", progress=False)
    assert spoken[("espeak", False)] == pytest.approx(0.15)
    assert spoken[("flite", False)] == pytest.approx(0.05)
    assert "also in the training speech" in report["flite"]["voices"]
