"""``python -m fg3dgs.bench live``: the Live page in a real browser, timed.

Serves ``fg3dgs live`` on localhost, opens it in headless Chromium whose fake microphone
plays a speech file (Chromium's ``--use-file-for-fake-audio-capture``, looped), presses
Start and keeps what the page logs for ``--seconds``: every frame it showed (the JPEG, when,
and where its speech ended) and the loudness it captured every 10 ms. Reported:

- frames/s shown;
- the page's own clock: from the start of a frame's speech (its 40 ms) to its showing,
  median and 95th percentile, and the median of each 10 s (the delay must not grow);
- independently of what the server says, the speech-to-mouth delay: the lag at which the
  shown mouth's opening (the face observer on the received frames) best follows the
  captured loudness, less the same lag measured on the exact offline render of the speech
  (where each frame shows during its own 40 ms): what the live path adds. Per 10 s too.

The browser test (tests/test_live_page.py) drives the page through :func:`drive` as well.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from ..io_utils import assets_dir, atomic_output
from ..media import AUDIO_RATE, read_audio
from ..pipeline.live import LOOKAHEAD_MS
from .machine import describe_machine

FRAME_MS = 40
GRID_MS = 10
LAGS_MS = np.arange(-200, 1001, GRID_MS)
WINDOW_S = 10.0
EXAMPLES = ("bubbles", "morning", "passport")


def fake_mic(speech: list[Path], out: Path, pause_s: float = 1.5, rate: int = 48000
             ) -> np.ndarray:
    """Write the speech files, each followed by ``pause_s`` of silence, as a 48 kHz stereo
    WAV for Chromium's fake microphone (a browser's usual format, so the server's
    resampling and downmix are on the path); returns the 16 kHz mono audio [S]."""
    import soundfile as sf
    from scipy.signal import resample_poly

    parts = []
    for p in speech:
        parts += [read_audio(p), np.zeros(int(pause_s * AUDIO_RATE), np.float32)]
    audio = np.concatenate(parts)
    hi = resample_poly(audio, rate // 1000, AUDIO_RATE // 1000).astype(np.float32)
    sf.write(out, np.stack([hi, hi], 1), rate, subtype="PCM_16")
    return audio


def start_server(port: int, identity: str, log: Path, calls: int = 1,
                 extra: tuple[str, ...] = (), app: Path | None = None) -> subprocess.Popen:
    """``fg3dgs live`` on ``port`` (or the web app ``app``, whose Live tab opens on its first
    identity), its output in ``log``; returns once it serves (or raises RuntimeError with
    the log's end)."""
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    command = ([str(app)] if app else ["-m", "fg3dgs", "live", "--identity", identity])
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, *command, "--port", str(port),
                                 "--live-calls", str(calls), *extra], env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


def launch_chromium(playwright, chromium: str, mic: Path, allow: bool = True):
    """Headless Chromium with a fake microphone playing ``mic``; ``allow``: pages may use
    it without asking (else the request is refused, as when a user blocks it)."""
    args = ["--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--disable-background-networking", "--disable-sync",
            "--disable-component-update"]
    args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}"]
    if allow:
        args.append("--use-fake-ui-for-media-stream")
    return playwright.chromium.launch(executable_path=chromium, args=args)


def open_live(browser, url: str):
    """A page on the Live page (or the app's Live tab), logging; returns it."""
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.goto(url, wait_until="load")
    # the page alone shows Start; the app shows its tabs, Live among them
    page.wait_for_selector("#live-start, button[role=tab]:has-text('Live')")
    tab = page.get_by_role("tab", name="Live")
    if tab.count():
        tab.click()
    page.wait_for_selector("#live-start")
    page.wait_for_function("() => window.fg3dgsLive !== undefined")
    page.evaluate("window.fg3dgsLive.keep = true")
    return page


def page_log(page) -> dict:
    """What the page logged since the last call (see live_page.js; taken away, so that the
    page's memory stays small) and what it says."""
    return page.evaluate("""() => { const L = window.fg3dgsLive;
        const el = (c) => document.querySelector('#live-player ' + c).textContent;
        const out = {t0: L.log.t0, rate: L.log.rate, frames: L.log.frames, env: L.log.env,
                     posts: L.log.posts, errors: L.log.errors, status: el('.live-status'),
                     stats: el('.live-stats'), running: !!L.running};
        L.log.frames = []; L.log.env = []; L.log.posts = [];
        return out; }""")


