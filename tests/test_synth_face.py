"""The face rig's geometry, head motion and blinks."""

import numpy as np
import pytest

from fg3dgs.facemesh import MOUTH_L, MOUTH_R
from fg3dgs.synth.face import Expression, build_rig
from fg3dgs.synth.motion import MotionConfig, blink_track, head_motion
from fg3dgs.synth.photo import detect_face, load_photo
from fg3dgs.synth.rig_parts import CHIN
from fg3dgs.synth.speech import Phoneme


@pytest.fixture(scope="module")
def rig():
    photo = load_photo("builtin:astronaut")
    return build_rig(photo, detect_face(photo), None, "photo")


def _gap(p):
    return abs(p[14, 1] - p[13, 1])       # vertical inner-lip opening in the middle


def test_rest_mouth_is_closed_and_jaw_opens_it(rig):
    rest = rig.deform(Expression())
    assert np.allclose(rest, rig.rest)
    assert _gap(rest) < 3e-4                      # the photo's open smile is closed at rest
    wide = rig.deform(Expression(jaw_open=1.0, lip_closure=0.0))
    assert 0.012 < _gap(wide) < 0.035             # 1.2-3.5 cm between the inner lips
    assert wide[CHIN, 1] - rest[CHIN, 1] > 0.008  # chin drops
    assert np.allclose(wide[10], rest[10])        # forehead stays
    closed = rig.deform(Expression(jaw_open=1.0, lip_closure=1.0))
    assert _gap(closed) < 0.25 * _gap(wide)       # closure keeps the lips together
    half = rig.deform(Expression(jaw_open=0.5, lip_closure=0.0))
    assert _gap(rest) < _gap(half) < _gap(wide)


def test_spread_and_round_change_mouth_width(rig):
    def width(p):
        return np.linalg.norm(p[MOUTH_R] - p[MOUTH_L])
    rest = rig.deform(Expression())
    spread = rig.deform(Expression(lip_spread=1.0))
    rnd = rig.deform(Expression(lip_round=1.0))
    assert width(spread) > 1.1 * width(rest)
    assert width(rnd) < 0.85 * width(rest)
    assert rnd[0, 2] < rest[0, 2]                 # rounded lips push forward (towards -z)


def test_eyelids_close(rig):
    closed = rig.deform(Expression(eye_open=(0.0, 0.0)))
    half = rig.deform(Expression(eye_open=(0.5, 1.0)))
    assert np.all(rig.eye_openness(closed) < 0.05)
    o = rig.eye_openness(half)
    assert abs(o[0] - 0.5) < 0.05 and abs(o[1] - 1.0) < 1e-6


def test_pose_moves_head_not_background(rig):
    R = np.array([[0.99619, 0, 0.08716], [0, 1, 0], [-0.08716, 0, 0.99619]])   # 5 deg yaw
    cam = rig.pose(rig.rest, R, rig.head_centre)
    still = rig.rest + rig.head_centre
    head = rig.head_weight == 1.0
    assert np.allclose(cam[head], rig.rest[head] @ R.T + rig.head_centre)
    bg = rig.head_weight < 1e-6
    assert bg.any() and np.allclose(cam[bg], still[bg])


def test_head_motion_is_small_smooth_and_nods_on_stress():
    times = np.arange(0, 20, 0.04)
    R, t, ang = head_motion(times, [], 3, np.zeros(3))
    assert np.abs(ang).max() < 6.0 and np.abs(ang).max() > 0.5
    assert np.abs(np.diff(ang, axis=0)).max() < 0.3      # degrees per frame
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    stressed = [Phoneme("a", 5.0, 5.2, stressed=True)]
    _, _, ang2 = head_motion(times, stressed, 3, np.zeros(3))
    k = int(5.08 / 0.04)
    assert ang2[k, 1] - ang[k, 1] > 0.8 * MotionConfig().nod_deg
    assert np.allclose(ang2[:50], ang[:50])


def test_blinks_every_few_seconds_and_short():
    times = np.arange(0, 60, 0.001)
    openness, starts = blink_track(times, 5)
    gaps = np.diff(starts)
    assert len(starts) >= 8 and gaps.min() >= 2.0 and gaps.max() <= 6.0
    shut = openness < 0.5
    runs = np.diff(np.flatnonzero(np.diff(shut.astype(int)) != 0))[::2]
    assert len(runs) == len(starts) and 0.05 <= runs.max() / 1000 <= 0.12
    assert np.array_equal(blink_track(times, 5)[1], starts)
