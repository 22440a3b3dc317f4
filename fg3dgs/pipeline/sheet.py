"""A contact sheet of a rendered video: frames spread over the speech, each labelled with its
time, so one PNG shows the mouth at different moments."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io_utils import atomic_output
from ..media import FPS


def sheet_frames(n_frames: int, tiles: int) -> np.ndarray:
    """Indices [min(tiles, n_frames)] of frames at the middles of equal spans of the video."""
    k = max(1, min(tiles, n_frames))
    return ((np.arange(k) + 0.5) * n_frames / k).astype(int)


def video_sheet(video: str | Path, out: str | Path, tiles: int = 8, columns: int = 4,
                tile_width: int | None = None) -> Path:
    """Write a PNG grid of ``tiles`` frames of ``video`` (each scaled to ``tile_width``
    pixels wide, default its own width; labelled with its time) to ``out``; returns
    ``out``."""
    import imageio.v3 as iio
    from PIL import Image, ImageDraw, ImageFont

    frames = iio.imread(video, plugin="FFMPEG")                 # [T, H, W, 3] uint8
    picks = sheet_frames(len(frames), tiles)
    h, w = frames.shape[1:3]
    tw = tile_width or w
    th = max(1, round(h * tw / w))
    cols = min(columns, len(picks))
    rows = -(-len(picks) // cols)
    sheet = Image.new("RGB", (cols * tw, rows * th), "white")
    font = ImageFont.load_default(size=max(10, th // 16))
    for n, i in enumerate(picks):
        tile = Image.fromarray(frames[i]).resize((tw, th), Image.LANCZOS)
        draw = ImageDraw.Draw(tile)
        label = f"{i / FPS:.2f} s"
        box = draw.textbbox((0, 0), label, font=font)
        draw.rectangle((0, th - box[3] - 8, box[2] + 8, th), fill="black")
        draw.text((4, th - box[3] - 4), label, fill="white", font=font)
        sheet.paste(tile, ((n % cols) * tw, (n // cols) * th))
    with atomic_output(out) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)