def drive(url: str, mic: Path, seconds: float, chromium: str,
          screenshot: Path | None = None) -> dict:
    """Open the Live page with ``mic`` as the microphone, press Start, wait ``seconds``
    and return the page's log (:func:`page_log`, taken every 2 s)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p, chromium, mic)
        page = open_live(browser, url)
        page.click("#live-start")
        page.wait_for_function("() => window.fg3dgsLive.log.frames.length > 0",
                               timeout=60000)
        log, end = None, time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(2.0, max(0.0, end - time.monotonic())))
            part = page_log(page)
            if log is None:
                log = part
            else:
                for key in ("frames", "env", "posts"):
                    log[key] += part[key]
                log.update({k: part[k] for k in ("errors", "status", "stats", "running")})
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        page.click("#live-stop")
        browser.close()
    return log


def decode(frames: list) -> np.ndarray:
    """The log's JPEGs as [F, S, S, 3] uint8."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(f[2]))).convert("RGB"))
                     for f in frames])


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(x, np.ones(n) / n, mode="same")


def best_lag(times_ms: np.ndarray, opening: np.ndarray, env_t: np.ndarray,
             env: np.ndarray, lo: float | None = None, hi: float | None = None
             ) -> tuple[float, float]:
    """(lag ms, r): the shift at which ``opening`` (each value shown from its time on)
    best follows the loudness ``env`` sampled at ``env_t``, over [lo, hi) of the loudness's
    time; a positive lag: the mouth comes later."""
    ok = np.isfinite(opening)
    times_ms, opening = times_ms[ok], opening[ok]
    grid = np.arange(env_t[0], env_t[-1], GRID_MS)
    loud = _smooth(np.interp(grid, env_t, env), 4)
    keep = (grid >= (lo if lo is not None else -np.inf)) & (grid < (hi if hi is not None
                                                                     else np.inf))
    best = (np.nan, -np.inf)
    for lag in LAGS_MS:
        k = np.searchsorted(times_ms, grid + lag, side="right") - 1
        valid = keep & (k >= 0) & (grid + lag <= times_ms[-1])
        if valid.sum() < 100:
            continue
        r = np.corrcoef(loud[valid], opening[k[valid]])[0, 1]
        if r > best[1]:
            best = (float(lag), float(r))
    return best


def offline_lag(identity: str, audio: np.ndarray) -> tuple[float, float]:
    """best_lag of the exact render of ``audio``, frame k shown during [40 k, 40 k + 40)
    ms of its speech: the model's own timing, which the live lag is measured against."""
    from ..face_observer import lip_opening, track_landmarks
    from ..pipeline import TalkingHead
    from .lookahead import stream_frames

    frames, _ = stream_frames(TalkingHead.load(identity, device="cpu"), audio, None)
    opening = lip_opening(track_landmarks(frames))
    step = AUDIO_RATE * GRID_MS // 1000
    env = np.sqrt([np.mean(audio[i:i + step] ** 2) for i in range(0, len(audio) - step, step)])
    return best_lag(np.arange(len(frames)) * FRAME_MS, opening,
                    np.arange(len(env)) * GRID_MS, env)


