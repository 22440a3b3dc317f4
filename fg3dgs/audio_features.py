"""Audio features at 50 Hz (two per video frame): log-mel, articulation, HuBERT, wav2vec 2.0.

Alignment: feature frame k is centred on time k / 50 s, so video frame i (covering
[i / 25, (i + 1) / 25) s) is centred on feature frame 2 i + 1, and its window of W frames is
frames [2 i + 1 - W / 2, 2 i + 1 + W / 2) (padded with the edge frames).

``mel`` needs no weights. ``artic`` runs the shipped speech front-end
(:mod:`fg3dgs.frontend`: jaw / spread / round / closure and speech activity from any voice;
``model_id`` may name another front-end file). ``hubert`` and ``wav2vec2`` run a
transformers model (last hidden state); their weights come from the Hugging Face Hub or a
local folder in the transformers format, and a missing model is reported with what to
download and how.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .media import AUDIO_RATE
from .mel import HOP, RATE, log_mel, n_frames

EXTRACTORS = ("mel", "artic", "hubert", "wav2vec2")
DEFAULT_MODELS = {
    "hubert": "facebook/hubert-large-ls960-ft",      # ER-NeRF, TalkingGaussian, InsTaG
    "wav2vec2": "facebook/wav2vec2-large-960h-lv60-self",
}


# Feature frames of audio context a chunk needs on each side for its frames to equal the
# whole clip's: half an FFT window for mel; the front-end's receptive field (its
# convolutions' +-15 frames and their level reference's +-15) on top; 2 s for the
# transformers (which see the whole input).
CONTEXT_FRAMES = {"mel": 4, "artic": 34, "hubert": 100, "wav2vec2": 100}


class AudioFeatureError(RuntimeError):
    """Features cannot be computed (unknown extractor, missing model weights)."""


def _load_model(name: str, model_id: str):
    """(feature extractor, model in eval mode): from a folder, the Hugging Face cache, or
    the Hub (probed once first: an unreachable Hub would cost a minute of retries)."""
    from transformers import AutoFeatureExtractor, AutoModel

    from .io_utils import hub_unreachable

    def load(local_only: bool):
        return (AutoFeatureExtractor.from_pretrained(model_id, local_files_only=local_only),
                AutoModel.from_pretrained(model_id, local_files_only=local_only))

    why = None
    try:
        try:
            processor, model = load(local_only=True)
        except OSError:
            if Path(model_id).exists() or (why := hub_unreachable()) is not None:
                raise
            processor, model = load(local_only=False)
    except OSError as exc:
        where = ("that folder does not hold a saved model" if Path(model_id).exists() else
                 "they are not in the Hugging Face cache, and " + (
                     f"the Hub cannot be reached: {why}" if why else
                     f"the download failed ({type(exc).__name__})"))
        raise AudioFeatureError(
            f"'{name}' audio features need the model weights of {model_id!r}: {where}. "
            f"Download them on a machine with network access: `huggingface-cli download "
            f"{model_id}` (they go to the Hugging Face cache; copy it over or set HF_HOME), "
            "or save the model with save_pretrained() to a folder and pass that folder as "
            "the model id. The 'mel' extractor needs no weights.") from exc
    return processor, model.eval()


def load_extractor(name: str, model_id: str | None = None) -> None:
    """Load (and keep) the model behind extractor ``name`` now: a missing model raises
    :class:`AudioFeatureError` before any other work ('mel' needs none)."""
    if name not in EXTRACTORS:
        raise AudioFeatureError(f"unknown audio features {name!r}; choose from "
                                f"{', '.join(EXTRACTORS)}")
    if name == "artic":
        from .frontend import FrontendError, load_frontend

        try:
            load_frontend(model_id)
        except FrontendError as exc:
            raise AudioFeatureError(f"'artic' audio features: {exc}") from exc
    elif name != "mel":
        _model(name, model_id)


def _model(name: str, model_id: str | None) -> tuple:
    """The (feature extractor, model) of ``name``, loaded once per process."""
    model_id = model_id or DEFAULT_MODELS[name]
    key = f"{name}:{model_id}"
    if key not in _MODELS:
        _MODELS[key] = _load_model(name, model_id)
    return _MODELS[key]


_MODELS: dict[str, tuple] = {}


def model_features(audio: np.ndarray, name: str, model_id: str | None = None,
                   chunk_seconds: float = 20.0) -> np.ndarray:
    """[T, D] last hidden states of a HuBERT / wav2vec 2.0 model at 50 Hz, T = n_frames.

    The audio is padded by half a receptive field (200 samples) in front so frame k is
    centred on k / 50 s like the mel frames, and processed in chunks (bounded memory).
    """
    import torch

    processor, model = _model(name, model_id)
    T = n_frames(len(audio))
    x = np.concatenate([np.zeros(200, np.float32), np.asarray(audio, np.float32),
                        np.zeros(T * HOP + 400, np.float32)])[: T * HOP + 80]
    out = []
    step = int(chunk_seconds * RATE)
    with torch.no_grad():
        for k0 in range(0, T, step):
            k1 = min(T, k0 + step)
            seg = x[k0 * HOP: k1 * HOP + 80]     # exactly k1 - k0 frames
            inputs = processor(seg, sampling_rate=AUDIO_RATE, return_tensors="pt")
            hidden = model(inputs["input_values"]).last_hidden_state[0].numpy()
            out.append(hidden[: k1 - k0])
    feats = np.concatenate(out).astype(np.float32)
    if len(feats) < T:            # the last chunk may be a frame short
        feats = np.concatenate([feats, np.repeat(feats[-1:], T - len(feats), 0)])
    return feats[:T]


def extract(audio: np.ndarray, name: str, model_id: str | None = None) -> np.ndarray:
    """Features [T, D] of 16 kHz mono audio with one of :data:`EXTRACTORS`."""
    if name not in EXTRACTORS:
        raise AudioFeatureError(f"unknown audio features {name!r}; choose from "
                                f"{', '.join(EXTRACTORS)}")
    if name == "mel":
        return log_mel(audio)
    if name == "artic":
        from .frontend import FrontendError, articulation

        try:
            return articulation(audio, model_id)
        except FrontendError as exc:
            raise AudioFeatureError(f"'artic' audio features: {exc}") from exc
    return model_features(audio, name, model_id)


def cached_features(folder: str | Path, audio: np.ndarray, name: str,
                    model_id: str | None = None) -> np.ndarray:
    """Features stored as ``folder/NAME.npy`` (+ ``NAME.json``), recomputed only when the
    audio or the model changed."""
    folder = Path(folder)
    digest = hashlib.sha256(np.asarray(audio, np.float32).tobytes()).hexdigest()[:16]
    model = feature_model(name, model_id)
    meta = {"extractor": name, "model": model, "audio_sha256_16": digest, "rate_hz": RATE}
    npy, js = folder / f"{name}.npy", folder / f"{name}.json"
    if npy.is_file() and js.is_file() and json.loads(js.read_text()) == meta:
        return np.load(npy)
    feats = extract(audio, name, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    from .io_utils import atomic_output

    with atomic_output(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    with atomic_output(js) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return feats


def feature_model(name: str, model_id: str | None = None) -> str | None:
    """What features ``name`` are computed with besides the code (None for ``mel``): the
    transformers model id, or for ``artic`` the front-end file's sha256. An identity
    records it (identity.json ``audio_model``): its networks learnt those exact features."""
    return None if name == "mel" else _model_key(name, model_id)


def _model_key(name: str, model_id: str | None) -> str:
    """What the features of ``name`` depend on besides the audio: the model id, or for
    ``artic`` the front-end file's content."""
    if name != "artic":
        return model_id or DEFAULT_MODELS[name]
    from .frontend.network import DEFAULT_FILE
    from .io_utils import checkpoints_dir, sha256

    path = Path(model_id) if model_id else checkpoints_dir() / DEFAULT_FILE
    return f"speech front-end sha256 {sha256(path)[:16]}" if path.is_file() else str(path)


def window(features: np.ndarray, frame: int, size: int = 16) -> np.ndarray:
    """The ``size`` feature frames centred on video frame ``frame`` (edge-padded): [size, D]."""
    centre = 2 * frame + 1
    idx = np.clip(np.arange(centre - size // 2, centre + size - size // 2), 0,
                  len(features) - 1)
    return features[idx]
