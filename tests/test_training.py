"""Training end to end on a tiny synthetic dataset: the loss falls, identities reload to the
same renders, bad checkpoints are refused, --resume continues exactly, ablations run, eval."""

import json

import numpy as np
import pytest
import torch

from fg3dgs.cli import main
from fg3dgs.evaluate.validation import render_dataset_frames
from fg3dgs.model.hash_encoding import HashConfig
from fg3dgs.model.identity import FG3DGS
from fg3dgs.model.io import IdentityError
from fg3dgs.model.windows import audio_window_index
from fg3dgs.preprocess.pipeline import PreprocessConfig, preprocess
from fg3dgs.synth.clip import SynthConfig, generate
from fg3dgs.train.config import preset
from fg3dgs.train.trainer import Trainer, TrainError, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    generate(SynthConfig(text="We fold the blue map by the window. Why wait?", size=128,
                         seed=4), root / "synth", progress=False)
    preprocess(root / "synth" / "video.mp4", root / "data",
               PreprocessConfig(size=64, min_seconds=1.0), progress=False)
    return root


def tiny(iters=(12, 8, 6), **over):
    """A tiny schedule: STATIC, DEFORM, FUSION[, HRPA] iterations (no HRPA unless given)."""
    over = {"lip_warmup": 5, "lip_batch": 4, **over}
    cfg = preset("cpu", size=64, iterations=dict(zip(("static", "deform", "fusion", "hrpa"),
                                                     (*iters, 0)[:4])),
                 log_every=2, checkpoint_every=5, preview_every=10_000, **over)
    cfg.model.init_counts = {"face": 300, "eyes": 60, "mouth": 100, "head_rest": 120}
    cfg.model.hash = HashConfig(levels=3, features=2, log2_table=10, max_resolution=64)
    cfg.densify.start, cfg.densify.every, cfg.densify.stop = 4, 4, 10
    return cfg


@pytest.fixture(scope="module")
def run(data):
    out = data / "run"
    train(data / "data", out, tiny((60, 16, 10)), progress=False)
    return out


def test_loss_falls_and_outputs_are_written(run):
    for name in ("identity.safetensors", "identity.json", "loss_curve.png",
                 "preview_fusion.png", "train_state.safetensors", "replay.mp4",
                 "replay.safetensors"):
        assert (run / name).is_file(), name
    state = json.loads((run / "identity.json").read_text())
    assert state["format_version"] == 1 and state["audio_features"] == "mel"
    # wall time per stage (steps, previews, checkpoints), within the run's total
    per = state["train"]["stage_seconds"]
    assert list(per) == ["static", "deform", "fusion"] and min(per.values()) > 0
    assert sum(per.values()) <= state["train"]["seconds"]
    from fg3dgs.train.checkpoint import read_state
    hist = read_state(run / "train_state.safetensors")["meta"]["history"]
    static = [h[2] for h in hist if h[0] == "static"]
    assert np.mean(static[-5:]) < 0.85 * np.mean(static[:5])


def test_identity_reloads_to_identical_renders(run, data):
    from fg3dgs.preprocess.dataset import Dataset

    t = Trainer(data / "data", run, resume=True, progress=False)
    model = FG3DGS.from_pretrained(run)
    info, extras = model.info, model.extras
    frames = np.array([3, 20, 40])
    ref = t.render_frames(frames)[1]
    _, got = render_dataset_frames(model, info, Dataset(data / "data"), frames)
    assert np.abs(got - ref).max() < 1e-5
    assert extras["background"].shape == (64, 64, 3)
    assert extras["track_R"].shape[0] == len(Dataset(data / "data"))


