"""The lip-sync benchmark's panel: speech no identity trained on, in three groups.

- ``espeak``: eSpeak NG voice variants outside those the synthetic training clips draw
  from (:data:`fg3dgs.synth.speech.SPEAKER_VARIANTS`), most of them also at rates and
  pitches outside theirs (140-190 wpm, pitch 30-70), speaking sentences outside the corpus;
  the synthetic generator's viseme track of their phonemes is the truth of the jaw.
- ``english``: real read and acted English from the ``moonshine-voice`` wheel's assets.
- ``czech``: real Czech dialogue by voice actors from Debian's ``fillets-ng-data-cs``.
- ``flite``: CMU Flite's voices (speakers of the CMU ARCTIC recordings: speech of another
  engine than eSpeak, with phone timings) speaking sentences outside the corpus; its phones'
  viseme track is the truth of the jaw. Only where the ``flite`` program is installed; a
  front-end trained with ``--flite`` has heard these voices.

The real speech is downloaded once into a cache folder (``$FG3DGS_CACHE``, default
``~/.cache/fg3dgs``) by :func:`fetch_speech`; nothing of it is in the repository. Every clip
is marked ``held_out`` or not: held-out clips are for reporting only, never for training or
tuning anything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import PackageFetchError, cache_dir, debian_package
from ..media import AUDIO_RATE, FPS, read_audio

MOONSHINE = "moonshine-voice==0.1.5"
FILLETS = "fillets-ng-data-cs"
GAP_S = 0.3                      # silence between joined Czech lines


class PanelError(RuntimeError):
    """The panel's real speech is missing or could not be fetched."""


@dataclass(frozen=True)
class ClipSpec:
    name: str
    group: str                   # espeak | english | czech | flite
    held_out: bool
    source: str                  # where the speech comes from, for people


@dataclass
class PanelClip:
    spec: ClipSpec
    audio: np.ndarray            # [S] float32 mono at AUDIO_RATE
    jaw: np.ndarray | None       # [F] truth jaw_open at the video frames, where known

    @property
    def seconds(self) -> float:
        return len(self.audio) / AUDIO_RATE


# eSpeak voices outside the training draws, each with new sentences.
ESPEAK = (
    ("espeak-nyc-klatt3", "en-us-nyc", "klatt3", 205, 24, 60, False,
     "The lighthouse keeper counted seven ships before the fog rolled over the harbour. "
     "Nobody believed him until the morning paper printed the very same number."),
    ("espeak-029-andrea", "en-029", "Andrea", 128, 78, 80, False,
     "Fresh bread, warm milk and a bowl of plums waited on the kitchen table. "
     "She smiled, pulled up a chair and opened the letter from her brother."),
    ("espeak-scotland-linda", "en-gb-scotland", "linda", 172, 62, 30, True,
     "Please move the heavy boxes to the garage before the rain begins tonight. "
     "We will paint the fence blue when the weather is dry again next week."),
    ("espeak-us-benjamin", "en-us", "benjamin", 150, 18, 70, True,
     "A curious fox watched the campers from behind a mossy boulder. "
     "When the fire went out, it crept closer and stole a whole loaf of bread."),
)
# (name, file, start s, end s, held out): cuts snap to the quietest 40 ms within 0.5 s.
ENGLISH = (
    ("two-cities-a", "two_cities.wav", 0.0, 14.0, False),
    ("two-cities-b", "two_cities.wav", 14.0, 28.5, False),
    ("two-cities-c", "two_cities.wav", 28.5, 43.0, True),
    ("endgame-a", "endgame_nagg_nell.wav", 0.0, 14.0, False),
    ("endgame-b", "endgame_nagg_nell.wav", 14.0, 28.5, True),
    ("beckett", "beckett.wav", 0.0, 10.5, True),
)
# (name, level, speaker, held out): that speaker's lines of the level, joined to 10-15 s.
CZECH = (
    ("cs-city-m", "city", "m", False),
    ("cs-city-v", "city", "v", False),
    ("cs-reactor-m", "reactor", "m", True),
    ("cs-reactor-v", "reactor", "v", True),
)

