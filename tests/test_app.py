"""The Gradio app, for real: ``python app.py`` on 127.0.0.1 driven through gradio_client
(two videos of the audio's length that differ in the mouth; bad inputs get a clear message,
one log line and no traceback, and the server goes on serving), the page in headless
Chromium, its API names, its help, and its work folder removed on SIGTERM and SIGINT."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fg3dgs.media import write_wav
from fg3dgs.pipeline import AudioInput

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "assets" / "examples" / "bubbles.wav"
MAX_SECONDS = 4.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

gradio_client = pytest.importorskip("gradio_client")


def _start(folder: Path, port: int, **popen) -> SimpleNamespace:
    """``python app.py`` on ``port`` (a free one), its work folder under ``folder/work``
    ($FG3DGS_APP_TMP), its stdout and stderr in ``folder/app.log``; returns once it serves."""
    log = folder / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="2",
               FG3DGS_APP_TMP=str(folder / "work"))
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port),
                                 "--max-seconds", str(MAX_SECONDS)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, **popen)
    url = f"http://127.0.0.1:{port}"
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
    return SimpleNamespace(url=url, log=log, proc=proc, work=folder / "work")


@pytest.fixture(scope="module")
def server(tmp_path_factory, free_port):
    app = _start(tmp_path_factory.mktemp("app"), free_port())
    yield app
    app.proc.terminate()
    app.proc.wait(timeout=120)


def _app_module():
    spec = importlib.util.spec_from_file_location("fg3dgs_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generate(client, audio, variant="both"):
    from gradio_client import handle_file
    return client.predict("astronaut-demo", None if audio is None else handle_file(str(audio)),
                          variant, "replay", "replay", "256", api_name="/generate")


def _video(v):
    import imageio.v3 as iio
    path = v["video"] if isinstance(v, dict) else v
    return iio.imread(path, plugin="FFMPEG")


def test_generate_and_bad_inputs(server, demo_head, tmp_path):
    from gradio_client import Client
    client = Client(server.url, verbose=False)
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
    cx, cy, side = demo_head.replay.boxes[0]
    d = np.abs(B.astype(float) - R.astype(float)).mean(axis=(0, 3))
    mouth = d[int(cy):int(cy + side / 2), int(cx - side / 4):int(cx + side / 4)]
    rest = d.copy()
    rest[int(cy - side / 2):int(cy + side / 2), int(cx - side / 2):int(cx + side / 2)] = 0
    assert mouth.mean() > 4 * rest.mean(), (mouth.mean(), rest.mean())
    assert "frames/s" in report and "expert-C" in report
    # gradio's copy of the upload is in the work folder, which goes when the app stops
    assert list(server.work.glob(f"fg3dgs-app-*/gradio/*/{Path(SPEECH).name}"))


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
        # ("load": the page keeps a heartbeat stream open for its unload event, so the
        # network is never idle)
        page.goto(server.url, wait_until="load")
        page.get_by_label("Identity").first.wait_for()
        page.wait_for_timeout(1000)
        # an identity with both variants (the default one has the base only)
        page.get_by_label("Identity").click()
        page.get_by_role("option", name="Astronaut (synthetic demo)", exact=True).click()
        page.get_by_text("Big bubbles burst", exact=False).first.click()
        page.wait_for_function("() => [...document.querySelectorAll('textarea')].some("
                               "t => t.value.includes('Big bubbles'))")
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
    client = Client(server.url, verbose=False)
    a, b, text = client.predict("astronaut-demo", "astronaut-demo", handle_file(str(SPEECH)),
                                "refined", "static", "auto", "256", api_name="/compare")
    with AudioInput(SPEECH) as s:
        n = s.frames
    assert _video(a).shape == _video(b).shape == (n, 256, 256, 3)
    assert "**A**" in text and "**B**" in text


def test_refused_requests_log_one_line_each(server):
    """Values no UI would send (an API call can): each refused with a message that names the
    input, and one line in the server log, no traceback."""
    from gradio_client import Client, handle_file
    client = Client(server.url, verbose=False)
    speech = handle_file(str(SPEECH))
    bad = [("generate", ("nobody", speech, "both", "replay", "replay", "256"),
            "Identity 'nobody' is not on offer"),
           ("generate", ("astronaut-demo", speech, "both", "replay", "replay", "999"),
            "Size '999' is not on offer"),
           ("generate", ("astronaut-demo", speech, "both", "replay", "replay", "abc"),
            "Size 'abc' is not on offer"),
           ("generate", ("astronaut-demo", speech, "sideways", "replay", "replay", "256"),
            "Variant 'sideways' is not on offer"),
           ("compare", ("astronaut-demo", "../../etc", speech, "refined", "replay", "replay",
                        "256"), "B '../../etc' is not on offer")]
    before = len(server.log.read_text())
    for api, args, want in bad:
        with pytest.raises(Exception, match=re.escape(want)):
            client.predict(*args, api_name=f"/{api}")
    log = server.log.read_text()[before:]
    assert "Traceback" not in log, log
    refused = [line for line in log.splitlines() if "request refused" in line]
    assert len(refused) == len(bad), log
    for line, (_, _, want) in zip(refused, bad):
        assert line.startswith("request refused: ") and want in line, line


def test_startup_hint_names_the_app_flag(server):
    """gradio's own hint says `share=True` in `launch()`; this app's switch is --share."""
    log = server.log.read_text()
    assert "start the app with --share" in log and "share=True" not in log, log
    assert f"Running on local URL:  {server.url}" in log
    assert re.search(r"Work folder: .*fg3dgs-app-", log), log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_app_removes_its_work_folder(tmp_path, free_port, sig):
    """How a Space or systemd stops the app (SIGTERM), and Ctrl-C (SIGINT): the render work
    folder goes and the process exits with status 0."""
    # a child of a background shell job inherits an ignored SIGINT; Ctrl-C's is not ignored
    app = _start(tmp_path, free_port(),
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    work = re.search(r"Work folder: (\S+)", app.log.read_text())
    assert work, app.log.read_text()
    work = Path(work.group(1))
    assert work.is_dir() and work.parent == app.work
    app.proc.send_signal(sig)
    # a cold start may still be compiling kernels in the warm-up, which exit waits for
    assert app.proc.wait(timeout=120) == 0, app.log.read_text()[-3000:]
    assert not work.exists() and not list(app.work.glob("fg3dgs-app-*"))


def test_api_names_every_output(tmp_path):
    """The API page and gradio_client name inputs and outputs by their labels: none may fall
    back to gradio's value_N."""
    from fg3dgs.pipeline.studio import Studio
    demo = _app_module().build(Studio(workdir=tmp_path))
    endpoints = demo.get_api_info()["named_endpoints"]
    assert {"/generate", "/compare"} <= set(endpoints)
    for name, ep in endpoints.items():
        names = ([p["label"] for p in ep["returns"]]
                 + [p["parameter_name"] for p in ep["parameters"]])
        assert all(n and not re.fullmatch(r"value_\d+", n) for n in names), (name, names)