def test_bad_checkpoints_are_refused(run, tmp_path):
    import shutil

    with pytest.raises(IdentityError, match="identity.json is missing"):
        FG3DGS.from_pretrained(tmp_path)
    with pytest.raises(IdentityError, match="norun does not exist"):
        FG3DGS.from_pretrained(tmp_path / "norun")
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    meta = json.loads((bad / "identity.json").read_text())
    (bad / "identity.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(IdentityError, match="format version 99"):
        FG3DGS.from_pretrained(bad)
    meta["counts"]["face"] += 1                        # config no longer fits the tensors
    (bad / "identity.json").write_text(json.dumps(meta))
    with pytest.raises(IdentityError, match="gaussians.face.means has shape"):
        FG3DGS.from_pretrained(bad)
    meta["counts"]["face"] -= 1
    (bad / "identity.json").write_text(json.dumps(meta))
    (bad / "identity.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(IdentityError, match="not a readable safetensors"):
        FG3DGS.from_pretrained(bad)


def test_render_defaults_to_the_variant_the_identity_has(run, data, tmp_path, capsys):
    out = tmp_path / "base.mp4"
    assert main(["render", "--identity", str(run), "--audio", str(data / "synth" / "audio.wav"),
                 "--out", str(out), "--quiet"]) == 0       # a run without HRPA: base only
    assert "variant base" in capsys.readouterr().out and out.is_file()
    assert main(["render", "--identity", str(run), "--audio", str(data / "synth" / "audio.wav"),
                 "--out", str(out), "--variant", "refined", "--quiet"]) == 2
    assert "no refined (HRPA) branch" in capsys.readouterr().err
    # refused before any progress bar is drawn
    assert main(["render", "--identity", str(run), "--audio", str(data / "synth" / "audio.wav"),
                 "--out", str(out), "--variant", "both"]) == 2
    err = capsys.readouterr().err
    assert "no refined (HRPA) branch" in err and "rendering" not in err


def test_app_studio_falls_back_to_the_base_variant(run, data, tmp_path):
    from fg3dgs.pipeline.studio import Studio, report

    speech = data / "synth" / "audio.wav"
    st = Studio([run], workdir=tmp_path)
    mine = st.choices()[-1]
    assert mine.label == f"{run} (run)" and mine.preview.name.startswith("preview_")
    paths, res = st.speak(str(run), speech, "both", size=64)
    assert set(paths) == {"base"} and paths["base"].is_file() and set(res.sync) <= {"base"}
    assert "has no lip-sync refinement" in report(res)
    (pa, ra), (pb, rb) = st.compare(("astronaut-demo", str(run)), speech, "refined", size=64)
    assert not ra.notes and "has no lip-sync refinement" in rb.notes[0]
    # a failed request leaves no folder behind
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ValueError, match="pose must be replay, static or track, got 'walk'"):
        st.speak(str(run), speech, "base", pose="walk", size=64)
    assert sorted(tmp_path.iterdir()) == before
    st.warm_up(str(run)).join()


def test_folders_sizes_and_datasets_are_checked_first(run, data, tmp_path):
    from dataclasses import replace

    from fg3dgs.evaluate.validation import _check_trained_on
    from fg3dgs.preprocess.dataset import Dataset, DatasetError
    from fg3dgs.preprocess.pipeline import PreprocessError

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.md").write_text("mine")
    with pytest.raises(TrainError, match=r"r is not empty \(it holds notes.md\)"):
        Trainer(data / "data", tmp_path / "r", tiny(), progress=False)
    with pytest.raises(TrainError, match="--size: an image side must be an even number"):
        Trainer(data / "data", tmp_path / "r2", replace(tiny(), size=63), progress=False)
    with pytest.raises(PreprocessError, match="--size: an image side"):
        preprocess(data / "synth" / "video.mp4", tmp_path / "d", PreprocessConfig(size=7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    # eval: the identity's own dataset only
    ds, info = Dataset(data / "data"), FG3DGS.from_pretrained(run).info
    _check_trained_on(info, ds)
    other = replace(info, train={**info.train, "dataset_video_sha256": "0" * 64})
    with pytest.raises(DatasetError, match="not the dataset this identity was trained on"):
        _check_trained_on(other, ds)
    older = replace(info, train={k: v for k, v in info.train.items()
                                 if k != "dataset_video_sha256"})
    _check_trained_on(older, ds)                   # before the sha256: by frame count
    with pytest.raises(DatasetError, match="frames, the identity's track has"):
        _check_trained_on(replace(older, track={"fps": 25, "frames": len(ds) + 1}), ds)


def test_resume_continues_exactly(data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    cfg = tiny((10, 6, 4))
    train(data / "data", tmp_path / "straight", cfg, progress=False)
    calls = {"n": 0}
    original = Trainer.step_once

    def interrupt_at_13(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 13:            # inside the deform stage
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step_once", interrupt_at_13)
    with pytest.raises(KeyboardInterrupt):
        train(data / "data", tmp_path / "resumed", tiny((10, 6, 4)), progress=False)
    monkeypatch.setattr(Trainer, "step_once", original)
    with pytest.raises(TrainError, match="--resume"):
        train(data / "data", tmp_path / "resumed", tiny((10, 6, 4)), progress=False)
    train(data / "data", tmp_path / "resumed", resume=True, progress=False)
    # the static stage's time, spent before the interruption, is kept across the resume
    per = json.loads((tmp_path / "resumed" / "identity.json").read_text())["train"]
    assert per["stage_seconds"]["static"] > 0 and per["stage_seconds"]["deform"] > 0
    a = load_file(str(tmp_path / "straight" / "identity.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "identity.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_rerun_fusion_of_a_run_from_before_rigid_gaussians(data, tmp_path):
    """`train --stage fusion` reruns the finished run's fusion stage (e.g. with a newer loss),
    also for a state saved before the Gaussians had rigid flags (none rigid then)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "r"
    train(data / "data", run, tiny((6, 4, 4)), progress=False)
    state = run / "train_state.safetensors"
    with safe_open(str(state), "pt") as f:
        meta = f.metadata()
    tensors = {k: v for k, v in load_file(str(state)).items() if not k.endswith(".rigid")}
    save_file(tensors, str(state), metadata=meta)
    before = load_file(str(run / "identity.safetensors"))
    assert main(["train", str(data / "data"), "--out", str(run), "--stage", "fusion",
                 "--quiet"]) == 0
    after = load_file(str(run / "identity.safetensors"))
    assert not torch.equal(before["gaussians.mouth.sh"], after["gaussians.mouth.sh"])
    assert not after["gaussians.mouth.rigid"].any()


@pytest.mark.parametrize("flag", ["--no-region-split", "--no-frequency-aware"])
def test_ablation_switches_train(data, tmp_path, flag, monkeypatch, capsys):
    import fg3dgs.train.config as C

    monkeypatch.setattr(C, "preset", lambda name, **o: tiny((6, 4, 4), **o))
    assert main(["train", str(data / "data"), "--out", str(tmp_path / "r"), flag,
                 "--quiet"]) == 0
    assert "(stages over the whole run: static " in capsys.readouterr().out
    model = FG3DGS.from_pretrained(tmp_path / "r")
    if flag == "--no-region-split":
        assert list(model.gaussians) == ["head"]
    else:
        assert type(model.nets["mouth"]).__name__ == "PlainDeform"


def test_eval_writes_metrics_and_video(run, data, capsys):
    assert main(["eval", str(run), "--data", str(data / "data"), "--truth",
                 str(data / "synth"), "--quiet"]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["frames"] > 0 and 5 < m["psnr"] < 60 and 0 < m["ssim"] <= 1
    assert m["lpips"]["available"] is False and "mouth_jaw_r" in m["truth"]
    assert (run / "eval" / "validation.mp4").stat().st_size > 1000
    assert "PSNR" in capsys.readouterr().out


def test_hrpa_refines_a_copy_of_the_mouth_branch(data, tmp_path):
    from fg3dgs.preprocess.dataset import Dataset
    from fg3dgs.sync import ExpertConfig, SyncExpert, save_expert

    torch.manual_seed(0)
    expert = tmp_path / "expert.safetensors"
    save_expert(SyncExpert(ExpertConfig(width=0.125)), expert)
    cfg = tiny((10, 6, 4, 3))
    cfg.expert = str(expert)
    train(data / "data", tmp_path / "hrpa", cfg, progress=False)
    train(data / "data", tmp_path / "plain", tiny((10, 6, 4)), progress=False)
    model = FG3DGS.from_pretrained(tmp_path / "hrpa")
    plain = FG3DGS.from_pretrained(tmp_path / "plain")
    info = model.info
    assert model.variants == ("base", "refined") and plain.variants == ("base",)
    assert info.variants == ["base", "refined"]
    assert info.hrpa["expert"]["source"] == "fg3dgs" and info.hrpa["iterations"] == 3
    ds, frames = Dataset(data / "data"), np.array([5, 30])
    _, base = render_dataset_frames(model, info, ds, frames)
    _, ref = render_dataset_frames(plain, info, ds, frames)
    assert np.abs(base - ref).max() < 1e-5          # the base branch is the pre-HRPA model
    _, refined = render_dataset_frames(model.set_variant("refined"), info, ds, frames)
    assert np.abs(refined - base).max() > 1e-4
    for r in ("face", "eyes"):      # HRPA refines the mouth only
        for a, b in zip(model.refined["colour"][r].parameters(),
                        model.colour[r].parameters()):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no 'refined' variant"):
        plain.set_variant("refined")


def test_hrpa_without_an_expert_says_so(data, tmp_path):
    cfg = tiny((2, 2, 2, 1))
    cfg.expert = str(tmp_path / "missing.safetensors")
    with pytest.raises(TrainError, match="HRPA stage needs a sync expert.*not found"):
        train(data / "data", tmp_path / "r", cfg, progress=False)


def test_eval_scores_sync_with_an_expert_and_new_audio(run, data, tmp_path, capsys):
    from fg3dgs.sync import ExpertConfig, SyncExpert, save_expert

    torch.manual_seed(0)
    expert = tmp_path / "expert.safetensors"
    save_expert(SyncExpert(ExpertConfig(width=0.125)), expert)
    assert main(["eval", str(run), "--data", str(data / "data"), "--no-video", "--quiet",
                 "--expert", str(expert), "--audio", str(data / "synth" / "audio.wav")]) == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(m["sync"]) == {"expert-C", "expert-D", "expert-offset"}
    assert isinstance(m["sync"]["expert-offset"], int) and np.isfinite(m["sync"]["expert-C"])
    assert "audio.wav" in m["sync_new_audio"] and m["sync_expert"]["source"] == "fg3dgs"
    assert m["lse"]["available"] is False
    out = capsys.readouterr().out
    assert "expert-C" in out and "LSE-C / LSE-D: unavailable" in out
    assert main(["eval", str(run), "--data", str(data / "data"), "--no-video", "--quiet",
                 "--expert", str(expert), "--audio", str(tmp_path / "nope.wav")]) == 2


def test_hrpa_is_skipped_with_a_warning_when_no_expert_ships(data, tmp_path, monkeypatch):
    monkeypatch.setenv("FG3DGS_CHECKPOINTS", str(tmp_path / "empty"))
    with pytest.warns(UserWarning, match="HRPA will be skipped"):
        train(data / "data", tmp_path / "r", tiny((2, 2, 2, 5)), progress=False)
    model = FG3DGS.from_pretrained(tmp_path / "r")
    assert model.variants == ("base",) and "not found" in model.info.hrpa["skipped"]


def test_zoo_export_makes_a_hub_ready_folder(run, data, tmp_path):
    import hashlib

    from fg3dgs.model.replay import INDEX, VIDEO
    from fg3dgs.pipeline import TalkingHead

    out = tmp_path / "export"
    assert main(["zoo", "export", str(run), "--out", str(out), "--id", "tiny",
                 "--title", "Tiny"]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: other") and "# Tiny" in card
    assert "stated no licence" in card and "Variant: base only" in card
    assert "--out talking.mp4 --variant base\n" in card          # the run has no HRPA
    entry = json.loads((out / "zoo_entry.json").read_text())
    assert entry["variants"] == ["base"]
    for f, h in entry["source"]["files"].items():
        assert hashlib.sha256((out / f).read_bytes()).hexdigest() == h
    info = json.loads((out / "identity.json").read_text())
    assert info["dtype"] == "float16"
    head = TalkingHead(out)
    assert head.still().shape == (64, 64, 3)
    # an older run without a replay track needs its dataset
    old = tmp_path / "old"
    old.mkdir()
    for f in ("identity.json", "identity.safetensors"):
        (old / f).write_bytes((run / f).read_bytes())
    assert main(["zoo", "export", str(old), "--out", str(tmp_path / "e2")]) == 2
    assert main(["zoo", "export", str(old), "--out", str(tmp_path / "e2"), "--data",
                 str(data / "data")]) == 0
    assert (tmp_path / "e2" / VIDEO).is_file() and (tmp_path / "e2" / INDEX).is_file()
    with pytest.warns(UserWarning, match="no replay track"):
        TalkingHead(old)
    # an existing folder is replaced only with --force
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep me")
    assert main(["zoo", "export", str(run), "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.md").read_text() == "keep me"
    assert main(["zoo", "export", str(run), "--out", str(out), "--force", "--license",
                 "cc-by-4.0"]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0") and "stated no licence" not in card


def test_training_rate_benchmark(data, tmp_path, capsys):
    """`python -m fg3dgs.bench train`: every stage timed at the densification cap, and a
    projected schedule time that is the sum of the stages'."""
    from fg3dgs.bench.__main__ import main as bench

    out = tmp_path / "rate.json"
    assert bench(["train", str(data / "data"), "--preset", "cpu", "--backend", "cpu",
                  "--steps", "5", "--warmup", "1", "--json", str(out),
                  "--op-sources", "5", "--profile", "fusion"]) == 0
    res = json.loads(out.read_text())
    caps = preset("cpu").densify.max_gaussians
    assert res["gaussians"] == {r: caps[r] for r in ("face", "eyes", "mouth")}
    assert [r["stage"] for r in res["rows"]] == ["static", "deform", "fusion", "hrpa"]
    assert all(r["iterations_per_s"] > 0 for r in res["rows"])
    assert all(r["gaussians"] == res["gaussians"] for r in res["rows"])   # the cap throughout
    assert abs(res["projected_minutes"] - sum(r["projected_minutes"] for r in res["rows"])) \
        < 1e-9
    printed = capsys.readouterr().out
    assert "| all | 21400 |" in printed
    # tensor ops per step, and where the deform step's come from (networks, losses, SH)
    assert all(r["ops_per_step"] > 100 for r in res["rows"])
    deform = printed.split("# deform: tensor ops of one step by source")[1].split("#")[0]
    assert "backward: model/deformation.py:forward" in deform
    assert "# fusion: torch.profiler over 10 steps" in printed and "aten::" in printed
    # fusion with its LPIPS term (random weights here), and the run's one-off work on top
    assert res["fusion_lpips"].startswith("random weights")
    plan = preset("cpu").one_offs()
    once = {(o["work"], o["stage"]): o for o in res["one_offs"]}
    assert once[("lip-prior warm-up step", "deform")]["times"] == 1000
    assert once[("preview", "fusion")]["times"] == plan["fusion"]["preview"]
    assert once[("densification pass", "static")]["times"] == 8
    assert ("export (identity, replay track)", "") in once
    assert all(o["seconds_each"] > 0 for o in res["one_offs"])
    assert res["one_off_minutes"] == pytest.approx(
        sum(o["times"] * o["seconds_each"] for o in res["one_offs"]) / 60)
    assert res["projected_minutes_with_one_offs"] == pytest.approx(
        res["projected_minutes"] + res["one_off_minutes"])
    assert "# the whole run:" in printed
    # one stage alone: its row, no whole-schedule total
    assert bench(["train", str(data / "data"), "--preset", "cpu", "--backend", "cpu",
                  "--steps", "5", "--warmup", "1", "--json", str(out), "--no-grow",
                  "--stages", "static", "fusion", "--lpips-as-run",
                  "--iterations", "300,40,250"]) == 0
    res = json.loads(out.read_text())
    assert [(r["stage"], r["iterations"]) for r in res["rows"]] == [("static", 300),
                                                                   ("fusion", 250)]
    # that schedule's one-off work: no densification pass is due in 300 steps (the first
    # is at 400), one preview and one checkpoint each
    static = {o["work"]: o["times"] for o in res["one_offs"] if o["stage"] == "static"}
    assert static == {"stage set-up": 1, "preview": 1, "checkpoint": 1}
    assert res["projected_minutes"] is None and res["projected_minutes_with_one_offs"] is None
    assert res["fusion_lpips"].startswith("off (its weights are missing")
    assert "| all |" not in capsys.readouterr().out


def test_one_off_work_is_counted_as_a_run_does_it(data, tmp_path, monkeypatch):
    """``TrainConfig.one_offs`` (what the training benchmark multiplies its one-off timings
    by) counts the previews, checkpoints, densification passes and lip warm-up steps that a
    real run does."""
    from fg3dgs.model.gaussians import DensifyStrategy
    from fg3dgs.train.config import STAGES
    from fg3dgs.train.mouth_prior import LipPrior

    seen = {}

    def counting(name, fn):
        def wrapped(self, *a, **k):
            out = fn(self, *a, **k)
            stage = self.stage
            if name == "checkpoint" and self.step == 0:   # a stage's last, saved by the next
                stage = STAGES[STAGES.index(stage) - 1]
            seen.setdefault(stage, {}).setdefault(name, 0)
            seen[stage][name] += 1
            return out
        return wrapped

    passes = set()
    densify_step = DensifyStrategy.step

    def densify(self, step, *a):
        changed = densify_step(self, step, *a)
        if changed:
            passes.add(step)
        return changed
    monkeypatch.setattr(DensifyStrategy, "step", densify)
    lip = {"stages": set(), "steps": 0}         # warm-up steps: the prior's loss alone
    warm_up, lip_loss = Trainer.warm_up_lip_prior, LipPrior.loss

    def warming_up(self, *a, **k):
        lip["stages"].add(self.stage)
        return warm_up(self, *a, **k)

    def lip_step(self, *a, **k):
        lip["steps"] += 1
        return lip_loss(self, *a, **k)
    monkeypatch.setattr(Trainer, "warm_up_lip_prior", warming_up)
    monkeypatch.setattr(LipPrior, "loss", lip_step)
    for name, method in (("preview", "write_preview"), ("checkpoint", "save_state")):
        monkeypatch.setattr(Trainer, method, counting(name, getattr(Trainer, method)))
    cfg = tiny((13, 9, 6), lip_warmup=3)
    cfg.preview_every = 4
    train(data / "data", tmp_path / "r", cfg, progress=False)
    seen["static"]["densification pass"] = len(passes)
    assert lip["stages"] == {"deform"}
    seen["deform"]["lip-prior warm-up step"] = lip["steps"]
    assert seen == cfg.one_offs()
    assert cfg.one_offs()["static"] == {"preview": 4, "checkpoint": 3,
                                        "densification pass": 2}


def test_windowed_regions_share_one_loss_call(data, tmp_path):
    """Stages 1-2: the eye and mouth windows go through the loss in one padded, weighted
    call; the loss and its gradients are those of one call per region."""
    from fg3dgs.train.data import region_mask, region_window
    from fg3dgs.train.losses import photometric_reference
    from fg3dgs.train.stage_losses import alpha_l1, region_loss

    t = Trainer(data / "data", tmp_path / "r", tiny((2, 2, 2)), progress=False)
    t.start_stage("deform")
    c = t.cfg
    ks = np.array([3, 11])
    b = t.data.batch(ks, t.device)
    labels = t.data.labels[ks]
    windows = {r: region_window(labels, r, c.window_margin) for r in ("eyes", "mouth")}
    assert windows["eyes"][2:] != windows["mouth"][2:]          # sizes differ: padding
    drive = t.model.drive(b["audio"], b["expression"])
    renders = t.model.render_regions(drive, b["viewmats"], t.K, c.size, c.size, "cpu",
                                     windows=windows)
    got, psnr = region_loss(renders, b["image"], b["labels"], windows, True, c, t.image_loss)
    # stages 1-2 render without the colour corrections: at their identity start, the same
    raw = t.model.render_regions(drive, b["viewmats"], t.K, c.size, c.size, "cpu",
                                 windows=windows, colour=False)
    for r in renders:
        assert torch.equal(raw[r][0], renders[r][0]) and torch.equal(raw[r][1], renders[r][1])
    want, want_psnr = 0.0, 0.0
    for r, (rgb, a) in renders.items():
        mask = region_mask(b["labels"], r)
        target = b["image"] * mask
        if r in windows:
            x0, y0, w, h = windows[r]
            mask, target = (x[:, y0:y0 + h, x0:x0 + w] for x in (mask, target))
        want = want + photometric_reference(rgb, target, c.dssim) \
            + c.alpha_weight * (a - mask).abs().mean()
        want_psnr += -10 * np.log10(float(((rgb.detach() - target) ** 2).mean())) / len(renders)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert float(psnr) == pytest.approx(want_psnr, abs=1e-3)    # the mean of the regions'
    # fusion's alpha term: the regions' full-frame alphas in one term, the sum of their own
    full = t.model.render_regions(drive, b["viewmats"], t.K, c.size, c.size, "cpu")
    torch.testing.assert_close(
        alpha_l1(full, b["labels"]),
        sum((a - region_mask(b["labels"], r)).abs().mean() for r, (_, a) in full.items()))
    params = [p for p in t.model.parameters() if p.requires_grad]
    nonzero = 0
    for g1, g2 in zip(torch.autograd.grad(got, params, retain_graph=True, allow_unused=True),
                      torch.autograd.grad(want, params, allow_unused=True)):
        if g1 is None or g2 is None:
            assert g1 is None and g2 is None
        else:
            torch.testing.assert_close(g1, g2, atol=1e-7, rtol=1e-4)
            nonzero += bool(g1.abs().sum() > 0)
    assert nonzero > 5          # Gaussians' colours and opacities, the networks' last layers


def test_lip_prior_teaches_the_audio_encoder_the_lips(data, tmp_path):
    """The warm-up of the lip-shape prior lowers its loss, and it touches only the audio
    encoder (and its head): the Gaussians and the deformation networks stay as they were."""
    t = Trainer(data / "data", tmp_path / "r", tiny((2, 2, 2), lip_warmup=300, lip_batch=16),
                progress=False)
    t.start_stage("deform")
    assert t.lip_warmup_due
    before_nets = {k: v.clone() for k, v in t.model.nets.state_dict().items()}
    torch.manual_seed(0)
    with torch.no_grad():
        start = np.mean([float(t.lip_prior.loss(t.model, t.rng)) for _ in range(8)])
    t.warm_up_lip_prior()
    assert not t.lip_warmup_due
    with torch.no_grad():
        end = np.mean([float(t.lip_prior.loss(t.model, t.rng)) for _ in range(8)])
    assert end < 0.8 * start
    for k, v in t.model.nets.state_dict().items():
        assert torch.equal(v, before_nets[k]), k


class _HostWaits(torch.overrides.TorchFunctionMode):
    """Records calls that make the CPU wait for the device when tensors live on a GPU
    (reading values on the host, data-dependent shapes), with the fg3dgs line making them.
    Ignored: the CPU rasterizer and hash gather (CUDA runs other code), the render API's
    value checks (skipped off the CPU, see the test below) and torch.optim (fused on CUDA)."""

    NAMES = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__",
             "__index__", "nonzero", "unique", "masked_select", "argwhere",
             # and those that read values on the host internally: the inverses' singularity
             # checks, outputs sized by the data, whole-tensor comparisons
             "linalg_inv", "inverse", "linalg_solve", "cholesky", "linalg_cholesky",
             "repeat_interleave", "bincount", "equal", "allclose"}
    IGNORE = ("fg3dgs/render/cpu/", "fg3dgs/model/hash_kernels.py", "torch/optim/")

    def __init__(self):
        super().__init__()
        self.hits = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        import traceback

        name = getattr(func, "__name__", "")
        index = args[1] if name in ("__getitem__", "__setitem__") and len(args) > 1 else None
        masked = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                     for i in (index if isinstance(index, tuple) else (index,)))
        if name in self.NAMES or masked:
            stack = traceback.extract_stack()[:-1]
            if not any(s in f.filename for f in stack for s in self.IGNORE) and \
                    not any(f.name == "_validate" for f in stack):
                ours = [f for f in stack if "/fg3dgs/" in f.filename]
                self.hits.append(f"{name} at {ours[-1].filename}:{ours[-1].lineno}"
                                 if ours else name)
        return func(*args, **(kwargs or {}))


def test_training_steps_never_wait_for_the_device(data, tmp_path):
    """On a GPU the trainer's CPU must run ahead of the device: a step reads no tensor value
    on the host (the loss is read only at log and checkpoint steps)."""
    tr = Trainer(data / "data", tmp_path / "run", tiny((4, 4, 4)), progress=False)
    for stage in ("static", "deform", "fusion"):
        tr.start_stage(stage)
        tr.step_once()
        tr.step = 5          # a densification step in the static stage
        with _HostWaits() as spy:
            loss, quality = tr.step_once()
        assert spy.hits == [], (stage, spy.hits)
        assert isinstance(loss, torch.Tensor) and np.isfinite(float(loss))


def test_render_value_checks_are_skipped_off_the_cpu_only():
    from fg3dgs.render.api import _validate

    def inputs(device):
        t = {"means": torch.zeros(4, 3), "quats": torch.ones(4, 4), "scales": torch.ones(4, 3),
             "opacities": torch.full((4,), 0.5), "colors": torch.zeros(4, 3),
             "viewmats": torch.eye(4), "Ks": torch.eye(3)}
        return [v.to(device) for v in t.values()]

    # meta tensors have no values: reading one fails, so a skipped check passes
    _validate(*inputs("meta"), 8, 8, None, None, check_values=False)
    with pytest.raises((RuntimeError, NotImplementedError)):
        _validate(*inputs("meta"), 8, 8, None, None, check_values=True)
    bad = inputs("cpu")
    bad[0][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):      # the CPU kernels always get checked
        _validate(*bad, 8, 8, None, None, check_values=False)


def test_region_masks_are_the_labels_of_each_region():
    from fg3dgs.model.identity import REGION_LABELS
    from fg3dgs.train.data import region_mask, region_masks

    labels = torch.randint(0, 6, (2, 9, 7))
    for region, values in REGION_LABELS.items():
        want = sum((labels == v) for v in values).bool().float()[..., None]
        got = region_mask(labels, region)
        assert got.dtype == torch.float32 and torch.equal(got, want), region
    # several regions in one lookup: the channels in the order asked
    order = ("mouth", "face", "eyes")
    assert torch.equal(region_masks(labels, order),
                       torch.cat([region_mask(labels, r) for r in order], -1))


def test_compiled_training_matches_eager(data, tmp_path, monkeypatch):
    """TrainConfig.compile: the networks (the refined branch's too) and the photometric
    loss go through torch.compile, and train to the same identity as eager. The backend
    records its graphs and hands them to aot_eager (no code generation: fast on a CPU).
    The eager run uses the loss formula as autograd sees it, as the compiled one does (the
    written-out backward's rounding differs, and a few Adam steps amplify that)."""
    from torch._dynamo import lookup_backend, register_backend

    import fg3dgs.train.trainer as T
    from fg3dgs.sync import ExpertConfig, SyncExpert, save_expert
    from fg3dgs.train import losses

    monkeypatch.setattr(T, "photometric", losses.photometric_reference)

    graphs = []

    def spy(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes})
        return lookup_backend("aot_eager")(gm, example_inputs)

    register_backend(spy, name="fg3dgs_test_spy")
    torch.manual_seed(0)
    expert = tmp_path / "expert.safetensors"
    save_expert(SyncExpert(ExpertConfig(width=0.125)), expert)
    runs = {}
    for how in ("", "fg3dgs_test_spy"):
        cfg = tiny((6, 4, 3, 2), compile=how)
        cfg.expert = str(expert)
        runs[how] = train(data / "data", tmp_path / (how or "eager"), cfg, progress=False)
    losses.compiled_photometric.cache_clear()
    calls = " ".join(set().union(*graphs))
    # the audio encoder, the eye and mouth networks, the loss's pointwise parts
    for what in ("conv1d", "scaled_dot_product_attention", "cat", "truediv"):
        assert what in calls, what
    a = FG3DGS.from_pretrained(runs[""])
    b = FG3DGS.from_pretrained(runs["fg3dgs_test_spy"])
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and any(k.startswith("refined.net.") for k in sa)
    # HRPA's two steps: Adam's normalised update turns a last-bit difference in the
    # expert's gradient (aot vs eager, CPU-dependent) into up to 2 lr per step
    hrpa = 2 * 2 * cfg.lr_hrpa_net
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=hrpa if k.startswith("refined.") else 1e-5), k


@pytest.fixture
def train_config(tmp_path, monkeypatch):
    """The config `fg3dgs train` hands to training (which is replaced by a stand-in that
    records it): {"cfg": TrainConfig} after the command ran."""
    import fg3dgs.train.trainer as T

    seen = {}

    def fake_train(dataset, out, cfg, **kw):
        seen["cfg"] = cfg
        (tmp_path / "identity.json").write_text("{}")
        return tmp_path

    monkeypatch.setattr(T, "train", fake_train)
    return seen


@pytest.mark.parametrize("args, want", [([], ("", "default")),
                                        (["--compile"], ("inductor", "default")),
                                        (["--compile", "reduce-overhead"],
                                         ("inductor", "reduce-overhead"))])
def test_train_compile_flag_sets_the_config(args, want, tmp_path, train_config):
    assert main(["train", "data", "--out", str(tmp_path / "r"), "--quiet", *args]) == 0
    assert (train_config["cfg"].compile, train_config["cfg"].compile_mode) == want


@pytest.mark.parametrize("args, want", [([], 128), (["--size", "256"], 256)])
def test_train_defaults_to_a_smaller_datasets_size(args, want, tmp_path, train_config,
                                                   capsys):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps({"size": 128}))
    assert main(["train", str(tmp_path / "ds"), "--out", str(tmp_path / "r"), "--quiet",
                 *args]) == 0
    assert train_config["cfg"].size == want
    assert ("the dataset's size" in capsys.readouterr().err) == (not args)


def test_training_above_the_datasets_size_warns(data, tmp_path):
    from dataclasses import replace

    with pytest.warns(UserWarning, match="frames are 64 px: training at 128 upsamples"):
        Trainer(data / "data", tmp_path / "r", replace(tiny(), size=128), progress=False)


def test_training_frames_hear_voice_varied_copies_of_the_clip(data, tmp_path):
    """The trainer's data holds the clean features and augmented copies of the same length;
    the copies differ from the clean features but keep the clip's timing (the clean and the
    augmented loudness rise and fall together), and training rows draw from both."""
    from fg3dgs.train.audio_variants import draw_variants

    t = Trainer(data / "data", tmp_path / "r", tiny((2, 2, 2), audio_copies=2,
                                                      audio_augment_p=0.5), progress=False)
    sets = t.data.feature_sets
    assert sets.shape == (3, *t.data.features.shape)
    assert np.array_equal(sets[0], t.data.features)
    for k in (1, 2):
        assert np.abs(sets[k] - sets[0]).mean() > 0.05
        level = [s[:, :40].mean(1) for s in (sets[0], sets[k])]   # low bands' energy
        assert np.corrcoef(*level)[0, 1] > 0.6
    v = draw_variants(np.random.default_rng(0), 400, 2, 0.5)
    assert set(np.unique(v)) == {0, 1, 2} and 0.4 < np.mean(v == 0) < 0.6
    frames = t.data.index[:3]
    w = t.data.audio(frames, np.array([0, 1, 2]))
    idx = audio_window_index(len(sets[0]), frames)
    assert np.array_equal(w[0], t.data.audio(frames)[0])
    for k in (1, 2):
        assert np.array_equal(w[k], sets[k][idx[k]])
    assert t.feature_variants(5) is not None
    t.cfg.audio_copies = 0                  # runs without copies draw nothing
    assert t.feature_variants(5) is None


@pytest.mark.parametrize("args, want", [([], 4), (["--audio-copies", "0"], 0)])
def test_train_audio_copies_flag_sets_the_config(args, want, tmp_path, train_config):
    assert main(["train", "data", "--out", str(tmp_path / "r"), "--quiet", *args]) == 0
    assert train_config["cfg"].audio_copies == want


def test_train_refuses_negative_audio_copies(tmp_path, capsys):
    assert main(["train", "data", "--out", str(tmp_path / "r"), "--audio-copies", "-1"]) == 2
    assert "--audio-copies must be 0 or more" in capsys.readouterr().err


def test_refine_runs_hrpa_alone_on_an_identity_with_other_voices(run, data, tmp_path,
                                                                  monkeypatch, capsys):
    """``fg3dgs refine``: the base branch and everything else stay as they were; the refined
    branch learns again; a step driven by another voice has the sync term alone (no true
    frame exists for it)."""
    from fg3dgs.sync import ExpertConfig, SyncExpert, save_expert
    from fg3dgs.train.other_voices import draw_window, make_other_voices

    torch.manual_seed(0)
    expert = tmp_path / "expert.safetensors"
    save_expert(SyncExpert(ExpertConfig(width=0.125)), expert)
    bank = make_other_voices(0.05, "mel", seed=1, progress=False)
    assert bank and all(u.features.shape[1] == 80 and u.frames >= 5 for u in bank)
    u, f0 = draw_window(bank, np.random.default_rng(0))
    assert 0 <= f0 <= u.frames - 5

    t = Trainer.refine_identity(run, data / "data", tmp_path / "r", progress=False,
                                iterations=2, expert=str(expert), hrpa_other_voices=1.0,
                                hrpa_other_minutes=0.05, hrpa_windows=2, hrpa_shifts=4)
    assert t.stage == "hrpa" and t.hrpa.other_voices

    def no_photometric(*args, **kwargs):
        raise AssertionError("a step on another voice has no true frame to compare with")

    with monkeypatch.context() as m:
        m.setattr(Trainer, "image_loss", property(lambda self: no_photometric))
        t.step_once()
    t.cfg.hrpa_other_voices = 0.0       # two windows of the clip's own frames and audio
    t.step_once()

    out = tmp_path / "cli"
    assert main(["refine", str(run), "--data", str(data / "data"), "--out", str(out),
                 "--iterations", "3", "--expert", str(expert), "--other-voices", "0.5",
                 "--other-minutes", "0.05", "--sync-shifts", "3", "--quiet"]) == 0
    old = FG3DGS.from_pretrained(run)
    new = FG3DGS.from_pretrained(out)
    info = new.info
    assert new.variants == ("base", "refined")
    assert info.hrpa["other_voices"] == 0.5 and info.hrpa["refined_from"] == str(run)
    assert info.hrpa["sync_term"] == {"infonce_shifts": 3, "temperature": 0.1}
    assert info.train["config"]["iterations"] == {**old.info.train["config"]
                                                  ["iterations"], "hrpa": 3}
    a, b = old.state_dict(), new.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("refined."))
    assert any(not torch.equal(b[k], b[k.replace("refined.net.", "nets.mouth.")])
               for k in b if k.startswith("refined.net."))
    assert main(["refine", str(run), "--data", str(data / "data"), "--out", str(out),
                 "--other-voices", "2"]) == 2
    assert "--other-voices is a share" in capsys.readouterr().err
    assert main(["refine", str(run), "--data", str(data / "data"), "--out", str(out),
                 "--sync-shifts", "1"]) == 2
    assert "--sync-shifts is 0 (BCE) or 2 or more" in capsys.readouterr().err


def test_hrpa_adapter_mode_learns_only_the_refined_feature_adapter(run, data, tmp_path,
                                                                   capsys):
    """TrainConfig.hrpa_adapter: the refined branch is the base mouth network and colours as
    they were, read through a learned FeatureAdapter; it saves, reloads and renders apart."""
    from fg3dgs.preprocess.dataset import Dataset
    from fg3dgs.sync import ExpertConfig, SyncExpert, save_expert

    torch.manual_seed(0)
    expert = tmp_path / "expert.safetensors"
    save_expert(SyncExpert(ExpertConfig(width=0.125)), expert)
    out = tmp_path / "r"
    assert main(["refine", str(run), "--data", str(data / "data"), "--out", str(out),
                 "--iterations", "3", "--expert", str(expert), "--adapter",
                 "--adapter-lr", "0.05", "--quiet"]) == 0
    old = FG3DGS.from_pretrained(run)
    new = FG3DGS.from_pretrained(out)
    info = new.info
    assert info.config.refined_adapter is True and new.variants == ("base", "refined")
    a, b = old.state_dict(), new.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("refined."))
    for k in b:
        if k.startswith("refined.net."):
            assert torch.equal(b[k], b[k.replace("refined.net.", "nets.mouth.")]), k
        elif k.startswith("refined.colour."):
            assert torch.equal(b[k], b[k.replace("refined.colour.", "colour.")]), k
    assert not torch.equal(b["refined.adapter.mix"], torch.eye(b["refined.adapter.mix"].shape[0]))
    ds = Dataset(data / "data")
    frames = np.arange(4)
    _, base = render_dataset_frames(new.set_variant("base"), info, ds, frames)
    _, refined = render_dataset_frames(new.set_variant("refined"), info, ds, frames)
    assert np.abs(refined - base).max() > 1e-5
    assert main(["refine", str(run), "--data", str(data / "data"), "--out", str(out),
                 "--adapter-lr", "0.01"]) == 2
    assert "--adapter-lr needs --adapter" in capsys.readouterr().err


