"""The Live page: talk into the microphone and the head talks along, in the browser. The
app's Live tab and ``fg3dgs live`` lay it out with :meth:`LivePage.layout`.

Transport: the page captures the microphone with the Web Audio API (``live_page.js``) and
posts its samples to :meth:`LivePage.live_push` as soon as one more frame's speech is there,
a server function of the player component (gradio's ``/component_server``: a plain POST,
outside the event queue); the answer carries the frames those samples made ready as JPEG,
each with where its speech ends, and the page shows them at 25 frames/s and measures how
late. The work is a :class:`~fg3dgs.pipeline.live.LiveCall` per page; a page that stops
posting (closed, disconnected) loses its call after ``LiveLimits.gone_seconds``.

Why not the alternatives: fastrtc's WebRTC component needs gradio < 6; gradio's streaming
microphone (``gr.Audio(streaming=True)``) into a streamed output took 230-250 ms (median)
from the microphone to the page before any rendering, and gives the page no timing.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from .model.io import IdentityError
from .pipeline.audio_input import AudioInputError
from .pipeline.live import LiveBusy, LiveCall, LiveEnded, LiveHall, LiveLimits
from .zoo import ZooError

JPEG_QUALITY = 85
PLAYER_JS = (Path(__file__).with_name("live_page.js")).read_text()
PLAYER_HTML = """
<div class="fg3dgs-live">
  <canvas width="256" height="256" style="width:100%;max-width:512px;background:#111;
    aspect-ratio:1/1;display:block;margin:auto"></canvas>
  <div class="live-status" style="text-align:center;margin-top:6px">Press Start and
    speak.</div>
  <div class="live-stats" style="text-align:center;font-family:monospace"></div>
  <label style="display:block;text-align:center"><input type="checkbox" class="live-echo">
    echo my voice, delayed to match the mouth (headphones: a loudspeaker would feed the
    microphone)</label>
</div>
"""


def _jpeg(frame: np.ndarray) -> str:
    """[S, S, 3] uint8 -> base64 JPEG."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=JPEG_QUALITY)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _Posts:
    """A call and the order of its page's posts: :meth:`turn` waits for the posts
    before ``seq`` (at most ``wait`` seconds: a post lost on the way is not waited for)."""

    def __init__(self, call: LiveCall, wait: float = 1.0):
        self.call, self.wait, self.next = call, wait, 0
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def turn(self, seq: int):
        with self.cond:
            self.cond.wait_for(lambda: self.next >= seq, timeout=self.wait)
            try:
                yield
            finally:
                self.next = max(self.next, seq + 1)
                self.cond.notify_all()


