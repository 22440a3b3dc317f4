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
import tomllib

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


# The panel's clips, group by group: a list of rows (dicts) each, as panel.toml holds them.
PANEL: dict[str, list[dict]] = tomllib.loads(
    (Path(__file__).with_name("panel.toml")).read_text(encoding="utf-8"))
# each group's source, for people
SOURCES = {"espeak": "eSpeak NG {voice}+{variant}, {rate} wpm, pitch {pitch}",
           "english": "moonshine-voice assets/{file} {start:.1f}-{end:.1f} s",
           "czech": "fillets-ng-data-cs {level}, speaker {speaker}",
           "flite": "CMU Flite {voice}, duration x{stretch:g}"}


def speech_dir() -> Path:
    return cache_dir() / "speech"


def specs() -> list[ClipSpec]:
    return [ClipSpec(row["name"], group, row["held_out"], SOURCES[group].format(**row))
            for group, rows in PANEL.items() for row in rows]


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
    return all((root / "english" / row["file"]).is_file() for row in PANEL["english"]) and \
        all((root / "czech" / row["level"]).is_dir() for row in PANEL["czech"])


# -- building the clips ---------------------------------------------------------------------
def unavailable() -> dict[str, str]:
    """{group: why} for the groups this machine cannot make (the flite group without the
    flite program)."""
    from ..synth.flite import flite_available

    return {} if flite_available() else {
        "flite": "the flite program is not installed (apt-get install flite)"}


def panel_specs(held_out: bool | None = None,
                groups: tuple[str, ...] | None = None) -> list[ClipSpec]:
    """The clips :func:`load_panel` makes: a group this machine cannot make
    (:func:`unavailable`) is left out, or refused where ``groups`` names it."""
    missing = unavailable()
    refused = [g for g in groups or () if g in missing]
    if refused:
        raise PanelError(f"the {refused[0]} group cannot be made here: {missing[refused[0]]}")
    return [s for s in specs() if (held_out is None or s.held_out == held_out)
            and (groups is None or s.group in groups) and s.group not in missing]


def load_panel(held_out: bool | None = None, groups: tuple[str, ...] | None = None,
               root: Path | None = None) -> list[PanelClip]:
    """The panel's clips (``held_out``: only those, or only the others; ``groups``: a
    subset). The real speech must have been fetched (:func:`fetch_speech`)."""
    root = root or speech_dir()
    want = panel_specs(held_out, groups)
    if any(s.group in ("english", "czech") for s in want) and not _have_speech(root):
        raise PanelError(f"the panel's real speech is not in {root}; fetch it once with "
                         "`python -m fg3dgs.bench sync --fetch` (about 60 MB)")
    make = {"espeak": _espeak_clip, "english": _english_clip, "czech": _czech_clip,
            "flite": _flite_clip}
    by_name = {s.name: s for s in want}
    return [make[group](by_name[row["name"]], row, root) for group, rows in PANEL.items()
            for row in rows if row["name"] in by_name]


def _truth_jaw(phonemes, seconds: float) -> np.ndarray:
    """[F] the viseme track's jaw_open at the video frames of ``seconds`` of speech."""
    from ..synth.visemes import frame_times, viseme_track

    return viseme_track(phonemes, frame_times(int(np.ceil(seconds * FPS)), FPS))[:, 0]


def _english_clip(spec: ClipSpec, row: dict, root: Path) -> PanelClip:
    audio = read_audio(root / "english" / row["file"])
    return PanelClip(spec, _cut(audio, row["start"], row["end"]), None)


def _czech_clip(spec: ClipSpec, row: dict, root: Path) -> PanelClip:
    return PanelClip(spec, join_lines(root / "czech" / row["level"], row["speaker"]), None)


def _flite_clip(spec: ClipSpec, row: dict, root: Path) -> PanelClip:
    from ..synth.flite import FliteVoice, synthesize_flite

    audio, phonemes = synthesize_flite(row["text"], FliteVoice(row["voice"], row["stretch"]))
    return PanelClip(spec, audio, _truth_jaw(phonemes, len(audio) / AUDIO_RATE))


def _espeak_clip(spec: ClipSpec, row: dict, root: Path) -> PanelClip:
    from ..synth.speech import Voice, synthesize

    speech = synthesize(row["text"], Voice(row["voice"], row["variant"], row["rate"],
                                           row["pitch"], row["range"]))
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
