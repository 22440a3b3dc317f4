"""The render pipeline: an identity speaking any audio (one class, used by the command line
and the app).

Per chunk of audio: features of that chunk only; per batch of frames: the audio and
expression encoders, the deformation of each region from the cached H3 encodings, the
rasterization and the fusion over the replayed canvas; frames go straight to the video
encoders, so memory stays bounded whatever the speech's length. Variants (``base`` and the
HRPA-``refined`` mouth) share everything but the mouth network and the colour corrections.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..media import FPS, VideoWriter
from ..model.io import load_identity
from ..train.data import audio_window_index, expr_windows
from .audio_input import AudioInput, Silence
from .motion import plan_motion
from .replay import Replay, load_replay

VARIANTS = ("base", "refined", "both")
LABELS = {"base": "base", "refined": "refined (HRPA lip sync)"}

Progress = Callable[[float, str], None]


@dataclass
class RenderOptions:
    variant: str = "both"            # base | refined | both (side by side)
    size: int | None = None          # output side in pixels; default the identity's
    pose: str = "replay"             # replay | static
    blink: str = "replay"            # replay | auto
    backend: str = "auto"            # auto | cpu | gsplat
    batch: int = 8                   # frames per deformation / rasterization call
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
                             f"{', '.join(variants)}; use variant 'base'")
        if self.size is not None and (self.size < 64 or self.size > 2048 or self.size % 2):
            raise ValueError(f"size must be an even number of pixels in 64-2048, got "
                             f"{self.size}")
        if self.batch < 1 or self.chunk_frames < 1:
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

    @property
    def fps(self) -> float:
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


class TalkingHead:
    """A loaded identity ready to speak.

    >>> head = TalkingHead.load("astronaut-demo")          # zoo id or run folder
    >>> res = head.render("speech.wav", {"both": "out.mp4"})
    """

    def __init__(self, run: str | Path, device: str | torch.device | None = None):
        """``device``: where the networks and rasterizer run; default CUDA when available
        (rasterized by gsplat), else the CPU."""
        self.run = Path(run)
        self.model, self.info, extras = load_identity(self.run)
        self.size = int(self.info["size"])
        self.K = extras["K"].float().numpy()
        self.track_R = extras["track_R"].numpy()
        self.track_t = extras["track_t"].numpy()
        self.track_expression = extras["expression"].numpy()
        replay = load_replay(self.run, self.size)
        if replay is None:
            warnings.warn(f"{self.run} has no replay track (replay.mp4): rendering over the "
                          "background plate without the torso. Write one with "
                          "`fg3dgs zoo export RUN --data DATASET`", stacklevel=2)
            plate = np.round(extras["background"].numpy() * 255).astype(np.uint8)
            n = min(len(self.track_R), 400)
            replay = Replay(np.arange(n), np.broadcast_to(plate, (n, *plate.shape)),
                            np.full((n, 3), np.nan, np.float32))
        self.replay = replay
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model.for_inference(self.device)

    @classmethod
    def load(cls, identity: str | Path, device: str | torch.device | None = None
             ) -> "TalkingHead":
        """From a run folder, or a zoo identity id (pulled from the Hub when needed)."""
        from ..zoo import resolve_identity

        return cls(resolve_identity(identity), device)

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.model.variants)

    # -- frames ---------------------------------------------------------------------------
    def _viewmats(self, rows: np.ndarray) -> torch.Tensor:
        fr = self.replay.frames[rows]
        v = np.tile(np.eye(4, dtype=np.float32), (len(fr), 1, 1))
        v[:, :3, :3], v[:, :3, 3] = self.track_R[fr], self.track_t[fr]
        return torch.from_numpy(v).to(self.device)

    def _canvas(self, rows: np.ndarray, size: int) -> torch.Tensor:
        c = self.replay.canvas[rows]
        if size != self.size:
            import cv2
            c = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR)
                          for x in c])
        return torch.from_numpy(c.astype(np.float32) / 255.0).to(self.device)

    @torch.no_grad()
    def frames(self, audio: AudioInput | Silence, opts: RenderOptions,
               timings: dict | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Yield (output frame numbers [B], their replay rows [B], variant -> frames
        [B, S, S, 3] uint8) batch by batch, in order."""
        opts.check(self.variants)
        size = opts.size or self.size
        names = ["base", "refined"] if opts.variant == "both" else [opts.variant]
        K = self.K.copy()
        K[:2] *= size / self.size
        K = torch.from_numpy(K).to(self.device)
        plan = plan_motion(audio.frames, len(self.replay), self.track_expression,
                           self.replay.frames, opts.pose, opts.blink, opts.seed)
        feat = self.info["audio_features"]
        t = timings if timings is not None else {}
        for c0 in range(0, audio.frames, opts.chunk_frames):
            c1 = min(audio.frames, c0 + opts.chunk_frames)
            idx = audio_window_index(audio.feature_frames, np.arange(c0, c1))
            k0, k1 = int(idx.min()), int(idx.max()) + 1
            tic = time.perf_counter()
            block = audio.features(feat, k0, k1)
            t["audio features"] = t.get("audio features", 0) + time.perf_counter() - tic
            for a in range(c0, c1, opts.batch):
                fr = np.arange(a, min(c1, a + opts.batch))
                rows = plan.replay[fr]
                tic = time.perf_counter()
                aw = torch.from_numpy(block[audio_window_index(audio.feature_frames, fr)
                                            - k0]).to(self.device)
                ew = torch.from_numpy(expr_windows(plan.expression, fr)).to(self.device)
                drive = self.model.drive(aw, ew)
                view, canvas = self._viewmats(rows), self._canvas(rows, size)
                imgs = self.model.render_variants(drive, view, K, size, size, canvas,
                                                  tuple(names), opts.backend)
                out = {v: (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
                       for v, img in imgs.items()}
                t["render"] = t.get("render", 0) + time.perf_counter() - tic
                yield fr, rows, out

    def still(self, variant: str = "base", row: int = 0) -> np.ndarray:
        """[S, S, 3] uint8: the identity silent at replay row ``row`` (previews)."""
        opts = RenderOptions(variant=variant, pose="static", chunk_frames=1, batch=1)
        saved, self.replay = self.replay, Replay(self.replay.frames[row:row + 1],
                                                 self.replay.canvas[row:row + 1],
                                                 self.replay.boxes[row:row + 1])
        try:
            _, _, imgs = next(self.frames(Silence(1), opts))
        finally:
            self.replay = saved
        return imgs[variant][0]

    def save_preview(self, path: str | Path) -> Path:
        import imageio.v3 as iio

        from ..io_utils import atomic_output

        with atomic_output(path) as tmp:
            iio.imwrite(tmp, self.still(), extension=".png")
        return Path(path)

    # -- files ----------------------------------------------------------------------------
    def render(self, audio: str | Path, outputs: dict[str, str | Path] | str | Path,
               opts: RenderOptions | None = None,
               progress: Progress | None = None) -> RenderResult:
        """Render speech to MP4s. ``outputs``: a path (the variant of ``opts``) or a dict of
        "base" / "refined" / "both" -> path. Every file is H.264 + AAC with the input's
        audio, one frame per 40 ms of speech, and appears only when complete."""
        opts = opts or RenderOptions()
        opts.check(self.variants)
        if not isinstance(outputs, dict):
            outputs = {opts.variant: outputs}
        for k in outputs:
            if k not in VARIANTS:
                raise ValueError(f"unknown output {k!r}; choose from {', '.join(VARIANTS)}")
        need = set(outputs) - {"both"} | ({"base", "refined"} if "both" in outputs else set())
        if opts.sync_scores and np.isfinite(self.replay.boxes).all():
            need |= {"base", "refined"} & set(self.variants)
        opts = RenderOptions(**{**opts.__dict__, "variant": "both" if len(need) > 1
                                else next(iter(need))})
        progress = progress or (lambda f, s: None)
        start = time.perf_counter()
        timings: dict[str, float] = {}
        progress(0.0, "reading the audio")
        with AudioInput(audio, opts.max_seconds) as speech:
            size = opts.size or self.size
            writers = {k: VideoWriter(p, size * (2 if k == "both" else 1), size,
                                      audio_path=speech.path) for k, p in outputs.items()}
            crops: dict[str, list] = {v: [] for v in ("base", "refined") if v in need} \
                if opts.sync_scores else {}
            try:
                for fr, rows, imgs in self.frames(speech, opts, timings):
                    tic = time.perf_counter()
                    for k, w in writers.items():
                        batch = side_by_side(imgs) if k == "both" else imgs[k]
                        for f in batch:
                            w.write(f)
                    timings["encode"] = timings.get("encode", 0) + time.perf_counter() - tic
                    for v in crops:
                        crops[v].append(self._mouth_crops(
                            imgs[v], self.replay.boxes[rows] * (size / self.size)))
                    progress(fr[-1] / speech.frames, f"rendering frame {fr[-1] + 1} of "
                             f"{speech.frames}")
                progress(1.0, "encoding the video")
                tic = time.perf_counter()
                for w in writers.values():
                    w.close()
                timings["encode"] = timings.get("encode", 0) + time.perf_counter() - tic
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
            sync = {}
            if crops:
                progress(1.0, "scoring lip sync")
                sync = self._sync(crops, speech.audio(), opts.expert)
            n, secs = speech.frames, speech.seconds
        from ..render.api import resolve_backend
        return RenderResult({k: Path(p) for k, p in outputs.items()}, n, secs,
                            time.perf_counter() - start,
                            resolve_backend(opts.backend, self.device),
                            size, sync, timings)

    @staticmethod
    def _mouth_crops(frames: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        from ..sync.crops import mouth_crops

        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        return mouth_crops(x, torch.from_numpy(np.asarray(boxes, np.float32))).half()

    @staticmethod
    def _sync(crops: dict[str, list], audio: np.ndarray, expert_spec: str | None) -> dict:
        from ..sync.audio import sync_mel
        from ..sync.io import ExpertError, load_expert
        from ..sync.metrics import sync_scores

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
