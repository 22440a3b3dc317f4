"""Speech that arrives in chunks (a microphone, a network stream) rendered as it comes:
each frame is made as soon as the audio it needs is here, and equals the frame an offline
render of the whole speech gives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..audio_features import CONTEXT_FRAMES, extract
from ..media import AUDIO_RATE
from ..mel import HOP, n_frames
from ..model.encoders import AUDIO_CONTEXT, AUDIO_WINDOW
from ..model.windows import audio_window_index, expr_windows
from .audio_input import SAMPLES_PER_FRAME, mono_float_chunk
from .render_options import RenderOptions, side_by_side

if TYPE_CHECKING:
    from .talking_head import TalkingHead

FIRST_BATCH = 2          # frames in the first batch after each audio chunk: out soon
UNENDED = 1 << 40        # feature frames of a clip that has not ended yet


class SpeechStream:
    """One live rendering of an identity: :meth:`push` chunks of 16 kHz mono float samples
    [S] (any sizes) and get frames [B, S, S, 3] uint8 (the variant of ``opts``; "both" side
    by side) as soon as the audio they need has arrived: a frame needs about 0.3 s of audio
    after its start (its feature window and its neighbours'); :meth:`finish` renders the
    rest once the speech has ended. Memory stays bounded: old audio is dropped.

    ``lookahead_ms``: make each frame once the audio reaches this far past its end instead,
    with the audio not yet here taken as silence: less delay for a mouth that no longer
    equals the offline render's (how far it strays is measured in docs/rendering.md)."""

    def __init__(self, head: TalkingHead, opts: RenderOptions,
                 lookahead_ms: int | None = None):
        self.head, self.opts = head, opts
        self.names, self.size, self.K = head._setup(opts)
        self.batch = opts.batch or head.default_batch
        self.feature_kind = head.info.audio_features
        self.margin = CONTEXT_FRAMES[self.feature_kind]
        self.clock = head.clock()
        self.buf = np.zeros(0, np.float32)    # audio kept, from sample buf0 on
        self.buf0 = self.received = self.done = 0
        self.plan = None
        # frame f needs feature frames up to 2 f + lead
        self.lead = int(audio_window_index(UNENDED, np.array([0])).max())
        self.lookahead = None if lookahead_ms is None else \
            int(lookahead_ms) * AUDIO_RATE // 1000                       # samples

    @torch.no_grad()
    def push(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        """Take a chunk of samples [S]; yield the batches of frames it made ready."""
        chunk = mono_float_chunk(chunk)
        self.buf = np.concatenate([self.buf, chunk])
        self.received += len(chunk)
        # frames [done, ready) have their whole feature window (and its margin) here
        ready = max(0, (self.received // HOP - self.lead - 1 - self.margin) // 2 + 1)
        if self.lookahead is not None:       # frames whose end + look-ahead is here
            ready = max(ready, (self.received - self.lookahead) // SAMPLES_PER_FRAME)
        yield from self._emit(ready, None)
        keep = max(0, (2 * self.done - 2 * (AUDIO_CONTEXT // 2) - AUDIO_WINDOW // 2
                       - self.margin) * HOP)
        if keep > self.buf0:
            self.buf, self.buf0 = self.buf[keep - self.buf0:], keep

    @torch.no_grad()
    def finish(self) -> Iterator[np.ndarray]:
        """The speech has ended: yield the frames still owed (none before any audio)."""
        if self.received:
            yield from self._emit(-(-self.received // SAMPLES_PER_FRAME), self.received)

    def _features(self, k0: int, k1: int, total: int | None) -> np.ndarray:
        """Feature frames [k0, k1) from the buffered audio (``total`` samples once the
        speech has ended: the true end, as an offline render sees it)."""
        a = max(0, k0 - self.margin)
        b = (k1 + self.margin) * HOP if total is None else total
        audio = self.buf[a * HOP - self.buf0:b - self.buf0]
        if len(audio) < b - a * HOP:         # (a look-ahead: the future is silence so far)
            audio = np.concatenate([audio, np.zeros(b - a * HOP - len(audio), np.float32)])
        return extract(audio, self.feature_kind)[k0 - a:k1 - a]

    def _plan_for(self, n: int):
        """The motion plan, grown by doubling (plans are prefix-consistent, so a longer one
        gives the same first n frames; amortised O(1) per frame)."""
        if self.plan is None or len(self.plan.replay) < n:
            n = max(n, 2 * len(self.plan.replay) if self.plan is not None else 256)
            self.plan = self.head._plan(n, self.opts)
        return self.plan

    def _emit(self, f1: int, total: int | None) -> Iterator[np.ndarray]:
        """Render frames [done, f1) in batches (a small first one)."""
        n_feat = UNENDED if total is None else n_frames(total)
        starts = [self.done] + list(range(self.done + min(FIRST_BATCH, self.batch), f1,
                                          self.batch))
        for a, b in zip(starts, starts[1:] + [f1]):
            if a >= f1:
                break
            fr = np.arange(a, min(f1, b))
            idx = audio_window_index(n_feat, fr)
            k0, k1 = int(idx.min()), int(idx.max()) + 1
            with self.clock("audio features"):
                block = self._features(k0, k1, total)
            # expression neighbours reach 2 frames ahead; at the end they clamp to the last
            # frame, as offline
            n_plan = -(-total // SAMPLES_PER_FRAME) if total is not None else fr[-1] + 3
            plan = self._plan_for(n_plan)
            expr = expr_windows(plan.expression[:n_plan], fr)
            imgs = self.head._render_batch(block[idx - k0], expr, plan, fr, self.names,
                                           self.size, self.K, self.opts.backend, self.clock)
            self.done = int(fr[-1]) + 1
            yield side_by_side(imgs) if len(self.names) > 1 else imgs[self.names[0]]
