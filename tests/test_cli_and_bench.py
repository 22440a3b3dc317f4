"""The command line, the benchmark's table, and the kernel cache across processes."""

import json
import subprocess
import sys

import imageio.v3 as iio
import pytest

from fg3dgs.cli import main


def test_demo_renders_the_shipped_identity_speaking(tmp_path, capsys):
    out = tmp_path / "sub" / "demo.mp4"
    assert main(["demo", "--identity", "astronaut-demo", "--out", str(out), "--quiet"]) == 0
    frames = iio.imread(out, plugin="FFMPEG")
    assert frames.shape[1:] == (256, 512, 3) and len(frames) > 100   # base | refined, 5 s
    sheet = iio.imread(out.with_suffix(".png"))
    assert sheet.shape == (2 * 256, 4 * 512, 3)                      # 8 frames, 2 rows
    tiles = sheet.reshape(2, 256, 4, 512, 3).transpose(0, 2, 1, 3, 4).reshape(8, -1)
    assert len({t.tobytes() for t in tiles}) == 8                    # 8 different moments
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo.mp4", "demo.png"]
    assert "wrote" in capsys.readouterr().out
    # the default identity has the base variant only: that one, not an error
    assert main(["demo", "--out", str(tmp_path / "d.mp4"), "--quiet"]) == 0
    assert iio.imread(tmp_path / "d.mp4", plugin="FFMPEG").shape[1:] == (256, 256, 3)
    assert "variant base" in capsys.readouterr().out


def test_sigterm_stops_a_render_as_ctrl_c_does_leaving_no_partial_file(tmp_path):
    """timeout, systemd and job schedulers stop a command with SIGTERM: the render stops as
    on Ctrl-C, and its half-written video is removed."""
    import signal
    import time

    import numpy as np

    from fg3dgs.media import write_wav

    t = np.arange(30 * 16000) / 16000
    write_wav(tmp_path / "long.wav", 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(7 * t)) / 2)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "fg3dgs", "render", "--identity",
                             "astronaut-demo", "--audio", str(tmp_path / "long.wav"), "--out",
                             str(out / "t.mp4"), "--quiet"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (sum(f.stat().st_size for f in out.iterdir()) == 0 and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.05)                          # until frames are being encoded
    assert proc.poll() is None, "the render ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "fg3dgs render: interrupted" in err
    assert list(out.iterdir()) == []


def test_an_interrupt_inside_a_compiled_function_reads_as_an_interrupt(monkeypatch, capsys,
                                                                       tmp_path):
    from fg3dgs.cli import render as render_cli

    def speech(path):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:      # as CPython wraps it leaving a C function
            raise SystemError("returned a result with an exception set") from exc

    monkeypatch.setattr(render_cli, "AudioInput", speech)
    assert main(["demo", "--out", str(tmp_path / "d.mp4")]) == 130
    assert "fg3dgs demo: interrupted" in capsys.readouterr().err

    def broken(path):
        raise SystemError("a real one")

    monkeypatch.setattr(render_cli, "AudioInput", broken)
    with pytest.raises(SystemError, match="a real one"):
        main(["demo", "--out", str(tmp_path / "d.mp4")])


def test_render_checks_the_audio_before_loading_the_identity(tmp_path, capsys, monkeypatch):
    from fg3dgs.pipeline import TalkingHead

    def refuse(*a, **k):
        raise AssertionError("the identity was loaded before the audio was checked")

    monkeypatch.setattr(TalkingHead, "load", refuse)
    argv = ["render", "--identity", "astronaut-demo", "--audio", str(tmp_path / "no.wav"),
            "--out", str(tmp_path / "o.mp4")]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err and not any(tmp_path.iterdir())
    # ... and before torch is even imported (seconds of start-up)
    code = ("import sys; from fg3dgs.cli import main; rc = main(sys.argv[1:]); "
            "assert rc == 2 and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True)


RENDER = ["render", "--identity", "astronaut-demo", "--audio", "a.wav", "--out", "o.mp4"]


@pytest.mark.parametrize("argv, says", [
    (["demo", "--out", "."], "'.' is a folder; give a file name, e.g. ./out.mp4"),
    (["demo", "--out", "d.png"], "the file is written as MP4"),
    (["demo", "--sheet", "s.jpg"], "give a name ending in .png"),
    (RENDER + ["--size", "7"], "even number of pixels from 64 to 2048, got 7"),
    (RENDER + ["--size", "100000"], "got 100000"),
    (RENDER + ["--batch", "-1"], "argument --batch: at least 1"),
    (RENDER + ["--chunk-ms", "-5"], "argument --chunk-ms: a finite number above 0"),
    (RENDER[:-1] + ["o.png"], "the file is written as MP4"),
    (["speak", "--out", "s.mp3"], "the file is written as WAV"),
    (["speak", "--out", "s.wav", "--sentences", "0"], "argument --sentences: at least 1"),
    (["synth", "--out", "c", "--size", "63"], "argument --size"),
    (["preprocess", "v.mp4", "--out", "d", "--size", "0"], "argument --size"),
    (["train", "d", "--out", "r", "--size", "2050"], "argument --size"),
    (["train-sync", "--out", "t", "--width", "0"], "argument --width"),
    (["train-sync", "--out", "t", "--batch", "1"], "argument --batch: at least 2"),
    (["synth-check", "c", "--json", "."], "is a folder"),
])
def test_bad_arguments_stop_before_any_work(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert says in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option, value", [
    ("--sizes", "0"), ("--seconds", "0"), ("--repeats", "0"), ("--batch", "-1"),
    ("--json", ".")])
