"""A dataset's frames in memory at the training size, with their driving windows."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..device import to_device
from ..model.identity import REGION_LABELS
from ..model.windows import audio_window_index, audio_windows, expr_windows
from ..preprocess.dataset import Dataset
from ..preprocess.masks import inner_lip_loop, mouth_interior
from .audio_variants import AudioVariantConfig, augmented_feature_sets, draw_variants


def _resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    import cv2
    if img.shape[0] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST if nearest
                      else cv2.INTER_AREA)


@functools.lru_cache(maxsize=16)
def _mask_table(regions: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """[256, R] float: column r is 1 at the labels of ``regions[r]`` (kept per device:
    uploads would sync)."""
    table = torch.zeros(256, len(regions))
    for r, region in enumerate(regions):
        table[list(REGION_LABELS[region]), r] = 1.0
    return table.to(device)


def region_mask(labels: torch.Tensor, region: str) -> torch.Tensor:
    """[B, H, W, 1] float mask of a region from label maps [B, H, W] (integers 0..255):
    one table lookup, not a comparison per label."""
    return region_masks(labels, (region,))


def region_masks(labels: torch.Tensor, regions: tuple[str, ...]) -> torch.Tensor:
    """[B, H, W, R] float masks of ``regions`` (the channels in that order), in one lookup."""
    return _mask_table(tuple(regions), labels.device)[labels]


def region_window(labels: np.ndarray, region: str, margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): the region's bounding box over the batch's label maps [B, H, W] plus
    a margin, clipped to the image (the whole image when the region is absent). It reads the
    host's copy of the labels: reading them on a GPU would make the CPU wait for it."""
    H, W = labels.shape[1:]
    m = np.isin(labels, REGION_LABELS[region]).any(0)
    ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if len(ys) == 0:
        return 0, 0, W, H
    y0, y1 = max(0, int(ys[0]) - margin), min(H, int(ys[-1]) + 1 + margin)
    x0, x1 = max(0, int(xs[0]) - margin), min(W, int(xs[-1]) + 1 + margin)
    return x0, y0, x1 - x0, y1 - y0


def row_variants(rng: np.random.Generator, n: int, copies: int, p: float) -> np.ndarray | None:
    """[n] which feature set drives each of n rows (:meth:`TrainData.audio`); None, the clean
    one for all, without augmented copies: such runs draw nothing, so their random sequence
    stays as it was before the copies existed."""
    if copies <= 0 or p <= 0:
        return None
    return draw_variants(rng, n, copies, p)


NECK_FILL = 0.06      # of the image side: how far the neck shows through up under the chin


def fill_under_chin(canvas: torch.Tensor, head: torch.Tensor, depth: int) -> torch.Tensor:
    """Canvases [B, H, W, 3] with the lowest ``depth`` rows of the head's hole (``head``
    [B, H, W] bool) filled by what is just below it, drawn straight up: the neck continues
    under the chin. Where a rendered jaw ends above the frame's own (the mouth closes
    further than it was, an edge is soft), neck shows there instead of the background
    plate's thin dark line."""
    out, have = canvas.clone(), ~head
    for _ in range(depth):
        take = ~have[:, :-1] & have[:, 1:]             # a hole pixel right above a filled one
        out[:, :-1] = torch.where(take[..., None], out[:, 1:], out[:, :-1])
        have = have.clone()
        have[:, :-1] |= take
    return out


