"""Speech input for rendering: any audio file or the audio track of a video, decoded once to
a temporary 16 kHz mono WAV on disk and read back in chunks (memory stays bounded whatever
the length), with its features computed per chunk.

Chunked log-mel features equal the whole-clip ones exactly: each chunk starts on a hop
boundary and carries a margin wider than half an FFT window; the front-end's articulation
carries its receptive field (0.68 s). Transformer features (HuBERT, wav2vec 2.0) see a 2 s
margin of context on each side instead of the whole clip.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..audio_features import CONTEXT_FRAMES, extract
from ..media import AUDIO_RATE, FPS, ffmpeg_exe
from ..mel import HOP, n_frames

SILENCE_PEAK = 1e-3          # -60 dBFS: quieter than this everywhere is silence
SAMPLES_PER_FRAME = AUDIO_RATE // FPS


class AudioInputError(ValueError):
    """Speech that cannot be used: missing, empty, corrupt, not audio, silent, too long."""


def _last_line(text: str, limit: int = 200) -> str:
    """The last line of a tool's message, whole words, at most ``limit`` characters."""
    line = (text.splitlines() or ["(nothing)"])[-1].strip()
    return line if len(line) <= limit else "…" + line[-limit:].split(" ", 1)[-1]


class AudioInput:
    """A decoded speech file. ``samples`` at 16 kHz, ``frames`` = video frames it lasts
    (ceil(samples / 640)); use as a context manager (the temporary WAV is removed on exit)."""

    def __init__(self, path: str | Path, max_seconds: float | None = None):
        path = Path(path)
        if path.is_dir():
            raise AudioInputError(f"{str(path)!r} is a folder; give a speech file (wav, mp3, "
                                  "flac, ogg, m4a or a video with sound)")
        if not path.is_file():
            raise AudioInputError(f"audio file {str(path)!r} does not exist")
        if path.stat().st_size == 0:
            raise AudioInputError(f"{path.name!r} is empty (0 bytes); give a speech file "
                                  "(wav, mp3, flac, ogg, m4a or a video with sound)")
        self.path = path
        self._tmp = tempfile.TemporaryDirectory(prefix="fg3dgs-audio-")
        self.wav = Path(self._tmp.name) / "speech.wav"
        try:
            self._decode(max_seconds)
        except BaseException:       # nothing temporary is left behind on a refusal
            self.close()
            raise

    def _decode(self, max_seconds: float | None) -> None:
        import soundfile as sf

        path = self.path
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-map",
               "0:a:0", "-ac", "1", "-ar", str(AUDIO_RATE), "-c:a", "pcm_s16le",
               str(self.wav)]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0 or not self.wav.is_file():
            err = proc.stderr.decode(errors="replace").strip()
            if "matches no streams" in err or "does not contain any stream" in err:
                raise AudioInputError(f"{path.name!r} has no audio track; give a speech "
                                      "file or a video with sound")
            raise AudioInputError(f"cannot read {path.name!r} as audio (corrupt or not a "
                                  f"supported format: wav, mp3, flac, ogg, m4a, or a video "
                                  f"with sound). ffmpeg said: {_last_line(err)}")
        info = sf.info(str(self.wav))
        self.samples = int(info.frames)
        if self.samples == 0:
            raise AudioInputError(f"{path.name!r} contains no audio samples (0 s long)")
        self.seconds = self.samples / AUDIO_RATE
        if max_seconds is not None and self.seconds > max_seconds:
            raise AudioInputError(f"{path.name!r} is {self.seconds:.1f} s long; the limit "
                                  f"here is {max_seconds:g} s. Trim it, or use the command "
                                  "line (`fg3dgs render`), which has no limit")
        peak = max((float(np.abs(b).max()) for b in
                    sf.blocks(str(self.wav), blocksize=1 << 18, dtype="float32")), default=0.)
        if peak < SILENCE_PEAK:
            raise AudioInputError(f"{path.name!r} is silent (peak level "
                                  f"{20 * np.log10(max(peak, 1e-9)):.0f} dBFS); give speech")
        self.frames = max(1, -(-self.samples // SAMPLES_PER_FRAME))
        self.feature_frames = n_frames(self.samples)

    def __enter__(self) -> AudioInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32 (clipped to the file)."""
        import soundfile as sf

        start, stop = max(0, start), min(self.samples, stop)
        if stop <= start:
            return np.zeros(0, np.float32)
        return sf.read(str(self.wav), start=start, stop=stop, dtype="float32")[0]

    def audio(self) -> np.ndarray:
        """All samples (for short clips: sync scores)."""
        return self.read(0, self.samples)

    def features(self, name: str, k0: int, k1: int, model_id: str | None = None) -> np.ndarray:
        """Feature frames [k0, k1) of the whole clip ([k1 - k0, D]), computed from a chunk."""
        margin = CONTEXT_FRAMES[name]
        a = max(0, k0 - margin)
        b = min(self.feature_frames, k1 + margin)
        chunk = self.read(a * HOP, b * HOP if b < self.feature_frames else self.samples)
        feats = extract(chunk, name, model_id)
        return feats[k0 - a:k1 - a]


class Silence:
    """``frames`` video frames of silence, with the same interface as :class:`AudioInput`
    (previews, stills)."""

    def __init__(self, frames: int):
        self.frames = frames
        self.samples = frames * SAMPLES_PER_FRAME
        self.feature_frames = n_frames(self.samples)

    def features(self, name: str, k0: int, k1: int, model_id: str | None = None) -> np.ndarray:
        # at least a second, so the FFT window fits; every frame of silence is the same
        n = max(self.samples, AUDIO_RATE)
        return extract(np.zeros(n, np.float32), name, model_id)[k0:k1]


def mono_float_chunk(chunk) -> np.ndarray:
    """A streamed chunk as float32 samples [S]; other layouts are refused, not misread."""
    a = np.asarray(chunk)
    if a.ndim != 1 or a.dtype.kind != "f":
        raise AudioInputError(f"stream chunks must be 1-D float arrays of 16 kHz mono samples "
                              f"in [-1, 1], got {a.dtype} of shape {a.shape} (downmix stereo "
                              "with x.mean(1); scale int16 by 1 / 32768)")
    return a.astype(np.float32, copy=False)
