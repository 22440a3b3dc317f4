"""Fixtures shared by several test modules, each built once per session.

Everything is generated here, in the session's temporary folder (``tmp_path_factory``);
nothing is committed but this code. The shared things are read-only: a test that changes
one (writes into a clip's folder, calls ``use_clip`` on the head) makes its own copy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function that returns a free TCP port on 127.0.0.1 each time it is called: bound,
    read and released, so nothing listens there until the caller starts a server on it
    (a server to start, or an address that refuses connections)."""
    from fg3dgs.io_utils import free_port

    return free_port


@pytest.fixture(scope="session")
def synth_clip(tmp_path_factory) -> Callable:
    """A function ``synth_clip(SynthConfig) -> Path``: the folder of the synthetic clip that
    ``fg3dgs.synth.clip.generate`` writes for that config (video.mp4 at ``cfg.size`` px and
    25 fps with AAC audio, audio.wav at 16 kHz, truth.json and truth.npz), made on the first
    call and the same folder on every later call with an equal config (all fields compared).
    The folder is named ``clip``. About a second for a few seconds of speech at 256 px on
    the CPU."""
    from fg3dgs.synth.clip import generate

    made: dict[str, Path] = {}

    def make(cfg) -> Path:
        key = repr(cfg)
        if key not in made:
            out = tmp_path_factory.mktemp("synth") / "clip"
            generate(cfg, out, progress=False)
            made[key] = out
        return made[key]
    return make


@pytest.fixture(scope="session")
def synth_dataset(synth_clip, tmp_path_factory) -> Callable:
    """A function ``synth_dataset(SynthConfig, PreprocessConfig) -> Path``: the dataset
    folder that ``fg3dgs.preprocess.pipeline.preprocess`` makes of ``synth_clip(synth)``
    (frames/, labels/, landmarks.npy, cameras.npz, expression.npy, audio.wav, features/,
    background.png and manifest.json, frames of ``preprocess.size`` px), made on the first
    call and the same folder on every later call with equal configs. About 3-6 s for 6 s of
    video (150 frames) on the CPU."""
    from fg3dgs.preprocess.pipeline import preprocess

    made: dict[tuple[str, str], Path] = {}

    def make(synth, config) -> Path:
        key = (repr(synth), repr(config))
        if key not in made:
            out = tmp_path_factory.mktemp("dataset") / "data"
            preprocess(synth_clip(synth) / "video.mp4", out, config, progress=False)
            made[key] = out
        return made[key]
    return make


@pytest.fixture(scope="session")
def demo_head():
    """The shipped demo identity, ``TalkingHead.load("astronaut-demo")``
    (checkpoints/identities/astronaut-demo) on the default device (CUDA when there is one,
    else the CPU): 256 px renders, variants ("base", "refined"), its replay track. Tests
    name the variant per call; one that sets the model's default variant puts "base" back."""
    from fg3dgs.pipeline import TalkingHead

    return TalkingHead.load("astronaut-demo")


@pytest.fixture(scope="session")
def refuses_bad_files() -> Callable:
    """``check(load, error, path, missing=..., junk=...)``: ``load`` raises ``error`` matching
    ``missing`` for a file that is not there, and matching ``junk`` for bytes of no format
    at ``path`` (which it writes): the two failures every loader of a user's file meets."""
    def check(load: Callable, error: type[Exception], path: Path, missing: str,
              junk: str = "not a readable") -> None:
        with pytest.raises(error, match=missing):
            load(path.with_name("missing-" + path.name))
        path.write_bytes(b"no file format at all")
        with pytest.raises(error, match=junk):
            load(path)

    return check