class TrainData:
    """Images [F, S, S, 3] uint8, labels [F, S, S] uint8, cameras, driving signals and the
    background plate, resized to ``size``. ``audio_features=None``: no audio (the frames
    and their canvases only, e.g. another clip's replay track); ``batch`` then gives
    ``audio`` None."""

    def __init__(self, dataset: Dataset | str, size: int, audio_features: str | None = "mel",
                 frames: range | None = None, progress: bool = False,
                 variants: AudioVariantConfig | None = None):
        import imageio.v3 as iio
        from tqdm import tqdm

        ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        self.ds, self.size = ds, size
        idx = np.arange(len(ds)) if frames is None else np.asarray(frames)
        self.index = idx
        scale = size / ds.manifest["size"]
        self.K = ds.K.astype(np.float32).copy()
        self.K[:2] *= scale
        self.viewmats = np.stack([ds.viewmat(int(i)) for i in idx]).astype(np.float32)
        lm = np.asarray(ds.landmarks)
        self.inner_lips = (lm[idx][:, inner_lip_loop(lm.shape[1]), :2] * scale).astype(
            np.float32)                                                  # [N, L, 2]

        def load(i):
            img = iio.imread(ds.path / "frames" / f"{i:06d}.jpg")
            lab = iio.imread(ds.path / "labels" / f"{i:06d}.png")
            return _resize(img, size), _resize(lab, size, nearest=True)

        self.images = np.empty((len(idx), size, size, 3), np.uint8)
        self.labels = np.empty((len(idx), size, size), np.uint8)
        with ThreadPoolExecutor(4) as pool:
            it = pool.map(load, idx.tolist())
            for k, (img, lab) in enumerate(tqdm(it, total=len(idx), desc="loading frames",
                                                unit="frame", disable=not progress)):
                self.images[k], self.labels[k] = img, lab
        bg = iio.imread(ds.path / "background.png")
        self.background = _resize(bg, size).astype(np.float32) / 255.0
        self._plates: dict[str, torch.Tensor] = {}      # the background per device
        self.expression = np.asarray(ds.expression, np.float32)
        if audio_features is None:         # frames and canvases only (a replay track)
            self.features = self.feature_sets = self.model_id = None
            return
        ds.require_features(audio_features)
        # the feature extractor's model the dataset was preprocessed with (None: the default)
        self.model_id = model_id = ds.manifest.get("config", {}).get("models", {}).get(
            audio_features)
        if audio_features == "artic":      # made again where the front-end has changed since
            from ..audio_features import cached_features

            self.features = cached_features(ds.path / "features", ds.audio(), "artic",
                                            model_id).astype(np.float32)
        else:
            self.features = np.asarray(ds._features[audio_features], np.float32)
        # [1 + copies, T, D]: the clean features, then voice-varied copies (training only)
        self.feature_sets = self.features[None]
        if variants is not None and variants.copies > 0:
            self.feature_sets = augmented_feature_sets(ds.audio(), self.features,
                                                       audio_features, variants, model_id)

    def audio(self, frames: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """Audio windows (as :func:`audio_windows`) of dataset frames [B], each from its feature set
        (``variants`` [B]: 0 the clean features, k the k-th augmented copy)."""
        if variants is None:
            return audio_windows(self.features, frames)
        idx = audio_window_index(self.features.shape[0], frames)
        v = np.asarray(variants).reshape(-1, *(1,) * (idx.ndim - 1))
        return self.feature_sets[v, idx]

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def _labels_at(ds: Dataset, i: int, size: int) -> np.ndarray:
        """Frame i's label map [size, size]."""
        return _resize(ds.labels(i), size, nearest=True)

    def interior(self, ks: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """[B, S, S, 1] float: 1 inside the inner lips of the rows ``ks``
        (:func:`~fg3dgs.preprocess.masks.mouth_interior`), drawn only where a loss asks."""
        inside = mouth_interior(self.inner_lips[ks], self.size, 1.5 * self.size / 256)
        return to_device(inside[..., None], device).float()

    def batch(self, ks: np.ndarray, device: torch.device | str = "cpu",
              variants: np.ndarray | None = None) -> dict:
        """Tensors on ``device`` for the rows ``ks`` (positions in this set, not dataset frame
        numbers), driven by the feature sets ``variants`` (see :meth:`audio`). Images travel
        as uint8 and become float there."""
        frames = self.index[ks]
        img = to_device(self.images[ks], device).float() / 255.0
        lab = to_device(self.labels[ks], device).long()
        key = str(device)
        if key not in self._plates:
            self._plates[key] = to_device(self.background, device)
        # the canvas the head is drawn on: the frame itself outside the head (torso, and the
        # background as it is in that frame: next to the person the plate is only inpainted),
        # the plate behind the head, where the frame shows what the render must draw
        head = region_mask(lab, "head")[..., 0].bool()
        canvas = torch.where(head[..., None], self._plates[key][None], img)
        canvas = fill_under_chin(canvas, head, int(round(NECK_FILL * self.size)))
        return {"frames": frames, "image": img, "labels": lab, "canvas": canvas,
                "viewmats": to_device(self.viewmats[ks], device),
                "audio": (None if self.features is None else
                          to_device(self.audio(frames, variants), device)),
                "expression": to_device(expr_windows(self.expression, frames), device)}
