"""Preprocessing steps on a short synthetic clip: decoding, tracking, smoothing, masks."""

import numpy as np
import pytest

from fg3dgs.facemesh import mirror_permutation
from fg3dgs.landmark_schemes import get_scheme, to_ibug68
from fg3dgs.media import MediaError, write_video
from fg3dgs.preprocess.landmarks import FaceTrackError, MeshReader, smooth_landmarks, track_faces
from fg3dgs.preprocess.masks import (
    PolygonMasker,
    RegionMasker,
    inner_lip_loop,
    make_masker,
    masks_from_labels,
    mouth_interior,
)
from fg3dgs.preprocess.pose import estimate_poses, rotation_errors
from fg3dgs.preprocess.video import iter_frames, probe_video
from fg3dgs.synth.clip import SynthConfig
from fg3dgs.synth.truth import load_truth


@pytest.fixture(scope="module")
def clip(synth_clip):
    return synth_clip(SynthConfig(text="Maybe we should fold the blue map. Why wait?",
                                  size=256, seed=5))


def test_probe_and_stream_frames(clip, tmp_path):
    info = probe_video(clip / "video.mp4")
    truth = load_truth(clip)
    assert (info.width, info.height) == (256, 256) and info.has_audio
    assert abs(info.frames_at_25 - truth.n_frames) <= 1
    frames = list(iter_frames(clip / "video.mp4", info))
    assert len(frames) == truth.n_frames and frames[0].shape == (256, 256, 3)
    # A crop past the border is padded; the output is resized.
    crops = list(iter_frames(clip / "video.mp4", info, crop=(-32, 100, 192), size=64))
    assert crops[0].shape == (64, 64, 3) and crops[0][:, :4].max() == 0
    # Another frame rate is resampled to 25 fps.
    slow = tmp_path / "slow.mp4"
    write_video(slow, frames[:40], fps=10)
    assert len(list(iter_frames(slow))) == 100
    with pytest.raises(MediaError, match="does not exist"):
        probe_video(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 100)
    with pytest.raises(MediaError):
        probe_video(junk)
    import imageio.v3 as iio

    for ext in ("png", "jpg"):
        iio.imwrite(tmp_path / f"still.{ext}", frames[0])
        with pytest.raises(MediaError, match="is an image, not a video"):
            probe_video(tmp_path / f"still.{ext}")


def test_tracking_matches_truth_and_fills_short_gaps(clip):
    truth = load_truth(clip).arrays
    frames = list(iter_frames(clip / "video.mp4"))
    track = track_faces(frames)
    assert track.found.all() and track.points.shape == (len(frames), 478, 3)
    iod = np.linalg.norm(truth["landmarks"][:, 468] - truth["landmarks"][:, 473], axis=-1)
    err = np.linalg.norm(track.points[..., :2] - truth["landmarks"], axis=-1) / iod[:, None]
    assert np.median(err) < 0.03
    blanked = [f if not 10 <= i < 15 else np.zeros_like(f) for i, f in enumerate(frames)]
    gapped = track_faces(blanked)
    assert gapped.gaps == [(10, 14)] and not np.isnan(gapped.points).any()
    long_gap = [f if not 10 <= i < 30 else np.zeros_like(f) for i, f in enumerate(frames)]
    with pytest.raises(FaceTrackError, match="lost for 0.8 s, frames 10-29"):
        track_faces(long_gap)
    with pytest.raises(FaceTrackError, match="no face found"):
        track_faces([np.zeros_like(frames[0])] * 5)
    two = [np.concatenate([f, f], axis=1) for f in frames[:3]]
    with pytest.raises(FaceTrackError, match="2 faces in frame 0"):
        track_faces(two)


def test_mirror_permutation_matches_mediapipe_on_mirrored_frames(clip):
    perm = mirror_permutation()
    assert (perm[perm] == np.arange(478)).all()                    # its own inverse
    assert (perm[[1, 4, 0, 17, 152]] == [1, 4, 0, 17, 152]).all()  # the midline stays
    assert perm[33] == 263 and perm[133] == 362 and perm[468] == 473 and perm[469] == 476
    frames = list(iter_frames(clip / "video.mp4"))[::10]
    with MeshReader(mirror=False) as read:
        plain = np.stack([read(f)[0] for f in frames])[..., :2]
        # static detection sometimes adds a spurious second face; take the one that matches
        flipped = [read(f[:, ::-1]) for f in frames]
    iod = np.linalg.norm(plain[:, 468] - plain[:, 473], axis=-1)
    back, unmatched = [], []
    for faces, p, d in zip(flipped, plain, iod):
        b = [read.unmirror(f, 256)[:, :2] for f in faces]
        err = [np.median(np.linalg.norm(x - p, axis=-1)) / d for x in b]
        back.append(b[int(np.argmin(err))])
        u = faces[int(np.argmin(err))][:, :2].copy()
        u[:, 0] = 256 - u[:, 0]
        unmatched.append(np.median(np.linalg.norm(u - p, axis=-1)) / d)
    back = np.stack(back)
    assert np.median(np.linalg.norm(back - plain, axis=-1) / iod[:, None]) < 0.03
    assert min(unmatched) > 0.1           # the points do need the permutation
    # The default reading is the mean of the two.
    both = track_faces(frames).points[..., :2]
    assert np.allclose(both, 0.5 * (plain + back), atol=1e-3)


