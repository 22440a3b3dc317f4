"""Recorded human speech with phone timings: the Russian voice database of Debian's
``festvox-ru`` (speaker msu_ru_nsh: one man reading 620 sentences, 99.5 minutes at 16 kHz,
BSD-style licence).

The package is a Festival unit-selection voice, so it ships its recordings and, for each,
the phone end times its voice build made (Festival label files, 10 ms steps: an automatic
alignment that came with the corpus, not one of ours). Unlike eSpeak's or Flite's speech
this is a person speaking; its phones become the generator's IPA symbols
(:mod:`fg3dgs.synth.visemes`, whose mouth targets are English ones: Russian vowels are
taken to the nearest English vowel's target), so the recordings come with a mouth truth
of the same kind as the synthetic speech's.

Downloaded once (``apt-get download``, 179 MB) into ``$FG3DGS_CACHE/festvox-ru`` (default
``~/.cache/fg3dgs``), keeping only the recordings and labels (about 190 MB); nothing of it
is in the repository. Every tenth sentence is held out (:func:`utterances`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..io_utils import PackageFetchError, cache_dir, debian_package
from ..media import AUDIO_RATE
from .speech import PAUSE, Phoneme, SpeechError, phonemes_from_ends

PACKAGE = "festvox-ru"
VOICE = "msu_ru_nsh_clunits"
HELD_OUT_EVERY = 10

# Festival's Russian phone set (a doubled vowel: stressed; a doubled consonant: soft, which
# the lips do not show) -> the generator's IPA symbols.
PHONES = {
    "a": "a", "aa": "a", "ay": "ə", "ae": "ɪ", "e": "ɛ", "ee": "ɛ", "i": "i", "ii": "i",
    "o": "o", "oo": "o", "u": "u", "uu": "u", "ur": "ʊ", "y": "ɪ", "yy": "ɪ",
    "p": "p", "b": "b", "m": "m", "f": "f", "v": "v", "t": "t", "d": "d", "n": "n",
    "s": "s", "z": "z", "l": "l", "r": "ɾ", "k": "k", "g": "ɡ", "h": "x", "c": "t",
    "ch": "tʃ", "sh": "ʃ", "zh": "ʒ", "sch": "ʃ", "j": "j", "pau": PAUSE,
}


class CorpusMissing(SpeechError):
    """The recordings are not downloaded and cannot be."""


def ipa(phone: str) -> str:
    """One Festival Russian phone -> the generator's IPA symbol; an unknown one raises."""
    if phone in PHONES:
        return PHONES[phone]
    if len(phone) == 2 and phone[0] == phone[1] and phone[0] in PHONES:   # soft consonant
        return PHONES[phone[0]]
    raise SpeechError(f"Russian phone {phone!r} has no mouth target")


def phonemes_from_label(text: str, duration: float) -> list[Phoneme]:
    """A Festival label file ("END 125 PHONE" lines after a ``#`` line) -> the generator's
    phonemes over [0, ``duration``]: pauses merged, the rest of the audio a pause."""
    lines = text.splitlines()
    if "#" not in lines:
        raise SpeechError("not a Festival label file (no '#' line)")
    ends = [(ipa(parts[2]), float(parts[0])) for parts in
            (line.split() for line in lines[lines.index("#") + 1:]) if len(parts) >= 3]
    return phonemes_from_ends(ends, duration)


def corpus_dir() -> Path:
    return cache_dir() / PACKAGE


def available(root: Path | None = None) -> bool:
    """Whether the corpus is downloaded (``root``: default :func:`corpus_dir`)."""
    root = corpus_dir() if root is None else root
    return (root / "wav").is_dir() and (root / "lab").is_dir() and \
        any((root / "wav").glob("*.wav"))


def fetch(force: bool = False) -> Path:
    """The corpus folder (``wav/``, ``lab/``), downloaded first if it is not there."""
    root = corpus_dir()
    if available(root) and not force:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        try:
            deb = debian_package(PACKAGE, tmp)
        except PackageFetchError as exc:
            raise CorpusMissing(f"the Russian recordings: {exc}") from None
        voice = next(deb.rglob(VOICE), None)
        if voice is None:
            raise CorpusMissing(f"{PACKAGE} has no {VOICE} folder")
        keep = Path(tmp) / "keep"
        keep.mkdir()
        for part in ("wav", "lab"):
            shutil.move(str(voice / part), keep / part)
        if root.exists():
            shutil.rmtree(root)
        shutil.move(str(keep), root)
    return root


def utterances(held_out: bool, root: Path | None = None
               ) -> list[tuple[str, np.ndarray, list[Phoneme]]]:
    """[(name, audio [S] float32 at 16 kHz, phonemes)]: every tenth recording (in name
    order) if ``held_out``, else the others. ``root``: the corpus folder (default
    :func:`fetch`'s)."""
    import soundfile as sf

    root = fetch() if root is None else Path(root)
    out = []
    for i, wav in enumerate(sorted((root / "wav").glob("*.wav"))):
        if (i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1) != held_out:
            continue
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        if rate != AUDIO_RATE:
            raise SpeechError(f"{wav}: {rate} Hz, expected {AUDIO_RATE}")
        audio = audio.mean(1)
        label = (root / "lab" / f"{wav.stem}.lab").read_text()
        out.append((wav.stem, audio, phonemes_from_label(label, len(audio) / AUDIO_RATE)))
    return out
