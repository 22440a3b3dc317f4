"""The lip-sync expert: Wav2Lip's key layout loads, bad files are refused, our own format
round-trips, the audio front end and crops have the expert's shapes, the offset protocol
finds a known shift, and the synthetic training material keeps held-out voices apart."""

import numpy as np
import pytest
import torch

from fg3dgs.sync import ExpertConfig, ExpertError, SyncExpert, load_expert, save_expert
from fg3dgs.sync.audio import SILENCE, mel_start, mel_windows, sync_mel
from fg3dgs.sync.crops import face_boxes, mouth_crops, stack_windows
from fg3dgs.sync.metrics import sync_scores

# Wav2Lip's colour expert (models/syncnet.py, SyncNet_color), written out independently of
# fg3dgs.sync.expert: (in, out, kernel) of each conv + batch-norm block, in order.
WAV2LIP_FACE = [(15, 32, 7), (32, 64, 5), (64, 64, 3), (64, 64, 3), (64, 128, 3),
                (128, 128, 3), (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3),
                (256, 256, 3), (256, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3),
                (512, 512, 3), (512, 512, 1)]
WAV2LIP_AUDIO = [(1, 32, 3), (32, 32, 3), (32, 32, 3), (32, 64, 3), (64, 64, 3), (64, 64, 3),
                 (64, 128, 3), (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3),
                 (256, 256, 3), (256, 512, 3), (512, 512, 1)]


def wav2lip_state_dict(prefix: str = "") -> dict:
    g = torch.Generator().manual_seed(0)
    sd = {}
    for enc, layers in (("face_encoder", WAV2LIP_FACE), ("audio_encoder", WAV2LIP_AUDIO)):
        for i, (cin, cout, k) in enumerate(layers):
            p = f"{prefix}{enc}.{i}.conv_block"
            sd[f"{p}.0.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
            sd[f"{p}.0.bias"] = torch.randn(cout, generator=g) * 0.01
            sd[f"{p}.1.weight"] = torch.rand(cout, generator=g) + 0.5
            sd[f"{p}.1.bias"] = torch.randn(cout, generator=g) * 0.01
            sd[f"{p}.1.running_mean"] = torch.randn(cout, generator=g) * 0.01
            sd[f"{p}.1.running_var"] = torch.rand(cout, generator=g) + 0.5
            sd[f"{p}.1.num_batches_tracked"] = torch.tensor(1000)
    return sd


@pytest.mark.parametrize("prefix", ["", "module."])
def test_wav2lip_layout_loads(tmp_path, prefix):
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": wav2lip_state_dict(prefix), "optimizer": {},
                "global_step": 1, "global_epoch": 1}, path)
    model, info = load_expert(path)
    assert info["source"] == "wav2lip" and model.cfg.width == 1.0 and model.cfg.bgr
    faces, mel = torch.rand(2, 15, 48, 96), torch.rand(2, 1, 80, 16)
    a, v = model(mel, faces)
    assert a.shape == v.shape == (2, 512)
    p = model.sync_prob(mel, faces)
    assert ((p >= 0) & (p <= 1)).all()


def test_wrong_files_are_refused(tmp_path, refuses_bad_files):
    refuses_bad_files(load_expert, ExpertError, tmp_path / "junk.pth", missing="not found",
                      junk="not a readable PyTorch checkpoint")
    sd = wav2lip_state_dict()
    del sd["face_encoder.16.conv_block.0.weight"]
    sd["audio_encoder.0.conv_block.0.weight"] = torch.zeros(32, 1, 5, 5)
    torch.save({"state_dict": sd}, tmp_path / "partial.pth")
    with pytest.raises(ExpertError, match="1 missing .*wrong shape"):
        load_expert(tmp_path / "partial.pth")
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(ExpertError, match="not Wav2Lip's colour expert"):
        load_expert(tmp_path / "other.pth")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ExpertError, match="no fg3dgs sync-expert metadata"):
        load_expert(tmp_path / "plain.safetensors")
    with pytest.raises(ExpertError, match="not found"):
        load_expert(tmp_path / "missing.safetensors")


def test_training_does_not_overwrite_an_expert(tmp_path, capsys):
    from fg3dgs.cli import main

    (tmp_path / "sync_expert.safetensors").write_bytes(b"an earlier expert")
    assert main(["train-sync", "--out", str(tmp_path), "--quiet"]) == 2
    assert "already holds an expert" in capsys.readouterr().err
    assert (tmp_path / "sync_expert.safetensors").read_bytes() == b"an earlier expert"


