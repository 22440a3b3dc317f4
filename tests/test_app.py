"""The Gradio app, for real: ``python app.py`` on 127.0.0.1 driven through gradio_client
(two videos of the audio's length that differ in the mouth; bad inputs get a clear message
and the server goes on serving), and the page in headless Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fg3dgs.media import write_wav
from fg3dgs.pipeline import AudioInput

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "assets" / "examples" / "bubbles.wav"
MAX_SECONDS = 4.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

gradio_client = pytest.importorskip("gradio_client")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="2")
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port),
                                 "--max-seconds", str(MAX_SECONDS)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import urllib.request
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _generate(client, audio, variant="both"):
    from gradio_client import handle_file
    return client.predict("astronaut-demo", None if audio is None else handle_file(str(audio)),
                          variant, "replay", "replay", "256", api_name="/generate")


def _video(v):
    import imageio.v3 as iio
    path = v["video"] if isinstance(v, dict) else v
    return iio.imread(path, plugin="FFMPEG")


def test_generate_and_bad_inputs(server, tmp_path):
    from gradio_client import Client
    client = Client(server, verbose=False)
    # bad inputs: each refused with a message that says what is wrong
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.mp3").write_bytes(np.random.default_rng(1).bytes(4000))
    (tmp_path / "notes.txt").write_text("not audio\n" * 50)
    write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    write_wav(tmp_path / "long.wav", 0.2 * np.sin(np.arange(int(16000 * (MAX_SECONDS + 1)))
                                                  / 9.0).astype(np.float32))
    cases = {None: "no audio", "empty.wav": "empty", "junk.mp3": "cannot read",
             "notes.txt": "cannot read|no audio", "silent.wav": "silent",
             "long.wav": "limit"}
    import re
    for name, want in cases.items():
        with pytest.raises(Exception) as err:
            _generate(client, None if name is None else tmp_path / name)
        assert re.search(want, str(err.value)), (name, str(err.value))
    # and the server still serves a good request
    base, refined, combined, report = _generate(client, SPEECH)
    with AudioInput(SPEECH) as a:
        n = a.frames
    B, R, C = _video(base), _video(refined), _video(combined)
    assert B.shape == R.shape == (n, 256, 256, 3) and C.shape == (n, 256, 512, 3)
    # they differ in the mouth: the lower middle of the face box, not elsewhere
    from fg3dgs.pipeline import TalkingHead
    cx, cy, side = TalkingHead.load("astronaut-demo").replay.boxes[0]
    d = np.abs(B.astype(float) - R.astype(float)).mean(axis=(0, 3))
    mouth = d[int(cy):int(cy + side / 2), int(cx - side / 4):int(cx + side / 4)]
    rest = d.copy()
    rest[int(cy - side / 2):int(cy + side / 2), int(cx - side / 2):int(cx + side / 2)] = 0
    assert mouth.mean() > 4 * rest.mean(), (mouth.mean(), rest.mean())
    assert "frames/s" in report and "expert-C" in report


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                    "chromium; .ci/run installs it)")
def test_page_in_headless_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    shot = tmp_path / "app.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(server, wait_until="networkidle")
        page.get_by_text("Big bubbles burst", exact=False).first.click()
        page.get_by_role("button", name="Generate").click()
        for sel in ("#video-base video", "#video-refined video"):
            page.wait_for_selector(sel, timeout=120_000)
        page.wait_for_timeout(1500)
        boxes = [page.locator(s).first.bounding_box()
                 for s in ("#video-base video", "#video-refined video")]
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    import imageio.v3 as iio
    img = iio.imread(shot)
    assert img.shape[1] >= 1200
    a, b = boxes
    assert a["width"] > 100 and b["width"] > 100
    assert abs(a["y"] - b["y"]) < 5 and b["x"] > a["x"] + a["width"] - 5   # side by side
    for box in boxes:       # each player shows a frame, not a blank box
        x0, y0 = int(box["x"]), int(box["y"])
        crop = img[y0:y0 + int(box["height"]), x0:x0 + int(box["width"]), :3]
        assert crop.std() > 10


def test_compare_tab(server):
    from gradio_client import Client, handle_file
    client = Client(server, verbose=False)
    a, b, text = client.predict("astronaut-demo", "astronaut-demo", handle_file(str(SPEECH)),
                                "refined", "static", "auto", "256", api_name="/compare")
    with AudioInput(SPEECH) as s:
        n = s.frames
    assert _video(a).shape == _video(b).shape == (n, 256, 256, 3)
    assert "**A**" in text and "**B**" in text
