"""A PNG sheet of a few dataset frames with landmarks, region overlays and head-pose axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io_utils import atomic_output
from .dataset import Dataset

COLOURS = {1: (255, 200, 0), 2: (0, 160, 255), 3: (255, 0, 90), 4: (120, 255, 120),
           6: (180, 120, 255)}


def preview_sheet(dataset: str | Path, out: str | Path, n: int = 6, tile: int = 256) -> Path:
    from PIL import Image, ImageDraw

    ds = Dataset(dataset)
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int)
    sheet = Image.new("RGB", (tile * n, tile), "white")
    for k, i in enumerate(idx):
        img = (ds.image(i) * 255).astype(np.uint8)
        lab = ds.labels(i)
        over = img.copy()
        for label, colour in COLOURS.items():
            over[lab == label] = colour
        img = (0.6 * img + 0.4 * over).astype(np.uint8)
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        for x, y in ds.landmarks[i][:, :2]:
            draw.point((float(x), float(y)), fill=(0, 255, 0))
        # Head-pose axes from the head-space origin (10 cm long): x red, y green, z blue.
        v = ds.viewmat(i)
        pts = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]]) @ v[:3, :3].T + v[:3, 3]
        uv = pts[:, :2] / pts[:, 2:3] * np.diag(ds.K)[:2] + ds.K[:2, 2]
        for end, colour in zip(uv[1:], ((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            draw.line([tuple(uv[0]), tuple(end)], fill=colour, width=3)
        draw.text((4, 4), f"frame {i}", fill=(255, 255, 255))
        sheet.paste(pil.resize((tile, tile)), (k * tile, 0))
    out = Path(out)
    with atomic_output(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
