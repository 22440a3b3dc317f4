"""What the web app does, without the UI: the identities on offer, loaded heads kept warm,
speech checked against the upload limits, renders of both variants into a folder per visitor,
and a short report. ``app.py`` only lays this out in Gradio.

The app's own work folder, ``fg3dgs-app-*``, is made in ``$FG3DGS_APP_TMP`` (default: the
system's temporary folder) and removed when the process ends: at exit, and on SIGTERM or
SIGINT through :func:`exit_on_signals`."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..io_utils import assets_dir
from ..model.io import IdentityError
from ..train import STAGES
from .audio_input import AudioInputError
from .render_options import RenderOptions, RenderResult
from .talking_head import TalkingHead

WORK_PARENT_ENV = "FG3DGS_APP_TMP"     # where the app's work folder goes


@dataclass
class Limits:
    max_seconds: float = 60.0        # speech longer than this is refused
    max_upload_mb: float = 50.0
    max_size: int = 512
    cached_heads: int = 2
    keep_requests: int = 32          # request folders kept on disk (gradio has its copies)


@dataclass
class Choice:
    key: str           # zoo id or run folder
    label: str
    preview: Path | None
    description: str = ""


class Studio:
    """Renders for the app. Thread-safe: loaded heads are shared under a lock."""

    def __init__(self, runs: list[str | Path] = (), limits: Limits = Limits(),
                 workdir: str | Path | None = None):
        self.limits = limits
        self.runs = [Path(r) for r in runs]
        self._owns_workdir = workdir is None
        if workdir is None:             # our own: removed when the server process ends
            parent = os.environ.get(WORK_PARENT_ENV) or None
            if parent:
                Path(parent).mkdir(parents=True, exist_ok=True)
            workdir = tempfile.mkdtemp(prefix="fg3dgs-app-", dir=parent)
            atexit.register(self.close)
        self.workdir = Path(workdir)
        self._heads: OrderedDict[str, TalkingHead] = OrderedDict()
        self._lock = threading.Lock()                  # the loaded heads

    def close(self) -> None:
        """Remove the work folder if this studio made it; a given ``workdir`` stays. Safe to
        call more than once (a signal handler, then atexit)."""
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- identities -----------------------------------------------------------------------
    def choices(self) -> list[Choice]:
        from ..zoo import ZooError, load_zoo, preview

        out = []
        try:
            for e in load_zoo():
                out.append(Choice(e.id, e.title, preview(e), e.description))
        except ZooError:
            pass
        for r in self.runs:
            kind = "export" if (r / "zoo_entry.json").is_file() else "run"
            out.append(Choice(str(r), f"{r} ({kind})", _run_preview(r)))
        return out

    def check_identity(self, key: str) -> str:
        """``key`` if it is one of :meth:`choices`' keys, else IdentityError: a request may
        name only what the server offers (no other folder on disk, no other Hub pull). Reads
        the manifest only, no previews, so it costs nothing per request."""
        from ..zoo import ZooError, load_zoo

        offered = [str(r) for r in self.runs]
        try:
            offered = [e.id for e in load_zoo()] + offered
        except ZooError:
            pass
        if key not in offered:
            raise IdentityError(f"unknown identity {key!r}; this server offers: "
                                f"{', '.join(offered) or 'nothing'}")
        return key

    def _render(self, key: str, *args, **kw) -> RenderResult:
        """``TalkingHead.render`` on a shared head: rendering leaves the head's state as it
        was (the variant is an argument), so requests run in parallel, on one head too."""
        return self.head(key).render(*args, **kw)

    def warm_up(self, key: str) -> threading.Thread:
        """Load ``key`` and render one still in the background, so that the first request
        finds the head loaded and the CPU rasterizer's kernels compiled (about 15 s on a
        fresh install; numba caches them on disk afterwards). Not a daemon thread: a process
        that exits while numba compiles in it aborts (C++ terminate), so exit waits for the
        one still."""
        def run():
            try:
                self.head(key).still()
            except Exception:       # noqa: BLE001 - the first request reports any problem
                pass
        thread = threading.Thread(target=run, name="fg3dgs-warm-up")
        thread.start()
        return thread

    def head(self, key: str) -> TalkingHead:
        with self._lock:
            if key in self._heads:
                self._heads.move_to_end(key)
                return self._heads[key]
        head = TalkingHead.load(key)
        with self._lock:
            self._heads[key] = head
            while len(self._heads) > self.limits.cached_heads:
                self._heads.popitem(last=False)
        return head

    # -- rendering ------------------------------------------------------------------------
    def check_upload(self, audio: str | Path | None) -> Path:
        if audio is None or str(audio) == "":
            raise AudioInputError("no audio given: upload a speech file, record with the "
                                  "microphone or pick an example")
        p = Path(audio)
        if p.is_file() and p.stat().st_size > self.limits.max_upload_mb * 1e6:
            raise AudioInputError(f"{p.name!r} is {p.stat().st_size / 1e6:.0f} MB; the limit "
                                  f"here is {self.limits.max_upload_mb:g} MB")
        return p

    def _options(self, variant, pose, blink, size, scores, pose_file=None,
                 pose_scale=1.0) -> RenderOptions:
        try:
            size = int(size) if size else None
        except (TypeError, ValueError):
            raise ValueError(f"size must be a whole number of pixels, got {size!r}") from None
        if size is not None and size > self.limits.max_size:
            raise ValueError(f"size {size} is over this server's limit of "
                             f"{self.limits.max_size}")
        return RenderOptions(variant=variant, size=size, pose=self._pose(pose, pose_file),
                             pose_scale=float(pose_scale), blink=blink,
                             max_seconds=self.limits.max_seconds, sync_scores=scores)

    def _pose(self, pose: str, pose_file) -> str:
        """"replay" / "static", or for "track" the uploaded pose track's path, checked (a
        request names a choice, never a path on the server)."""
        from ..pose_track import load_pose_track

        if pose in ("replay", "static"):
            return pose
        if pose != "track":
            raise ValueError(f"pose must be replay, static or track, got {pose!r}")
        if not pose_file:
            raise ValueError("pose 'track' needs a pose track: upload a .npz with R [frames, "
                             "3, 3] and t [frames, 3] (e.g. a dataset's cameras.npz), or "
                             "choose replay or static")
        p = Path(pose_file)
        if p.is_file() and p.stat().st_size > self.limits.max_upload_mb * 1e6:
            raise ValueError(f"the pose track is {p.stat().st_size / 1e6:.0f} MB; the limit "
                             f"here is {self.limits.max_upload_mb:g} MB")
        load_pose_track(p)              # a bad track is refused before any rendering
        return str(p)

    def _folder(self) -> Path:
        """A new folder for one request's videos; the oldest beyond ``keep_requests`` go."""
        old = sorted(self.workdir.glob("*-*"), key=lambda p: p.stat().st_mtime)
        for p in old[:max(0, len(old) - self.limits.keep_requests + 1)]:
            shutil.rmtree(p, ignore_errors=True)
        d = self.workdir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def _variant(self, key: str, variant: str) -> tuple[str, str]:
        """(the variant ``key`` can render, a note when that is not the one asked for): an
        identity without the HRPA refinement (not trained, or not kept) has the base branch
        only."""
        if variant == "base" or "refined" in self.head(key).variants:
            return variant, ""
        return "base", (f"{Path(key).name} has no lip-sync refinement: the base variant "
                        "is shown.")

    def _rendered(self, folder: Path, key: str, note: str, *args) -> RenderResult:
        """:meth:`_render` into a new request folder, which a failure removes; ``note`` (if
        any) goes into the result's notes."""
        try:
            res = self._render(key, *args)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        res.notes += [note] if note else []
        return res

    def speak(self, identity: str, audio, variant: str = "both", pose: str = "replay",
              blink: str = "replay", size=None, progress=None, pose_file=None,
              pose_scale: float = 1.0) -> tuple[dict, RenderResult]:
        """Render ``audio`` with the identity; returns (paths: "base" / "refined" / "both"
        where rendered, the render result, with ``notes`` when the variant fell back).
        ``pose``: replay, static, or "track" for the uploaded ``pose_file``."""
        self.check_identity(identity)
        audio = self.check_upload(audio)
        variant, note = self._variant(identity, variant)
        opts = self._options(variant, pose, blink, size, True, pose_file, pose_scale)
        folder = self._folder()
        names = ["base", "refined"] if variant == "both" else [variant]
        outputs = {v: folder / f"{v}.mp4" for v in names}
        if variant == "both":
            outputs["both"] = folder / "side_by_side.mp4"
        return outputs, self._rendered(folder, identity, note, audio, outputs, opts, progress)

    def compare(self, identities: tuple[str, str], audio, variant: str = "refined",
                pose: str = "replay", blink: str = "replay", size=None,
                progress=None, pose_file=None,
                pose_scale: float = 1.0) -> list[tuple[Path, RenderResult]]:
        """The same speech through two identities (or runs): [(video, result)] * 2."""
        for key in identities:
            self.check_identity(key)
        audio = self.check_upload(audio)
        folder = self._folder()
        out = []
        for k, key in enumerate(identities):
            v, note = self._variant(key, variant)
            opts = self._options(v, pose, blink, size, False, pose_file, pose_scale)

            def sub(frac, stage, k=k):
                if progress:
                    progress((k + frac) / 2, f"{Path(key).name}: {stage}")
            path = folder / f"{k}_{Path(key).name}.mp4"
            out.append((path, self._rendered(folder, key, note, audio, path, opts, sub)))
        return out


