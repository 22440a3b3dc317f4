"""The project's sentence corpus (``assets/sentences.txt``): phonetically varied English."""

from __future__ import annotations

import random

from ..io_utils import assets_dir


def sentences() -> list[str]:
    """All corpus sentences, in file order."""
    path = assets_dir() / "sentences.txt"
    if not path.is_file():
        raise FileNotFoundError(f"the sentence corpus {path} is missing; reinstall fg3dgs, or "
                                "set FG3DGS_ASSETS to a copy of the repository's assets/ folder")
    lines = path.read_text(encoding="utf-8").splitlines()
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
