"""Audio features: mel alignment, transformers models (tiny random weights), cache, errors."""

import numpy as np
import pytest

from fg3dgs import audio_features as af


def _burst(seconds=2.0, at=(0.5, 1.3)):
    audio = np.zeros(int(seconds * 16000), np.float32)
    t = np.arange(1600) / 16000
    for a in at:
        s = int(a * 16000)
        audio[s:s + 1600] = 0.5 * np.sin(2 * np.pi * 440 * t)
    return audio


def test_mel_is_50hz_and_aligned():
    audio = _burst()
    mel = af.extract(audio, "mel")
    assert mel.shape == (100, 80) and mel.dtype == np.float32
    energy = mel.max(1)
    loud = np.flatnonzero(energy > energy.min() + 0.5 * (energy.max() - energy.min()))
    # The 0.1 s bursts start at 0.5 s and 1.3 s: frames 25-30 and 65-70.
    assert set(range(26, 30)) <= set(loud) and set(range(66, 70)) <= set(loud)
    assert not set(loud) & (set(range(0, 22)) | set(range(35, 62)) | set(range(75, 100)))


def _tiny_model(folder, kind):
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=24, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=2)
    torch_model = (HubertModel(HubertConfig(**common)) if kind == "hubert"
                   else Wav2Vec2Model(Wav2Vec2Config(**common)))
    torch_model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_transformers_models_from_a_local_folder(tmp_path, kind):
    path = _tiny_model(tmp_path / kind, kind)
    audio = _burst(3.3)
    feats = af.extract(audio, kind, model_id=path)
    assert feats.shape == (af.n_frames(len(audio)), 16)
    assert np.isfinite(feats).all()
    # Chunked processing (bounded memory) still gives exactly one frame per 20 ms.
    for chunk in (0.7, 1.0, 100.0):
        assert af.model_features(audio, kind, path, chunk_seconds=chunk).shape == feats.shape


def test_missing_model_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(af.AudioFeatureError, match="huggingface-cli download"):
        af.extract(_burst(2.0), "hubert", model_id=str(tmp_path / "no-such-model"))
    with pytest.raises(af.AudioFeatureError, match="unknown audio features"):
        af.extract(_burst(2.0), "deepspeech")
    with pytest.raises(af.AudioFeatureError, match="that folder does not hold a saved model"):
        af.load_extractor("hubert", str(tmp_path))


def test_unreachable_hub_is_one_quick_probe(monkeypatch, free_port):
    """Not in the cache and the Hub down: the error comes from one connection attempt, not
    from huggingface_hub's minute of retries."""
    from huggingface_hub import constants

    port = free_port()                            # a port nobody listens on
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    from fg3dgs.io_utils import hub_unreachable

    assert f"127.0.0.1:{port} cannot be reached" in hub_unreachable()
    with pytest.raises(af.AudioFeatureError, match="the Hub cannot be reached"):
        af.load_extractor("wav2vec2", "nobody/no-such-model-anywhere")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"


def test_cache_and_windows(tmp_path):
    audio = _burst()
    first = af.cached_features(tmp_path, audio, "mel")
    stamp = (tmp_path / "mel.npy").stat().st_mtime_ns
    again = af.cached_features(tmp_path, audio, "mel")
    assert np.array_equal(first, again) and (tmp_path / "mel.npy").stat().st_mtime_ns == stamp
    changed = af.cached_features(tmp_path, audio * 0.5, "mel")
    assert not np.array_equal(first, changed)
    win = af.window(first, 0, 16)
    assert win.shape == (16, 80) and np.array_equal(win[0], first[0])   # edge-padded
    assert np.array_equal(af.window(first, 10, 16)[8], first[21])        # centred on 2i+1
