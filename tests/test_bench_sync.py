"""The lip-sync benchmark: its signals, its panel's rules, and one clip measured end to end."""

from __future__ import annotations

import numpy as np
import pytest

from fg3dgs.bench import speech_panel as sp
from fg3dgs.bench.sync import (
    ClipResult,
    best_lag,
    format_refinement,
    format_table,
    frame_envelope,
    group_summary,
    pearson,
    refinement_check,
    summaries,
)
from fg3dgs.media import AUDIO_RATE, FPS
from fg3dgs.synth.flite import flite_available


def test_best_lag_finds_a_planted_delay_with_its_sign():
    rng = np.random.default_rng(0)
    ref = np.convolve(rng.normal(size=300), np.ones(3) / 3, mode="same")
    late = np.roll(ref, 2)                      # x[t] = ref[t - 2]: two frames late
    r, lag = best_lag(late, ref)
    assert lag == 2 and r > 0.99
    r, lag = best_lag(np.roll(ref, -3), ref)
    assert lag == -3 and r > 0.99
    # beyond the search range nothing fits well
    r, _ = best_lag(np.roll(ref, 9), ref)
    assert r < 0.5


def test_pearson_skips_missing_frames_and_flat_signals():
    x = np.array([0.0, 1, 2, 3, np.nan, 5])
    assert pearson(x, 2 * np.nan_to_num(x) + 1) == pytest.approx(1.0)
    assert np.isnan(pearson(np.ones(6), np.arange(6.0)))
    assert np.isnan(pearson(np.array([1.0, np.nan]), np.array([1.0, 2.0])))


def test_envelope_follows_loudness_per_frame_and_has_a_floor():
    step = AUDIO_RATE // FPS
    t = np.arange(10 * step) / AUDIO_RATE
    amp = np.repeat([0.0, 0.0, 0.5, 0.5, 0.05, 0.05, 0.5, 0.0, 0.0, 0.0], step)
    env = frame_envelope(amp * np.sin(2 * np.pi * 200 * t), 10)
    assert env.shape == (10,)
    assert env[2] > env[4] > env[0]
    assert env[2] - env[4] == pytest.approx(20.0, abs=0.5)       # 10x amplitude = 20 dB
    assert env[0] == env[8] == pytest.approx(env.max() - 40.0, abs=0.5)
    # shorter audio than the frames: the missing frames are silent
    assert frame_envelope(np.ones(step), 3)[1:].max() < frame_envelope(np.ones(step), 3)[0]


def test_group_summary_takes_medians_and_counts_judge_offsets():
    rs = []
    for i, (r, off) in enumerate([(0.5, 0), (0.7, 2), (0.9, -1)]):
        rs.append(ClipResult(f"c{i}", "english", True, 10.0,
                             {"base": {"env_r": r, "judge_offset": off, "motion": np.nan}}))
    s = group_summary(rs)
    assert s["english"]["base"]["env_r"] == pytest.approx(0.7)
    assert s["english"]["base"]["judge_offset_ok"] == pytest.approx(2 / 3)
    assert "motion" not in s["english"]["base"]            # no finite value: no median
    rs.append(ClipResult("d", "english", False, 8.0, {"base": {"env_r": 0.1}}))
    parts = summaries(rs)
    assert parts["held out"]["english"]["base"]["env_r"] == pytest.approx(0.7)
    assert parts["dev"]["english"]["base"]["clips"] == 1
    table = format_table(rs, parts)
    assert "| c1 | english | yes | 10.0 | base |" in table and "67%" in table
    assert "| group (held out) |" in table and "| group (dev) |" in table


def test_refinement_check_finds_the_clips_where_refined_is_worse():
    rs = [ClipResult("a", "espeak", True, 9.0, {"base": {"jaw_r": 0.8, "env_r": 0.5},
                                                "refined": {"jaw_r": 0.78, "env_r": 0.6}}),
          ClipResult("b", "english", True, 9.0, {"base": {"env_r": 0.7},
                                                 "refined": {"env_r": 0.6}}),
          ClipResult("c", "english", True, 9.0, {"base": {"env_r": 0.7}})]   # one variant
    c = refinement_check(rs)
    assert c["jaw_r"]["clips"] == 1 and c["jaw_r"]["worse"] == []           # -0.02: within
    assert c["jaw_r"]["worst"] == pytest.approx(-0.02)
    assert c["env_r"]["clips"] == 2 and c["env_r"]["worse"] == ["b"]
    assert c["env_r"]["worst_clip"] == "b"
    text = format_refinement(c)
    assert "1 of 2 clips worse by more than 0.03: b" in text
    assert refinement_check(rs[2:]) == {}


def test_panel_has_enough_clips_held_out_in_every_group_and_voices_never_trained_on():
    from fg3dgs.synth.corpus import sentences
    from fg3dgs.synth.speech import SPEAKER_VARIANTS, SPEAKER_VOICES

    specs = sp.specs()
    assert len(specs) >= 12 and len({s.name for s in specs}) == len(specs)
    for group in ("espeak", "english", "czech"):
        ours = [s for s in specs if s.group == group]
        assert any(s.held_out for s in ours) and any(not s.held_out for s in ours)
    corpus = set(sentences())
    outside = 0
    for row in sp.PANEL["espeak"]:
        # the training clips draw a voice from SPEAKER_VOICES + SPEAKER_VARIANTS
        assert row["variant"] not in SPEAKER_VARIANTS
        assert row["voice"] in SPEAKER_VOICES + ("en-us-nyc",)
        outside += not (140 <= row["rate"] <= 190 and 30 <= row["pitch"] <= 70)
        assert not any(s in row["text"] for s in corpus)
    assert outside >= len(sp.PANEL["espeak"]) // 2