def analyse(log: dict, reference_lag_ms: float = 0.0) -> dict:
    """The numbers of the module note from a page log."""
    from ..face_observer import lip_opening, track_landmarks

    shown = np.array([f[0] for f in log["frames"]])
    ends = np.array([f[1] for f in log["frames"]])
    delay = shown - (ends - FRAME_MS)          # from the start of the frame's speech
    span = (shown[-1] - shown[0]) / 1000
    opening = lip_opening(track_landmarks(decode(log["frames"])))
    env = np.array(log["env"])
    windows = []
    for w0 in np.arange(0, shown[-1] / 1000 - WINDOW_S / 2, WINDOW_S):
        sel = (shown >= 1000 * w0) & (shown < 1000 * (w0 + WINDOW_S))
        lag, r = best_lag(shown, opening, env[:, 0], env[:, 1], 1000 * w0,
                          1000 * (w0 + WINDOW_S))
        windows.append({"from_s": float(w0), "page_delay_ms": float(np.median(delay[sel])),
                        "mouth_lag_ms": lag - reference_lag_ms, "r": round(r, 3)})
    lag, r = best_lag(shown, opening, env[:, 0], env[:, 1])
    return {"frames": len(shown), "seconds": round(span, 1),
            "fps": round((len(shown) - 1) / span, 2),
            "page_delay_ms": {"median": round(float(np.median(delay)), 1),
                              "p95": round(float(np.percentile(delay, 95)), 1)},
            "mouth_delay_ms": lag - reference_lag_ms, "mouth_r": round(r, 3),
            "reference_lag_ms": reference_lag_ms, "windows": windows,
            "opening": opening.tolist(), "shown_ms": shown.tolist(), "ends_ms": ends.tolist(),
            "posts": log["posts"]}


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from ..io_utils import free_port

    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("bench live: needs Chromium (apt-get install chromium) and "
                         "playwright (pip install playwright)")
    speech = [Path(p) for p in args.speech] or [assets_dir() / "examples" / f"{n}.wav"
                                                for n in EXAMPLES]
    with tempfile.TemporaryDirectory() as tmp:
        mic = Path(tmp) / "mic.wav"
        audio = fake_mic(speech, mic)
        app = None
        if args.app:
            from ..zoo import load_zoo

            app = Path(__file__).resolve().parents[2] / "app.py"
            if not app.is_file():
                raise SystemExit(f"bench live --app: no {app}; run it in a checkout")
            args.identity = load_zoo()[0].id          # the app's Live tab opens on it
        ref_lag, ref_r = offline_lag(args.identity, audio)
        port = free_port()
        server = start_server(port, args.identity, Path(tmp) / "live.log", app=app,
                              extra=() if app else ("--lookahead", str(args.lookahead)))
        try:
            log = drive(f"http://127.0.0.1:{port}", mic, args.seconds, chromium,
                        args.screenshot)
        finally:
            server.terminate()
            server.wait(timeout=60)
    res = analyse(log, ref_lag)
    where = "python app.py, Live tab" if args.app else "fg3dgs live"
    res.update(machine=describe_machine(), identity=args.identity, offline_r=round(ref_r, 3),
               server=where,
               speech=[str(p) for p in speech], status=log["status"])
    print(f"# machine: {describe_machine()}; identity {args.identity} ({where}); "
          f"{res['seconds']} s in headless Chromium")
    print(f"frames/s shown: {res['fps']}")
    pd = res["page_delay_ms"]
    print(f"page clock, speech of a frame to its showing: median {pd['median']} ms, "
          f"95th percentile {pd['p95']} ms")
    print(f"mouth vs captured loudness: best lag {res['mouth_delay_ms'] + ref_lag:.0f} ms "
          f"(r {res['mouth_r']}), offline render {ref_lag:.0f} ms (r {ref_r:.3f}): "
          f"live adds {res['mouth_delay_ms']:.0f} ms")
    print("| from s | page delay median ms | mouth delay ms | r |\n|---|---|---|---|")
    for w in res["windows"]:
        print(f"| {w['from_s']:.0f} | {w['page_delay_ms']:.0f} | {w['mouth_lag_ms']:.0f} | "
              f"{w['r']} |")
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(res, indent=1))
    return 0


def add_parser(sub: argparse._SubParsersAction, output_file) -> None:
    p = sub.add_parser("live", help="the Live page in headless Chromium: frame rate and "
                       "the delay from speech to the shown mouth")
    p.add_argument("--identity", default="astronaut-demo", help="run folder or zoo id")
    p.add_argument("--speech", nargs="*", default=[], help="speech files for the fake "
                   "microphone, each followed by 1.5 s of silence, looped (default: the "
                   "bundled examples)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to listen")
    p.add_argument("--lookahead", type=int, default=LOOKAHEAD_MS, metavar="MS",
                   help=f"the server's look-ahead (fg3dgs live --lookahead; default "
                        f"{LOOKAHEAD_MS})")
    p.add_argument("--app", action="store_true", help="measure the web app's Live tab "
                   "(python app.py of this checkout, its first identity) instead of fg3dgs "
                   "live")
    p.add_argument("--chromium", help="the browser (default: chromium on the PATH)")
    p.add_argument("--screenshot", type=output_file(".png"), help="save the page here")
    p.add_argument("--json", type=output_file(".json"), help="also write every number here")
    p.set_defaults(func=run)
