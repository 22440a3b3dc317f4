"""Live calls: microphone audio in, frames out, for the app's Live tab and ``fg3dgs live``.

A :class:`LiveCall` is one person talking to one head: it takes audio chunks as a
browser or a sound card delivers them (any sample rate, mono or interleaved channels, int16 or
float) and returns the frames they made ready, through its own :class:`SpeechStream`. When
chunks reach it later than the speech they hold by more than ``LiveLimits.max_behind_ms``
(they queued while the renderer was busy) it drops them until it has caught up: a jump in
the speech, never a growing delay. A call ends after ``idle_seconds`` without speech,
``gone_seconds`` without any chunk (a closed page, a dropped connection: a page sends
silence too) or ``max_seconds`` in all. :class:`LiveHall` admits at most ``calls`` at
once and tells the next one to come back later (:class:`LiveBusy`) instead of slowing those
it serves.

Feeding chunks from any source::

    hall = LiveHall(TalkingHead.load)
    call = hall.open("astronaut-artic", "base")
    for rate, samples in microphone():          # e.g. sounddevice.InputStream's callback
        for frame in call.push(rate, samples):   # [S, S, 3] uint8
            show(frame)
    hall.close(call)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from ..media import AUDIO_RATE
from .audio_input import SAMPLES_PER_FRAME, AudioInputError
from .render_options import RenderOptions

CONTEXT = 64             # input samples kept between chunks for the resampling filter
# A live frame is made once the audio reaches this far past its end (SpeechStream's
# look-ahead) instead of the 0.34 s (mel) / 0.94 s (artic) an exact frame waits for. 120 ms
# keeps the Live page's delay from speech to the shown mouth under 300 ms on 2 cores; what it
# costs the mouth: `python -m fg3dgs.bench lookahead` (docs/rendering.md)
LOOKAHEAD_MS = 120
# A chunk is on time if it comes as early, against the speech it holds, as the earliest in
# this many seconds: a microphone whose clock runs slower than the server's (0.1-1 % is
# common; Chromium's fake one: 0.6 %) falls behind steadily without anything queueing
CLOCK_WINDOW_S = 10.0
# a chunk this loud (RMS of [-1, 1] samples, -46 dBFS) is speech, not a quiet room's
# microphone noise; what counts for the idle limit
SPEECH_RMS = 0.005


@dataclass(frozen=True)
class LiveLimits:
    """``calls``: live calls at once; ``idle_seconds``: no speech for this long ends a
    call; ``gone_seconds``: no chunk at all for this long ends it (its page is gone);
    ``max_seconds``: a call's longest; ``max_behind_ms``: chunks handed over later than
    this after their speech are dropped; ``lookahead_ms``: each call's
    :class:`SpeechStream` look-ahead."""

    calls: int = 1
    idle_seconds: float = 30.0
    gone_seconds: float = 1.0
    max_seconds: float = 600.0
    max_behind_ms: int = 250
    lookahead_ms: int = LOOKAHEAD_MS


class LiveBusy(RuntimeError):
    """Every live call this server allows is taken."""


class LiveEnded(RuntimeError):
    """The call ended (closed, idle or at its longest); open a new one."""


def mono_float(samples) -> np.ndarray:
    """A chunk as float32 mono samples [S]: int16 / int32 scaled to [-1, 1], channels
    ([S, C], C <= 8, as browsers and sound cards interleave them) averaged."""
    a = np.asarray(samples)
    if a.dtype.kind == "i":
        a = a / float(np.iinfo(a.dtype).max + 1)
    elif a.dtype.kind != "f":
        raise AudioInputError(f"audio chunks must be integer or float samples, got {a.dtype}")
    if a.ndim == 2 and a.shape[1] <= 8:
        a = a.mean(1)
    if a.ndim != 1:
        raise AudioInputError(f"audio chunks must be [samples] or [samples, channels], got "
                              f"shape {a.shape}")
    return a.astype(np.float32, copy=False)


class Resampler:
    """Chunks at ``rate`` to 16 kHz as if the whole stream were resampled at once (up to
    the filter's end effects, which stay in the first few samples): input is taken in
    blocks that start on the rate ratio's period, each filtered with the input before it and
    some after it as context (about 2-10 ms of delay)."""

    def __init__(self, rate: int):
        if not 4000 <= rate <= 384000:
            raise AudioInputError(f"a sample rate of {rate} Hz is not audio from a microphone")
        ratio = Fraction(AUDIO_RATE, int(rate))
        self.up, self.down = ratio.numerator, ratio.denominator
        self.rate = rate
        self.context = self.down * -(-CONTEXT // self.down)       # whole periods
        self.left = np.zeros(0, np.float32)      # input before the pending samples
        self.pending = np.zeros(0, np.float32)   # input not yet turned into output

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.up == self.down:
            return x
        self.pending = np.concatenate([self.pending, x])
        block = (len(self.pending) - self.context) // self.down * self.down
        if block <= 0:
            return np.zeros(0, np.float32)
        both = np.concatenate([self.left, self.pending])
        y = resample_poly(both, self.up, self.down)
        start = len(self.left) * self.up // self.down
        out = y[start:start + block * self.up // self.down].astype(np.float32)
        self.left = both[len(self.left) + block - self.context:len(self.left) + block]
        self.pending = self.pending[block:]
        return out


class LiveCall:
    """One live rendering (see the module note). ``now``: the clock (seconds);
    ``lookahead_ms``: :class:`SpeechStream`'s (None: exact frames, later)."""

    _ids = itertools.count(1)

    def __init__(self, head, opts: RenderOptions, limits: LiveLimits = LiveLimits(),
                 now: Callable[[], float] = time.monotonic,
                 lookahead_ms: int | None = LOOKAHEAD_MS):
        self.head, self.opts, self.limits, self.now = head, opts, limits, now
        self.id = next(self._ids)
        from .streaming import SpeechStream  # (torch: the limits load without it)

        self.stream = SpeechStream(head, opts, lookahead_ms)
        self.resampler: Resampler | None = None
        self.started = self.last_audio = self.last_speech = now()
        self.closed = False
        # (clock time - speech taken before it) of each chunk in the last CLOCK_WINDOW_S
        self.arrivals: deque[tuple[float, float]] = deque()
        self.taken = 0.0                    # seconds of speech taken (rendered or dropped)
        self.frames_out = self.dropped_ms = 0
        self.lag_ms = 0.0         # how late the last chunk was handed over
        self.delay_ms = 0.0       # speech received but not yet in a frame, after the last push

    @property
    def ended(self) -> str | None:
        """Why the call is over, or None while it runs."""
        t = self.now()
        if self.closed:
            return "closed"
        if t - self.last_audio > self.limits.gone_seconds:
            return "no audio arrived: the page was closed or lost its connection"
        if t - self.last_speech > self.limits.idle_seconds:
            return f"no speech for {self.limits.idle_seconds:g} s"
        if t - self.started > self.limits.max_seconds:
            return f"the longest a call may last ({self.limits.max_seconds:g} s)"
        return None

    def push(self, rate: int, samples) -> list[np.ndarray]:
        """Take a chunk (``rate`` Hz, see :func:`mono_float`); return the frames
        [S, S, 3] uint8 it made ready, in order (none when it was dropped)."""
        return [f for _, f in self.push_timed(rate, samples)]

    def push_timed(self, rate: int, samples) -> list[tuple[float, np.ndarray]]:
        """:meth:`push`, each frame with where its speech ends in the audio handed over
        (seconds since the call's first chunk, dropped chunks counted): what a page
        needs to tell how late it shows a frame."""
        why = self.ended
        if why:
            raise LiveEnded(f"the live call has ended ({why}); start a new one")
        if self.resampler is None or self.resampler.rate != rate:
            self.resampler = Resampler(rate)
        x = self.resampler(mono_float(samples))
        t, seconds = self.now(), len(x) / AUDIO_RATE
        if len(x) and np.sqrt(np.mean(np.square(x))) > SPEECH_RMS:
            self.last_speech = t
        if t - self.last_audio > 1.0:
            self.arrivals.clear()       # a pause in delivery is not lateness: start afresh
        self.last_audio = t
        # when the speech began, as this chunk tells it (its speech began its length before
        # it arrived); the earliest lately is on time
        self.arrivals.append((t, t - self.taken - seconds))
        while self.arrivals[0][0] < t - CLOCK_WINDOW_S:
            self.arrivals.popleft()
        self.taken += seconds
        # how much later than on time: the chunks queued while the renderer was busy
        self.lag_ms = 1000 * (self.arrivals[-1][1] - min(a for _, a in self.arrivals))
        if self.lag_ms > self.limits.max_behind_ms:
            self.dropped_ms += round(1000 * seconds)
            return []
        first = self.stream.done
        frames = [f for batch in self.stream.push(x) for f in batch]
        # frame k's speech ends at (k + 1) frames of the stream, which lacks what was dropped
        ends = [(first + k + 1) * SAMPLES_PER_FRAME / AUDIO_RATE + self.dropped_ms / 1000
                for k in range(len(frames))]
        self.frames_out += len(frames)
        self.delay_ms = 1000 * (self.stream.received - self.stream.done *
                                SAMPLES_PER_FRAME) / AUDIO_RATE
        return list(zip(ends, frames))

    def close(self) -> None:
        self.closed = True


class LiveHall:
    """The live calls of one server: at most ``limits.calls`` at once, each over a
    head from ``load(identity)`` (heads may be shared: rendering does not change them)."""

    def __init__(self, load: Callable[[str], object], limits: LiveLimits = LiveLimits(),
                 now: Callable[[], float] = time.monotonic):
        self.load, self.limits, self.now = load, limits, now
        self.calls: dict[int, LiveCall] = {}
        self._lock = threading.Lock()

    def open(self, identity: str, variant: str = "base") -> LiveCall:
        """A new call; :class:`LiveBusy` when every place is taken by a running one."""
        with self._lock:
            self._reap()
            if len(self.calls) >= self.limits.calls:
                n = self.limits.calls
                raise LiveBusy(f"busy: {n} live call{'s' if n > 1 else ''} already "
                               "running, the most this server allows; try again in a minute")
            head = self.load(identity)
            s = LiveCall(head, RenderOptions(variant=variant), self.limits, self.now,
                         self.limits.lookahead_ms)
            self.calls[s.id] = s
            return s

    def close(self, call: LiveCall | int | None) -> None:
        """End a call and free its place at once (a stop, a closed page)."""
        with self._lock:
            sid = call.id if isinstance(call, LiveCall) else call
            s = self.calls.pop(sid, None)
            if s is not None:
                s.close()

    def reap(self) -> None:
        """Free the places of calls that have ended (idle, too long, page gone)."""
        with self._lock:
            self._reap()

    def _reap(self) -> None:
        for sid in [sid for sid, s in self.calls.items() if s.ended]:
            self.calls.pop(sid).close()
