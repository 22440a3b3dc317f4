"""Head motion from pose tracks (checks, head-space matching, hold / loop, scaling), and the
fidelity measurement on clips the identity never saw (``fg3dgs eval --cross``)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fg3dgs.cli import main
from fg3dgs.evaluate.regions import jaw_band, jitter, masked_psnr, mouth_box
from fg3dgs.pipeline import AudioInput, RenderOptions
from fg3dgs.pipeline.pose_input import extend, nearest_rows, scale_motion, to_identity_space
from fg3dgs.pose_track import PoseTrack, PoseTrackError, check_pose_arrays, load_pose_track

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "identities" / "astronaut-demo"
SPEECH = ROOT / "assets" / "examples" / "bubbles.wav"      # 2.8 s


@pytest.fixture
def head(demo_head):
    """The shipped demo identity, DEMO (conftest's demo_head, loaded once per session)."""
    return demo_head


def _own_track(head, n=30):
    """The identity's first n replayed poses."""
    fr = head.replay.frames[:n]
    return head.track_R[fr].astype(np.float64), head.track_t[fr].astype(np.float64)


def test_bad_pose_arrays_are_refused_naming_the_problem():
    R = np.tile(np.eye(3), (4, 1, 1))
    t = np.tile([0.0, 0.0, 0.6], (4, 1))
    check_pose_arrays(R, t)
    cases = [((R[:, :2], t), "shape"), ((R, t[:, :2]), "shape"), ((R[:3], t), "frames"),
             ((R[:0], t[:0]), "no frames")]
    nan = t.copy()
    nan[2, 1] = np.nan
    cases.append(((R, nan), "frame 2 .*NaN"))
    sheared = R.copy()
    sheared[1] *= 1.3
    cases.append(((sheared, t), "frame 1 is not a rotation: not orthonormal"))
    mirrored = R.copy()
    mirrored[3, 0, 0] = -1
    cases.append(((mirrored, t), "frame 3 .*reflection"))
    behind = t.copy()
    behind[0, 2] = -0.5
    cases.append(((R, behind), "behind the camera"))
    for (r, tt), msg in cases:
        with pytest.raises(PoseTrackError, match=msg):
            check_pose_arrays(r, tt)


def test_pose_track_files(tmp_path, refuses_bad_files):
    refuses_bad_files(load_pose_track, PoseTrackError, tmp_path / "junk.npz",
                      missing="does not exist")
    np.savez(tmp_path / "noR.npz", t=np.zeros((3, 3)))
    with pytest.raises(PoseTrackError, match="has no R"):
        load_pose_track(tmp_path / "noR.npz")
    with pytest.raises(PoseTrackError, match="without cameras.npz"):
        load_pose_track(tmp_path)
    R = np.tile(np.eye(3), (5, 1, 1))
    t = np.tile([0.0, 0.0, 0.6], (5, 1))
    np.savez(tmp_path / "cameras.npz", R=R, t=t, K=np.eye(3) * 400)
    track = load_pose_track(tmp_path)          # a dataset folder: its cameras.npz
    assert len(track) == 5 and track.K[0, 0] == 400 and track.canonical is None


def test_a_track_from_another_head_space_and_camera_comes_home(head):
    """A clip of the same person has its own canonical face (rotated, shifted) and camera:
    its poses come back to the identity's exactly for the rotation, and with the head's
    centre where that camera saw it."""
    R, t = _own_track(head)
    Q = Rotation.from_euler("xyz", [4, -7, 2], degrees=True).as_matrix()
    b = np.array([0.003, -0.002, 0.01])
    # X_other = Q X_identity + b  =>  R_other = R Q^T, t_other = t - R Q^T b
    other = PoseTrack(R @ Q.T, t - np.einsum("fij,j->fi", R @ Q.T, b), None,
                      head.canonical @ Q.T + b)
    R2, t2 = to_identity_space(other, head.canonical, head.K, head.size)
    np.testing.assert_allclose(R2, R, atol=1e-5)
    np.testing.assert_allclose(t2, t, atol=1e-5)
    # another camera: focal x1.5 and a shifted principal point; the centre projects alike
    K2 = head.K.astype(np.float64).copy()
    K2[0, 0] *= 1.5
    K2[1, 1] *= 1.5
    K2[:2, 2] += [6, -4]
    seen = np.einsum("ij,fj->fi", K2, t)
    R3, t3 = to_identity_space(PoseTrack(R, t, K2), None, head.K, head.size)
    here = np.einsum("ij,fj->fi", head.K, t3)
    np.testing.assert_allclose(here[:, :2] / here[:, 2:], seen[:, :2] / seen[:, 2:],
                               atol=1e-6)
    np.testing.assert_allclose(R3, R)
    with pytest.raises(PoseTrackError, match="outside the identity's 256x256 frame"):
        to_identity_space(PoseTrack(R, t + [0.5, 0, 0]), None, head.K, head.size)
    with pytest.raises(PoseTrackError, match="does not record its own"):
        to_identity_space(other, None, head.K, head.size)


def test_extend_scale_and_nearest_rows(head):
    R, t = _own_track(head, 6)
    Rh, th = extend(R, t, 9, "hold")
    assert np.array_equal(Rh[6:], np.repeat(R[-1:], 3, 0)) and np.array_equal(th[:6], t)
    Rl, _ = extend(R, t, 9, "loop")
    assert np.array_equal(Rl[6:], R[[4, 3, 2]])
    ref_R, ref_t = R[0], t[0]
    R0, t0 = scale_motion(R, t, 0.0, ref_R, ref_t)
    np.testing.assert_allclose(R0, np.repeat(R[:1], 6, 0), atol=1e-9)
    np.testing.assert_allclose(t0, np.repeat(t[:1], 6, 0))
    R2, t2 = scale_motion(R, t, 2.0, ref_R, ref_t)
    ang = lambda A: np.linalg.norm(Rotation.from_matrix(ref_R.T @ A).as_rotvec(), axis=-1)
    np.testing.assert_allclose(ang(R2), 2 * ang(R), atol=1e-7)
    np.testing.assert_allclose(t2 - ref_t, 2 * (t - ref_t))
    assert nearest_rows(R[[3, 1]], t[[3, 1]], R, t).tolist() == [3, 1]


def test_rendering_with_pose_tracks(head, tmp_path):
    fr = head.replay.frames
    n = 20
    np.savez(tmp_path / "own.npz", R=head.track_R[fr[:n]], t=head.track_t[fr[:n]])
    with AudioInput(SPEECH) as a:
        want = [x["base"] for _, _, x in head.frames(a, RenderOptions(variant="base"))]
        got = [x["base"] for _, _, x in head.frames(
            a, RenderOptions(variant="base", pose=str(tmp_path / "own.npz"), pose_end="loop"))]
    # the identity's own poses as a track: the replayed frames (same poses, same torso rows)
    np.testing.assert_array_equal(np.concatenate(got)[:n], np.concatenate(want)[:n])
    plan = head._plan(50, RenderOptions(variant="base", pose_scale=0.0))
    assert len(np.unique(plan.replay)) == 1 and np.ptp(plan.R, 0).max() == 0
    with pytest.raises(ValueError, match="pose must be replay, static or a pose track"):
        RenderOptions(pose="nowhere.npz").check(head.variants)
    with pytest.raises(ValueError, match="pose_scale"):
        RenderOptions(pose_scale=9).check(head.variants)


def test_cli_refuses_a_bad_track_before_any_output(tmp_path, capsys):
    R = np.tile(np.eye(3), (5, 1, 1))
    R[2] *= 2
    np.savez(tmp_path / "bad.npz", R=R, t=np.tile([0.0, 0.0, 0.6], (5, 1)))
    out = tmp_path / "o.mp4"
    with pytest.raises(SystemExit) as e:
        main(["render", "--identity", str(DEMO), "--audio", str(SPEECH), "--out", str(out),
              "--pose", str(tmp_path / "bad.npz")])
    assert e.value.code == 2
    assert "frame 2 is not a rotation" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.mp4*"))
    # a track of another camera that puts the head off the frame: refused once the
    # identity is known, still before the video opens
    np.savez(tmp_path / "far.npz", R=np.tile(np.eye(3), (5, 1, 1)),
             t=np.tile([0.4, 0.0, 0.6], (5, 1)))
    assert main(["render", "--identity", str(DEMO), "--audio", str(SPEECH), "--out", str(out),
                 "--pose", str(tmp_path / "far.npz"), "--quiet"]) == 2
    assert "outside the identity's 256x256 frame" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4*"))


def test_regions_and_jitter():
    lm = np.full((478, 2), 100.0)
    from fg3dgs.landmark_schemes import get_scheme
    jaw = list(get_scheme("mediapipe-478").jaw)
    lm[jaw] = np.stack([np.linspace(60, 140, 17), np.full(17, 150.0)], 1)
    band = jaw_band([lm], 256, radius=3)
    assert band[150, 100] and band[153, 100] and not band[155, 100] and not band[150, 20]
    assert not jaw_band([np.full((478, 2), np.nan)], 256).any()
    y0, y1, x0, x1 = mouth_box(lm, 256)
    assert y0 <= 100 <= y1 and x0 <= 100 <= x1
    a = np.zeros((8, 8, 3))
    b = a.copy()
    b[:4] = 0.1
    m = np.zeros((8, 8), bool)
    m[:4] = True
    assert masked_psnr(a, b, m) == pytest.approx(20.0) and masked_psnr(a, b, ~m) > 100
    # a face gliding steadily has no jitter; one that trembles by 0.5 px has about 1
    steady = np.linspace(0, 20, 40)[:, None, None] + np.zeros((40, 478, 2))
    shaky = steady + 0.5 * (-1.0) ** np.arange(40)[:, None, None]
    assert jitter(steady) < 1e-9 and jitter(shaky) == pytest.approx(2.0 * np.sqrt(2), rel=1e-6)


def test_teeth_are_the_white_inside_the_lips_and_agreement_counts_them():
    from fg3dgs.evaluate.regions import teeth_agreement
    from fg3dgs.preprocess.masks import inner_lip_loop, teeth

    loop = inner_lip_loop(478)
    lm = np.full((2, 478, 2), 50.0)                    # an open mouth, 60 x 24 px at 256
    t = np.linspace(0, 2 * np.pi, len(loop), endpoint=False)
    lm[:, loop] = np.stack([128 + 30 * np.cos(t), 128 + 12 * np.sin(t)], 1)
    img = np.zeros((2, 256, 256, 3))
    img[:, 120:126, 100:156] = 0.95                   # a white bar inside the lips
    img[:, 130:134, 110:146] = (0.8, 0.2, 0.2)        # a red tongue: not teeth
    img[:, 40:60, 40:60] = 1.0                         # white outside the lips: not teeth
    got = teeth(img, lm[:, loop])
    assert got.shape == (2, 256, 256)
    assert got[0, 120:126, 110:146].all() and not got[0, 130:134].any() and not got[0, :60].any()
    none = img.copy()
    none[:, 120:126] = 0.05                            # a render without teeth
    m = teeth_agreement(img, img, lm, lm)
    assert m["teeth_frames"] == 2 and m["teeth_shown"] == 1.0 and m["teeth_iou"] == 1.0
    m = teeth_agreement(img, none, lm, lm)
    assert m["teeth_shown"] == 0.0 and m["teeth_iou"] == 0.0
    assert teeth_agreement(none, img, lm, lm)["teeth_frames"] == 0


def test_cross_eval_on_a_clip_the_identity_never_saw(tmp_path, capsys):
    """A new synthetic clip of the demo photo: rendered with its own audio, poses and torso,
    the head lands on the real one, and the report has every measure."""
    from fg3dgs.synth.clip import SynthConfig, generate

    clip = tmp_path / "clip"
    generate(SynthConfig(text="The small red boat drifts home at noon.", size=256, seed=31,
                         voice="en-us+f2"), clip, progress=False)
    run = tmp_path / "demo"
    shutil.copytree(DEMO, run)
    assert main(["eval", str(run), "--cross", str(clip), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "mean [base]" in said and "jaw band" in said
    report = json.loads((run / "eval" / "cross.json").read_text())
    m = report["clips"]["clip"]["base"]
    assert m["frames"] >= 50 and m["face_frames"] == m["frames"]
    assert m["psnr_head"] > 22 and m["lmd_px"] < 4          # the head is where the real one is
    assert m["psnr_jaw_band"] > 20 and m["psnr_mouth"] > 20
    assert 0.3 < m["jitter_ratio"] < 3
    assert 0 <= m["teeth_frames"] <= m["frames"]
    assert set(report["clips"]["clip"]) == {"base", "refined"}
    for f in ("cross-clip.mp4", "cross-clip-widest.png"):
        assert (run / "eval" / f).is_file()
    assert main(["eval", str(run)]) == 2
    assert "give --data" in capsys.readouterr().err


def test_cross_eval_of_an_identity_on_the_speech_front_end(tmp_path, synth_clip):
    """An ``artic`` identity: the new clip is preprocessed with those features only, and its
    torso and truth frames are read without asking for any other feature."""
    from fg3dgs.synth.clip import SynthConfig

    clip = synth_clip(SynthConfig(text="Nine ducks swam past the mill.", size=256, seed=32,
                                  voice="en-us+m2"))
    run = tmp_path / "artic"
    shutil.copytree(ROOT / "checkpoints" / "identities" / "astronaut-artic", run)
    assert main(["eval", str(run), "--cross", str(clip), "--quiet", "--no-video"]) == 0
    report = json.loads((run / "eval" / "cross.json").read_text())
    m = report["clips"]["clip"]["base"]
    assert m["face_frames"] == m["frames"] >= 40 and m["lmd_px"] < 4
    data = next((run / "eval" / "cross-data").iterdir())
    assert list(json.loads((data / "manifest.json").read_text())["audio"]["features"]) == [
        "artic"]
    # the same clip with the truth's mouth parameters in place of the front-end's
    assert main(["eval", str(run), "--cross", str(clip), "--quiet", "--no-video",
                 "--truth-mouth"]) == 0
    ideal = json.loads((run / "eval" / "cross_truth_mouth.json").read_text())
    assert ideal["mouth_from"] == "the synthetic truth"
    t = ideal["clips"]["clip"]["base"]
    assert t["psnr"] != m["psnr"] and t["face_frames"] == t["frames"] == m["frames"]
    # any track from the speech (cross_evaluate's mouth=): the front-end's own estimate
    # given back as the track renders the plain run's frames
    from fg3dgs.evaluate.cross import cross_evaluate

    seen = []

    def own(speech):
        seen.append(speech.feature_frames)
        return speech.features("artic", 0, speech.feature_frames)[:, :4]

    same = cross_evaluate(run, [clip], progress=False, video=False, mouth=own)
    assert seen and same["mouth_from"] == "the given track"
    assert same["clips"]["clip"]["base"]["psnr"] == m["psnr"]
    assert (run / "eval" / "cross_mouth.json").is_file()


def test_truth_mouth_features_are_the_truths_mouth_parameters(synth_clip):
    """--truth-mouth's speech: the four mouth columns are the truth's targets at the
    feature frames, the speech-activity column stays the front-end's."""
    from fg3dgs.evaluate.cross import TruthMouthSpeech
    from fg3dgs.frontend.train import targets
    from fg3dgs.synth.clip import SynthConfig
    from fg3dgs.synth.speech import Phoneme
    from fg3dgs.synth.truth import load_truth

    clip = synth_clip(SynthConfig(text="Nine ducks swam past the mill.", size=256, seed=32,
                                  voice="en-us+m2"))
    truth = load_truth(clip)
    with AudioInput(clip / "audio.wav") as speech:
        drive = TruthMouthSpeech(speech, truth)
        got = drive.features("artic", 10, 60)
        front = speech.features("artic", 10, 60)
    assert got.shape == front.shape == (50, 5)
    np.testing.assert_array_equal(got[:, 4], front[:, 4])
    assert np.abs(got[:, :4] - front[:, :4]).max() > 0.05       # the front-end is not exact
    a = truth.arrays
    assert len(a["phonemes"]) > 5
    ph = [Phoneme(str(x), float(b), float(e), bool(st)) for x, b, e, st in
          zip(a["phonemes"], a["phoneme_start"], a["phoneme_end"], a["phoneme_stressed"])]
    assert truth.phonemes() == ph
    jaw = targets(ph, speech.samples)[10:60, 0]
    np.testing.assert_allclose(got[:, 0], jaw, atol=1e-6)
    assert jaw.max() > 0.3                        # the sentence opens the jaw


def test_studio_takes_an_uploaded_track_and_never_a_server_path(tmp_path):
    from fg3dgs.pipeline.studio import Studio

    st = Studio(workdir=tmp_path / "w")
    with pytest.raises(ValueError, match="pose must be replay, static or track"):
        st._options("base", "/etc/passwd", "replay", None, False)
    with pytest.raises(ValueError, match="needs a pose track: upload"):
        st._options("base", "track", "replay", None, False)
    bad = tmp_path / "bad.npz"
    np.savez(bad, R=np.full((3, 3, 3), np.nan), t=np.ones((3, 3)))
    with pytest.raises(PoseTrackError, match="NaN"):
        st._options("base", "track", "replay", None, False, bad)
    head = st.head("astronaut-demo")
    fr = head.replay.frames[:10]
    good = tmp_path / "good.npz"
    np.savez(good, R=head.track_R[fr], t=head.track_t[fr])
    paths, res = st.speak("astronaut-demo", SPEECH, "base", "track", pose_file=good,
                          pose_scale=0.5)
    assert paths["base"].is_file() and res.frames == 70
    st.close()
