"""argparse types shared by ``fg3dgs`` and ``python -m fg3dgs.bench``: a bad value stops the
command before any work, with argparse's "error: argument --X: ..." naming the option."""

from __future__ import annotations

import argparse
import math
import os

from .options import POSES, size_problem
from .pose_track import PoseTrackError, load_pose_track


def image_size(text: str) -> int:
    """An image side the pipeline supports (options.size_problem)."""
    n = _integer(text)
    if why := size_problem(n):
        raise argparse.ArgumentTypeError(why)
    return n


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, got {text!r}") from None


def whole_number(lo: int, hi: int | None = None):
    """A whole number in [lo, hi]."""
    def parse(text: str) -> int:
        n = _integer(text)
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(
                f"at least {lo}" + (f" and at most {hi}" if hi is not None else "")
                + f", got {n}")
        return n
    return parse


def finite(text: str) -> float:
    """A finite number."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"a finite number, got {text}")
    return x


def positive(text: str) -> float:
    """A finite number > 0."""
    x = finite(text)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"a finite number above 0, got {text}")
    return x


def within(lo: float, hi: float, what: str):
    """A finite number in [lo, hi]; ``what`` says the range in the error."""
    def parse(text: str) -> float:
        x = finite(text)
        if not lo <= x <= hi:
            raise argparse.ArgumentTypeError(f"{what}, got {text}")
        return x
    return parse


share = within(0, 1, "a share from 0 to 1")


def output_file(*suffixes: str):
    """An output file name ending in one of ``suffixes`` (what the command writes), not an
    existing folder (the write would fail only after all the work)."""
    def parse(text: str) -> str:
        if os.path.isdir(text):
            example = os.path.join(text, "out" + suffixes[0])
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name, e.g. "
                                             f"{example}")
        if not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(
                f"the file is written as {'/'.join(x.lstrip('.').upper() for x in suffixes)}; "
                f"give a name ending in {' or '.join(suffixes)}, got {text!r}")
        return text
    return parse



def pose_source(text: str) -> str:
    """replay, static, or a pose track file (checked here, before anything heavy loads)."""
    if text in POSES:
        return text
    try:
        load_pose_track(text)
    except PoseTrackError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} (--pose takes replay, static or a pose track file)") from None
    return text


# how far the head moves about its central pose
pose_scale = within(0, 4, "from 0 (still) to 4")
