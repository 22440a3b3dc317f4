"""eSpeak NG speech: phoneme timing against the audio, voices, errors, the corpus."""

import numpy as np
import pytest

from fg3dgs.media import AUDIO_RATE
from fg3dgs.synth.corpus import pick_sentences, sentences
from fg3dgs.synth.speech import (
    PAUSE,
    SPEAKER_VOICES,
    SpeechError,
    Voice,
    english_voices,
    synthesize,
    voice_for_seed,
)
from fg3dgs.synth.visemes import is_known

TEXT = "Bob bought five blue shoes. Where would we go, father?"


@pytest.fixture(scope="module")
def speech():
    return synthesize(TEXT, Voice("en-us"))


def test_audio_and_phonemes_tile_the_utterance(speech):
    assert speech.audio.dtype == np.float32 and speech.sample_rate == AUDIO_RATE
    assert 2.0 < speech.duration < 6.0
    ph = speech.phonemes
    assert ph[0].start == 0.0 and ph[0].symbol == PAUSE
    assert abs(ph[-1].end - speech.duration) < 1e-9
    for a, b in zip(ph, ph[1:]):
        assert a.end == b.start and a.end > a.start
    symbols = [p.symbol for p in ph]
    for expected in ("b", "f", "aɪ", "v", "uː", "ʃ", "w"):
        assert expected in symbols


def test_phoneme_times_match_the_audio(speech):
    """Pauses are silent, vowels are loud, and speech restarts where the phoneme after a
    pause starts (within 15 ms)."""
    a, sr = speech.audio, speech.sample_rate
    env = np.sqrt(np.convolve(a ** 2, np.ones(80) / 80, mode="same"))
    onsets = 0
    for i, p in enumerate(speech.phonemes):
        s, e = int(p.start * sr), int(p.end * sr)
        if p.symbol == PAUSE and p.end - p.start > 0.08:
            assert np.sqrt(np.mean(a[s + 320:e - 320] ** 2)) < 1e-3
            if i + 1 < len(speech.phonemes):
                k = np.argmax(env[e - 800:e + 1600] > 0.02 * env.max())
                assert abs((e - 800 + k) / sr - speech.phonemes[i + 1].start) < 0.015
                onsets += 1
        if p.symbol in ("aɪ", "uː", "ɑː") and p.end - p.start > 0.06:
            assert np.sqrt(np.mean(a[s + 160:e - 160] ** 2)) > 0.03
    assert onsets >= 1


def test_deterministic_and_rate_changes_duration():
    a = synthesize("The quick test.", Voice("en-us", rate=150))
    b = synthesize("The quick test.", Voice("en-us", rate=150))
    fast = synthesize("The quick test.", Voice("en-us", rate=300))
    assert np.array_equal(a.audio, b.audio) and a.phonemes == b.phonemes
    assert fast.duration < 0.8 * a.duration


def test_voices_from_seed_vary_and_repeat():
    voices = {voice_for_seed(s) for s in range(20)}
    assert len({v.name for v in voices}) >= 3 and len({v.variant for v in voices}) >= 4
    assert voice_for_seed(5) == voice_for_seed(5)
    for v in list(voices)[:3]:
        assert synthesize("Hello there.", v).duration > 0.3
    assert set(SPEAKER_VOICES) <= set(english_voices())


@pytest.mark.parametrize("text, voice, message", [
    ("", Voice(), "text to speak is empty"),
    ("   \n", Voice(), "text to speak is empty"),
    ("Hi.", Voice("xx-nowhere"), "does not exist"),
    ("Hi.", Voice("en-us", variant="nosuchvariant"), "does not exist"),
    ("Hi.", Voice("en-us", rate=20), "rate must be"),
    ("Hi.", Voice("en-us", pitch=120), "pitch must be"),
    ("...", Voice(), "said nothing"),
])
def test_bad_input(text, voice, message):
    with pytest.raises(SpeechError, match=message):
        synthesize(text, voice)


def test_corpus_is_varied_and_every_phoneme_has_a_viseme():
    lines = sentences()
    assert len(lines) >= 300 and len(set(lines)) == len(lines)
    assert pick_sentences(5, 1) == pick_sentences(5, 1) != pick_sentences(5, 2)
    assert len(pick_sentences(len(lines) + 3, 0)) == len(lines) + 3
    text = " ".join(lines[::8])
    unknown = set()
    for name in SPEAKER_VOICES:
        unknown |= {p.symbol for p in synthesize(text, Voice(name)).phonemes
                    if not is_known(p.symbol)}
    assert not unknown, f"phonemes without a viseme target: {unknown}"