def test_bench_arguments_are_checked(option, value, capsys):
    from fg3dgs.bench.__main__ import main as bench

    with pytest.raises(SystemExit) as stop:
        bench(["pipeline", option, value])
    assert stop.value.code == 2 and f"argument {option}" in capsys.readouterr().err


def test_speak_says_how_many_sentences_there_are(capsys, tmp_path):
    assert main(["speak", "--out", str(tmp_path / "s.wav"), "--sentences", "100000"]) == 2
    assert "corpus has" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_gsplat_without_cuda_is_a_clear_error(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("gsplat may work here")
    for argv in (["demo", "--out", str(tmp_path / "d.mp4")],
                 ["render", "--identity", "astronaut-demo", "--audio", "a.wav", "--out",
                  str(tmp_path / "o.mp4")],
                 ["eval", "run", "--data", "ds"]):
        assert main(argv + ["--backend", "gsplat"]) == 2
        err = capsys.readouterr().err
        assert "--backend gsplat is unavailable here: no CUDA device" in err, err
    assert not any(tmp_path.iterdir())


def test_iteration_counts_parse_or_say_the_form():
    from fg3dgs.train import parse_iterations

    assert parse_iterations("1,2,3") == {"static": 1, "deform": 2, "fusion": 3}
    assert parse_iterations("1,2,3,0")["hrpa"] == 0
    for bad in ("1,2", "1,2,3,4,5", "a,b,c", "1,-2,3", ""):
        with pytest.raises(ValueError, match="STATIC,DEFORM,FUSION"):
            parse_iterations(bad)


TRAINING = [["train", "d", "--out", "r"], ["refine", "r", "--data", "d", "--out", "o"],
            ["retarget", "r", "--out", "o"], ["train-sync", "--out", "t"],
            ["train-audio", "--out", "a"]]


def test_training_commands_parse_without_torch():
    # each command's option table is added when it parses (cli.parser.CommandParser)
    code = ("import sys; from fg3dgs.cli import build_parser\n"
            f"for argv in {TRAINING!r}:\n"
            "    build_parser().parse_args(argv)\n"
            "assert 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


class _Called(Exception):
    """A training function's arguments, raised in its place."""


def _trained_with(monkeypatch, argv: list[str], module: str, function: str) -> _Called:
    """What ``fg3dgs ARGV`` calls ``module.function`` with."""
    import importlib

    from fg3dgs.cli import build_parser
    from fg3dgs.cli import train as train_cli

    def called(*args, **kwargs):
        raise _Called(args, kwargs)

    monkeypatch.setattr(importlib.import_module(module), function, called)
    monkeypatch.setattr(train_cli, "resolve_identity", str)
    args = build_parser().parse_args(argv)
    with pytest.raises(_Called) as call:
        args.func(args)
    return call.value


def test_training_options_default_to_their_config_dataclasses(monkeypatch, tmp_path):
    """A bare command trains with its config's defaults: an option's default typed apart
    from its field would drift from it."""
    from fg3dgs.frontend_train_config import FrontendTrainConfig
    from fg3dgs.sync_train_config import SyncTrainConfig
    from fg3dgs.train.config import TrainConfig, preset
    from fg3dgs.train.retarget_config import AudioTuneConfig, RetargetConfig

    (cfg, _), _ = _trained_with(monkeypatch, TRAINING[4], "fg3dgs.frontend.train",
                                "train_frontend").args
    assert cfg == FrontendTrainConfig()
    (cfg, _), _ = _trained_with(monkeypatch, TRAINING[3], "fg3dgs.sync.train",
                                "train_expert").args
    assert cfg == SyncTrainConfig()
    (*_, cfg), kwargs = _trained_with(monkeypatch, TRAINING[2], "fg3dgs.train.retarget",
                                      "retarget").args
    assert cfg == RetargetConfig() and kwargs["tune"] == AudioTuneConfig()
    monkeypatch.chdir(tmp_path)      # no dataset d: training at the preset's size
    (*_, cfg), _ = _trained_with(monkeypatch, TRAINING[0], "fg3dgs.train.trainer",
                                 "train").args
    assert cfg == preset(TrainConfig.preset)


def test_bench_prints_a_table(tmp_path):
    js = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "-m", "fg3dgs.bench", "render", "--backend", "cpu",
                           "--sizes", "32", "--counts", "500", "--repeats", "2", "--warmup",
                           "1", "--json", str(js)], capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| backend | resolution | N |") for line in lines)
    row = next(line for line in lines if line.startswith("| cpu | 32x32 |"))
    assert len(row.split("|")) == 8
    data = json.loads(js.read_text())["rows"][0]
    assert data["forward_ms"] > 0 and data["forward_backward_ms"] > 0


def test_kernels_load_from_cache_in_a_new_process():
    """A second process must not recompile the numba kernels (fast start)."""
    code = ("import torch\n"
            "from fg3dgs.render import rasterize\n"
            "from fg3dgs.render.cpu import kernels, projection_kernels as pk\n"
            "from fg3dgs.scenes import head_scene, frontal_camera\n"
            "s = head_scene(200).requires_grad_(); c = frontal_camera(32)\n"
            "rgb, a, _ = rasterize(s.means, s.quats, s.scales, s.opacities, s.colors,\n"
            "                      c.viewmat, c.K, 32, 32)\n"
            "rgb.sum().backward()\n"
            "fns = [kernels.bin_gaussians, kernels.balance_tiles, kernels.rasterize_fwd,\n"
            "       kernels.rasterize_bwd, kernels.sum_entry_grads, pk.project_fwd, pk.project_bwd]\n"
            "print(sum(sum(f.stats.cache_misses.values()) for f in fns),\n"
            "      sum(sum(f.stats.cache_hits.values()) for f in fns))\n")
    run = [sys.executable, "-c", code]
    subprocess.run(run, capture_output=True, text=True, check=True)        # fills the cache
    misses, hits = map(int, subprocess.run(run, capture_output=True, text=True,
                                           check=True).stdout.split())
    assert misses == 0 and hits == 7


def test_pipeline_bench_models(tmp_path):
    """The pipeline benchmark's speech and its paper-size timing model load and render."""
    from fg3dgs.bench.pipeline import PAPER_COUNTS, paper_size_identity, speech
    from fg3dgs.io_utils import checkpoints_dir
    from fg3dgs.pipeline import TalkingHead
    from fg3dgs.pipeline.audio_input import AudioInput

    with AudioInput(speech(3.0, tmp_path)) as a:
        assert abs(a.seconds - 3.0) < 0.01
    demo = checkpoints_dir() / "identities" / "astronaut-demo"
    head = TalkingHead(paper_size_identity(demo, tmp_path / "paper"))
    assert {r: len(g) for r, g in head.model.gaussians.items()} == PAPER_COUNTS
    assert head.model.cfg.sh_degree == 3 and head.variants == ("base", "refined")
    img = head.still()
    assert img.shape == (256, 256, 3) and img.std() > 5


def test_pipeline_bench_times_the_front_end(tmp_path, capsys):
    """``--models artic`` renders the re-targeted identity, whose features come from the
    speech front-end: its network's time lands in "audio features", and streaming is
    measured for it too."""
    from fg3dgs.bench.__main__ import main as bench

    out = tmp_path / "rows.json"
    assert bench(["pipeline", "--backend", "cpu", "--models", "artic", "--sizes", "64",
                  "--seconds", "0.6", "--repeats", "1", "--stream", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    render = next(r for r in rows if "stream" not in r)
    assert render["model"] == "artic" and render["frames"] == 15
    assert render["ms_per_frame"]["audio features"] > 0
    stream = next(r for r in rows if "stream" in r)
    assert stream["model"] == "artic" and stream["stream"]["frames"] == 15
    assert "| artic | 256x256 | cpu |" in capsys.readouterr().out


def test_interrupts_and_warnings_read_as_one_line(monkeypatch, capsys, tmp_path):
    import warnings

    from fg3dgs.cli import render as render_cli

    python_format = warnings.formatwarning

    def speech(path):
        sys.stderr.write(warnings.formatwarning("the head is shy", UserWarning, "x.py", 1))
        raise KeyboardInterrupt

    # the first call of demo's render (render_cli.COMMANDS holds run_demo itself, so
    # patching the module's name would not reach the parser)
    monkeypatch.setattr(render_cli, "AudioInput", speech)
    assert main(["demo", "--out", str(tmp_path / "d.mp4")]) == 130
    err = capsys.readouterr().err
    assert "fg3dgs: warning: the head is shy\n" in err and "x.py" not in err
    assert "fg3dgs demo: interrupted" in err and "Traceback" not in err
    assert warnings.formatwarning is python_format          # restored for the caller
