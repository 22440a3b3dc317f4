"""The project's sentence corpus (``assets/sentences.txt``): phonetically varied English."""

from __future__ import annotations

import os
import random
from pathlib import Path


def assets_dir() -> Path:
    """The ``assets/`` folder: $FG3DGS_ASSETS, else the one beside the package."""
    path = Path(os.environ.get("FG3DGS_ASSETS", Path(__file__).resolve().parents[2] / "assets"))
    if not (path / "sentences.txt").is_file():
        raise FileNotFoundError(f"fg3dgs assets not found at {path}; run from a checkout of "
                                "the repository or set FG3DGS_ASSETS to its assets/ folder")
    return path


def sentences() -> list[str]:
    """All corpus sentences, in file order."""
    lines = (assets_dir() / "sentences.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def pick_sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences drawn without repetition (cycling when n exceeds the corpus)."""
    if n < 1:
        raise ValueError(f"the number of sentences must be at least 1, got {n}")
    pool = sentences()
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        order = pool[:]
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out