# (name, Flite voice, duration stretch, held out, text)
FLITE = (
    ("flite-slt", "slt", 1.0, False,
     "The orchestra tuned their violins while the last guests found their seats. "
     "A small boy in the front row waved at the drummer, who waved back with a stick."),
    ("flite-rms", "rms", 1.15, False,
     "Our neighbours keep bees in a white box at the bottom of the orchard. "
     "Every August they bring us a jar of dark honey and a loaf of rye bread."),
    ("flite-awb", "awb", 0.95, True,
     "The ferry left the pier an hour late because of the thick morning mist. "
     "Most passengers stayed inside, drinking coffee and reading yesterday's news."),
    ("flite-kal16", "kal16", 1.1, True,
     "Mark the page with a ribbon before you close the heavy dictionary. "
     "Tomorrow we shall look up every word that puzzled us in the old poem."),
)


def speech_dir() -> Path:
    return cache_dir() / "speech"


def specs() -> list[ClipSpec]:
    out = [ClipSpec(n, "espeak", h, f"eSpeak NG {v}+{var}, {r} wpm, pitch {p}")
           for n, v, var, r, p, _, h, _ in ESPEAK]
    out += [ClipSpec(n, "english", h, f"moonshine-voice assets/{f} {a:.1f}-{b:.1f} s")
            for n, f, a, b, h in ENGLISH]
    out += [ClipSpec(n, "czech", h, f"fillets-ng-data-cs {lvl}, speaker {s}")
            for n, lvl, s, h in CZECH]
    out += [ClipSpec(n, "flite", h, f"CMU Flite {v}, duration x{k:g}")
            for n, v, k, h, _ in FLITE]
    return out


# -- fetching -------------------------------------------------------------------------------
def fetch_speech(force: bool = False) -> Path:
    """Download the real speech into :func:`speech_dir` (about 60 MB; pip and apt-get)."""
    root = speech_dir()
    if _have_speech(root) and not force:
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmp = Path(tmp)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", MOONSHINE,
                               "--no-deps", "--quiet", "-d", str(tmp)],
                              capture_output=True, text=True)
        wheels = list(tmp.glob("moonshine_voice-*.whl"))
        if proc.returncode or not wheels:
            raise PanelError(f"pip download {MOONSHINE} failed: {proc.stderr.strip()[-300:]}")
        english = tmp / "english"
        english.mkdir()
        with zipfile.ZipFile(wheels[0]) as z:
            for name in z.namelist():
                if name.startswith("moonshine_voice/assets/") and name.endswith(".wav"):
                    (english / Path(name).name).write_bytes(z.read(name))
        try:
            deb = debian_package(FILLETS, tmp)
        except PackageFetchError as exc:
            raise PanelError(f"the Czech speech: {exc}") from None
        czech = tmp / "czech"
        for f in deb.rglob("sound/*/cs/*.ogg"):
            dest = czech / f.parts[-3]
            dest.mkdir(parents=True, exist_ok=True)
            shutil.move(str(f), dest / f.name)
        for part in ("english", "czech"):
            if (root / part).exists():
                shutil.rmtree(root / part)
            shutil.move(str(tmp / part), root / part)
    return root


def _have_speech(root: Path) -> bool:
    return all((root / "english" / f).is_file() for _, f, *_ in ENGLISH) and \
        all((root / "czech" / lvl).is_dir() for _, lvl, _, _ in CZECH)


# -- building the clips ---------------------------------------------------------------------
def panel_specs(held_out: bool | None = None,
                groups: tuple[str, ...] | None = None) -> list[ClipSpec]:
    """The clips :func:`load_panel` makes: without the flite program the flite group is
    left out, or refused where ``groups`` names it."""
    from ..synth.flite import flite_available

    want = [s for s in specs() if (held_out is None or s.held_out == held_out)
            and (groups is None or s.group in groups)]
    if flite_available():
        return want
    if groups is not None and "flite" in groups:
        raise PanelError("the flite group needs the flite program (apt-get install flite)")
    return [s for s in want if s.group != "flite"]