def test_smoothing_removes_jitter_and_keeps_fast_motion():
    rng = np.random.default_rng(0)
    F = 200
    t = np.arange(F) / 25
    smooth_path = np.stack([100 + 20 * np.sin(t), 80 + 10 * np.cos(0.7 * t), 0 * t], -1)
    pts = np.repeat(smooth_path[:, None], 478, axis=1)
    fast = get_scheme('mediapipe-478').fast_mask
    step = (np.arange(F) >= 100) * 6.0                     # a lip opening in one frame
    pts[:, fast, 1] += step[:, None]
    noisy = pts + rng.normal(scale=0.5, size=pts.shape)
    out = smooth_landmarks(noisy)
    rigid = ~fast
    assert np.abs(out[:, rigid] - pts[:, rigid]).std() < 0.6 * 0.5     # jitter reduced
    # The step is kept within a frame or two on the lips (no lag).
    assert abs(out[102, fast, 1].mean() - pts[102, fast, 1].mean()) < 0.5
    assert abs(out[97, fast, 1].mean() - pts[97, fast, 1].mean()) < 0.5


def test_masks_and_pose_against_truth(clip):
    truth = load_truth(clip)
    track = track_faces(iter_frames(clip / "video.mp4"))
    pts = smooth_landmarks(track.points)
    masker = RegionMasker(np.median(pts, axis=0))
    ious = {"eyes": [], "mouth": []}
    for i in range(0, truth.n_frames, 4):
        got, want = masks_from_labels(masker(pts[i], 256, 256)), truth.masks(i)
        for k in ious:
            ious[k].append((got[k] & want[k]).sum() / max(1, (got[k] | want[k]).sum()))
    assert np.mean(ious["mouth"]) > 0.8 and np.mean(ious["eyes"]) > 0.7
    # the mouth's inside lies within the true mouth and grows as the true jaw opens
    inside = mouth_interior(pts[:, inner_lip_loop(pts.shape[1]), :2], 256)
    within = [(inside[i] & truth.masks(i)["mouth"]).sum() / max(1, inside[i].sum())
              for i in range(0, truth.n_frames, 4)]
    assert np.median(within) > 0.9
    jaw = truth.arrays["visemes"][:, 0]
    area = inside.sum((1, 2))
    assert np.corrcoef(jaw, area)[0, 1] > 0.6
    poses = estimate_poses(pts, 256, 256)
    err = rotation_errors(poses.R, truth.arrays["R"].astype(np.float64))
    assert np.median(err) < 1.5 and np.percentile(err, 95) < 4.0


def test_mouth_interior_fills_the_inner_lips_and_grows_over_their_edge():
    """Inside the loop, and the grown ring just outside it; nothing further out. A closed
    mouth (the loop flat on one line) still marks the lips' meeting line."""
    square = np.array([[10, 10], [20, 10], [20, 16], [10, 16]], np.float64)
    flat = np.array([[8, 24], [16, 24.2], [24, 24], [16, 23.8]])
    m = mouth_interior(np.stack([square, flat]), 32, grow=1.5)
    assert m.shape == (2, 32, 32) and m.dtype == bool
    assert m[0, 11:16, 11:20].all() and m[0, 13, 8] and m[0, 18, 15]       # inside, ring
    assert not m[0, 13, 6] and not m[0, 20, 15] and not m[0, :6].any()       # beyond it
    assert m[1, 24, 9:24].all() and not m[1, 28].any() and not m[1, :20].any()
    assert not mouth_interior(np.stack([square]), 32, grow=0)[0, 13, 8]
    assert len(inner_lip_loop(478)) == 20 and 13 in inner_lip_loop(478)      # mesh mouth hole
    assert inner_lip_loop(68) == list(range(60, 68))


def test_68_point_layout_pose_and_masks_against_truth(clip):
    """The face-alignment path's downstream steps (pose, masks) on the 68 iBUG points, fed
    with the mediapipe track converted to that layout."""
    truth = load_truth(clip)
    pts = to_ibug68(smooth_landmarks(track_faces(iter_frames(clip / "video.mp4")).points))
    masker = make_masker(np.median(pts, axis=0))
    assert isinstance(masker, PolygonMasker)
    ious = {"eyes": [], "mouth": [], "face": []}
    for i in range(0, truth.n_frames, 4):
        got, want = masks_from_labels(masker(pts[i], 256, 256)), truth.masks(i)
        for k in ious:
            ious[k].append((got[k] & want[k]).sum() / max(1, (got[k] | want[k]).sum()))
    # Measured 0.835 / 0.73 / 0.91 (polygons are coarser than the mesh's regions).
    assert np.mean(ious["mouth"]) > 0.75 and np.mean(ious["eyes"]) > 0.65
    assert np.mean(ious["face"]) > 0.85
    poses = estimate_poses(pts, 256, 256)
    err = rotation_errors(poses.R, truth.arrays["R"].astype(np.float64))
    assert np.median(err) < 2.5 and np.percentile(err, 95) < 6.0
