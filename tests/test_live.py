"""Live calls (fg3dgs.pipeline.live): microphone chunks at any rate to frames, the drop
policy, the idle and length limits, and the call limit."""

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from fg3dgs.media import read_audio
from fg3dgs.pipeline import AudioInputError, RenderOptions, TalkingHead
from fg3dgs.pipeline.live import (
    LiveBusy,
    LiveCall,
    LiveEnded,
    LiveHall,
    LiveLimits,
    Resampler,
    mono_float,
)

SPEECH = Path(__file__).resolve().parents[1] / "assets" / "examples" / "bubbles.wav"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def head():
    return TalkingHead.load("astronaut-demo", device="cpu")


def _speechlike(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)          # syllable-rate loudness
    return (0.3 * env * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 900 * t))
            ).astype(np.float32)


@pytest.mark.parametrize("rate", [48000, 44100, 16000, 8000])
def test_resampler_matches_resampling_the_whole_stream(rate):
    x = _speechlike(rate, 1.5)
    rng, r, out, i = np.random.default_rng(rate), Resampler(rate), [], 0
    while i < len(x):
        n = int(rng.integers(1, 4000))
        out.append(r(x[i:i + n]))
        i += n
    y = np.concatenate(out)
    g = np.gcd(16000, rate)
    ref = resample_poly(x, 16000 // g, rate // g)
    held = (r.context + r.down) * 16000 // rate + 1           # the context, a period at most
    assert len(ref) - len(y) <= held and held <= 16000 * 0.03   # (30 ms at the most)
    assert np.abs(y[100:] - ref[100:len(y)]).max() < 1e-5
    with pytest.raises(AudioInputError, match="not audio from a microphone"):
        Resampler(100)


def test_chunks_in_any_layout_become_mono_float():
    st = np.array([[16384, -16384], [32767, 32767]], np.int16)   # [S, C] interleaved
    np.testing.assert_allclose(mono_float(st), [0.0, 32767 / 32768], atol=1e-7)
    assert mono_float(np.ones(3, np.float64)).dtype == np.float32
    with pytest.raises(AudioInputError, match=r"\[samples\] or \[samples, channels\]"):
        mono_float(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(AudioInputError, match="integer or float"):
        mono_float(np.array(["a"]))


def test_lookahead_makes_frames_sooner_and_a_long_one_is_exact(head):
    """With a look-ahead a frame comes once the audio reaches that far past its end (the
    rest silence so far); one as long as the exact wait gives the offline frames."""
    from fg3dgs.pipeline.streaming import SpeechStream

    audio = read_audio(SPEECH)[:16000]

    def stream(la):
        s, made = SpeechStream(head, RenderOptions(variant="base"), la), []
        for k in range(0, len(audio), 320):
            made.append(sum(len(b) for b in s.push(audio[k:k + 320])))
        return np.cumsum(made), np.concatenate(list(s.push(np.zeros(0, np.float32))) +
                                               list(s.finish()))
    exact_n, _ = stream(None)
    soon_n, _ = stream(80)
    # 20 ms chunks: frame f comes with the chunk that reaches (f + 1) * 40 + look-ahead ms
    assert soon_n[-1] == (16000 - 80 * 16) // 640 and exact_n[-1] == (1000 - 340) // 40
    s_exact, s_long = (SpeechStream(head, RenderOptions(variant="base"), la)
                       for la in (None, 2000))
    a = np.concatenate(list(s_exact.push(audio)) + list(s_exact.finish()))
    b = np.concatenate(list(s_long.push(audio)) + list(s_long.finish()))
    assert a.shape == b.shape and np.array_equal(a, b)


def test_stereo_48k_int16_gives_the_frames_of_16k_mono(head):
    """A browser's 48 kHz stereo int16 chunks render as the same speech at 16 kHz mono."""
    mono16 = _speechlike(16000, 2.0)
    clock = Clock()
    ref = LiveCall(head, RenderOptions(variant="base"), now=clock)
    want = [f for k in range(0, len(mono16), 3200) for f in ref.push(16000, mono16[k:k + 3200])]
    x48 = resample_poly(mono16, 3, 1).astype(np.float32)
    stereo = (np.stack([x48, x48], 1) * 32767).astype(np.int16)
    live = LiveCall(head, RenderOptions(variant="base"), now=clock)
    got = [f for k in range(0, len(stereo), 9600) for f in live.push(48000, stereo[k:k + 9600])]
    n = min(len(got), len(want))
    assert n >= 35 and abs(len(got) - len(want)) <= 1
    diff = np.abs(np.stack(got[:n]).astype(int) - np.stack(want[:n]))
    assert np.mean(diff) < 0.5 and got[0].shape == (256, 256, 3)


def test_late_chunks_are_dropped_until_caught_up(head):
    """Chunks handed over long after their speech (queued while rendering) are dropped, so
    the delay cannot grow; chunks on time are rendered."""
    clock = Clock()
    s = LiveCall(head, RenderOptions(variant="base"),
                    LiveLimits(max_behind_ms=300, gone_seconds=10), now=clock)
    chunk = _speechlike(16000, 0.2)
    frames = []
    for _ in range(5):                      # on time: 200 ms of speech each 200 ms
        clock.t += 0.2
        frames += s.push(16000, chunk)
    assert frames and s.dropped_ms == 0 and abs(s.lag_ms) < 1
    clock.t += 0.8                          # the renderer stalled; four chunks queued
    assert s.push(16000, chunk) == [] and s.lag_ms > 300     # 600 ms late: dropped
    assert s.push(16000, chunk) == []                         # 400 ms late: dropped
    s.push(16000, chunk)                                      # 200 ms late: rendered
    assert s.dropped_ms == 400 and 0 < s.lag_ms <= 300
    clock.t += 5.0                          # a pause in delivery is not lateness
    s.push(16000, chunk)
    assert s.lag_ms == pytest.approx(0, abs=1e-6) and s.dropped_ms == 400


def test_a_slow_microphone_clock_is_not_lateness(head):
    """A source whose clock runs 1 % slow falls 0.2 s behind over 20 s without anything
    queueing: nothing is dropped (lateness is measured against the earliest arrival of the
    last 10 s); a stall after it still is."""
    clock = Clock()
    s = LiveCall(head, RenderOptions(variant="base", size=64),
                    LiveLimits(max_behind_ms=150, gone_seconds=10), now=clock)
    chunk = np.zeros(1600, np.float32)          # 100 ms of speech every 101 ms
    for _ in range(200):
        clock.t += 0.101
        s.push(16000, chunk)
    assert s.dropped_ms == 0 and s.lag_ms < 150
    clock.t += 0.5                              # a stall: five chunks queued
    assert s.push(16000, chunk) == [] and s.dropped_ms == 100


def test_calls_end_without_speech_without_chunks_or_too_long(head):
    clock = Clock()
    limits = LiveLimits(idle_seconds=5, max_seconds=12, gone_seconds=1)
    s = LiveCall(head, RenderOptions(variant="base"), limits, now=clock)
    for _ in range(8):                      # silence keeps coming: the page is there
        clock.t += 0.5
        s.push(16000, np.zeros(3200, np.float32))
    assert s.ended is None
    s.push(16000, _speechlike(16000, 0.2))  # speech: the idle time starts again
    for _ in range(9):
        clock.t += 0.5
        s.push(16000, np.zeros(3200, np.float32))
    assert s.ended is None
    clock.t += 0.5
    s.push(16000, np.zeros(3200, np.float32))
    clock.t += 0.6
    assert "no speech for 5 s" in s.ended
    with pytest.raises(LiveEnded, match="start a new one"):
        s.push(16000, np.zeros(3200, np.float32))
    gone = LiveCall(head, RenderOptions(variant="base"), limits, now=clock)
    gone.push(16000, np.zeros(1600, np.float32))
    clock.t += 0.9
    assert gone.ended is None
    clock.t += 0.2                          # no chunk for 1.1 s: the page is gone
    assert "closed or lost its connection" in gone.ended
    s2 = LiveCall(head, RenderOptions(variant="base"), limits, now=clock)
    for _ in range(26):
        clock.t += 0.5
        if s2.ended:
            break
        s2.push(16000, _speechlike(16000, 0.1))
    assert "longest a call may last (12 s)" in s2.ended


def test_hall_admits_its_limit_and_frees_a_place_at_once(head):
    clock = Clock()
    loads = []
    hall = LiveHall(lambda ident: loads.append(ident) or head,
                    LiveLimits(calls=1, idle_seconds=10, gone_seconds=60), now=clock)
    a = hall.open("astronaut-demo")
    with pytest.raises(LiveBusy, match="busy: 1 live call already running"):
        hall.open("astronaut-demo")
    hall.close(a)                           # a stop or a closed page
    b = hall.open("astronaut-demo", "refined")
    assert b.opts.variant == "refined" and loads == ["astronaut-demo"] * 2
    clock.t += 11                           # idle: its place is taken back on the next open
    c = hall.open("astronaut-demo")
    assert b.ended and list(hall.calls) == [c.id]
    two = LiveHall(lambda ident: head, LiveLimits(calls=2), now=clock)
    s1, s2 = two.open("x"), two.open("x")
    frames = s1.push(16000, np.zeros(8000, np.float32)) + s2.push(16000,
                                                                   np.zeros(8000, np.float32))
    assert len(frames) > 0 and s1.id != s2.id


def test_silence_keeps_the_mouth_closed(head):
    """Silence renders the mouth at rest while the head keeps its replayed motion; speech
    opens it (inner-lip opening read by the face observer on the frames)."""
    from fg3dgs.face_observer import lip_opening, track_landmarks

    quiet = LiveCall(head, RenderOptions(variant="base"), now=Clock())
    frames = quiet.push(16000, np.zeros(24000, np.float32))
    talk = LiveCall(head, RenderOptions(variant="base"), now=Clock())
    spoken = talk.push(16000, read_audio(SPEECH))
    assert len(frames) >= 25 and len(spoken) >= 50
    shut = lip_opening(track_landmarks(np.stack(frames)))
    open_ = lip_opening(track_landmarks(np.stack(spoken)))
    # (the photo smiles: its lips part a little at rest)
    assert np.nanmedian(shut) + 0.03 < np.nanmedian(open_)
    assert np.nanmax(shut) < 0.7 * np.nanmax(open_)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.1     # the head moves


def test_lookahead_bench_prints_and_saves_its_table(tmp_path, capsys):
    import json

    from fg3dgs.bench.__main__ import main
    from fg3dgs.media import write_wav

    write_wav(tmp_path / "s.wav", read_audio(SPEECH)[:12000])
    assert main(["lookahead", "astronaut-demo", str(tmp_path / "s.wav"), "--lookahead", "80",
                 "--json", str(tmp_path / "la.json")]) == 0
    out = capsys.readouterr().out
    assert "| look-ahead ms | wait ms (median) |" in out and "| exact | 340 |" in out
    rows = json.loads((tmp_path / "la.json").read_text())["rows"]
    assert [r["lookahead_ms"] for r in rows] == [None, 80] and rows[1]["wait_ms"] == 80
    assert -1 <= rows[1]["opening_r"] <= 1 and rows[1]["mouth_psnr_db"] > 20


def test_page_tokens_start_replace_end_and_stop(head):
    """The Live page's server side: a page's token names its call; a new Start ends the
    page's previous call, a closing page's last post frees its place, Stop ends it, and a
    busy server or a bad identity is told to the page, with no token."""
    import base64
    import json

    from fg3dgs.live_page import LivePage

    def only(key):
        if key != "demo":
            raise ValueError("this server speaks as 'demo' only")
        return key

    hall = LiveHall(lambda ident: head, LiveLimits(calls=1, gone_seconds=60))
    page = LivePage(hall, [("demo", "demo")], only)
    cmd, first = page.start("demo", "base", None)
    assert json.loads(cmd)["cmd"] == "start" and json.loads(cmd)["call"] == first
    cmd, token = page.start("demo", "base", first)            # Start again: replaces it
    assert token != first and list(page.tokens) == [token] and len(hall.calls) == 1
    assert "ended" in page.live_push({"call": first, "seq": 0, "rate": 16000, "pcm": ""})
    pcm = base64.b64encode((np.zeros(16000) * 0).astype("<i2").tobytes()).decode()
    out = page.live_push({"call": token, "seq": 0, "rate": 16000, "pcm": pcm})
    assert len(out["frames"]) > 0 and out["stats"]["frames"] == len(out["frames"])
    cmd, other = page.start("demo", "base", None)               # another page: busy
    assert "busy" in json.loads(cmd)["message"] and other is None
    assert page.live_push({"call": token, "end": True}) == {"ended": "closed"}
    assert hall.calls == {} and page.tokens == {}
    cmd, token = page.start("demo", "base", None)               # the place is free again
    assert json.loads(cmd)["cmd"] == "start"
    assert json.loads(page.stop(token)[0])["cmd"] == "stop" and hall.calls == {}
    cmd, none = page.start("other", "base", None)
    assert "cannot start" in json.loads(cmd)["message"] and none is None
