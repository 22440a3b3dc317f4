"""The replay track of an identity, part of its format: what a new speech is rendered over.

Audio drives the face; the rest of the frame (torso, background) and, by default, the head
pose and the eye state are replayed from a stretch of the training clip. A run folder keeps
that stretch as ``replay.mp4`` (the canvas: each frame with its head replaced by the
background plate, H.264 4:4:4)
and ``replay.safetensors`` (which track frames it shows, and their face boxes for the mouth
crops of the sync scores). The poses and expression come from the identity's own track.
This module reads the track; :mod:`fg3dgs.train.replay_writer` makes it from a dataset.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import sha256

VIDEO, INDEX = "replay.mp4", "replay.safetensors"
DEFAULT_SECONDS = 16.0


class ReplayError(ValueError):
    """A replay track that is missing, damaged or does not fit its identity."""


@dataclass
class Replay:
    """Track frame numbers [n], canvases [n, S, S, 3] uint8, face boxes [n, 3] (pixels)."""

    frames: np.ndarray
    canvas: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def open_replay(run: str | Path, size: int) -> Callable[[], Replay | None]:
    """Check the run's replay index and start decoding its video in ffmpeg's own process;
    returns the function that collects the track: a :class:`Replay`, or None when the run
    has none (trained before replay tracks were written). A damaged track raises
    :class:`ReplayError`. The decoding runs while other loading goes on; the collecting may
    run in a thread, as it only reads a pipe, and the process is started from the caller's
    thread: a fork from another thread can leave numba's thread pool broken in the
    child. ``open_replay(run, size)()`` loads it at once."""
    from safetensors import safe_open

    run = Path(run)
    if not (run / INDEX).is_file():
        return lambda: None
    try:
        with safe_open(str(run / INDEX), "np") as f:
            meta = f.metadata() or {}
            frames, boxes = f.get_tensor("frames"), f.get_tensor("boxes")
    except Exception as exc:   # safetensors raises several types for damaged files
        raise ReplayError(f"{run / INDEX} is not a readable replay index ({exc})") from exc
    video = run / meta.get("video", VIDEO)
    if not video.is_file():
        raise ReplayError(f"{video} is missing (the replay index names it)")
    if meta.get("video_sha256") and sha256(video) != meta["video_sha256"]:
        raise ReplayError(f"{video} does not match the checksum in {INDEX}: the file is "
                          "damaged or was replaced; re-export the identity")
    decoding = _start_decoding(video)

    def collect() -> Replay:
        raw, err = decoding.communicate()
        n = len(raw) // (size * size * 3)
        if decoding.returncode != 0 or n != len(frames) or n * size * size * 3 != len(raw):
            said = err.decode(errors="replace").strip().splitlines()
            why = said[-1] if said else f"ffmpeg gave {n} frames of another size or count"
            raise ReplayError(f"{video} does not hold {len(frames)} frames of "
                              f"{(size, size)} as its index says ({why})")
        canvas = np.frombuffer(bytearray(raw), np.uint8).reshape(n, size, size, 3)  # writable
        return Replay(frames.astype(np.int64), canvas, boxes.astype(np.float32))

    return collect


def _start_decoding(path: Path) -> subprocess.Popen:
    """ffmpeg decoding ``path`` to raw RGB frames on its stdout."""
    from ..media import ffmpeg_exe

    return subprocess.Popen([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
