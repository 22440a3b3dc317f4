"""Identity checkpoints record the sha256 of their weight files (identity.json "files") and
loading checks them: a file whose bits flipped but whose values stay finite is refused,
naming the file, instead of rendering pink speckles."""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fg3dgs.io_utils import sha256
from fg3dgs.model.config import ModelConfig
from fg3dgs.model.hash_encoding import HashConfig
from fg3dgs.model.identity import FG3DGS
from fg3dgs.model.info import IdentityInfo
from fg3dgs.model.io import HASHED, IdentityError, record_file_hashes

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "identities" / "astronaut-demo"
MISMATCH = "does not match the sha256 recorded in identity.json"


def _tiny_identity(run: Path, replay: bool = True, seed: int = 0) -> Path:
    """A small identity (a few Gaussians, a small hash grid) with random finite values,
    and a replay index beside it when ``replay``."""
    from safetensors.torch import save_file

    cfg = ModelConfig(sh_degree=1, hash=HashConfig(levels=2, log2_table=8,
                                                   max_resolution=32),
                      hidden=16, attn_width=8, attn_heads=2, audio_dim=8, expr_dim=4)
    model = FG3DGS.empty(cfg, {"face": 40, "eyes": 8, "mouth": 16})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point() and not k.endswith(("bound_min", "bound_max")):
                v.copy_(0.1 * torch.randn(v.shape, generator=g))
    extras = {"background": np.zeros((8, 8, 3), np.float32),
              "track_R": np.tile(np.eye(3, dtype=np.float32), (4, 1, 1)),
              "track_t": np.zeros((4, 3), np.float32), "K": np.eye(3, dtype=np.float32),
              "expression": np.zeros((4, 3), np.float32)}
    model.save_pretrained(run, extras, {"audio_features": "mel", "size": 8})
    if replay:
        save_file({"frames": torch.arange(4), "boxes": torch.rand(4, 3, generator=g)},
                  str(run / "replay.safetensors"), metadata={"video": "replay.mp4"})
        record_file_hashes(run)
    return run


def _flip_low_mantissa_bit(path: Path) -> None:
    """Flip the lowest mantissa bit of the first float32 of the largest float32 tensor:
    the file stays a readable safetensors file with every value finite."""
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    name = max((k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"),
               key=lambda k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0])
    start = 8 + n + header[name]["data_offsets"][0]
    before = struct.unpack("<f", raw[start:start + 4])[0]
    raw[start] ^= 0x01                               # little endian: the mantissa's LSB
    after = struct.unpack("<f", raw[start:start + 4])[0]
    assert np.isfinite(after) and after != before
    path.write_bytes(bytes(raw))


def test_save_records_the_weight_files(tmp_path):
    run = _tiny_identity(tmp_path / "run")
    files = json.loads((run / "identity.json").read_text())["files"]
    assert set(files) == set(HASHED) == {"identity.safetensors", "replay.safetensors"}
    for f, h in files.items():
        assert sha256(run / f) == h
    FG3DGS.from_pretrained(run)                                # verifies, and passes
    # without a replay index only the weights are recorded
    bare = _tiny_identity(tmp_path / "bare", replay=False)
    assert set(json.loads((bare / "identity.json").read_text())["files"]) == {
        "identity.safetensors"}


@pytest.mark.parametrize("name", ["identity.safetensors", "replay.safetensors"])
def test_finite_bit_flips_are_refused_naming_the_file(tmp_path, name):
    from safetensors.numpy import load_file

    run = _tiny_identity(tmp_path / "run")
    _flip_low_mantissa_bit(run / name)
    assert all(np.isfinite(v).all() for v in load_file(str(run / name)).values())
    with pytest.raises(IdentityError) as exc:
        FG3DGS.from_pretrained(run)
    msg = str(exc.value)
    assert msg.startswith(f"{run / name} {MISMATCH}") and "\n" not in msg
    assert "re-export or re-download" in msg and "--no-verify" in msg
    # the same through identity.json or identity.safetensors as the path given
    with pytest.raises(IdentityError, match=MISMATCH):
        FG3DGS.from_pretrained(run / "identity.json")
    model = FG3DGS.from_pretrained(run, verify=False)          # developers: no check
    assert model.info.size == 8 and model.extras["K"].shape == (3, 3)


