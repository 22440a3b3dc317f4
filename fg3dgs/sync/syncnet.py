"""SyncNet (Chung & Zisserman 2016) with its published weights: LSE-C and LSE-D.

The field measures lip sync with the "S" network of joonson/syncnet_python and its weights
``syncnet_v2.model`` (a torch-saved state dict). :class:`SyncNet` has that network's layers
key for key (``netcnnaud`` / ``netfcaud`` for the audio, ``netcnnlip`` / ``netfclip`` for the
face), so the file loads with every key and shape checked. The weights cannot be downloaded
here; without them LSE is reported unavailable, never replaced by another network.

Inputs, prepared as the published pipeline prepares them:

- audio: MFCCs of the 16-bit PCM samples at 16 kHz with python_speech_features' defaults
  (25 ms frames every 10 ms, no window, 512-point FFT, 26 mel bands, pre-emphasis 0.97,
  13 coefficients, lifter 22, c0 replaced by the log frame energy); video frame i's window
  is MFCC frames 4 i .. 4 i + 19 (0.2 s), [B, 1, 13, 20];
- video: 224x224 face crops, BGR, 0..255 (not normalised), 5 consecutive frames as one Conv3d
  input [B, 3, 5, 224, 224]. The crop (``run_pipeline.py``) is a square of side 2.8 s around
  the face detector's box of half side s: from s above the box centre to 1.8 s below it,
  1.4 s to either side, the frame padded with grey 110 where the crop leaves it and resized
  bilinearly; box centres and sizes are median-filtered over 13 frames first.

Scores (``SyncNetInstance.evaluate``): the windows 0 .. n - 1 of both streams are embedded,
n = min(video frames, audio frames) - 5; for every offset o in [-15, 15] the Euclidean
distances between video window i and audio window i + o are averaged over i (audio past
either end counts as a zero embedding, as there). LSE-D = the smallest mean, LSE-C = the
median over offsets minus it, offset = the o of the smallest. The sign follows
:mod:`fg3dgs.sync.metrics` (o > 0: the sound comes o frames after the picture); SyncNet's own
scripts print the opposite sign.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..io_utils import layout_problems
from ..media import AUDIO_RATE, FPS
from .io import ExpertError
from .metrics import MAX_SHIFT, SyncScores

EMBED_DIM = 1024
T_FRAMES = 5                         # video frames per window
MFCC_PER_FRAME = 4                   # 100 Hz MFCCs over 25 fps video
MFCC_STEPS = 20                      # MFCC frames per window (0.2 s)
N_MFCC = 13
CROP_SIZE = 224
CROP_SCALE = 0.4                     # run_pipeline.py's --crop_scale
PAD_VALUE = 110                      # grey outside the frame
BOX_MEDIAN = 13                      # median filter of the detector boxes, in frames
SAMPLES_PER_FRAME = AUDIO_RATE // FPS

# (in, out, kernel, stride, padding, max-pool (kernel, stride, padding) or None); each conv
# is followed by batch norm and ReLU, so module indices match the published file.
AUDIO_CONVS = (
    (1, 64, 3, 1, 1, (1, 1, 0)),
    (64, 192, 3, 1, 1, (3, (1, 2), 0)),
    (192, 384, 3, 1, 1, None),
    (384, 256, 3, 1, 1, None),
    (256, 256, 3, 1, 1, (3, 2, 0)),
    (256, 512, (5, 4), 1, 0, None),
)
LIP_CONVS = (
    (3, 96, (5, 7, 7), (1, 2, 2), 0, ((1, 3, 3), (1, 2, 2), 0)),
    (96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
    (256, 256, (1, 3, 3), 1, (0, 1, 1), None),
    (256, 256, (1, 3, 3), 1, (0, 1, 1), None),
    (256, 256, (1, 3, 3), 1, (0, 1, 1), ((1, 3, 3), (1, 2, 2), 0)),
    (256, 512, (1, 6, 6), 1, 0, None),
)


def _convs(spec, conv, norm, pool) -> nn.Sequential:
    layers = []
    for cin, cout, kernel, stride, padding, pooling in spec:
        layers += [conv(cin, cout, kernel, stride, padding), norm(cout), nn.ReLU()]
        if pooling is not None:
            layers.append(pool(*pooling))
    return nn.Sequential(*layers)


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
                         nn.Linear(512, EMBED_DIM))


class SyncNet(nn.Module):
    """SyncNet's "S" network: 1024-d embeddings (not normalised) of 0.2 s of audio and of
    5 face crops; in sync, the two are close in Euclidean distance."""

    def __init__(self):
        super().__init__()
        self.netcnnaud = _convs(AUDIO_CONVS, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
        self.netfcaud = _head()
        self.netcnnlip = _convs(LIP_CONVS, nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
        self.netfclip = _head()

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows [B, 1, 13, 20] -> [B, 1024]."""
        if mfcc.shape[1:] != (1, N_MFCC, MFCC_STEPS):
            raise ValueError(f"SyncNet's audio input is [B, 1, 13, 20], got {tuple(mfcc.shape)}")
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        """Face crops [B, 3, 5, 224, 224] (BGR, 0..255) -> [B, 1024]."""
        if clips.shape[1:] != (3, T_FRAMES, CROP_SIZE, CROP_SIZE):
            raise ValueError("SyncNet's video input is [B, 3, 5, 224, 224], got "
                             f"{tuple(clips.shape)}")
        return self.netfclip(self.netcnnlip(clips).flatten(1))