def test_our_format_round_trips(tmp_path):
    torch.manual_seed(0)
    model = SyncExpert(ExpertConfig(width=0.125)).eval()
    faces, mel = torch.rand(3, 15, 48, 96), torch.rand(3, 1, 80, 16)
    save_expert(model, tmp_path / "e.safetensors", {"note": "test"}, half=False)
    back, info = load_expert(tmp_path / "e.safetensors")
    assert info["source"] == "fg3dgs" and info["note"] == "test"
    assert back.cfg == model.cfg and not back.cfg.bgr
    with torch.no_grad():
        assert torch.equal(back.sync_prob(mel, faces), model.sync_prob(mel, faces))
    save_expert(model, tmp_path / "h.safetensors")           # float16 storage
    half, _ = load_expert(tmp_path / "h.safetensors")
    with torch.no_grad():
        assert torch.allclose(half.sync_prob(mel, faces), model.sync_prob(mel, faces),
                              atol=2e-2)


def test_bgr_flag_swaps_channels():
    torch.manual_seed(0)
    rgb = SyncExpert(ExpertConfig(width=0.125)).eval()
    bgr = SyncExpert(ExpertConfig(width=0.125, bgr=True)).eval()
    bgr.load_state_dict(rgb.state_dict())
    x = torch.rand(1, 5, 3, 48, 96)
    with torch.no_grad():
        assert torch.allclose(bgr.embed_faces(x.reshape(1, 15, 48, 96)),
                              rgb.embed_faces(x.flip(2).reshape(1, 15, 48, 96)))


