"""What a render is asked for and what it gives: :class:`RenderOptions` (checked against an
identity's variants before anything is rendered), :class:`RenderResult`, and the labelled
side-by-side composition of the variants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..options import BACKENDS, BLINKS, POSE_ENDS, POSES, VARIANTS, size_problem

LABELS = {"base": "base", "refined": "refined (HRPA lip sync)"}


@dataclass
class RenderOptions:
    variant: str = "both"            # base | refined | both (side by side)
    size: int | None = None          # output side in pixels; default the identity's
    pose: str = "replay"             # replay | static | the path of a pose track (.npz)
    pose_scale: float = 1.0          # head motion about its central pose: 0 still, 2 double
    pose_end: str = "hold"           # a pose track shorter than the speech: hold | loop
    blink: str = "replay"            # replay | auto
    backend: str = "auto"            # auto | cpu | gsplat
    batch: int | None = None         # frames per network / rasterizer call (None: per device)
    chunk_frames: int = 250          # video frames per audio chunk (bounded memory)
    seed: int = 0                    # auto blinks
    max_seconds: float | None = None  # refuse longer speech
    sync_scores: bool = False        # expert-C / D / offset of each variant
    expert: str | None = None        # sync expert for the scores (default: the shipped one)

    def check(self, variants: tuple[str, ...]) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got "
                             f"{self.variant!r}")
        if self.variant != "base" and "refined" not in variants:
            raise ValueError(f"this identity has no refined (HRPA) branch, only "
                             f"{', '.join(variants)}; use variant 'base' (--variant base)")
        if str(self.pose) not in POSES and not Path(self.pose).exists():
            raise ValueError(f"pose must be {', '.join(POSES)} or a pose track file; "
                             f"{str(self.pose)!r} is neither")
        if not (np.isfinite(self.pose_scale) and 0 <= self.pose_scale <= 4):
            raise ValueError(f"pose_scale must be from 0 (still) to 4, got {self.pose_scale}")
        for name, value, allowed in (("blink", self.blink, BLINKS), ("pose_end", self.pose_end,
                                     POSE_ENDS), ("backend", self.backend, BACKENDS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.size is not None and (why := size_problem(self.size)):
            raise ValueError(why)
        if (self.batch is not None and self.batch < 1) or self.chunk_frames < 1:
            raise ValueError("batch and chunk_frames must be at least 1")


@dataclass
class RenderResult:
    videos: dict[str, Path]          # "base" / "refined" / "both" -> MP4 written
    frames: int                      # video frames (= ceil(audio length * 25))
    audio_seconds: float
    render_seconds: float            # wall time of the whole render, encoding included
    backend: str
    size: int
    sync: dict[str, dict] = field(default_factory=dict)   # variant -> expert-C / D / offset
    timings: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # streaming: chunk -> frame
    notes: list[str] = field(default_factory=list)   # for people: what differs from the ask

    @property
    def fps(self) -> float:
        """Rendering speed, frames per second of wall time (the videos play at 25)."""
        return self.frames / max(self.render_seconds, 1e-9)


def side_by_side(images: dict[str, np.ndarray]) -> np.ndarray:
    """Frames [..., H, W, 3] uint8 per variant -> [..., H, W * k, 3] with each labelled."""
    import cv2

    out = []
    for name, img in images.items():
        img = np.ascontiguousarray(img).copy()
        flat = img.reshape(-1, *img.shape[-3:])
        h = flat.shape[1]
        scale = max(0.35, h / 640)
        thick = max(1, int(round(scale * 2)))
        (tw, th), base = cv2.getTextSize(LABELS[name], cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        for f in flat:
            cv2.rectangle(f, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
            cv2.putText(f, LABELS[name], (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (255, 255, 255), thick, cv2.LINE_AA)
        out.append(img)
    return np.concatenate(out, axis=-2)
