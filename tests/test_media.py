"""Video writing with muxed audio, and audio decoding."""

import imageio.v3 as iio
import numpy as np
import pytest

from fg3dgs.media import MediaError, probe, read_audio, write_video, write_wav


def _bursts(seconds=2.0, sr=16000):
    audio = np.zeros(int(seconds * sr), np.float32)
    rng = np.random.default_rng(0)
    for t0 in (0.3, 0.9, 1.45)[: int(seconds / 0.6)]:
        s = int(t0 * sr)
        audio[s:s + 800] = rng.uniform(-0.5, 0.5, 800)
    return audio


def test_video_with_audio_round_trip(tmp_path):
    audio = _bursts()
    frames = [np.full((48, 64, 3), 5 * i, np.uint8) for i in range(50)]
    out = tmp_path / "clip.mp4"
    assert write_video(out, iter(frames), audio=audio) == 50
    info = probe(out)
    assert "Video: h264" in info and "Audio: aac" in info and "25 fps" in info
    decoded = list(iio.imiter(out))
    assert len(decoded) == 50 and decoded[0].shape == (48, 64, 3)
    assert abs(int(decoded[20].mean()) - 100) <= 3
    back = read_audio(out)
    m = min(len(back), len(audio))
    lag = np.argmax(np.correlate(back[:m], audio[:m], mode="full")) - (m - 1)
    assert abs(lag) / 16000 < 0.020          # audio and video stay in sync within 20 ms
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_wav_round_trip(tmp_path):
    audio = _bursts(0.5)
    write_wav(tmp_path / "a.wav", audio)
    back = read_audio(tmp_path / "a.wav")
    assert len(back) == len(audio) and np.abs(back - audio).max() < 1e-3


def test_bad_media(tmp_path):
    with pytest.raises(MediaError, match="no frames"):
        write_video(tmp_path / "x.mp4", iter([]))
    with pytest.raises(MediaError, match="even sides"):
        write_video(tmp_path / "x.mp4", [np.zeros((33, 32, 3), np.uint8)])
    with pytest.raises(MediaError, match="frame 1 has shape"):
        write_video(tmp_path / "x.mp4", [np.zeros((32, 32, 3), np.uint8),
                                         np.zeros((16, 32, 3), np.uint8)])
    assert not (tmp_path / "x.mp4").exists()       # nothing half-written
    with pytest.raises(MediaError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")
    silent = tmp_path / "silent.mp4"
    write_video(silent, [np.zeros((32, 32, 3), np.uint8)] * 5)
    with pytest.raises(MediaError, match="cannot decode audio|no audio track"):
        read_audio(silent)


def test_queued_writer_gives_the_same_file_and_reports_failures(tmp_path):
    """Frames handed to ffmpeg from a background thread: the same video as writing in the
    caller's thread; an encoder failure surfaces as MediaError and leaves no file."""
    from fg3dgs.media import VideoWriter

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(40)]
    for name, q in (("plain.mp4", 0), ("queued.mp4", 3)):
        with VideoWriter(tmp_path / name, 48, 32, queue=q) as w:
            for f in frames:
                w.write(f)
    a, b = (np.stack(list(iio.imiter(tmp_path / n))) for n in ("plain.mp4", "queued.mp4"))
    assert a.shape == (40, 32, 48, 3) and np.array_equal(a, b)

    class Broken:            # ffmpeg's pipe breaks at the first frame
        def __init__(self, real):
            self.real = real

        def send(self, frame):
            raise OSError("pipe closed")

        def close(self):
            self.real.close()

    with pytest.raises(MediaError, match="pipe closed"):
        with VideoWriter(tmp_path / "broken.mp4", 48, 32, queue=2) as w:
            w._writer = Broken(w._writer)
            for f in frames:
                w.write(f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.mp4", "queued.mp4"]
