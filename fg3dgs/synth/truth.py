"""The ground truth of a synthetic clip: ``truth.npz`` plus a short ``truth.json``.

Per-frame region label maps are stored as one zlib stream per frame (labels: 0 none,
1 face skin, 2 eyes, 3 mouth, 4 rest of the head, 5 background and torso), so a minute of
512x512 masks takes a few megabytes; :meth:`Truth.regions` decodes a frame.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..facemesh import LABEL_EYES, LABEL_FACE, LABEL_MOUTH
from .speech import Phoneme

FORMAT_VERSION = 1


class TruthError(ValueError):
    """A folder that is not a synthetic clip with its truth (missing or unreadable files)."""

DESCRIPTION = {
    "fps": "frames per second; frame i covers audio [i / fps, (i + 1) / fps)",
    "K": "[3, 3] camera intrinsics in pixels of the video (OpenCV pinhole)",
    "R": "[F, 3, 3] head rotation: X_camera = R @ X_head + t (OpenCV axes, metres)",
    "t": "[F, 3] head translation in metres",
    "head_angles": "[F, 3] yaw, pitch, roll in degrees",
    "landmarks": "[F, 478, 2] pixel positions of mediapipe's face-mesh landmarks (x, y)",
    "landmarks_head": "[478, 3] the landmarks in head space at rest (mouth closed), metres",
    "visemes": "[F, 4] jaw_open, lip_spread, lip_round, lip_closure in [0, 1]",
    "eye_open": "[F, 2] lid opening relative to the photo, subject's right then left eye",
    "phonemes": "IPA symbols ('_' = pause) with phoneme_start / phoneme_end in seconds",
    "regions": "per-frame label maps (0 none, 1 face, 2 eyes, 3 mouth, 4 head, 5 "
               "background/torso), one zlib stream each: regions_data + regions_offsets",
}


def encode_regions(labels: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(labels, np.uint8).tobytes(), 6)


@dataclass
class Truth:
    arrays: dict
    meta: dict

    @property
    def n_frames(self) -> int:
        return int(self.arrays["R"].shape[0])

    def regions(self, frame: int) -> np.ndarray:
        """[H, W] uint8 label map of one frame."""
        off = self.arrays["regions_offsets"]
        raw = zlib.decompress(self.arrays["regions_data"][off[frame]:off[frame + 1]].tobytes())
        h, w = self.arrays["regions_shape"]
        return np.frombuffer(raw, np.uint8).reshape(h, w)

    def phonemes(self) -> list[Phoneme]:
        """The spoken phonemes as :class:`~fg3dgs.synth.speech.Phoneme` (what the clip
        stored of them), in time order."""
        a = self.arrays
        return [Phoneme(str(sym), float(t0), float(t1), bool(st)) for sym, t0, t1, st in
                zip(a["phonemes"], a["phoneme_start"], a["phoneme_end"], a["phoneme_stressed"])]

    def masks(self, frame: int) -> dict[str, np.ndarray]:
        lab = self.regions(frame)
        return {"face": lab == LABEL_FACE, "eyes": lab == LABEL_EYES, "mouth": lab == LABEL_MOUTH}


def save_truth(folder: Path, arrays: dict, regions: list[bytes], shape: tuple[int, int],
               meta: dict):
    offsets = np.cumsum([0] + [len(r) for r in regions]).astype(np.int64)
    data = np.frombuffer(b"".join(regions), np.uint8)
    np.savez_compressed(folder / "truth.npz", regions_data=data, regions_offsets=offsets,
                        regions_shape=np.array(shape), **arrays)
    info = {"format_version": FORMAT_VERSION, **meta, "fields": DESCRIPTION}
    (folder / "truth.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")


def load_truth(folder: str | Path) -> Truth:
    folder = Path(folder)
    for name in ("truth.json", "truth.npz"):
        if not (folder / name).is_file():
            raise TruthError(f"{folder} is not a synthetic clip folder: {name} is missing "
                             "(fg3dgs synth writes video.mp4, audio.wav, truth.npz and "
                             "truth.json)")
    try:
        meta = json.loads((folder / "truth.json").read_text())
        with np.load(folder / "truth.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zlib.error) as exc:
        raise TruthError(f"{folder}'s truth does not read ({exc}); make the clip again with "
                         "fg3dgs synth") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise TruthError(f"{folder}/truth.json has format version "
                         f"{meta.get('format_version')}, expected {FORMAT_VERSION}")
    return Truth(arrays, meta)
