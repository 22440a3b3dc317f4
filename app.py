"""fg3dgs web app: pick an identity, give speech, watch the talking head without and with the
lip-sync refinement side by side; a second tab compares two identities or runs; a third
speaks along with the microphone, live.

UI only: the work is done by fg3dgs.pipeline (Studio -> TalkingHead; live calls), the Live
tab's page by fg3dgs.live_page.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--runs RUN ...]

Renders, and gradio's copies of the uploaded speech (unless $GRADIO_TEMP_DIR names another
place), go to a work folder, fg3dgs-app-* in $FG3DGS_APP_TMP (default: the system's temporary
folder). Its path is printed at startup, and it is removed when the app stops: Ctrl-C (SIGINT),
SIGTERM (how a Hugging Face Space or systemd stops it) or a normal exit.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from fg3dgs.arguments import positive, whole_number
from fg3dgs.cli.live import add_live_limits, live_limits
from fg3dgs.live_page import LivePage
from fg3dgs.media import MediaError
from fg3dgs.model.io import IdentityError
from fg3dgs.model.replay import ReplayError
from fg3dgs.pipeline import AudioInputError
from fg3dgs.pipeline.live import LiveHall, LiveLimits
from fg3dgs.pipeline.studio import Limits, Studio, examples, exit_on_signals, report
from fg3dgs.zoo import ZooError

USER_ERRORS = (AudioInputError, MediaError, IdentityError, ReplayError, ZooError, ValueError)
SIZES = ["256", "384", "512"]


def _refused(message: object) -> gr.Error:
    """The message for the page or API client; the server log gets one line, no traceback."""
    message = str(message)
    print("request refused: " + " ".join(message.split()), flush=True)
    return gr.Error(message, print_exception=False)


def _only_choices(*components: gr.Dropdown | gr.Radio) -> None:
    """Refuse a value outside a Dropdown's or Radio's choices (an API call can send any)
    with a message that names the input, and one log line: gradio's own check in
    ``preprocess`` raises a gr.Error that prints a traceback in the server log."""
    for c in components:
        def preprocess(payload, c=c, gradio_preprocess=c.preprocess):
            allowed = [v for _, v in c.choices]
            if payload is not None and payload not in allowed:
                raise _refused(f"{c.label} {payload!r} is not on offer here; choose one of: "
                               f"{', '.join(map(str, allowed))}")
            return gradio_preprocess(payload)
        c.preprocess = preprocess


def build(studio: Studio, live: LiveLimits = LiveLimits()) -> gr.Blocks:
    choices = studio.choices()
    by_key = {c.key: c for c in choices}
    options = [(c.label, c.key) for c in choices]
    first = choices[0].key if choices else None

    def show_identity(key):
        c = by_key.get(key)
        if c is None:
            return None, ""
        return (str(c.preview) if c.preview else None), c.description

    def generate(identity, audio, variant, pose, blink, size, pose_file=None, pose_scale=1.0,
                 progress=gr.Progress()):
        if not identity:
            raise _refused("pick an identity first")
        try:
            paths, res = studio.speak(identity, audio, variant, pose, blink, size,
                                      progress=lambda f, s: progress(f, desc=s),
                                      pose_file=pose_file, pose_scale=pose_scale)
        except USER_ERRORS as exc:
            raise _refused(exc) from None
        combined = paths.get("both") or next(iter(paths.values()))
        return (str(paths["base"]) if "base" in paths else None,
                str(paths["refined"]) if "refined" in paths else None,
                str(combined), report(res))

    def compare(a, b, audio, variant, pose, blink, size, progress=gr.Progress()):
        if not a or not b:
            raise _refused("pick two identities or runs")
        try:
            (pa, ra), (pb, rb) = studio.compare((a, b), audio, variant, pose, blink, size,
                                                progress=lambda f, s: progress(f, desc=s))
        except USER_ERRORS as exc:
            raise _refused(exc) from None
        return str(pa), str(pb), f"**A** {report(ra)}\n\n**B** {report(rb)}"

    # gradio's copies of uploads and results: those older than an hour go, hourly
    with gr.Blocks(title="fg3dgs: talking heads", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# fg3dgs: audio-driven 3D Gaussian talking heads\n"
                    "FG-3DGS (frequency-aware deformation of face, eye and mouth Gaussians). "
                    "Left: the base model. Right: after the HRPA lip-sync refinement.")
        with gr.Tab("Speak"):
            with gr.Row():
                with gr.Column(scale=1):
                    identity = gr.Dropdown(options, value=first, label="Identity")
                    preview = gr.Image(label="Preview", interactive=False, height=200)
                    about = gr.Markdown(label="About")  # labels name API values
                with gr.Column(scale=2):
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                     label="Speech (wav, mp3, flac, ogg, m4a; up to "
                                     f"{studio.limits.max_seconds:g} s)")
                    transcript = gr.Textbox(label="Transcript (of the example)",
                                            interactive=False)
                    ex = examples()
                    if ex:
                        gr.Examples([[str(p), t] for p, t in ex], [audio, transcript],
                                    label="Examples")
                    with gr.Row():
                        variant = gr.Radio(["both", "base", "refined"], value="both",
                                           label="Variant")
                        pose = gr.Radio(["replay", "static", "track"], value="replay",
                                        label="Pose")
                        blink = gr.Radio(["replay", "auto"], value="replay", label="Blink")
                        size = gr.Dropdown(SIZES, value="256", label="Size")
                    with gr.Row():
                        pose_file = gr.File(label="Pose track (.npz: R [frames, 3, 3], t "
                                            "[frames, 3], e.g. a dataset's cameras.npz)",
                                            file_types=[".npz"], type="filepath")
                        pose_scale = gr.Slider(0, 2, value=1, step=0.1,
                                               label="Head motion (0 still, 1 as is)")
                    go = gr.Button("Generate", variant="primary")
            with gr.Row():
                base_video = gr.Video(label="without sync refinement (base)",
                                      elem_id="video-base")
                refined_video = gr.Video(label="with sync refinement (HRPA)",
                                         elem_id="video-refined")
            combined = gr.File(label="Download (side by side)")
            summary = gr.Markdown(label="Report", elem_id="report")
            identity.change(show_identity, identity, [preview, about],
                            api_visibility="undocumented")
            demo.load(show_identity, identity, [preview, about], api_visibility="undocumented")
            go.click(generate, [identity, audio, variant, pose, blink, size, pose_file,
                                pose_scale],
                     [base_video, refined_video, combined, summary], api_name="generate")
        with gr.Tab("Compare"):
            gr.Markdown("The same speech through two identities or runs (for example a full "
                        "model and an ablation; start the app with `--runs RUN ...` to list "
                        "runs).")
            with gr.Row():
                id_a = gr.Dropdown(options, value=first, label="A")
                id_b = gr.Dropdown(options, value=options[-1][1] if options else None,
                                   label="B")
            c_audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                               label="Speech")
            with gr.Row():
                c_variant = gr.Radio(["refined", "base"], value="refined", label="Variant")
                c_pose = gr.Radio(["replay", "static"], value="replay", label="Pose")
                c_blink = gr.Radio(["replay", "auto"], value="replay", label="Blink")
                c_size = gr.Dropdown(SIZES, value="256", label="Size")
            c_go = gr.Button("Compare", variant="primary")
            with gr.Row():
                c_va = gr.Video(label="A")
                c_vb = gr.Video(label="B")
            c_report = gr.Markdown(label="Report")
            c_go.click(compare, [id_a, id_b, c_audio, c_variant, c_pose, c_blink, c_size],
                       [c_va, c_vb, c_report], api_name="compare")
        with gr.Tab("Live"):
            page = LivePage(LiveHall(studio.head, live), options, studio.check_identity)
            l_identity, l_variant = page.layout(first)
        _only_choices(identity, variant, pose, blink, size,
                      id_a, id_b, c_variant, c_pose, c_blink, c_size, l_identity, l_variant)
    return demo


def parser() -> argparse.ArgumentParser:
    # the docstring's first paragraph whole (its first line alone stops mid-sentence) and its
    # last, on the work folder
    paragraphs = [" ".join(p.split()) for p in __doc__.split("\n\n")]
    ap = argparse.ArgumentParser(description=paragraphs[0], epilog=paragraphs[-1])
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                    help="0.0.0.0 to serve the network (default 127.0.0.1 or "
                    "$GRADIO_SERVER_NAME, which a Space sets)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT",
                                                                    7860)),
                    help="port to serve on (default 7860 or $GRADIO_SERVER_PORT)")
    ap.add_argument("--share", action="store_true", help="a public gradio.live link")
    ap.add_argument("--runs", nargs="*", default=[], help="run folders to offer beside "
                    "the zoo (e.g. a full model and its ablations)")
    ap.add_argument("--concurrency", type=whole_number(1), default=1,
                    help="renders at a time (default 1)")
    ap.add_argument("--max-seconds", type=positive, default=60.0,
                    help="longest uploaded speech, in seconds (default 60; the Live tab's "
                    "longest call is --live-max)")
    add_live_limits(ap)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    limits = Limits(max_seconds=args.max_seconds)
    studio = Studio(args.runs, limits)
    exit_on_signals(studio.close)   # Python's default SIGTERM would leave the folder behind
    if not os.environ.get("GRADIO_TEMP_DIR"):   # users' recordings go when the app stops
        os.environ["GRADIO_TEMP_DIR"] = str(studio.workdir / "gradio")
    print(f"* Work folder: {studio.workdir} (removed when the app stops)", flush=True)
    demo = build(studio, live_limits(args))
    choices = studio.choices()
    if choices:
        studio.warm_up(choices[0].key)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=32)
    # quiet: gradio's hint names `share=True` in `launch()`; here it is --share
    _, local_url, share_url = demo.launch(
        server_name=args.host, server_port=args.port, share=args.share,
        max_file_size=f"{limits.max_upload_mb:g}mb", quiet=True, prevent_thread_lock=True)
    print(f"* Running on local URL:  {local_url}", flush=True)
    if share_url is None and not os.environ.get("SPACE_ID"):   # a Space cannot share
        print("* To create a public link, start the app with --share.", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
