"""``identity.json``, typed: what an identity is besides its tensors.

The model-shaped part (``config``, ``counts``, ``dtype``) is written from the model when it
is saved; the rest (``meta``) says where it came from and how to drive it. Keys that this
version does not know are kept in ``more`` and written back unchanged, so an identity made by
a newer fg3dgs survives a re-export by an older one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .config import ModelConfig

FORMAT_VERSION = 1


class IdentityError(ValueError):
    """A checkpoint that cannot be loaded (missing, wrong format, mismatched tensors)."""


@dataclass
class IdentityInfo:
    """identity.json. ``size``: the training frames' side in pixels; ``audio_features``:
    the feature kind that drives it (``mel``, ``artic``, ...); ``variants``: ``base`` and,
    with a lip-sync refinement, ``refined``; ``track``: the replay track's ``fps`` and
    ``frames``; ``train``: the preset, the training configuration and the dataset's video
    sha256; ``files``: the sha256 of the weight files; ``audio_model``: what computed its
    features; ``hrpa``, ``observer``, ``retarget``, ``lpips``: the refinement's, the
    mouth observer's, the re-targeting's and LPIPS's records where there are any."""

    config: ModelConfig
    counts: dict[str, int]
    size: int
    audio_features: str = "mel"
    dtype: str = "float32"
    variants: list[str] = field(default_factory=lambda: ["base"])
    track: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    files: dict[str, str] | None = None
    audio_model: dict | None = None
    hrpa: dict | None = None
    observer: dict | None = None
    retarget: dict | None = None
    lpips: dict | None = None
    more: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, d: dict, where: str = "identity.json") -> IdentityInfo:
        """Parse identity.json's contents; :class:`IdentityError` names what is wrong."""
        known = {f.name for f in fields(cls)} - {"more"}
        try:
            cfg = ModelConfig.from_dict(d["config"])
            counts = {r: int(d["counts"][r]) for r in cfg.regions}
            size = int(d["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IdentityError(f"{where} has an invalid model config ({exc!r})") from exc
        rest = {k: v for k, v in d.items() if k in known and k not in
                ("config", "counts", "size")}
        return cls(config=cfg, counts=counts, size=size, **rest,
                   more={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        """identity.json's contents, in the order it has always been written."""
        d = {"format_version": self.format_version, "config": self.config.to_dict(),
             "counts": dict(self.counts), "dtype": self.dtype}
        d.update(self.meta())
        if self.files is not None:
            d["files"] = dict(self.files)
        return d

    def meta(self) -> dict:
        """The part that is not written from the model (nor ``files``, which saving
        computes): what to give :meth:`FG3DGS.save_pretrained` to save a changed model
        with this identity's records."""
        d = {"audio_features": self.audio_features, "size": self.size}
        for f in fields(self):
            if f.name in ("config", "counts", "size", "audio_features", "dtype", "files",
                          "format_version", "more"):
                continue
            v = getattr(self, f.name)
            if v is not None:
                d[f.name] = v
        d.update(self.more)
        return d