def test_sync_mel_and_windows():
    audio = np.zeros(16000, np.float32)
    audio[8000:] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    mel = sync_mel(audio)
    assert mel.shape == (80, 16000 // 200 + 1)
    assert mel.min() >= -4 and mel.max() <= 4
    assert np.allclose(mel[:, :30], SILENCE)               # digital silence: the floor
    assert mel[:, 45:].max() > 0                           # the tone
    assert int(mel_start(25)) == 80                        # 1 s = 80 mel frames
    w = mel_windows(mel, np.array([-3, 0, 10, 30]))
    assert w.shape == (4, 1, 80, 16)
    assert np.allclose(w[0], SILENCE) and np.allclose(w[3, 0, :, 10:], SILENCE)
    assert np.array_equal(w[2, 0], mel[:, 32:48])


def test_crops_follow_the_box():
    img = torch.zeros(1, 3, 200, 200)
    img[:, 0, 100:150, 50:150] = 1.0          # red block = the lower half of the box below
    box = torch.tensor([[100.0, 100.0, 100.0]])
    c = mouth_crops(img, box)
    assert c.shape == (1, 3, 48, 96)
    assert c[0, 0, 2:-2, 2:-2].min() > 0.99 and c[0, 1].max() < 1e-6
    img.requires_grad_(True)
    mouth_crops(img, box).sum().backward()
    assert img.grad[0, :, 100:150, 50:150].abs().sum() > 0
    assert img.grad[0, :, :95].abs().sum() == 0
    assert stack_windows(torch.zeros(10, 3, 48, 96)).shape == (2, 15, 48, 96)
    pts = np.zeros((1, 68, 2))
    pts[0, :17, 0] = np.linspace(40, 160, 17)
    pts[0, :17, 1] = 100 + 40 * np.sin(np.linspace(0, np.pi, 17))
    pts[0, 17:27] = [100, 60]
    box = face_boxes(pts)[0]
    assert np.allclose(box[:2], [100, 100]) and box[2] > 120


class CodedExpert(SyncExpert):
    """An 'oracle' expert for the protocol: crops carry their frame number in pixel values,
    mel columns the number of the frame whose sound they hold; both become a unit bump over
    code bins, so equal numbers match and any other pair is far apart."""

    @staticmethod
    def bump(code):
        bins = torch.arange(-60.0, 260.0)
        return torch.nn.functional.normalize(torch.exp(-(bins - code[:, None]) ** 2 / 2), dim=1)

    def embed_faces(self, faces):
        return self.bump(faces[:, 0, 0, 0] * 1000)

    def embed_audio(self, mel):
        return self.bump(mel[:, 0, 0, 0])


@pytest.mark.parametrize("shift", [-7, 0, 5])
def test_offset_protocol_finds_a_known_shift(shift):
    n = 150
    crops = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, 48, 96) / 1000
    t = np.arange(n * 80 // 25 + 40)
    frame_heard = np.round(t * 25 / 80) - shift       # audio delayed by `shift` frames
    mel = np.repeat(frame_heard[None], 80, 0).astype(np.float32)
    s = sync_scores(CodedExpert(ExpertConfig(width=0.125)), crops, mel)
    assert s.offset == shift
    assert s.confidence > 1 and s.distance < 0.1     # edges pad with silence
    assert s.as_dict("expert")["expert-offset"] == shift


def test_heldout_material_is_disjoint():
    from fg3dgs.sync.data import HELDOUT_VARIANTS, TRAIN_VARIANTS, make_clips, split_sentences
    from fg3dgs.sync.train import WindowSampler, clip_crops

    assert not set(split_sentences(True)) & set(split_sentences(False))
    assert not set(HELDOUT_VARIANTS) & set(TRAIN_VARIANTS)
    clips = make_clips(("builtin:astronaut",), 2.0, True, seed=3, size=96, progress=False)
    c = clips[0]
    assert c.voice.split("+")[1] in HELDOUT_VARIANTS
    assert c.context.shape[1:] == (64, 128, 3) and c.mel.shape[0] == 80
    assert len(c.audio) == len(c) * 640
    faces, mel, y = WindowSampler(clips, 0).sample(6)
    assert faces.shape == (6, 15, 48, 96) and mel.shape == (6, 1, 80, 16)
    assert y.tolist() == [1, 1, 1, 0, 0, 0]
    assert clip_crops(c).shape == (len(c), 3, 48, 96)


def test_speak_writes_heldout_speech(tmp_path, capsys):
    from fg3dgs.cli import main
    from fg3dgs.media import read_audio
    from fg3dgs.sync.data import HELDOUT_VARIANTS

    out = tmp_path / "s.wav"
    assert main(["speak", "--held-out", "--sentences", "1", "--seed", "5",
                 "--out", str(out)]) == 0
    assert len(read_audio(out)) > 16000
    voice = capsys.readouterr().out.split("voice ")[1].split()[0]
    assert voice.split("+")[1] in HELDOUT_VARIANTS


def test_wide_voice_draw_spans_accents_and_languages_but_never_the_benchmark():
    import random

    from fg3dgs.sync.data import HELDOUT_VARIANTS, TRAIN_VARIANTS, random_voice
    from fg3dgs.synth.speech import BENCH_VARIANTS, OTHER_LANGUAGES, SPEAKER_VOICES

    rng = random.Random(0)
    train = [random_voice(rng, False, "wide") for _ in range(300)]
    assert not {v.variant for v in train} & set(BENCH_VARIANTS + HELDOUT_VARIANTS)
    assert {v.variant for v in train} - set(TRAIN_VARIANTS)           # beyond m1..f3
    assert {v.name for v in train} & set(OTHER_LANGUAGES)
    assert {v.name for v in train} - set(SPEAKER_VOICES) - set(OTHER_LANGUAGES)
    assert min(v.rate for v in train) < 130 and max(v.rate for v in train) > 200
    held = [random_voice(rng, True, "wide") for _ in range(50)]
    assert {v.variant for v in held} <= set(HELDOUT_VARIANTS)
    with pytest.raises(ValueError, match="wide, speakers|speakers, wide"):
        random_voice(rng, False, "everyone")


def test_sync_mel_warp_moves_a_tone_up_and_leaves_timing():
    from fg3dgs.spectrum import warp_frequency
    from fg3dgs.sync.audio import sync_mel

    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    plain = sync_mel(tone)
    assert np.array_equal(sync_mel(tone, warp=1.0), plain)
    up = sync_mel(tone, warp=1.2)
    assert up.shape == plain.shape
    assert up[:, 20].argmax() > plain[:, 20].argmax()            # 1.2 kHz is a higher band
    spec = np.zeros((11, 3), np.float32)
    spec[5] = 1.0
    w = warp_frequency(spec, 1.2)
    assert w[6].min() == 1.0 and w[4].max() == 0.0                # bin 6 shows 6 / 1.2 = 5
    assert np.allclose(w[5], 1 / 6)                    # bin 5 shows 4.17: 1/6 of bin 5
    assert warp_frequency(spec, 1.0) is spec


def test_augmented_audio_copies_feed_the_sampler():
    from fg3dgs.sync.data import make_clips
    from fg3dgs.sync.expert import MEL_STEPS
    from fg3dgs.sync.train import WindowSampler

    clips = make_clips(("builtin:astronaut",), 3.0, False, seed=4, size=96, progress=False,
                       voices="wide", audio_copies=2)
    c = clips[0]
    assert len(c.aug_mels) == 2
    assert all(m.shape == c.mel.shape and not np.allclose(m, c.mel) for m in c.aug_mels)
    assert c.mel_version(0) is c.mel and c.mel_version(2) is c.aug_mels[1]
    assert c.mel_version(5) is c.mel                              # fewer copies: clean
    clean = {c.mel.tobytes() for c in clips}

    def heard(sampler):
        _, pos, _ = sampler.sample_contrastive(64)
        return pos[:, 0].numpy()

    def is_clean(w):
        return any(w.tobytes() in {m[:, j:j + MEL_STEPS].tobytes() for j in
                                   range(m.shape[1] - MEL_STEPS + 1)}
                   for m in (c.mel for c in clips))

    s = WindowSampler(clips, 0)
    s.strength = 0.0                                   # the curriculum's start: clean only
    assert all(is_clean(w) for w in heard(s))
    s.strength = 1.0
    assert sum(not is_clean(w) for w in heard(s)) > 20  # about 2/3 of 64
    assert clean                                       # (the clean mels are untouched)