def _state_of(obj) -> dict | None:
    """The state dict in a loaded file: the file itself or a checkpoint entry holding one."""
    def is_state(d):
        return isinstance(d, dict) and d and all(isinstance(v, torch.Tensor) for v in d.values())

    if is_state(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "net", "syncnet"):
            if is_state(obj.get(key)):
                return obj[key]
    return None


def load_syncnet(path: str | Path) -> SyncNet:
    """SyncNet in eval mode from a local ``syncnet_v2.model`` (or a checkpoint dict holding
    that state dict). Every parameter and running statistic must be there with its shape;
    only BatchNorm's ``num_batches_tracked`` counters, which files saved before PyTorch 0.4.1
    lack and evaluation never reads, may be absent. Raises :class:`ExpertError`."""
    path = Path(path)
    if not path.is_file():
        raise ExpertError(f"SyncNet weights not found: {path} (syncnet_v2.model, from "
                          "joonson/syncnet_python's download_model.sh)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExpertError(f"{path} is not a readable PyTorch file ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); expected SyncNet's syncnet_v2.model") from exc
    state = _state_of(obj)
    if state is None:
        raise ExpertError(f"{path} holds no state dict of tensors; expected SyncNet's "
                          "syncnet_v2.model")
    state = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
    net = SyncNet()
    want = net.state_dict()
    problems = layout_problems(state, {k: v.shape for k, v in want.items()},
                               may_lack=("num_batches_tracked",))
    if problems:
        raise ExpertError(f"{path} does not fit SyncNet's layout (syncnet_v2.model): {problems}")
    full = dict(want)
    full.update({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    net.load_state_dict(full, strict=True)
    return net.eval()


# --- audio -------------------------------------------------------------------------------

def _mel_filters(n_filters: int, n_fft: int, rate: int) -> np.ndarray:
    """[n_filters, n_fft // 2 + 1] triangles between FFT bins equally spaced in mel (the bin
    edges rounded down, as python_speech_features does)."""
    top = 2595 * np.log10(1 + rate / 2 / 700)
    hz = 700 * (10 ** (np.linspace(0, top, n_filters + 2) / 2595) - 1)
    edges = np.floor((n_fft + 1) * hz / rate)
    bins = np.arange(n_fft // 2 + 1)
    out = np.zeros((n_filters, len(bins)))
    for j, (lo, mid, hi) in enumerate(zip(edges, edges[1:], edges[2:])):
        up, down = (bins >= lo) & (bins < mid), (bins >= mid) & (bins < hi)
        out[j, up] = (bins[up] - lo) / (mid - lo)
        out[j, down] = (hi - bins[down]) / (hi - mid)
    return out


def mfcc(signal: np.ndarray, rate: int = AUDIO_RATE, n_ceps: int = N_MFCC,
         n_filters: int = 26, n_fft: int = 512, win: float = 0.025, step: float = 0.01,
         preemph: float = 0.97, lifter: float = 22.0) -> np.ndarray:
    """[S] samples -> [T, n_ceps] MFCCs, T = 1 + ceil((S - 400) / 160) at 16 kHz (the last
    frame zero-padded), as ``python_speech_features.mfcc`` with its defaults computes them."""
    x = np.asarray(signal, np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("MFCCs need at least one sample")
    x = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    flen, fstep = int(np.floor(win * rate + 0.5)), int(np.floor(step * rate + 0.5))
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / fstep))
    x = np.pad(x, (0, (n - 1) * fstep + flen - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, flen)[::fstep][:n]     # [T, flen]
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft                     # [T, 257]
    eps = np.finfo(float).eps
    energy = power.sum(1)
    bands = power @ _mel_filters(n_filters, n_fft, rate).T                     # [T, 26]
    from scipy.fft import dct

    ceps = dct(np.log(np.where(bands == 0, eps, bands)), type=2, axis=1,
               norm="ortho")[:, :n_ceps]
    if lifter > 0:
        ceps = ceps * (1 + lifter / 2 * np.sin(np.pi * np.arange(n_ceps) / lifter))
    ceps[:, 0] = np.log(np.where(energy == 0, eps, energy))
    return ceps


def syncnet_mfcc(audio: np.ndarray) -> np.ndarray:
    """Float audio [S] at 16 kHz in [-1, 1] -> [13, T] MFCCs of its 16-bit PCM samples (the
    published pipeline reads a pcm_s16le wav without rescaling, which sets c0's level)."""
    pcm = np.clip(np.round(np.asarray(audio, np.float64) * 32768), -32768, 32767)
    return mfcc(pcm).T.astype(np.float32)


# --- video -------------------------------------------------------------------------------

def syncnet_crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Frames [F, H, W, 3] (RGB float in [0, 1]), face boxes [F, 3] (cx, cy, side; see
    :func:`fg3dgs.sync.crops.face_boxes`, read as the face detector's box) -> SyncNet's
    crops [F, 224, 224, 3] uint8 BGR."""
    import cv2
    from scipy.signal import medfilt

    boxes = np.asarray(boxes, np.float64)
    if len(frames) != len(boxes) or boxes.shape[1:] != (3,) or not np.isfinite(boxes).all():
        raise ValueError(f"need one finite (cx, cy, side) box per frame: {len(frames)} "
                         f"frames, boxes {boxes.shape}")
    kernel = max(1, min(BOX_MEDIAN, len(boxes) - 1 + len(boxes) % 2))    # odd, at most F
    x, y, s = (medfilt(boxes[:, j], kernel) for j in range(3))
    s = np.maximum(s / 2, 1.0)                                     # half side
    out = np.empty((len(frames), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for k, frame in enumerate(frames):
        img = (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)[..., ::-1]
        pad = int(s[k] * (1 + 2 * CROP_SCALE))
        img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        cy, cx = y[k] + pad, x[k] + pad
        face = img[int(cy - s[k]):int(cy + s[k] * (1 + 2 * CROP_SCALE)),
                   int(cx - s[k] * (1 + CROP_SCALE)):int(cx + s[k] * (1 + CROP_SCALE))]
        out[k] = cv2.resize(np.ascontiguousarray(face), (CROP_SIZE, CROP_SIZE))
    return out


# --- scores ------------------------------------------------------------------------------

def scores_from_embeddings(video: torch.Tensor, audio: torch.Tensor,
                           max_shift: int = MAX_SHIFT) -> SyncScores:
    """Video and audio embeddings [n, D] of the same n windows -> :class:`SyncScores`
    (distances [2 max_shift + 1], offset o at index o + max_shift)."""
    n = len(video)
    if n < 1 or audio.shape != video.shape:
        raise ValueError(f"need matching [n, D] embeddings, got {tuple(video.shape)} and "
                         f"{tuple(audio.shape)}")
    padded = F.pad(audio, (0, 0, max_shift, max_shift))                 # zeros past the ends
    dists = torch.stack([F.pairwise_distance(video, padded[k:k + n]).mean()
                         for k in range(2 * max_shift + 1)]).float().numpy()
    best = int(np.argmin(dists))
    return SyncScores(offset=best - max_shift, distance=float(dists[best]),
                      confidence=float(np.median(dists) - dists[best]), distances=dists)


@torch.no_grad()
def lse_scores(net: SyncNet, frames: np.ndarray, boxes: np.ndarray, audio: np.ndarray,
               max_shift: int = MAX_SHIFT, batch: int = 20) -> SyncScores:
    """Frames [F, H, W, 3] float in [0, 1], face boxes [F, 3], audio [S] at 16 kHz of the
    same clip -> SyncNet's scores (``distance`` is LSE-D, ``confidence`` LSE-C). Needs at
    least 6 frames of picture and of sound."""
    net.eval()
    n = min(len(frames), len(audio) // SAMPLES_PER_FRAME) - T_FRAMES
    if n < 1:
        raise ValueError(f"LSE needs at least {T_FRAMES + 1} frames of video and audio, got "
                         f"{len(frames)} frames and {len(audio) / SAMPLES_PER_FRAME:.1f} "
                         "frames of audio")
    crops = torch.from_numpy(syncnet_crops(frames, boxes)).permute(3, 0, 1, 2)  # [3, F, 224, 224]
    feats = syncnet_mfcc(audio)
    aud = torch.from_numpy(np.stack([feats[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_STEPS]
                                     for i in range(n)]))[:, None]        # [n, 1, 13, 20]
    device = next(net.parameters()).device
    video, sound = [], []
    for a in range(0, n, batch):
        b = min(n, a + batch)
        clips = torch.stack([crops[:, i:i + T_FRAMES] for i in range(a, b)]).to(device)
        video.append(net.embed_video(clips.float()).float().cpu())
        sound.append(net.embed_audio(aud[a:b].to(device)).float().cpu())
    return scores_from_embeddings(torch.cat(video), torch.cat(sound), max_shift)
