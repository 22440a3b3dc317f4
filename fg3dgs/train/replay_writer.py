"""Making an identity's replay track (:mod:`fg3dgs.model.replay`) from a preprocessed
dataset: the canvases (each frame with its head replaced by the background plate), which
track frames they are, and their face boxes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..io_utils import atomic_output, sha256
from ..media import FPS, write_video
from ..model.io import record_file_hashes
from ..model.replay import DEFAULT_SECONDS, INDEX, VIDEO, Replay, ReplayError
from ..preprocess.dataset import Dataset
from ..sync.crops import face_boxes
from .data import TrainData


def write_replay(run: str | Path, dataset, size: int, seconds: float = DEFAULT_SECONDS,
                 start: int = 0) -> Path:
    """Write RUN/replay.mp4 + RUN/replay.safetensors from ``seconds`` of the dataset's
    training frames from ``start`` on, at ``size`` pixels (the identity's size). When RUN
    holds an identity.json, its record of the files' sha256 is updated."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    train = ds.split("train")
    n = max(1, min(int(round(seconds * FPS)), len(train) - start))
    if start < 0 or start >= len(train):
        raise ReplayError(f"replay start {start} is outside the {len(train)} training frames")
    frames = np.asarray(train[start:start + n])
    run = Path(run)

    write_video(run / VIDEO, canvases(ds, size, frames), crf=12, pix_fmt="yuv444p")
    boxes = face_boxes(np.asarray(ds.landmarks)[frames]) * (size / ds.manifest["size"])
    with atomic_output(run / INDEX) as tmp:
        save_file({"frames": torch.from_numpy(frames.astype(np.int64)),
                   "boxes": torch.from_numpy(boxes.astype(np.float32))}, str(tmp),
                  metadata={"video": VIDEO, "video_sha256": sha256(run / VIDEO),
                            "size": str(size)})
    record_file_hashes(run)       # identity.json records the new index's sha256
    return run / VIDEO


def canvases(ds, size: int, frames: np.ndarray) -> Iterator[np.ndarray]:
    """The canvases [S, S, 3] uint8 of dataset frames: each frame with its head replaced by
    the background plate, at ``size`` pixels."""
    for a in range(0, len(frames), 32):
        data = TrainData(ds, size, audio_features=None, frames=frames[a:a + 32])
        canvas = data.batch(np.arange(len(data)))["canvas"].numpy()
        yield from (np.round(c * 255).clip(0, 255).astype(np.uint8) for c in canvas)


def replay_from_dataset(ds, size: int, frames: np.ndarray | None = None) -> Replay:
    """A dataset's frames (``frames`` [F], default every one) as a replay track (in
    memory): another clip's own torso and background under the identity's head."""
    frames = np.arange(len(ds)) if frames is None else np.asarray(frames)
    boxes = face_boxes(np.asarray(ds.landmarks)[frames]) * (size / ds.manifest["size"])
    return Replay(frames, np.stack(list(canvases(ds, size, frames))),
                  boxes.astype(np.float32))
