"""A contact sheet of a synthetic clip: frames with distinct mouth states, labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io_utils import atomic_output
from .speech import PAUSE
from .truth import load_truth


def pick_frames(visemes: np.ndarray, eye_open: np.ndarray, speaking: np.ndarray) -> list:
    """(frame, caption) for: widest jaw, lips closed mid-speech, most rounded, most spread,
    a blink, and the mouth at rest."""
    jaw, spread, rnd, clo = visemes.T
    picks = [(int(np.argmax(jaw)), "jaw open")]
    closed = np.flatnonzero(speaking & (clo > 0.9))
    if closed.size:
        picks.append((int(closed[np.argmin(jaw[closed])]), "lips closed"))
    picks.append((int(np.argmax(rnd)), "rounded"))
    picks.append((int(np.argmax(spread)), "spread"))
    if eye_open.min() < 0.3:
        picks.append((int(np.argmin(eye_open.mean(1))), "blink"))
    rest = np.flatnonzero(~speaking)
    if rest.size:
        picks.append((int(rest[0]), "rest"))
    return picks


def contact_sheet(folder: str | Path, out: str | Path, tile: int = 256) -> Path:
    import imageio.v3 as iio
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    folder = Path(folder)
    truth = load_truth(folder)
    a = truth.arrays
    times = (np.arange(truth.n_frames) + 0.5) / float(a["fps"])
    idx = np.searchsorted(a["phoneme_end"], times).clip(0, len(a["phonemes"]) - 1)
    symbols = a["phonemes"][idx]
    picks = pick_frames(a["visemes"], a["eye_open"], symbols != PAUSE)
    wanted = {f for f, _ in picks}
    frames = {i: f for i, f in enumerate(iio.imiter(folder / "video.mp4")) if i in wanted}
    sheet = Image.new("RGB", (tile * len(picks), tile + 44), "white")
    draw = ImageDraw.Draw(sheet)
    # DejaVu Sans (shipped with matplotlib) has the IPA glyphs PIL's default font lacks.
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf"
                                  / "DejaVuSans.ttf"), 13)
    small = ImageFont.truetype(font.path, 9)
    for k, (f, caption) in enumerate(picks):
        img = Image.fromarray(frames[f]).resize((tile, tile), Image.LANCZOS)
        sheet.paste(img, (k * tile, 0))
        v = a["visemes"][f]
        draw.text((k * tile + 6, tile + 4), f"{caption}: /{symbols[f]}/ t={times[f]:.2f}s",
                  fill="black", font=font)
        draw.text((k * tile + 6, tile + 22), f"jaw {v[0]:.2f} spread {v[1]:.2f} round "
                  f"{v[2]:.2f} clos. {v[3]:.2f}", fill="black", font=small)
    out = Path(out)
    with atomic_output(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
