"""Random access to a preprocessed dataset without loading the clip into memory."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from ..audio_features import window
from ..facemesh import LABEL_EYES, LABEL_FACE, LABEL_HEAD, LABEL_MOUTH, LABEL_TORSO
from .pipeline import FORMAT_VERSION


class DatasetError(ValueError):
    """A folder that is not a usable dataset."""


class Dataset:
    """A preprocessed clip: ``Dataset(path)[i]`` gives frame i's image, masks, camera,
    expression and audio window; arrays are memory-mapped, images read on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / "manifest.json"
        if not mf.is_file():
            raise DatasetError(f"{self.path} is not a dataset (no manifest.json); make one "
                               "with `fg3dgs preprocess VIDEO --out DIR`")
        self.manifest = json.loads(mf.read_text())
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{mf} has format version {self.manifest.get('format_version')}"
                               f", this fg3dgs reads {FORMAT_VERSION}; preprocess again")
        self.landmarks = np.load(self.path / "landmarks.npy", mmap_mode="r")
        self.expression = np.load(self.path / "expression.npy", mmap_mode="r")
        cams = np.load(self.path / "cameras.npz")
        self.R, self.t, self.K = cams["R"], cams["t"], cams["K"]
        self.canonical = cams["canonical"] if "canonical" in cams.files else None

    def __len__(self) -> int:
        return int(self.manifest["frames"])

    def split(self, name: str) -> range:
        """Frame indices of "train" or "validation" (the last 1/11 of the clip)."""
        a, b = self.manifest["split"][name]
        return range(a, b)

    @cached_property
    def _features(self) -> dict:
        return {name: np.load(self.path / rel, mmap_mode="r")
                for name, rel in self.manifest["audio"]["features"].items()}

    def image(self, i: int) -> np.ndarray:
        import imageio.v3 as iio
        return iio.imread(self.path / "frames" / f"{i:06d}.jpg").astype(np.float32) / 255.0

    def labels(self, i: int) -> np.ndarray:
        import imageio.v3 as iio
        return iio.imread(self.path / "labels" / f"{i:06d}.png")

    def masks(self, i: int) -> dict[str, np.ndarray]:
        lab = self.labels(i)
        return {"face": lab == LABEL_FACE, "eyes": lab == LABEL_EYES,
                "mouth": lab == LABEL_MOUTH, "head": lab == LABEL_HEAD,
                "torso": lab == LABEL_TORSO, "person": lab > 0}

    def viewmat(self, i: int) -> np.ndarray:
        """[4, 4] world (canonical head space) to camera."""
        v = np.eye(4, dtype=np.float32)
        v[:3, :3] = self.R[i]
        v[:3, 3] = self.t[i]
        return v

    def audio(self) -> np.ndarray:
        """[S] float32 the clip's 16 kHz mono audio."""
        from ..media import read_audio
        return read_audio(self.path / "audio.wav")

    def require_features(self, name: str) -> None:
        """DatasetError, saying what to do, unless the dataset holds audio features ``name``."""
        if name not in self._features:
            raise DatasetError(f"{self.path} has no {name!r} features; it has "
                               f"{', '.join(self._features)} (preprocess it again with "
                               f"--audio-features {name})")

    def audio_window(self, i: int, name: str = "mel", size: int = 16) -> np.ndarray:
        self.require_features(name)
        return window(self._features[name], i, size)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1}")
        return {"image": self.image(i), "masks": self.masks(i), "viewmat": self.viewmat(i),
                "K": self.K, "expression": np.asarray(self.expression[i]),
                "landmarks": np.asarray(self.landmarks[i]), "audio": self.audio_window(i)}
