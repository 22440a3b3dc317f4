"""A second speech engine for the speech front-end's material: CMU Flite's voices.

eSpeak NG's formant synthesis is one kind of sound; Flite's voices are another, built from
recordings of real speakers (``awb``, ``rms``, ``slt``: statistical parametric voices of the
CMU ARCTIC speakers; ``kal16``: a diphone voice). Flite reports each phone's end time
(``-psdur``), so its speech comes with the same kind of truth as eSpeak's: phones in the
generator's IPA symbols (:mod:`fg3dgs.synth.visemes`) and their time spans.

Flite is a system program (Debian / Ubuntu: ``apt-get install flite``); nothing else in the
package needs it.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import AUDIO_RATE
from .speech import PAUSE, Phoneme, SpeechError, phonemes_from_ends, resample

# Voices built into Debian's flite 2.2 at 16 kHz (``kal`` is 8 kHz; ``awb_time`` a demo).
VOICES = ("awb", "rms", "slt", "kal16")

# Flite's US English phone set (CMU ARPAbet, lower case) -> the generator's IPA symbols.
ARPABET = {
    "aa": "ɑː", "ae": "æ", "ah": "ʌ", "ao": "ɔː", "aw": "aʊ", "ax": "ə", "axr": "ɚ",
    "ay": "aɪ", "eh": "ɛ", "er": "ɜː", "ey": "eɪ", "ih": "ɪ", "iy": "iː", "ow": "oʊ",
    "oy": "ɔɪ", "uh": "ʊ", "uw": "uː",
    "b": "b", "ch": "tʃ", "d": "d", "dh": "ð", "dx": "ɾ", "f": "f", "g": "ɡ", "hh": "h",
    "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "p": "p", "r": "ɹ",
    "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "v": "v", "w": "w", "y": "j", "z": "z",
    "zh": "ʒ", "pau": PAUSE, "h#": PAUSE, "brth": PAUSE,
}


class FliteMissing(SpeechError):
    """The ``flite`` program is not installed."""


@dataclass(frozen=True)
class FliteVoice:
    """A Flite voice and its delivery: ``stretch`` scales every duration (1 as the voice
    speaks; 1.3 slower), ``f0`` the mean pitch in Hz (None: the voice's own; only the
    diphone voice ``kal16`` follows it, the others keep their speaker's pitch)."""

    name: str = "slt"
    stretch: float = 1.0
    f0: float | None = None


def random_voice(rng: random.Random) -> FliteVoice:
    """A voice of :data:`VOICES` at 0.75-1.4 of its rate; ``kal16`` at a mean pitch of
    80-180 Hz (the front-end's augmentation moves the others' pitch and formants)."""
    name = rng.choice(VOICES)
    f0 = rng.uniform(80.0, 180.0) if name == "kal16" else None
    return FliteVoice(name, rng.uniform(0.75, 1.4), f0)


def parse_segments(text: str) -> list[tuple[str, float]]:
    """Flite's ``-psdur`` output ("pau:0.197 hh:0.306 ...") -> [(phone, end time in s)]."""
    out = []
    for token in text.split():
        phone, sep, end = token.rpartition(":")
        if not sep:
            continue
        try:
            out.append((phone, float(end)))
        except ValueError:
            continue
    return out


def phonemes_from_segments(segments: list[tuple[str, float]], duration: float) -> list[Phoneme]:
    """[(ARPAbet phone, end s)] -> the generator's phonemes over [0, ``duration``]; pauses
    merged, the last phone stretched or cut to the audio's end. An unknown phone raises."""
    for phone, _ in segments:
        if phone not in ARPABET:
            raise SpeechError(f"Flite phone {phone!r} has no mouth target")
    return phonemes_from_ends([(ARPABET[p], end) for p, end in segments], duration)


def flite_available() -> bool:
    return shutil.which("flite") is not None


def synthesize_flite(text: str, voice: FliteVoice = FliteVoice()) -> tuple[np.ndarray,
                                                                          list[Phoneme]]:
    """Speak ``text``: (mono float32 audio [S] at 16 kHz, phonemes)."""
    exe = shutil.which("flite")
    if exe is None:
        raise FliteMissing("Flite is not installed: on Debian / Ubuntu `apt-get install "
                           "flite`, or leave the Flite share of the speech at 0")
    if not text.strip():
        raise SpeechError("empty text: give some words")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = [exe, "-voice", voice.name, "--setf", f"duration_stretch={voice.stretch:.3f}"]
        if voice.f0 is not None:
            cmd += ["--setf", f"int_f0_target_mean={voice.f0:.1f}"]
        proc = subprocess.run([*cmd, "-psdur", "-t", text, "-o", str(wav)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not wav.exists():
            raise SpeechError(f"flite failed for voice {voice.name!r}: "
                              f"{proc.stderr.strip()[-300:]}")
        with wave.open(str(wav)) as w:
            rate, raw = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0
    audio = resample(audio, rate, AUDIO_RATE)
    phonemes = phonemes_from_segments(parse_segments(proc.stdout), len(audio) / AUDIO_RATE)
    return audio, phonemes