def test_another_valid_weights_file_is_refused(tmp_path):
    run = _tiny_identity(tmp_path / "run")
    other = _tiny_identity(tmp_path / "other", seed=1)        # same layout, other values
    shutil.copy2(other / "identity.safetensors", run / "identity.safetensors")
    FG3DGS.from_pretrained(other)
    with pytest.raises(IdentityError, match="identity.safetensors does not match"):
        FG3DGS.from_pretrained(run)


def test_identity_without_files_record_loads_unchecked(tmp_path):
    run = _tiny_identity(tmp_path / "run")
    info = json.loads((run / "identity.json").read_text())
    del info["files"]                                 # written before fg3dgs recorded them
    (run / "identity.json").write_text(json.dumps(info, indent=2))
    _flip_low_mantissa_bit(run / "identity.safetensors")
    loaded = FG3DGS.from_pretrained(run).info         # no record, no check, no error
    assert loaded.files is None and "files" not in loaded.to_dict()


def test_listed_but_absent_replay_index_is_left_to_the_replay_loader(tmp_path):
    run = _tiny_identity(tmp_path / "run")
    (run / "replay.safetensors").unlink()             # a run copied without its track
    FG3DGS.from_pretrained(run)


def test_bad_files_record_is_refused(tmp_path):
    run = _tiny_identity(tmp_path / "run")
    info = json.loads((run / "identity.json").read_text())
    for bad in ({"identity.safetensors": "abc"}, ["identity.safetensors"],
                {"../identity.safetensors": "0" * 64}):
        (run / "identity.json").write_text(json.dumps({**info, "files": bad}))
        with pytest.raises(IdentityError, match='invalid "files" record'):
            FG3DGS.from_pretrained(run)


def test_record_is_rewritten_when_a_file_changes(tmp_path):
    run = _tiny_identity(tmp_path / "run")
    _flip_low_mantissa_bit(run / "replay.safetensors")
    record_file_hashes(run)                           # e.g. write_replay after save_pretrained
    FG3DGS.from_pretrained(run)
    assert not list(run.glob(".identity.*")), "no temporary file left behind"


def test_shipped_demo_identity_verifies():
    info = json.loads((DEMO / "identity.json").read_text())
    assert set(info["files"]) == {"identity.safetensors", "replay.safetensors"}
    for f, h in info["files"].items():
        assert sha256(DEMO / f) == h, f"{f} differs from its record in identity.json"
    loaded = FG3DGS.from_pretrained(DEMO, verify=True).info
    assert loaded.files == info["files"]
    assert isinstance(loaded, IdentityInfo) and loaded.to_dict()["files"] == info["files"]


def test_save_pretrained_round_trip_keeps_every_record(tmp_path):
    """from_pretrained -> save_pretrained -> from_pretrained gives the same tensors, extras
    and identity.json, records a newer version wrote included."""
    run = _tiny_identity(tmp_path / "run")
    raw = json.loads((run / "identity.json").read_text())
    (run / "identity.json").write_text(json.dumps({**raw, "future": {"x": [1, 2]}}))
    a = FG3DGS.from_pretrained(run)
    assert a.info.more == {"future": {"x": [1, 2]}} and a.path == run
    (tmp_path / "copy").mkdir()
    a.save_pretrained(tmp_path / "copy")
    b = FG3DGS.from_pretrained(tmp_path / "copy")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
    assert b.info.meta() == a.info.meta() and b.info.more["future"] == {"x": [1, 2]}
    assert b.info.files == {"identity.safetensors": sha256(tmp_path / "copy" /
                                                            "identity.safetensors")}
    with pytest.raises(IdentityError, match="invalid model config"):
        IdentityInfo.from_dict({**raw, "size": "big"})


def test_from_pretrained_takes_a_zoo_id():
    model = FG3DGS.from_pretrained("astronaut-demo")
    assert model.path.resolve() == DEMO.resolve() and model.info.size == 256
    assert model.variants == ("base", "refined") and not model.training
    assert not any(p.requires_grad for p in model.parameters())