def load_panel(held_out: bool | None = None, groups: tuple[str, ...] | None = None,
               root: Path | None = None) -> list[PanelClip]:
    """The panel's clips (``held_out``: only those, or only the others; ``groups``: a
    subset). The real speech must have been fetched (:func:`fetch_speech`)."""
    root = root or speech_dir()
    want = panel_specs(held_out, groups)
    if any(s.group in ("english", "czech") for s in want) and not _have_speech(root):
        raise PanelError(f"the panel's real speech is not in {root}; fetch it once with "
                         "`python -m fg3dgs.bench sync --fetch` (about 60 MB)")
    by_name = {s.name: s for s in want}
    out = []
    for row in ESPEAK:
        if row[0] in by_name:
            out.append(_espeak_clip(by_name[row[0]], *row[1:6], row[7]))
    for name, f, a, b, _ in ENGLISH:
        if name in by_name:
            out.append(PanelClip(by_name[name], _cut(read_audio(root / "english" / f), a, b),
                                 None))
    for name, lvl, spk, _ in CZECH:
        if name in by_name:
            out.append(PanelClip(by_name[name], join_lines(root / "czech" / lvl, spk), None))
    for name, voice, stretch, _, text in FLITE:
        if name in by_name:
            out.append(_flite_clip(by_name[name], voice, stretch, text))
    return out


def _truth_jaw(phonemes, seconds: float) -> np.ndarray:
    """[F] the viseme track's jaw_open at the video frames of ``seconds`` of speech."""
    from ..synth.visemes import frame_times, viseme_track

    return viseme_track(phonemes, frame_times(int(np.ceil(seconds * FPS)), FPS))[:, 0]


def _flite_clip(spec: ClipSpec, voice: str, stretch: float, text: str) -> PanelClip:
    from ..synth.flite import FliteVoice, synthesize_flite

    audio, phonemes = synthesize_flite(text, FliteVoice(voice, stretch))
    return PanelClip(spec, audio, _truth_jaw(phonemes, len(audio) / AUDIO_RATE))


def _espeak_clip(spec: ClipSpec, voice: str, variant: str, rate: int, pitch: int,
                 pitch_range: int, text: str) -> PanelClip:
    from ..synth.speech import Voice, synthesize

    speech = synthesize(text, Voice(voice, variant, rate, pitch, pitch_range))
    return PanelClip(spec, speech.audio.astype(np.float32),
                     _truth_jaw(speech.phonemes, speech.duration))


def _quietest(audio: np.ndarray, t: float, reach: float = 0.5) -> int:
    """Sample index of the quietest 40 ms window centre within ``reach`` s of ``t``."""
    w = int(0.04 * AUDIO_RATE)
    lo = max(0, int((t - reach) * AUDIO_RATE))
    hi = min(len(audio) - w, int((t + reach) * AUDIO_RATE))
    if hi <= lo:
        return int(np.clip(t * AUDIO_RATE, 0, len(audio)))
    energy = np.convolve(audio[lo:hi + w] ** 2, np.ones(w), mode="valid")
    return lo + int(np.argmin(energy)) + w // 2


def _cut(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    a = 0 if start <= 0 else _quietest(audio, start)
    b = len(audio) if end * AUDIO_RATE >= len(audio) else _quietest(audio, end)
    return audio[a:b].astype(np.float32)


def join_lines(folder: Path, speaker: str, least: float = 10.0,
                most: float = 15.0) -> np.ndarray:
    """[S] float32: ``speaker``'s lines in ``folder`` (fillets-ng's ``*-SPEAKER-*.ogg``), in
    name order, joined with pauses of GAP_S seconds to at least ``least`` and at most
    ``most`` seconds."""
    gap = np.zeros(int(GAP_S * AUDIO_RATE), np.float32)
    parts, total = [], 0.0
    for f in sorted(folder.glob(f"*-{speaker}-*.ogg")):
        line = read_audio(f)
        secs = len(line) / AUDIO_RATE + GAP_S
        if total + secs > most:
            continue
        parts += [line, gap]
        total += secs
        if total >= least:
            break
    if not parts:
        raise PanelError(f"no lines of speaker {speaker!r} in {folder}")
    return np.concatenate(parts[:-1]).astype(np.float32)