class LivePage:
    """Live calls for the pages of one server, through ``hall``: at most one per page
    (the page holds its call's token in a ``gr.State``). ``check_identity(key)`` refuses
    identities the server does not offer (IdentityError)."""

    def __init__(self, hall: LiveHall, choices: list[tuple[str, str]],
                 check_identity: Callable[[str], str] = lambda key: key):
        self.hall, self.choices, self.check_identity = hall, choices, check_identity
        # token -> its call. A server function is not told which page calls it, so the
        # page names its call by a secret token
        self.tokens: dict[str, _Posts] = {}
        self._nonce = itertools.count()

    def _command(self, cmd: str, **kw) -> str:
        """The player's value: a command for live_page.js (new each time, so it fires)."""
        return json.dumps({"cmd": cmd, "n": next(self._nonce), **kw})

    def start(self, identity: str, variant: str, token: str | None
              ) -> tuple[str, str | None]:
        """Open a call for this page (``token``, its previous one, ends) and tell the page
        to start the microphone; busy or a bad identity: the page shows why. Returns the
        player's command and the page's new token."""
        self._end(token)
        try:
            self.check_identity(identity)
            call = self.hall.open(identity, variant)
        except LiveBusy as exc:
            return self._command("error", message=str(exc)), None
        except (IdentityError, ZooError, ValueError) as exc:   # the page says what is wrong
            return self._command("error", message=f"cannot start: {exc}"), None
        token = secrets.token_urlsafe(16)
        self.tokens[token] = _Posts(call)
        return self._command("start", call=token, size=call.stream.size,
                             lookahead_ms=self.hall.limits.lookahead_ms), token

    def stop(self, token: str | None) -> tuple[str, None]:
        """End this page's call (the Stop button)."""
        self._end(token)
        return self._command("stop"), None

    def _end(self, token: str | None) -> None:
        posts = self.tokens.pop(token, None)
        if posts is not None:
            self.hall.close(posts.call)

    def live_push(self, data: dict) -> dict:
        """The page's microphone samples, ``{"call": token, "seq": n, "rate": Hz, "pcm":
        base64 int16 little-endian mono}`` (several may be on their way: they are taken in
        the order of ``seq``); answers ``{"frames": [base64 JPEG], "ends": [s],
        "stats": {...}}`` (``ends``: where each frame's speech ends, in seconds of the audio
        posted) or ``{"ended": why}``. ``{"call": token, "end": true}``: the page is
        closing."""
        t = time.perf_counter()
        self.hall.reap()
        data = data if isinstance(data, dict) else {}
        token = data.get("call")
        if data.get("end"):                 # the page is closing: free its place now
            self._end(token)
            return {"ended": "closed"}
        posts = self.tokens.get(token)
        if posts is None or posts.call.closed:
            self.tokens.pop(token, None)
            return {"ended": "this live call has ended; press Start for a new one"}
        call = posts.call
        try:
            pcm = np.frombuffer(base64.b64decode(data.get("pcm", "")), "<i2")
            with posts.turn(int(data.get("seq", posts.next))):
                out = call.push_timed(int(data.get("rate", 0)), pcm)
        except LiveEnded as exc:
            self._end(token)
            return {"ended": str(exc)}
        except (AudioInputError, ValueError) as exc:
            self._end(token)
            return {"ended": f"the page sent audio this server cannot use: {exc}"}
        return {"frames": [_jpeg(f) for _, f in out], "ends": [e for e, _ in out],
                "stats": {"dropped_ms": call.dropped_ms, "lag_ms": round(call.lag_ms),
                          "frames": call.frames_out,
                          "server_ms": round(1000 * (time.perf_counter() - t), 1)}}

    def layout(self, default: str | None = None,
               variant: str = "base") -> tuple[gr.Dropdown, gr.Radio]:
        """The page's components, in the current gr.Blocks context (a Tab or the page);
        returns the identity and variant pickers (for the app's choice checks)."""
        limits = self.hall.limits
        gr.Markdown(
            "Press **Start**, allow the microphone and speak: the head speaks along, about "
            "a quarter of a second behind. Silence keeps its mouth closed. A call ends "
            f"after {limits.idle_seconds:g} s without speech, after "
            f"{limits.max_seconds / 60:g} min, or when the page closes; this server runs "
            f"{limits.calls} at a time.")
        with gr.Row():
            identity = gr.Dropdown(self.choices, value=default or (
                self.choices[0][1] if self.choices else None), label="Identity",
                elem_id="live-identity")
            variant = gr.Radio(["base", "refined"], value=variant, label="Variant",
                               elem_id="live-variant")
        with gr.Row():
            start = gr.Button("Start", variant="primary", elem_id="live-start")
            stop = gr.Button("Stop", elem_id="live-stop")

        def live_push(data: dict) -> dict:
            # (gradio marks a server function by an attribute, which a method cannot take)
            return self.live_push(data)

        player = gr.HTML(value="", html_template=PLAYER_HTML, js_on_load=PLAYER_JS,
                         server_functions=[live_push], elem_id="live-player")
        token = gr.State(None)              # this page's call
        start.click(self.start, [identity, variant, token], [player, token],
                    api_visibility="private", concurrency_limit=None)
        stop.click(self.stop, [token], [player, token], api_visibility="private",
                   concurrency_limit=None)
        return identity, variant


def serve(identity: str, limits: LiveLimits = LiveLimits(), host: str = "127.0.0.1",
          port: int = 7860, share: bool = False, device: str | None = None,
          variant: str = "base", threads: int | None = None) -> None:
    """Serve the Live page alone for one identity (``fg3dgs live``) until stopped. The
    head is loaded and its first frame rendered before the page opens, so the first
    call starts at once. ``threads``: torch's (None: as it is)."""
    import torch

    from .pipeline import TalkingHead

    if threads:
        torch.set_num_threads(threads)
    head = TalkingHead.load(identity, device=device)
    head.still()                      # loads the rasterizer's kernels (numba) now
    page = LivePage(LiveHall(lambda key: head, limits), [(identity, identity)],
                    _only(identity))
    with gr.Blocks(title="fg3dgs live") as demo:
        gr.Markdown("# fg3dgs live")
        page.layout(identity, variant)
    demo.queue(default_concurrency_limit=None)
    _, url, share_url = demo.launch(server_name=host, server_port=port, share=share,
                                    quiet=True, prevent_thread_lock=True)
    print(f"* Live page: {share_url or url}", flush=True)
    demo.block_thread()


def _only(identity: str) -> Callable[[str], str]:
    def check(key: str) -> str:
        if key != identity:
            raise ValueError(f"this server speaks as {identity!r} only")
        return key
    return check
