"""The model zoo: the shipped manifest and demo identity, and pulls from a Hub stand-in on
127.0.0.1 (HF_ENDPOINT): a good download, a wrong checksum, an unreachable server with and
without the cache, and HF_HUB_OFFLINE."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer

from fg3dgs.zoo import ZooError, find, load_zoo, pull
from fg3dgs.zoo.manifest import REQUIRED_FILES

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "identities" / "astronaut-demo"
REPO, REV = "fg3dgs-test/astronaut", "0123456789abcdef0123456789abcdef01234567"
FILES = ("identity.json", "identity.safetensors", "replay.mp4", "replay.safetensors",
         "preview.png")


def test_shipped_manifest_and_demo_identity():
    entries = load_zoo()
    demo = find("astronaut-demo")
    assert demo in entries and not demo.on_hub
    folder = pull(demo)
    assert folder == DEMO.resolve()
    for f in FILES + ("README.md",):
        assert (folder / f).is_file(), f
    assert json.loads((folder / "identity.json").read_text())["dtype"] == "float16"
    assert "refined" in json.loads((folder / "identity.json").read_text())["variants"]
    for e in entries:       # what `zoo list` says of the variants is what each identity has
        info = json.loads((pull(e) / "identity.json").read_text())
        assert list(e.variants) == info["variants"], e.id
    total = sum(p.stat().st_size for p in (ROOT / "checkpoints").rglob("*") if p.is_file())
    assert total < 40e6, f"checkpoints/ holds {total / 1e6:.1f} MB (budget 40 MB)"
    with pytest.raises(ZooError, match="neither a run folder nor a zoo identity"):
        find("no-such-identity")


def _manifest(tmp_path, files: dict[str, str], revision=REV) -> Path:
    m = {"format_version": 1, "identities": [{
        "id": "astro-hub", "title": "t", "description": "d", "license": "cc0-1.0",
        "audio_features": "mel", "preview": "preview.png",
        "source": {"repo": REPO, "revision": revision, "files": files}}]}
    p = tmp_path / "zoo.json"
    p.write_text(json.dumps(m))
    return p


def test_manifest_validation(tmp_path):
    good = {f: "0" * 64 for f in REQUIRED_FILES}
    with pytest.raises(ZooError, match="pin its Hub revision"):
        load_zoo(_manifest(tmp_path, good, revision="main"))
    with pytest.raises(ZooError, match="sha256"):
        load_zoo(_manifest(tmp_path, {"identity.json": "abc"}))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ZooError, match="not valid JSON"):
        load_zoo(tmp_path / "bad.json")


def _pull(env, tmp_path):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-m", "fg3dgs.cli", "zoo", "pull", "astro-hub"],
                          env=e, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.fixture(scope="module")
def served():
    return {f: (DEMO / f).read_bytes() for f in FILES}


def test_pull_from_hub_then_cache_when_unreachable(tmp_path, served, free_port):
    sums = {f: hashlib.sha256(b).hexdigest() for f, b in served.items()}
    env = {"FG3DGS_ZOO": str(_manifest(tmp_path, sums)), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}
    with HubServer({(REPO, REV, f): b for f, b in served.items()}) as hub:
        r = _pull({**env, "HF_ENDPOINT": hub.url}, tmp_path)
        assert r.returncode == 0, r.stderr
        assert any(q.startswith("GET /" + REPO) for q in hub.requests)
    folder = Path(r.stdout.strip().split(": ", 1)[1])
    assert str(folder).startswith(str(tmp_path / "hf")) and REV in str(folder)
    for f, b in served.items():
        assert (folder / f).read_bytes() == b
    # the downloaded identity renders
    from fg3dgs.pipeline import TalkingHead
    assert TalkingHead(folder).still().shape == (256, 256, 3)
    # server gone: the cache serves, and says so
    r = _pull({**env, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Hugging Face cache" in r.stderr
    r = _pull({**env, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
               "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert r.returncode == 0, r.stderr


def test_pull_errors(tmp_path, served, free_port):
    small = {f: served[f] for f in REQUIRED_FILES}
    sums = {f: hashlib.sha256(b).hexdigest() for f, b in small.items()}
    sums["identity.json"] = "f" * 64                       # the manifest disagrees
    env = {"FG3DGS_ZOO": str(_manifest(tmp_path, sums)), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}
    with HubServer({(REPO, REV, f): b for f, b in small.items()}) as hub:
        r = _pull({**env, "HF_ENDPOINT": hub.url}, tmp_path)
    assert r.returncode == 2
    assert "sha256" in r.stderr and "removed from the cache" in r.stderr
    assert not list((tmp_path / "hf").rglob("identity.json")), "bad file left in the cache"
    # unreachable server, nothing cached
    r = _pull({**env, "HF_HOME": str(tmp_path / "hf2"),
               "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, tmp_path)
    assert r.returncode == 2
    assert "cannot be reached" in r.stderr and "not in the Hugging Face cache" in r.stderr
    assert "Traceback" not in r.stderr
    assert "Retrying" not in r.stderr, "one probe, not huggingface_hub's minute of retries"
    # offline mode, nothing cached
    r = _pull({**env, "HF_HOME": str(tmp_path / "hf3"), "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert r.returncode == 2 and "HF_HUB_OFFLINE" in r.stderr