def exit_on_signals(cleanup: Callable[[], None]) -> None:
    """On SIGTERM (how a Hugging Face Space, systemd or docker stop a server) and SIGINT
    (Ctrl-C) alike: ``cleanup``, one line on stderr, and exit with status 0. Python's default
    SIGTERM ends the process without running atexit, so the cleanup runs here first; the
    exit is SystemExit, so atexit and ``finally`` blocks still run after it. Call from the
    main thread."""
    def handler(signum, frame):
        cleanup()
        try:
            print(f"\n{signal.Signals(signum).name}: stopping.",
                  file=sys.stderr, flush=True)
        except RuntimeError:        # the signal came in the middle of another write
            pass
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. SIGINT of a background job
            signal.signal(sig, handler)


def report(res: RenderResult) -> str:
    """A markdown summary of a render."""
    lines = [f"*{n}*" for n in res.notes]
    lines += [f"**{res.frames} frames** ({res.audio_seconds:.1f} s of speech) at "
              f"{res.size}x{res.size}, rendered in {res.render_seconds:.1f} s: "
              f"**{res.fps:.1f} frames/s**, backend `{res.backend}`.", ""]
    if res.sync:
        lines += ["| variant | expert-C | expert-D | offset (frames) |", "|---|---|---|---|"]
        for v, s in res.sync.items():
            if "unavailable" in s:
                lines.append(f"| {v} | unavailable: {s['unavailable']} | | |")
            else:
                lines.append(f"| {v} | {s['expert-C']:.3f} | {s['expert-D']:.3f} | "
                             f"{s['expert-offset']:+d} |")
        lines += ["", "expert-C / expert-D: SyncNet's protocol scored with fg3dgs's own "
                  "lip-sync expert (higher C, lower D = better sync); not LSE-C / LSE-D."]
    return "\n".join(lines)


def _run_preview(run: Path) -> Path | None:
    """A run's picture: an export's preview.png, else its latest training preview."""
    for name in ("preview.png", *(f"preview_{s}.png" for s in reversed(STAGES))):
        if (run / name).is_file():
            return run / name
    return None


def examples() -> list[tuple[Path, str]]:
    """(speech file, transcript) of the example clips in ``assets/examples``."""
    folder = assets_dir() / "examples"
    index = folder / "examples.json"
    if not index.is_file():
        return []
    clips = json.loads(index.read_text())["clips"]
    return [(folder / c["file"], c["text"]) for c in clips if (folder / c["file"]).is_file()]
