"""Where in a frame a render is judged, and how steady it is over time: the jaw-and-neck band,
the mouth box, PSNR inside a mask, and the landmark jitter of a video. Numpy (and OpenCV to
draw the band); the landmarks are mediapipe's 478 points in pixels, NaN where no face was
found."""

from __future__ import annotations

import numpy as np

from ..landmark_schemes import get_scheme, to_ibug68


def band_radius(size: int) -> int:
    """Half-width in pixels of the jaw-and-neck band: 2 % of the frame (5 px at 256)."""
    return max(2, int(round(0.02 * size)))


def jaw_band(landmarks: list[np.ndarray], size: int, radius: int | None = None) -> np.ndarray:
    """[S, S] bool: the pixels within ``radius`` of the face's lower outline (the 17 jaw
    points, ear to ear through the chin) of any of ``landmarks`` (each [478, 2]; e.g. the
    truth's and the render's, so that a chin in either place counts). All False where none
    of them has a face."""
    import cv2

    r = band_radius(size) if radius is None else radius
    jaw = list(get_scheme("mediapipe-478").jaw)
    mask = np.zeros((size, size), np.uint8)
    for lm in landmarks:
        if lm is None or np.isnan(lm[jaw]).any():
            continue
        pts = np.round(lm[jaw] * 16).astype(np.int32)           # 4 fractional bits
        cv2.polylines(mask, [pts], False, 1, thickness=2 * r + 1, lineType=cv2.LINE_8,
                      shift=4)
    return mask.astype(bool)


def mouth_box(landmarks: np.ndarray, size: int, margin: float = 0.6) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a square around the lips of landmarks [478, 2]: the lips' larger
    extent plus ``margin`` of it, clipped to the frame (teeth, lip corners and the chin's
    top fall inside)."""
    lips = get_scheme("ibug-68").mouth_points(to_ibug68(landmarks))
    lo, hi = lips.min(0), lips.max(0)
    c, side = (lo + hi) / 2, (hi - lo).max() * (1 + margin)
    x0, y0 = np.floor(c - side / 2).astype(int)
    x1, y1 = np.ceil(c + side / 2).astype(int)
    return max(0, y0), min(size, y1), max(0, x0), min(size, x1)


def masked_psnr(truth: np.ndarray, render: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of images [H, W, 3] in [0, 1] over the pixels of ``mask`` [H, W] (NaN when
    it is empty)."""
    if not mask.any():
        return float("nan")
    mse = float(((truth[mask] - render[mask]) ** 2).mean())
    return float(-10 * np.log10(max(mse, 1e-12)))


def jitter(landmarks: np.ndarray) -> float:
    """Frame-to-frame shake of a video's face: the median over the 468 mesh points of the
    root-mean-square second difference of their positions, in pixels per frame squared,
    over spans of three consecutive frames that all have a face. Steady or smoothly moving
    points score near 0; a point that trembles from frame to frame scores its amplitude.
    Compare a render with the real video of the same motion: both carry the landmark
    tracker's own noise. (Landmark acceleration is what StableFace's Motion Stability
    Index takes the reciprocal variance of; this is the acceleration itself.) NaN for fewer
    than three frames with faces in a row."""
    lm = np.asarray(landmarks, np.float64)[:, :468]
    acc = lm[2:] - 2 * lm[1:-1] + lm[:-2]                     # [F-2, 468, 2]
    ok = ~np.isnan(acc).any((1, 2))
    if not ok.any():
        return float("nan")
    per_point = np.sqrt((acc[ok] ** 2).sum(-1).mean(0))         # [468]
    return float(np.median(per_point))


def region_psnrs(truth: np.ndarray, render: np.ndarray, lm_truth: np.ndarray,
                 lm_render: np.ndarray, head: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB) of frames [F, S, S, 3] in [0, 1] over the head (``head`` [F, S, S]
    bool), the jaw-and-neck band (either video's jaw line, :func:`jaw_band`) and the mouth
    box (around the real lips, the render's where the real face was not found;
    :func:`mouth_box`). Landmarks [F, 478, 2], NaN where no face."""
    size = truth.shape[1]
    out: dict[str, list] = {"psnr_head": [], "psnr_jaw_band": [], "psnr_mouth": []}
    for k in range(len(truth)):
        out["psnr_head"].append(masked_psnr(truth[k], render[k], head[k]))
        out["psnr_jaw_band"].append(masked_psnr(truth[k], render[k],
                                                jaw_band([lm_truth[k], lm_render[k]], size)))
        ref = lm_truth[k] if not np.isnan(lm_truth[k, 0, 0]) else lm_render[k]
        if not np.isnan(ref[0, 0]):
            y0, y1, x0, x1 = mouth_box(ref, size)
            m = np.zeros((size, size), bool)
            m[y0:y1, x0:x1] = True
            out["psnr_mouth"].append(masked_psnr(truth[k], render[k], m))
    return {k: float(np.nanmean(v)) if v and not np.isnan(v).all() else float("nan")
            for k, v in out.items()}


def mean_ssim(truth: np.ndarray, render: np.ndarray) -> float:
    """Mean SSIM of frames [F, H, W, 3] in [0, 1] (Gaussian window, sigma 1.5, as the
    field reports it)."""
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(t, r, channel_axis=2, data_range=1.0,
                                                gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False)
                          for t, r in zip(truth, render)]))


def lips_lmd(lm_truth: np.ndarray, lm_render: np.ndarray, ok: np.ndarray) -> float:
    """LMD: mean distance (px) of the 20 lip points of landmarks [F, 478, 2] between truth
    and render over the frames ``ok`` [F] where both have a face; NaN without one."""
    if not ok.any():
        return float("nan")
    lips = get_scheme("ibug-68")
    return float(np.linalg.norm(lips.mouth_points(to_ibug68(lm_truth[ok]))
                                - lips.mouth_points(to_ibug68(lm_render[ok])), axis=-1).mean())


def teeth_agreement(truth: np.ndarray, render: np.ndarray, lm_truth: np.ndarray,
                    lm_render: np.ndarray, min_px: float = 20.0) -> dict[str, float]:
    """Do the render's teeth show where the truth's do? Frames [F, S, S, 3] in [0, 1], each
    video's teeth from its own landmarks [F, 478, 2] (:func:`~fg3dgs.preprocess.masks.teeth`).
    Over the frames whose truth shows at least ``min_px`` (at 256 px, scaled by area) of
    teeth: the share where the render shows that much too, and the mean IoU of the two
    videos' teeth (NaN where the truth never shows them)."""
    from ..preprocess.masks import inner_lip_loop, teeth

    S = truth.shape[1]
    need = min_px * (S / 256) ** 2
    ok = ~np.isnan(lm_truth[:, 0, 0]) & ~np.isnan(lm_render[:, 0, 0])
    out = {"teeth_frames": 0, "teeth_shown": float("nan"), "teeth_iou": float("nan")}
    if not ok.any():
        return out
    loop = inner_lip_loop(lm_truth.shape[1])
    t = teeth(truth[ok], lm_truth[ok][:, loop, :2])
    r = teeth(render[ok], lm_render[ok][:, loop, :2])
    shows = t.sum((1, 2)) >= need
    out["teeth_frames"] = int(shows.sum())
    if shows.any():
        out["teeth_shown"] = float((r.sum((1, 2))[shows] >= need).mean())
        out["teeth_iou"] = float(np.mean((t & r)[shows].sum((1, 2))
                                         / (t | r)[shows].sum((1, 2))))
    return out
