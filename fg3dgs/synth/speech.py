"""Speech with phoneme timings from eSpeak NG, called through its C library.

The ``espeakng-loader`` wheel ships libespeak-ng and its voice data, so no system package is
needed. The library runs in synchronous mode with phoneme events (IPA names); each event's
sample position gives the phoneme's start time.

eSpeak keeps waveform state (pitch-cycle phase) from one utterance to the next, so the same
text spoken twice in one process differs by fractions of a millisecond. To make output a pure
function of (text, voice), each synthesis runs in a fresh worker process (about half a second
of start-up); listing voices runs in this process.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..media import AUDIO_RATE

PAUSE = "_"                   # symbol of silent stretches

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_NOT_FOUND = 2

_STRESS_MARKS = "ˈˌ"


class SpeechError(ValueError):
    """Bad speech input: empty text, unknown voice, parameters out of range."""


class SpeechEngineCrash(SpeechError):
    """The eSpeak worker process died (eSpeak NG crashes on a rare voice and text); the
    message has its exit status. Bulk makers of speech skip that batch."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    """One phoneme (IPA, stress marks removed; ``_`` for a pause) and its time span in s."""

    symbol: str
    start: float
    end: float
    stressed: bool = False


def phonemes_from_ends(ends: list[tuple[str, float]], duration: float) -> list[Phoneme]:
    """[(symbol, end time in s)], each phone running from the previous one's end, -> the
    phonemes over [0, ``duration``]: pauses merged, ends past ``duration`` cut there, the
    rest of the audio a pause."""
    out: list[Phoneme] = []
    start = 0.0
    for symbol, end in ends:
        end = min(end, duration)
        if end <= start:
            continue
        if out and symbol == PAUSE and out[-1].symbol == PAUSE:
            out[-1] = Phoneme(PAUSE, out[-1].start, end)
        else:
            out.append(Phoneme(symbol, start, end))
        start = end
    if start < duration:
        if out and out[-1].symbol == PAUSE:
            out[-1] = Phoneme(PAUSE, out[-1].start, duration)
        else:
            out.append(Phoneme(PAUSE, start, duration))
    return out


@dataclass(frozen=True)
class Voice:
    """An eSpeak voice: language voice name, optional variant (e.g. "f3", "m2"), speaking
    rate in words per minute, base pitch and pitch range (0-100)."""

    name: str = "en-us"
    variant: str | None = None
    rate: int = 165
    pitch: int = 50
    pitch_range: int = 50

    @property
    def espeak_name(self) -> str:
        return self.name if not self.variant else f"{self.name}+{self.variant}"

    @classmethod
    def parse(cls, spec: str) -> Voice:
        """"en-us" or "en-us+f3"."""
        name, _, variant = spec.partition("+")
        return cls(name=name, variant=variant or None)


@dataclass
class Speech:
    """Synthesised speech: mono float32 audio at 16 kHz and its phonemes."""

    audio: np.ndarray
    phonemes: list[Phoneme]
    text: str
    voice: Voice
    sample_rate: int = AUDIO_RATE
    words: list[tuple[float, int]] = field(default_factory=list)  # (start s, text offset)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class _Engine:
    """The loaded library, initialised once per process."""

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.data_path = Path(espeakng_loader.get_data_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
            _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT)
        if self.rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {self.data_path}")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str, int]] = []
        self._callback = _CALLBACK(self._on_audio)   # keep a reference: C holds it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self._events.append((e.type, e.sample, e.id.string.decode("utf-8", "replace"),
                                     e.text_position))
            elif e.type == _EVENT_WORD:
                self._events.append((e.type, e.sample, "", e.text_position))
            i += 1
        return 0

    def voice_ids(self) -> dict[str, str]:
        """English language codes (e.g. "en-us", "en-gb-scotland") -> voice file ids."""
        out, arr, i = {}, self.lib.espeak_ListVoices(None), 0
        while arr[i]:
            v = arr[i].contents
            # languages: (priority byte, code, NUL) pairs; the first code is the main one.
            lang = v.languages[1:].split(b"\0")[0].decode() if v.languages else ""
            if lang.startswith("en"):
                out[lang] = v.identifier.decode()
            i += 1
        return out

    def voices(self) -> list[str]:
        return sorted(self.voice_ids())

    def variants(self) -> list[str]:
        return sorted(p.name for p in (self.data_path / "voices" / "!v").iterdir() if p.is_file())

    def synth(self, text: str, voice: Voice):
        ident = self.voice_ids().get(voice.name, voice.name)
        name = ident if not voice.variant else f"{ident}+{voice.variant}"
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise SpeechError(f"eSpeak voice {voice.espeak_name!r} does not exist; English "
                              f"voices: {', '.join(self.voices())}; variants (after '+'): "
                              f"{', '.join(self.variants())}")
        for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch),
                             (_PARAM_RANGE, voice.pitch_range), (_PARAM_VOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        self.lib.espeak_ng_SetRandSeed(0)     # eSpeak randomises timing and noise
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                    None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"eSpeak NG synthesis failed with error {err}")
        audio = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16))
        return audio, list(self._events)


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def english_voices() -> list[str]:
    """The English voice names eSpeak NG offers here."""
    with _lock:
        return _get_engine().voices()


def voice_variants() -> list[str]:
    """Voice variant names (``f1``.., ``m1``.., ...) that can follow a voice after ``+``."""
    with _lock:
        return _get_engine().variants()


# Variants that sound like ordinary speakers (the rest are effects: whisper, robot, ...).
SPEAKER_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPEAKER_VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd")


# Other languages whose voices read English text with their own phonology: accents beyond
# eSpeak's English ones, for the wide voice draw.
OTHER_LANGUAGES = ("de", "es", "fr", "it", "pt", "nl", "pl", "ru", "hi", "cs", "sk", "hu",
                   "fi", "sv", "da", "tr", "el", "ro", "hr", "bg", "uk", "id", "vi")
# Voice variants of the sync benchmark's eSpeak clips: no training draw uses them.
BENCH_VARIANTS = ("klatt3", "Andrea", "linda", "benjamin")


def wide_variants(held_out) -> list[str]:
    """Every voice variant but those of ``held_out`` and :data:`BENCH_VARIANTS`: the
    training variants of a wide draw."""
    return [v for v in voice_variants() if v not in tuple(held_out) + BENCH_VARIANTS]


def wide_voice(rng: random.Random, variants, other_languages: float = 0.4) -> Voice:
    """A voice of the wide draw: an English accent, or (a share ``other_languages``)
    another language's voice reading English text; a variant of ``variants``; 80-260 words
    per minute, pitch and pitch range 0-99."""
    if other_languages > 0 and rng.random() >= 1 - other_languages:
        name = rng.choice(OTHER_LANGUAGES)
    else:
        name = rng.choice([v for v in english_voices() if v != "en-shaw"])
    return Voice(name, rng.choice(variants), rng.randint(80, 260), rng.randint(0, 99),
                 rng.randint(0, 99))


def voice_for_seed(seed: int) -> Voice:
    """A speaker drawn from the seed: accent, variant, rate, pitch and range."""
    rng = random.Random(seed)
    available = set(english_voices())
    names = [v for v in SPEAKER_VOICES if v in available] or ["en-us"]
    return Voice(name=rng.choice(names), variant=rng.choice(SPEAKER_VARIANTS),
                 rate=rng.randint(140, 190), pitch=rng.randint(30, 70),
                 pitch_range=rng.randint(35, 75))


def _worker_main() -> int:
    """Fresh-process synthesis: a JSON list of requests on stdin; for each, a JSON header
    line, then its raw int16 samples, on stdout (in order, one engine for all of them)."""
    requests = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    out = sys.stdout.buffer
    engine = _get_engine()
    for request in requests:
        try:
            audio, events = engine.synth(request["text"], Voice(**request["voice"]))
        except SpeechError as exc:
            out.write(json.dumps({"error": str(exc)}).encode() + b"\n")
            continue
        header = {"rate": engine.rate, "events": events, "samples": int(len(audio))}
        out.write(json.dumps(header).encode() + b"\n")
        out.write(np.ascontiguousarray(audio, np.int16).tobytes())
    out.flush()
    return 0


def _synth_in_fresh_process(items: list[tuple[str, Voice]]) -> list:
    """[(int16 audio at the engine's rate, events, rate) or a SpeechError] for each
    (text, voice), all from one new Python process (so the same list always gives the same
    waveforms)."""
    from dataclasses import asdict

    request = json.dumps([{"text": t, "voice": asdict(v)} for t, v in items]).encode("utf-8")
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])     # works uninstalled too
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "fg3dgs.synth.speech"], input=request,
                          capture_output=True, env=env)
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip()[-500:]
        raise SpeechEngineCrash(f"the eSpeak worker process failed (exit status "
                                f"{proc.returncode}) on {len(items)} utterance(s): "
                                + (said or "it said nothing"))
    out, body = [], proc.stdout
    for _ in items:
        head, _, body = body.partition(b"\n")
        header = json.loads(head)
        if "error" in header:
            out.append(SpeechError(header["error"]))
            continue
        n = header["samples"]
        audio = np.frombuffer(body[:2 * n], np.int16, count=n)
        body = body[2 * n:]
        out.append((audio, [tuple(e) for e in header["events"]], header["rate"]))
    return out


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono float audio [S] at ``rate_in`` Hz -> float32 at ``rate_out`` Hz (polyphase)."""
    from math import gcd

    from scipy.signal import resample_poly

    if rate_in == rate_out or len(audio) == 0:
        return audio.astype(np.float32)
    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def synthesize(text: str, voice: Voice | None = None) -> Speech:
    """Speak ``text`` with ``voice`` (default en-us); returns 16 kHz audio and phonemes.

    Phoneme starts come from eSpeak's phoneme events; each phoneme ends where the next one
    starts (the last at the end of the audio). Pauses get the symbol ``_``.
    """
    voice = voice or Voice()
    _check_request(text, voice)
    result = _synth_in_fresh_process([(text, voice)])[0]
    if isinstance(result, SpeechError):
        raise result
    return _speech(text, voice, *result)


def synthesize_many(items: list[tuple[str, Voice]]) -> list[Speech]:
    """:func:`synthesize` for many (text, voice) pairs in one worker process: far faster
    than one process each, and the same list gives the same waveforms (eSpeak's state runs
    on from one utterance to the next, so an item's waveform depends on those before it by
    fractions of a millisecond of pitch phase)."""
    for text, voice in items:
        _check_request(text, voice)
    out = []
    for (text, voice), result in zip(items, _synth_in_fresh_process(items)):
        if isinstance(result, SpeechError):
            raise result
        out.append(_speech(text, voice, *result))
    return out


def _check_request(text: str, voice: Voice) -> None:
    if not text or not text.strip():
        raise SpeechError("the text to speak is empty; give some words (or use --sentences)")
    if not 80 <= voice.rate <= 450:
        raise SpeechError(f"speaking rate must be 80-450 words per minute, got {voice.rate}")
    for name, v in (("pitch", voice.pitch), ("pitch range", voice.pitch_range)):
        if not 0 <= v <= 100:
            raise SpeechError(f"{name} must be 0-100, got {v}")
    if voice.variant and voice.variant not in voice_variants():
        raise SpeechError(f"eSpeak voice variant {voice.variant!r} does not exist; variants: "
                          f"{', '.join(SPEAKER_VARIANTS)} (speakers) and "
                          f"{len(voice_variants()) - len(SPEAKER_VARIANTS)} others")


def _speech(text: str, voice: Voice, raw: np.ndarray, events: list, rate: int) -> Speech:
    audio = resample(raw.astype(np.float32) / 32768.0, rate, AUDIO_RATE)
    if not np.any(np.abs(audio) > 1e-3):
        raise SpeechError(f"eSpeak said nothing for {text!r}: there are no words in it; give "
                          "some words")
    duration = len(audio) / AUDIO_RATE
    # (language switches such as "(en)" are events too, not phonemes)
    starts = [(sample / rate, name) for kind, sample, name, _ in events
              if kind == _EVENT_PHONEME and not name.startswith("(")]
    phonemes: list[Phoneme] = []
    for i, (t, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration
        if end <= t:
            continue
        symbol = name.strip(_STRESS_MARKS) or PAUSE
        stressed = any(m in name for m in _STRESS_MARKS)
        if phonemes and symbol == PAUSE and phonemes[-1].symbol == PAUSE:
            phonemes[-1] = Phoneme(PAUSE, phonemes[-1].start, end)
        else:
            phonemes.append(Phoneme(symbol, t, end, stressed))
    if phonemes and phonemes[0].start > 0:
        phonemes.insert(0, Phoneme(PAUSE, 0.0, phonemes[0].start))
    if phonemes and phonemes[-1].end < duration:
        phonemes.append(Phoneme(PAUSE, phonemes[-1].end, duration))
    words = [(sample / rate, pos) for kind, sample, _, pos in events if kind == _EVENT_WORD]
    return Speech(audio=audio, phonemes=phonemes, text=text, voice=voice, words=words)


if __name__ == "__main__":
    sys.exit(_worker_main())
