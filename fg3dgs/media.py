"""Audio and video files through the ffmpeg binary that imageio-ffmpeg ships.

Audio inside the project is mono float32 at 16 kHz (docs/design.md). Video is 25 fps
H.264 (yuv420p) with AAC audio in MP4. Every writer works on a temporary file and moves it
into place only when complete.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .io_utils import atomic_output

AUDIO_RATE = 16000
FPS = 25


class MediaError(ValueError):
    """A media file that cannot be read, or frames that cannot be encoded."""


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = AUDIO_RATE):
    """Write mono float audio [S] in [-1, 1] as 16-bit PCM WAV."""
    import soundfile as sf

    with atomic_output(path) as tmp:
        sf.write(tmp, np.clip(np.asarray(audio, np.float32), -1, 1), sample_rate,
                 subtype="PCM_16", format="WAV")


def read_audio(path: str | os.PathLike, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """Decode any audio file, or the audio track of a video, to mono float32 [S]."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file {str(path)!r} does not exist")
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "s16le", "-acodec", "pcm_s16le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"cannot decode audio from {str(path)!r}: "
                         f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
    audio = np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0
    if audio.size == 0:
        raise MediaError(f"{str(path)!r} has no audio track")
    return audio


class VideoWriter:
    """Push RGB uint8 frames [H, W, 3] one at a time into an H.264 MP4; with ``audio_path``
    the first audio track of that file (any format ffmpeg reads, a video too) is muxed in as
    AAC. The file appears at ``path`` only when :meth:`close` succeeds; :meth:`abort` (or
    an exception inside a ``with`` block) leaves nothing behind. ``pix_fmt`` yuv420p plays
    everywhere; yuv444p keeps full colour resolution (internal files such as replay tracks).
    ``queue`` > 0 hands frames to ffmpeg from a background thread through a queue of that
    many frames, so that the caller renders the next frames while ffmpeg takes these (the
    frames must not be modified after :meth:`write`); an ffmpeg failure is raised by the next
    :meth:`write` or by :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: int = FPS,
                 audio_path: str | os.PathLike | None = None, crf: int = 18,
                 pix_fmt: str = "yuv420p", queue: int = 0):
        import imageio_ffmpeg

        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise MediaError(f"video sides must be positive and even, got {width}x{height}")
        self.path, self.shape, self.frames = Path(path), (height, width, 3), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        out = ["-crf", str(crf), "-preset", "veryfast", "-movflags", "+faststart"]
        if audio_path is not None:
            out += ["-b:a", "128k"]      # imageio-ffmpeg maps 0:v:0 and 1:a:0 itself
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".mp4",
                                   dir=self.path.parent)
        self._tmp, self._writer = Path(tmp), None
        try:                             # a failed start or an interrupt: nothing kept
            os.close(fd)
            self._writer = imageio_ffmpeg.write_frames(
                str(self._tmp), (width, height), fps=fps, codec="libx264", macro_block_size=1,
                pix_fmt_out=pix_fmt, output_params=out,
                audio_path=None if audio_path is None else str(audio_path),
                audio_codec="aac" if audio_path is not None else None, ffmpeg_log_level="error")
            self._writer.send(None)      # starts ffmpeg
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._queue, self._error = None, None
        if queue > 0:
            import queue as queue_mod
            import threading

            self._queue = queue_mod.Queue(queue)
            self._thread = threading.Thread(target=self._drain, daemon=True,
                                            name=f"encode {self.path.name}")
            self._thread.start()

    def _drain(self) -> None:
        """Background thread: frames from the queue to ffmpeg until the None at the end;
        after a failure it keeps taking frames (and drops them) so that writers never block."""
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.send(frame)
                except BaseException as exc:     # noqa: BLE001  (re-raised in the caller)
                    self._error = exc

    def _finish_queue(self) -> None:
        if self._queue is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise MediaError(f"video encoding failed: {self._error}") from self._error

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise MediaError(f"frame {self.frames} has shape {frame.shape} {frame.dtype}, "
                             f"expected {self.shape} uint8")
        if self._queue is None:
            self._writer.send(np.ascontiguousarray(frame))
        else:
            if self._error is not None:
                raise MediaError(f"video encoding failed: {self._error}") from self._error
            self._queue.put(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> Path:
        if self.frames == 0:
            self.abort()
            raise MediaError("no frames to encode")
        try:
            self._finish_queue()
        except MediaError:
            self.abort()
            raise
        try:
            self._writer.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        try:
            self._finish_queue()
        except MediaError:
            pass
        try:
            self._writer.close()
        except Exception:       # ffmpeg may already have failed; nothing to keep
            pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = FPS,
                audio: np.ndarray | None = None, sample_rate: int = AUDIO_RATE,
                crf: int = 18, pix_fmt: str = "yuv420p") -> int:
    """Encode RGB uint8 frames [H, W, 3] as H.264 MP4, with mono audio muxed in as AAC.

    Frames are streamed to ffmpeg (memory stays bounded). Returns the number of frames.
    """
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise MediaError("no frames to encode") from None
    h, w = first.shape[:2]
    if first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3 or h % 2 or w % 2:
        raise MediaError(f"frames must be RGB uint8 with even sides, got {first.shape} "
                         f"{first.dtype}")
    with tempfile.TemporaryDirectory() as tmpdir:
        audio_path = None
        if audio is not None:
            audio_path = str(Path(tmpdir) / "audio.wav")
            write_wav(audio_path, audio, sample_rate)
        with VideoWriter(path, w, h, fps, audio_path, crf, pix_fmt) as writer:
            for f in itertools.chain([first], it):
                writer.write(f)
    return writer.frames


def probe(path: str | os.PathLike) -> str:
    """ffmpeg's description of a media file's streams (for checks and messages)."""
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True)
    return "\n".join(line.strip() for line in proc.stderr.splitlines()
                     if "Stream #" in line or "Duration" in line)