def test_help_is_whole(capsys):
    """The description is the docstring's whole first paragraph (its first line alone stops
    mid-sentence); the epilog says where the work folder goes; every option is explained."""
    app = _app_module()
    with pytest.raises(SystemExit):
        app.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    first = " ".join(app.__doc__.split("\n\n")[0].split())
    assert first.endswith("microphone, live.") and first in text
    assert "FG3DGS_APP_TMP" in text and "SIGTERM" in text and text.endswith(".")
    for action in app.parser()._actions:
        assert action.help, action.option_strings


def test_studio_refuses_what_it_does_not_offer(tmp_path, monkeypatch):
    """Called without the UI's checks: an identity not on offer or a size that is no number
    is refused with a clear message, before any folder or head; its own work folder goes in
    $FG3DGS_APP_TMP and close() removes it."""
    from fg3dgs.model.io import IdentityError
    from fg3dgs.pipeline.studio import Studio
    (tmp_path / "given").mkdir()
    st = Studio(workdir=tmp_path / "given")
    with pytest.raises(IdentityError, match="unknown identity 'nobody'; this server offers: "
                       "astronaut-artic, astronaut-demo, hopper-artic"):
        st.speak("nobody", SPEECH)
    with pytest.raises(IdentityError, match="unknown identity '/etc'"):
        st.compare(("astronaut-demo", "/etc"), SPEECH)
    with pytest.raises(ValueError, match="size must be a whole number of pixels, got 'abc'"):
        st._options("both", "replay", "replay", "abc", scores=False)
    assert not any((tmp_path / "given").iterdir())
    st.close()                              # a given folder is the caller's: it stays
    assert (tmp_path / "given").is_dir()
    monkeypatch.setenv("FG3DGS_APP_TMP", str(tmp_path / "parent"))
    own = Studio()
    assert own.workdir.parent == tmp_path / "parent" and own.workdir.is_dir()
    own.close()
    own.close()
    assert not own.workdir.exists()


def test_the_app_and_fg3dgs_live_read_the_same_live_limits():
    """The Live page's limits are one set of options: the same names and defaults in the app
    and in ``fg3dgs live`` (which also keeps ``--idle`` / ``--max-seconds``), bad values
    refused by both."""
    from fg3dgs.cli import build_parser
    from fg3dgs.cli.live import live_limits
    from fg3dgs.pipeline.live import LiveLimits

    app = _app_module()
    given = ["--live-calls", "2", "--live-idle", "12", "--live-max", "90"]
    want = LiveLimits(calls=2, idle_seconds=12.0, max_seconds=90.0)
    assert live_limits(app.parser().parse_args(given)) == want
    assert live_limits(build_parser().parse_args(["live", *given])) == want
    old = build_parser().parse_args(["live", "--idle", "12", "--max-seconds", "90",
                                     "--live-calls", "2"])
    assert live_limits(old) == want
    assert live_limits(app.parser().parse_args([])) == LiveLimits()
    for bad in (["--live-calls", "0"], ["--live-idle", "-1"]):
        with pytest.raises(SystemExit):
            app.parser().parse_args(bad)
