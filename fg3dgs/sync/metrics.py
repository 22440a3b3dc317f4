"""Audio-visual sync scores by SyncNet's protocol, for any expert.

For every window of 5 frames the face embedding is compared with the audio embedding of the
window shifted by o frames, o in [-15, 15]; the distances are averaged over the clip per
offset. The offset is the o of the smallest mean distance (o > 0: the sound comes o frames
after the picture), D that smallest mean distance, C the median over offsets minus D. With
SyncNet's published weights these are LSE-D and LSE-C; with any other expert they must be
reported under another name (``expert-D`` / ``expert-C``), since the numbers depend on the
network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import mel_windows
from .crops import stack_windows
from .expert import T_FRAMES, SyncExpert

MAX_SHIFT = 15


@dataclass
class SyncScores:
    offset: int             # frames; > 0: audio lags video
    distance: float         # D: mean distance at the best offset (lower is better)
    confidence: float       # C: median minus minimum mean distance (higher is better)
    distances: np.ndarray   # [2 * max_shift + 1] mean distance per offset

    def as_dict(self, prefix: str) -> dict:
        return {f"{prefix}-C": round(self.confidence, 4), f"{prefix}-D": round(self.distance, 4),
                f"{prefix}-offset": self.offset}


@torch.no_grad()
def sync_scores(expert: SyncExpert, crops: torch.Tensor, mel: np.ndarray,
                max_shift: int = MAX_SHIFT, batch: int = 128) -> SyncScores:
    """Crops [N, 3, 48, 96] of N consecutive frames (RGB, [0, 1]), mel [80, T] of the same
    clip -> :class:`SyncScores`. Needs N >= 5."""
    n = len(crops) - T_FRAMES + 1
    if n < 1:
        raise ValueError(f"sync scores need at least {T_FRAMES} frames, got {len(crops)}")
    expert.eval()
    starts = np.arange(n)
    windows = torch.stack([crops[i:i + T_FRAMES] for i in starts])     # [n, 5, 3, 48, 96]
    video = torch.cat([expert.embed_faces(stack_windows(w.flatten(0, 1)))
                       for w in windows.split(batch)])
    audio_starts = np.arange(-max_shift, n + max_shift)
    mels = torch.from_numpy(mel_windows(mel, audio_starts))
    audio = torch.cat([expert.embed_audio(m) for m in mels.split(batch)])
    dists = np.array([(video - audio[o + max_shift: o + max_shift + n]).norm(dim=1).mean()
                      .item() for o in range(-max_shift, max_shift + 1)])
    best = int(np.argmin(dists))
    return SyncScores(offset=best - max_shift, distance=float(dists[best]),
                      confidence=float(np.median(dists) - dists[best]), distances=dists)


def crop_boxes(landmarks: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Face boxes [F, 3] from detected landmarks [F, P, 2] (NaN where no face was found:
    ``fallback`` [F, 3] boxes are used there), smoothed over 5 frames."""
    from .crops import face_boxes, smooth_boxes

    boxes = np.asarray(fallback, np.float64).copy()
    ok = ~np.isnan(landmarks[:, 0, 0])
    if ok.any():
        boxes[ok] = face_boxes(landmarks[ok])
    return smooth_boxes(boxes)


def score_frames(expert: SyncExpert, frames: np.ndarray, boxes: np.ndarray,
                 mel: np.ndarray) -> SyncScores:
    """Frames [F, H, W, 3] float in [0, 1], face boxes [F, 3], mel [80, T] -> scores."""
    from .crops import mouth_crops

    x = torch.from_numpy(np.ascontiguousarray(frames, np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        crops = torch.cat([mouth_crops(x[a:a + 64], torch.from_numpy(boxes[a:a + 64]).float())
                           for a in range(0, len(x), 64)])
    return sync_scores(expert, crops, mel)


def frame_mouth_crops(frames: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """Rendered frames [F, H, W, 3] uint8 and their face boxes [F, 3] -> the expert's mouth
    crops, float16 (kept per batch while a long render goes on)."""
    from .crops import mouth_crops

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    return mouth_crops(x, torch.from_numpy(np.asarray(boxes, np.float32))).half()


def variant_sync_scores(crops: dict[str, list[torch.Tensor]], audio: np.ndarray,
                        expert_spec: str | None) -> dict[str, dict]:
    """Expert-C / D / offset of each variant's mouth crops (:func:`frame_mouth_crops`,
    batch by batch) against their speech [S] (16 kHz); an expert that cannot be loaded or
    fewer than 5 frames are reported unavailable, with the reason."""
    from .audio import sync_mel
    from .io import ExpertError, load_expert

    try:
        expert, _ = load_expert(expert_spec)
    except ExpertError as exc:
        return {v: {"unavailable": str(exc)} for v in crops}
    mel = sync_mel(audio)
    out = {}
    for v, parts in crops.items():
        c = torch.cat(parts).float()
        if len(c) < 5:
            out[v] = {"unavailable": "fewer than 5 frames"}
            continue
        out[v] = sync_scores(expert, c, mel).as_dict("expert")
    return out
