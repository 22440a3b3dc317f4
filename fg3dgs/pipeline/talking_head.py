"""The render pipeline: an identity speaking any audio (used by the command line and the app;
what is asked and what comes back: :mod:`fg3dgs.pipeline.render_options`).

Per chunk of audio: features of that chunk only; per batch of frames: the audio and
expression encoders, the deformation of each region from the cached H3 encodings, the
rasterization and the fusion over the replayed canvas; frames go straight to the video
encoders, so memory stays bounded whatever the speech's length. Variants (``base`` and the
HRPA-``refined`` mouth) share everything but the mouth network and the colour corrections.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..media import AUDIO_RATE, VideoWriter
from ..model.identity import FG3DGS
from ..model.replay import Replay, open_replay
from ..model.windows import audio_window_index, expr_windows
from ..options import POSES, VARIANTS
from ..pose_track import load_pose_track
from ..sync.metrics import frame_mouth_crops, variant_sync_scores
from ..timing import StageClock
from .audio_input import AudioInput, Silence
from .motion import MotionPlan, plan_motion
from .pose_input import extend, nearest_rows, reference_pose, scale_motion, to_identity_space
from .render_options import RenderOptions, RenderResult, side_by_side
from .streaming import SpeechStream

Progress = Callable[[float, str], None]
ENCODE_QUEUE = 64        # GPU: frames queued for ffmpeg's feeding thread


class TalkingHead:
    """A loaded identity ready to speak.

    >>> head = TalkingHead.load("astronaut-demo")          # zoo id or run folder
    >>> res = head.render("speech.wav", {"both": "out.mp4"})
    """

    def __init__(self, run: str | Path, device: str | torch.device | None = None,
                 verify: bool = True):
        """``device``: where the networks and rasterizer run; default CUDA when available
        (rasterized by gsplat), else the CPU. ``verify``: check the weight files against
        the sha256 that identity.json records."""
        self.run = Path(run)
        self.model = FG3DGS.from_pretrained(self.run, verify=verify)
        self.info, extras = self.model.info, self.model.extras
        self.size = self.info.size
        self.K = extras["K"].float().numpy()
        self.track_R = extras["track_R"].numpy()
        self.track_t = extras["track_t"].numpy()
        self.track_expression = extras["expression"].numpy()
        # the head space's landmarks, to bring other clips' pose tracks into it
        self.canonical = extras["canonical"].double().numpy() if "canonical" in extras else None
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        collect = open_replay(self.run, self.size)   # ffmpeg decodes while the kernels load
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(collect)
            self.model.for_inference(self.device)
            replay = pending.result()
        if replay is None:
            warnings.warn(f"{self.run} has no replay track (replay.safetensors): rendering "
                          "over the background plate without the torso. Write one with "
                          "`fg3dgs zoo export RUN --data DATASET`", stacklevel=2)
            plate = np.round(extras["background"].numpy() * 255).astype(np.uint8)
            n = min(len(self.track_R), 400)
            replay = Replay(np.arange(n), np.broadcast_to(plate, (n, *plate.shape)),
                            np.full((n, 3), np.nan, np.float32))
        self.replay = replay
        self._gpu_canvas = None            # the replay canvases on the GPU (uint8)
        Silence(25).features(self.info.audio_features, 0, 4)  # warm the feature code

    @classmethod
    def load(cls, identity: str | Path, device: str | torch.device | None = None,
             verify: bool = True) -> TalkingHead:
        """From a run folder, or a zoo identity id (pulled from the Hub when needed)."""
        from ..zoo import resolve_identity

        return cls(resolve_identity(identity), device, verify)

    @property
    def default_batch(self) -> int:
        """Frames per call when the options leave it open: 32 on a GPU (the batch of the
        docs/benchmarks.md's GPU measurements; not tuned further), 8 on the CPU."""
        return 32 if self.device.type == "cuda" else 8

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.model.variants)

    def clock(self) -> StageClock:
        """A stage clock that waits for the device at every boundary."""
        return StageClock(torch.cuda.synchronize if self.device.type == "cuda" else None)

    # -- frames ---------------------------------------------------------------------------
    def _plan(self, n: int, opts: RenderOptions) -> MotionPlan:
        """The motion of ``n`` output frames: replay rows and expression, and the head pose
        of each frame (R, t) where a pose track or ``pose_scale`` sets it; the torso then
        comes from the replay row whose head was posed most like it."""
        track = str(opts.pose) not in POSES
        plan = plan_motion(n, len(self.replay), self.track_expression, self.replay.frames,
                           "replay" if track else opts.pose, opts.blink, opts.seed)
        if not track and (opts.pose_scale == 1.0 or opts.pose == "static"):
            return plan
        fr = self.replay.frames
        if track:
            R, t, ref = self._pose_track(opts.pose)
            R, t = extend(R, t, n, opts.pose_end)
        else:
            R, t = self.track_R[fr[plan.replay]], self.track_t[fr[plan.replay]]
            ref = reference_pose(self.track_R[fr], self.track_t[fr])
        R, t = scale_motion(R, t, opts.pose_scale, *ref)
        plan.replay = nearest_rows(R, t, self.track_R[fr], self.track_t[fr])
        plan.R, plan.t = R.astype(np.float32), t.astype(np.float32)
        return plan

    def use_clip(self, dataset, frames: np.ndarray | None = None) -> None:
        """Speak over another clip of the person instead of the replay track: a preprocessed
        dataset's own torso and background, its head poses (moved into the identity's head
        space) and eye states, frame for frame (``pose="replay"``, ``blink="replay"``; past
        its end the clip plays back and forth). ``frames``: only these of its frames (e.g.
        the identity's own validation frames). This is how ``fg3dgs eval`` puts a render
        beside a clip's real frames."""
        from ..pose_track import PoseTrack
        from ..preprocess.dataset import Dataset
        from ..train.replay_writer import replay_from_dataset

        ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        K = np.asarray(ds.K, np.float64).copy()
        K[:2] *= self.size / ds.manifest["size"]
        track = PoseTrack(np.asarray(ds.R, np.float64), np.asarray(ds.t, np.float64), None,
                          None if ds.canonical is None else np.asarray(ds.canonical),
                          str(ds.path))
        R, t = to_identity_space(track, self.canonical, K, self.size)
        self.replay = replay_from_dataset(ds, self.size, frames)
        self.track_R, self.track_t = R.astype(np.float32), t.astype(np.float32)
        self.track_expression = np.asarray(ds.expression, np.float32)
        self.K = K.astype(np.float32)
        self._gpu_canvas = None
        self._pose_cache = (None,)

    def _pose_track(self, path) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(R [F, 3, 3], t [F, 3], its central pose) of a pose track file in this identity's
        head space and camera; read once per file."""
        key = str(Path(path).resolve())
        if getattr(self, "_pose_cache", (None,))[0] != key:
            R, t = to_identity_space(load_pose_track(path), self.canonical, self.K, self.size)
            self._pose_cache = (key, R, t, reference_pose(R, t))
        return self._pose_cache[1:]

    def _viewmats(self, rows: np.ndarray, R: np.ndarray | None = None,
                  t: np.ndarray | None = None) -> torch.Tensor:
        """[B, 4, 4] world-to-camera: the poses of replay rows [B], or R [B, 3, 3], t [B, 3]."""
        if R is None:
            fr = self.replay.frames[rows]
            R, t = self.track_R[fr], self.track_t[fr]
        v = np.tile(np.eye(4, dtype=np.float32), (len(rows), 1, 1))
        v[:, :3, :3], v[:, :3, 3] = R, t
        return torch.from_numpy(v).to(self.device)

    def _canvas(self, rows: np.ndarray, size: int) -> torch.Tensor:
        """[B, S, S, 3] float canvases (the frame, the plate behind the head) of replay rows.
        On a GPU the whole replay track stays there as uint8 (one upload per output size)."""
        if self.device.type == "cpu":
            return torch.from_numpy(self._resized(self.replay.canvas[rows], size)
                                    .astype(np.float32) / 255.0)
        if self._gpu_canvas is None or self._gpu_canvas.shape[1] != size:
            self._gpu_canvas = torch.from_numpy(self._resized(self.replay.canvas, size)
                                                ).to(self.device)
        return self._gpu_canvas[torch.from_numpy(rows).to(self.device)].float() / 255.0

    def _resized(self, canvas: np.ndarray, size: int) -> np.ndarray:
        if size == self.size:
            return canvas
        import cv2
        return np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_LINEAR)
                         for x in canvas])

    def _setup(self, opts: RenderOptions):
        """(variant names, output size, K [3, 3] on the device) for ``opts``."""
        opts.check(self.variants)
        if str(opts.pose) not in POSES:
            self._pose_track(opts.pose)
        size = opts.size or self.size
        names = ("base", "refined") if opts.variant == "both" else (opts.variant,)
        K = self.K.copy()
        K[:2] *= size / self.size
        return names, size, torch.from_numpy(K).to(self.device)

    def _render_batch(self, audio_windows: np.ndarray, expr: np.ndarray, plan: MotionPlan,
                      fr: np.ndarray, names, size: int, K, backend: str, clock: StageClock):
        """Audio windows [B, 8, 16, D], expression windows [B, 5, E], output frames [B] of
        ``plan`` -> variant -> frames [B, S, S, 3] uint8."""
        with clock("networks"):
            drive = self.model.drive(torch.from_numpy(audio_windows).to(self.device),
                                     torch.from_numpy(expr).to(self.device))
        with clock("fusion"):
            rows = plan.replay[fr]
            view = self._viewmats(rows) if plan.R is None else \
                self._viewmats(rows, plan.R[fr], plan.t[fr])
            canvas = self._canvas(rows, size)
        imgs = self.model.render_variants(drive, view, K, size, size, canvas, names,
                                          backend, clock)
        with clock("fusion"):
            return {v: (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
                    for v, img in imgs.items()}

    @torch.no_grad()
    def frames(self, audio: AudioInput | Silence, opts: RenderOptions,
               clock: StageClock | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Yield (output frame numbers [B], their replay rows [B], variant -> frames
        [B, S, S, 3] uint8) batch by batch, in order. ``clock`` gets the time per stage
        (audio features, networks, rasterize, fusion)."""
        names, size, K = self._setup(opts)
        batch = opts.batch or self.default_batch
        plan = self._plan(audio.frames, opts)
        feat = self.info.audio_features
        clock = clock or self.clock()
        for c0 in range(0, audio.frames, opts.chunk_frames):
            c1 = min(audio.frames, c0 + opts.chunk_frames)
            idx = audio_window_index(audio.feature_frames, np.arange(c0, c1))
            k0, k1 = int(idx.min()), int(idx.max()) + 1
            with clock("audio features"):
                block = audio.features(feat, k0, k1)
            for a in range(c0, c1, batch):
                fr = np.arange(a, min(c1, a + batch))
                rows = plan.replay[fr]
                aw = block[audio_window_index(audio.feature_frames, fr) - k0]
                yield fr, rows, self._render_batch(aw, expr_windows(plan.expression, fr),
                                                   plan, fr, names, size, K, opts.backend,
                                                   clock)

    def stream(self, chunks: Iterable[np.ndarray], opts: RenderOptions | None = None,
               timestamps: bool = False) -> Iterator:
        """Live use: consume speech as chunks of 16 kHz mono float samples (any sizes) and
        yield frames [B, S, S, 3] uint8 (the variant of ``opts``; "both" side by side) as
        soon as the audio they need has arrived (see :class:`SpeechStream`, which this
        drives). With ``timestamps``, yields (perf_counter time at which the chunk that made
        the batch ready was taken, or None after the first batch of that chunk; frames)."""
        live = SpeechStream(self, opts or RenderOptions(variant="refined"))
        for chunk in itertools.chain(chunks, [None]):
            handed = time.perf_counter()
            for out in live.push(chunk) if chunk is not None else live.finish():
                yield (handed, out) if timestamps else out
                handed = None

    def still(self, variant: str = "base") -> np.ndarray:
        """[S, S, 3] uint8: the identity silent, posed as the first replay frame (previews)."""
        opts = RenderOptions(variant=variant, pose="static", chunk_frames=1, batch=1)
        _, _, imgs = next(self.frames(Silence(1), opts))
        return imgs[variant][0]

    def save_preview(self, path: str | Path) -> Path:
        import imageio.v3 as iio

        from ..io_utils import atomic_output

        with atomic_output(path) as tmp:
            iio.imwrite(tmp, self.still(), extension=".png")
        return Path(path)

    # -- files ----------------------------------------------------------------------------
    def render(self, audio: str | Path | AudioInput,
               outputs: dict[str, str | Path] | str | Path,
               opts: RenderOptions | None = None,
               progress: Progress | None = None) -> RenderResult:
        """Render speech to MP4s. ``audio``: a file, or an open :class:`AudioInput` (checked
        before the identity loads; the caller closes it). ``outputs``: a path (the variant
        of ``opts``) or a dict of "base" / "refined" / "both" -> path. Every file is H.264 +
        AAC with the input's audio, one frame per 40 ms of speech, and appears only when
        complete."""
        opts = opts or RenderOptions()
        self._setup(opts)           # bad options and pose tracks refused before any output
        if not isinstance(outputs, dict):
            outputs = {opts.variant: outputs}
        for k in outputs:
            if k not in VARIANTS:
                raise ValueError(f"unknown output {k!r}; choose from {', '.join(VARIANTS)}")
        # (the sync scores are of the variants rendered: "both" to compare them)
        need = set(outputs) - {"both"} | ({"base", "refined"} if "both" in outputs else set())
        opts = RenderOptions(**{**opts.__dict__, "variant": "both" if len(need) > 1
                                else next(iter(need))})
        progress = progress or (lambda f, s: None)
        start = time.perf_counter()
        clock = self.clock()
        progress(0.0, "reading the audio")
        opened = audio if isinstance(audio, AudioInput) else None
        with contextlib.nullcontext(opened) if opened else \
                AudioInput(audio, opts.max_seconds) as speech:
            size = opts.size or self.size
            # On a GPU, ffmpeg takes frames from a thread while the next batch renders. On the
            # CPU x264 and the renderer share the cores and the queue gained nothing (2 cores:
            # 27.1 vs 28.7 frames/s, medians of 4).
            queue = ENCODE_QUEUE if self.device.type == "cuda" else 0
            writers: dict[str, VideoWriter] = {}
            crops: dict[str, list] = {v: [] for v in ("base", "refined") if v in need} \
                if opts.sync_scores else {}
            try:        # (opened inside: an interrupt between two openings keeps nothing)
                for k, p in outputs.items():
                    writers[k] = VideoWriter(p, size * (2 if k == "both" else 1), size,
                                             audio_path=speech.path, queue=queue)
                for fr, rows, imgs in self.frames(speech, opts, clock):
                    with clock("encode"):
                        for k, w in writers.items():
                            batch = side_by_side(imgs) if k == "both" else imgs[k]
                            for f in batch:
                                w.write(f)
                    for v in crops:
                        crops[v].append(frame_mouth_crops(
                            imgs[v], self.replay.boxes[rows] * (size / self.size)))
                    progress(fr[-1] / speech.frames, f"rendering frame {fr[-1] + 1} of "
                             f"{speech.frames}")
                progress(1.0, "encoding the video")
                with clock("encode"):
                    for w in writers.values():
                        w.close()
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
            sync = {}
            if crops:
                progress(1.0, "scoring lip sync")
                sync = variant_sync_scores(crops, speech.audio(), opts.expert)
            n, secs = speech.frames, speech.seconds
        from ..render.api import resolve_backend
        return RenderResult({k: Path(p) for k, p in outputs.items()}, n, secs,
                            time.perf_counter() - start,
                            resolve_backend(opts.backend, self.device),
                            size, sync, clock.seconds)

    def render_streaming(self, audio: str | Path | AudioInput, out: str | Path,
                         opts: RenderOptions | None = None, chunk_ms: float = 200.0,
                         progress: Progress | None = None) -> RenderResult:
        """Like :meth:`render` (one output), but through :meth:`stream`: the speech is fed
        in ``chunk_ms`` chunks and frames are encoded as they come; reports the latency
        from each chunk to its first frame. ``audio`` as in :meth:`render`."""
        import statistics

        opts = opts or RenderOptions(variant="refined")
        names, size, _ = self._setup(opts)
        progress = progress or (lambda f, s: None)
        start = time.perf_counter()
        lat = []
        opened = audio if isinstance(audio, AudioInput) else None
        with contextlib.nullcontext(opened) if opened else \
                AudioInput(audio, opts.max_seconds) as speech:
            step = max(1, int(AUDIO_RATE * chunk_ms / 1000))

            def chunks():
                for s0 in range(0, speech.samples, step):
                    yield speech.read(s0, s0 + step)
            with VideoWriter(out, size * len(names), size, audio_path=speech.path) as w:
                for handed, frames in self.stream(chunks(), opts, timestamps=True):
                    if handed is not None:
                        lat.append(1000 * (time.perf_counter() - handed))
                    for f in frames:
                        w.write(f)
                    progress(w.frames / speech.frames, f"streamed frame {w.frames} of "
                             f"{speech.frames}")
            n, secs = speech.frames, speech.seconds
        from ..render.api import resolve_backend
        return RenderResult({opts.variant: Path(out)}, n, secs, time.perf_counter() - start,
                            resolve_backend(opts.backend, self.device), size,
                            latency_ms={"median": statistics.median(lat), "max": max(lat),
                                        "chunk": chunk_ms})