def test_cuts_snap_to_quiet_moments_and_lines_join_to_length(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.3, 20 * AUDIO_RATE).astype(np.float32)
    quiet = int(10.3 * AUDIO_RATE)
    audio[quiet - 800:quiet + 800] = 0.0                     # a pause at 10.3 s
    cut = sp._cut(audio, 0.0, 10.0)
    assert abs(len(cut) - quiet) < 0.05 * AUDIO_RATE
    for i in range(6):                                       # six 3 s lines of speaker m
        sf.write(tmp_path / f"lvl-m-line{i}.ogg", rng.normal(0, 0.2, 3 * AUDIO_RATE),
                 AUDIO_RATE)
    sf.write(tmp_path / "lvl-v-other.ogg", rng.normal(0, 0.2, AUDIO_RATE), AUDIO_RATE)
    joined = sp.join_lines(tmp_path, "m")
    assert 10.0 <= len(joined) / AUDIO_RATE <= 15.0
    with pytest.raises(sp.PanelError, match="speaker 'x'"):
        sp.join_lines(tmp_path, "x")


def test_the_flite_group_is_outside_the_corpus_and_only_where_flite_is(tmp_path,
                                                                        monkeypatch):
    from fg3dgs.synth import flite
    from fg3dgs.synth.corpus import sentences

    corpus = set(sentences())
    ours = [s for s in sp.specs() if s.group == "flite"]
    assert {s.held_out for s in ours} == {True, False}
    assert {row["voice"] for row in sp.PANEL["flite"]} == set(flite.VOICES)
    assert not any(c in row["text"] for row in sp.PANEL["flite"] for c in corpus)
    monkeypatch.setattr(flite, "flite_available", lambda: True)
    assert "flite" in {s.group for s in sp.panel_specs()}
    # without flite the panel leaves the group out, and refuses it by name
    monkeypatch.setattr(flite, "flite_available", lambda: False)
    assert {s.group for s in sp.panel_specs()} == {"espeak", "english", "czech"}
    with pytest.raises(sp.PanelError, match="apt-get install flite"):
        sp.load_panel(groups=("flite",), root=tmp_path)


@pytest.mark.skipif(not flite_available(), reason="flite is not installed "
                    "(apt-get install flite)")
def test_flite_clips_carry_their_truth_jaw():
    clips = sp.load_panel(held_out=False, groups=("flite",))
    assert [c.spec.name for c in clips] == [r["name"] for r in sp.PANEL["flite"]
                                            if not r["held_out"]]
    for c in clips:
        assert len(c.jaw) == int(np.ceil(c.seconds * 25)) and 0.05 < c.jaw.std() < 0.5


def test_missing_real_speech_says_how_to_fetch_it(tmp_path):
    with pytest.raises(sp.PanelError, match="--fetch"):
        sp.load_panel(groups=("english",), root=tmp_path)


def test_the_mouth_does_not_lag_the_training_clips_own_speech(demo_head):
    """The shipped identity speaking the last 8 s of its own training clip's audio (the
    validation part), measured end to end: the observer finds the face, the rendered
    opening follows the truth's jaw at lag 0, the expert scores it."""
    from fg3dgs.bench.sync import load_experts, measure_clip
    from fg3dgs.synth.clip import SynthConfig, speak
    from fg3dgs.synth.visemes import frame_times, viseme_track

    speech = speak(SynthConfig(seconds=180, seed=7))        # the demo identity's clip
    n_all = int(np.ceil(speech.duration * FPS))
    jaw = viseme_track(speech.phonemes, frame_times(n_all, FPS))[:, 0]
    first = n_all - 8 * FPS
    audio = speech.audio[first * (AUDIO_RATE // FPS):]
    clip = sp.PanelClip(sp.ClipSpec("own", "espeak", False, "training clip"), audio,
                        jaw[first:])
    experts = {"ours": load_experts(None)["ours"]}
    res = measure_clip(demo_head, clip, experts, reference_std=0.05)
    assert set(res.variants) == {"base", "refined"}
    for v, m in res.variants.items():
        assert m["detect"] > 0.9 and m["jaw_lag"] == 0, (v, m)
        assert m["jaw_r"] > 0.6, (v, m)
        assert m["motion"] == pytest.approx(m["opening_std"] / 0.05)
        # our expert finds the identity's own training speech in sync with its mouth
        assert m["ours_C"] > 0 and abs(m["ours_offset"]) <= 1, (v, m)


def test_bench_sync_refuses_an_unknown_clip_or_identity(capsys):
    from fg3dgs.bench.__main__ import main as bench

    assert bench(["sync", "astronaut-artic", "--groups", "espeak", "--only", "nope"]) == 2
    out = capsys.readouterr().out
    assert "no clip nope among the held-out clips" in out and "espeak-us-benjamin" in out
    assert bench(["sync", "runs/nowhere", "--groups", "espeak", "--only",
                  "espeak-us-benjamin"]) == 2
    assert "bench sync: error:" in capsys.readouterr().out