def install_tiny_frontend(tmp_path, monkeypatch):
    """A small random speech front-end in a checkpoints folder of its own, in use."""
    from fg3dgs.frontend import ArticulationNet, FrontendConfig, save_frontend

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.manual_seed(0)
    save_frontend(ArticulationNet(FrontendConfig(width=16)),
                  ckpt / "speech_frontend.safetensors")
    monkeypatch.setenv("FG3DGS_CHECKPOINTS", str(ckpt))


def test_articulation_features_follow_the_front_end_in_use(data, tmp_path, monkeypatch):
    """A dataset's ``artic`` features made by another speech front-end are made again
    (and stored) before training reads them; up-to-date ones are read as they are."""
    import shutil

    from fg3dgs.audio_features import extract
    from fg3dgs.preprocess.dataset import Dataset
    from fg3dgs.train.data import TrainData

    ds_dir = tmp_path / "ds"
    shutil.copytree(data / "data", ds_dir)
    install_tiny_frontend(tmp_path, monkeypatch)
    audio = Dataset(ds_dir).audio()
    n = len(extract(audio, "artic"))
    np.save(ds_dir / "features" / "artic.npy", np.zeros((n, 5), np.float32))   # stale
    (ds_dir / "features" / "artic.json").write_text(json.dumps({"model": "another"}))
    manifest = json.loads((ds_dir / "manifest.json").read_text())
    manifest["audio"]["features"]["artic"] = "features/artic.npy"
    (ds_dir / "manifest.json").write_text(json.dumps(manifest))
    got = TrainData(Dataset(ds_dir), 64, "artic", range(4)).features
    assert np.allclose(got, extract(audio, "artic"), atol=1e-6) and np.abs(got).max() > 0
    assert np.allclose(np.load(ds_dir / "features" / "artic.npy"), got)
    assert "speech front-end sha256" in (ds_dir / "features" / "artic.json").read_text()


