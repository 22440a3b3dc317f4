"""Re-targeting an identity to the speech front-end: only the audio encoder changes, the
result loads, verifies and renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_retarget_keeps_everything_but_the_audio_encoder(tmp_path, monkeypatch):
    from fg3dgs.frontend import ArticulationNet, FrontendConfig, save_frontend
    from fg3dgs.io_utils import checkpoints_dir
    from fg3dgs.media import write_wav
    from fg3dgs.model.identity import FG3DGS
    from fg3dgs.pipeline import RenderOptions, TalkingHead
    from fg3dgs.pipeline.audio_input import AudioInput
    from fg3dgs.synth.speech import synthesize, voice_for_seed
    from fg3dgs.train.retarget import RetargetConfig, retarget

    src = checkpoints_dir() / "identities" / "astronaut-demo"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.manual_seed(0)
    save_frontend(ArticulationNet(FrontendConfig(width=16)), ckpt / "speech_frontend.safetensors")
    monkeypatch.setenv("FG3DGS_CHECKPOINTS", str(ckpt))      # the front-end the test made
    speech = synthesize("Bob ate a big apple and a plum on the bus to Boston.",
                        voice_for_seed(7))
    write_wav(tmp_path / "own.wav", speech.audio)
    out = tmp_path / "retargeted"
    report = retarget(src, [tmp_path / "own.wav"], out,
                      RetargetConfig(steps=5, copies=1, batch=8), progress=False)
    assert set(report["heldout_r2_clean"]) == {"f_a", "tokens", "spread"}
    old = FG3DGS.from_pretrained(src)
    new = FG3DGS.from_pretrained(out)                     # verifies the recorded hashes
    info = new.info
    assert info.audio_features == "artic" and new.cfg.audio_in_dim == 5
    assert info.retarget["from"] == "mel" and info.variants == old.info.variants
    a, b = old.state_dict(), new.state_dict()
    kept = [k for k in a if not k.startswith("audio.")]
    assert kept and all(torch.equal(a[k], b[k]) for k in kept)
    assert (out / "replay.mp4").is_file()
    head = TalkingHead(out)
    write_wav(tmp_path / "new.wav", 0.1 * np.sin(np.arange(16000) / 30.0))
    with AudioInput(tmp_path / "new.wav") as audio:
        batches = list(head.frames(audio, RenderOptions(variant="both")))
    assert sum(len(fr) for fr, _, _ in batches) == 25
    with pytest.raises(ValueError, match="--force"):
        retarget(src, [tmp_path / "own.wav"], out, RetargetConfig(steps=1), progress=False)
    with pytest.raises(ValueError, match="already reads"):
        retarget(out, [tmp_path / "own.wav"], tmp_path / "again", RetargetConfig(steps=1),
                 progress=False)
    # The identity is pinned to the front-end it learnt: another one is refused at load.
    from fg3dgs.io_utils import sha256
    from fg3dgs.model.io import IdentityError

    assert info.audio_model == \
        f"speech front-end sha256 {sha256(ckpt / 'speech_frontend.safetensors')[:16]}"
    torch.manual_seed(1)
    save_frontend(ArticulationNet(FrontendConfig(width=16)), ckpt / "speech_frontend.safetensors")
    with pytest.raises(IdentityError, match="re-target"):
        FG3DGS.from_pretrained(out)
    with pytest.raises(IdentityError, match="made for 'artic' features"):
        TalkingHead(out)
    FG3DGS.from_pretrained(out, verify=False)                        # developers may still open it
    # ... and re-targeting moves it to the installed front-end, keeping its encoder
    moved = tmp_path / "moved"
    report = retarget(out, [], moved, progress=False)
    assert report["from"].startswith("artic (speech front-end sha256")
    assert report["before"]["from"] == "mel"         # the first move's record, kept nested
    new2 = FG3DGS.from_pretrained(moved)
    assert new2.info.retarget["before"] == info.retarget
    assert new2.info.audio_model == \
        f"speech front-end sha256 {sha256(ckpt / 'speech_frontend.safetensors')[:16]}"
    a = FG3DGS.from_pretrained(out, verify=False).state_dict()
    assert all(torch.equal(a[k], v) for k, v in new2.state_dict().items())
    with pytest.raises(ValueError, match="from the installed speech front-end"):
        retarget(moved, [], tmp_path / "again", progress=False)


def test_match_spread_restores_the_targets_spread_without_reordering():
    from fg3dgs.model.encoders import AudioEncoder
    from fg3dgs.model.windows import audio_windows
    from fg3dgs.train.spread import match_spread

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    enc = AudioEncoder(5, 8).eval()
    inputs = [(rng.normal(size=(120, 5)).astype(np.float32), np.arange(60))]
    with torch.no_grad():
        fa, tok = enc(torch.from_numpy(audio_windows(*inputs[0])))
    scale = torch.linspace(0.5, 3.0, 8)              # the truth moves 0.5-3x as far
    target = torch.cat([fa[:, None], tok], 1) * scale
    gain = match_spread(enc, inputs, [target])
    with torch.no_grad():
        fa2, _ = enc(torch.from_numpy(audio_windows(*inputs[0])))
    assert torch.allclose(fa2.std(0), target[:, 0].std(0), rtol=0.02)
    assert torch.allclose(gain, scale, rtol=0.1)
    r = [np.corrcoef(fa[:, k], fa2[:, k])[0, 1] for k in range(8)]
    assert min(r) > 0.99                              # the same motion, only larger


def test_retarget_command(tmp_path, monkeypatch, capsys):
    from fg3dgs.cli import main
    from fg3dgs.frontend import ArticulationNet, FrontendConfig, save_frontend
    from fg3dgs.io_utils import checkpoints_dir
    from fg3dgs.media import write_wav

    src = checkpoints_dir() / "identities" / "astronaut-demo"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.manual_seed(0)
    save_frontend(ArticulationNet(FrontendConfig(width=16)), ckpt / "speech_frontend.safetensors")
    monkeypatch.setenv("FG3DGS_CHECKPOINTS", str(ckpt))
    rng = np.random.default_rng(0)
    write_wav(tmp_path / "own.wav", (0.1 * rng.normal(size=32000)).astype(np.float32))
    assert main(["retarget", str(src), "--speech", str(tmp_path / "own.wav"), "--out",
                 str(tmp_path / "new"), "--steps", "2", "--copies", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "median gain" in out and "wrote" in out
    assert main(["retarget", str(tmp_path / "missing"), "--speech", str(tmp_path / "own.wav"),
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "fg3dgs retarget: error:" in capsys.readouterr().err