def test_retarget_with_data_tunes_the_audio_path_on_the_frames(run, data, tmp_path,
                                                                monkeypatch, capsys):
    """``retarget --data``: after the distillation the new encoder and the mouth network
    learn from the dataset's frames (their fit there improves), nothing else changes, and a
    refined branch (made for the old mouth network) is dropped; a dataset without the new
    features is refused before any work."""
    import shutil

    from fg3dgs.audio_features import extract
    from fg3dgs.preprocess.dataset import Dataset
    from fg3dgs.train.audio_tune import AudioTuneConfig
    from fg3dgs.train.retarget import RetargetConfig, retarget

    install_tiny_frontend(tmp_path, monkeypatch)
    src = tmp_path / "src"                  # the tiny run with a refined branch beside base
    shutil.copytree(run, src)
    model = FG3DGS.from_pretrained(src)
    model.add_refined()
    model.save_pretrained(src, meta={**model.info.meta(), "variants": ["base", "refined"],
                                     "hrpa": {"iterations": 1}})
    ds_dir = tmp_path / "ds"
    shutil.copytree(data / "data", ds_dir)
    assert main(["retarget", str(src), "--data", str(ds_dir), "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert "--audio-features artic" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    np.save(ds_dir / "features" / "artic.npy", extract(Dataset(ds_dir).audio(), "artic"))
    manifest = json.loads((ds_dir / "manifest.json").read_text())
    manifest["audio"]["features"]["artic"] = "features/artic.npy"
    (ds_dir / "manifest.json").write_text(json.dumps(manifest))

    out = tmp_path / "tuned"
    report = retarget(src, [], out, RetargetConfig(steps=5, copies=0, batch=8),
                      progress=False, data=ds_dir,
                      tune=AudioTuneConfig(steps=40, lr=2e-3, audio_copies=1, check_frames=8))
    t = report["tune"]
    assert t["fit_after"] < t["fit_before"] and t["refined_branch_dropped"]
    assert t["voice_spread_gain_median"] > 0
    old = FG3DGS.from_pretrained(src)
    new = FG3DGS.from_pretrained(out)
    info = new.info
    assert info.variants == ["base"] and info.hrpa is None and new.refined is None
    a, b = old.state_dict(), new.state_dict()
    changed = {k for k in b if not torch.equal(a[k], b[k])}
    assert any(k.startswith("nets.mouth.") for k in changed)
    assert all(k.startswith(("audio.", "nets.mouth.")) for k in changed)


def test_hrpa_sync_term_is_bce_alone_or_infonce_over_shifted_audio():
    """One audio window: the expert's BCE. Several (:func:`sync_shifts`, in-sync first): the
    cross-entropy of the rendered window's cosines that names the in-sync audio, so the loss
    falls when the in-sync audio matches best and rises when a shifted one does."""
    from fg3dgs.sync.expert import ExpertConfig, SyncExpert
    from fg3dgs.train.hrpa import sync_shifts, sync_term

    assert sync_shifts(0).tolist() == [0] and sync_shifts(1).tolist() == [0]
    assert sync_shifts(4).tolist() == [0, 2, 3, 4, -2, -3, -4]
    torch.manual_seed(0)
    expert = SyncExpert(ExpertConfig(width=0.125)).eval()
    faces, mel = torch.rand(1, 15, 48, 96), torch.randn(7, 1, 80, 16)
    assert torch.allclose(sync_term(expert, mel[:1], faces, 0.1),
                          expert.sync_loss(mel[:1], faces))
    a, v = expert(mel, faces)
    cos = a @ v[0]
    assert torch.allclose(sync_term(expert, mel, faces, 0.1),
                          -torch.log_softmax(cos / 0.1, 0)[0], atol=1e-5)
    best_first = mel[torch.argsort(cos, descending=True)]
    worst_first = mel[torch.argsort(cos)]
    assert sync_term(expert, best_first, faces, 0.1) < sync_term(expert, worst_first, faces, 0.1)
