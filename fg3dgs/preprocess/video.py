"""Reading portrait videos: probing and streaming frames through ffmpeg.

Frames are decoded by the ffmpeg binary of imageio-ffmpeg, resampled to 25 fps by ffmpeg's
``fps`` filter, optionally cropped and scaled, and streamed one at a time, so memory stays
bounded whatever the clip's length.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import FPS, MediaError, ffmpeg_exe


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool

    @property
    def frames_at_25(self) -> int:
        return int(round(self.duration * FPS))


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, duration and audio presence of a video file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video {str(path)!r} does not exist")
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True)
    err = proc.stderr
    video = re.search(r"Stream #.*Video: .*?(\d{2,5})x(\d{2,5})", err)
    if not video:
        raise MediaError(f"{str(path)!r} has no readable video stream "
                         f"({err.strip().splitlines()[-1] if err.strip() else 'no output'})")
    rate = re.search(r"(\d+(?:\.\d+)?) fps", err) or re.search(r"(\d+(?:\.\d+)?) tbr", err)
    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", err)
    if re.search(r"Input #0, (\w+_pipe|image2),", err):     # ffmpeg's image demuxers
        raise MediaError(f"{str(path)!r} is an image, not a video: preprocessing needs a "
                         "portrait video with speech (fg3dgs synth --photo IMAGE makes a "
                         "synthetic one from a photo)")
    if not dur:
        raise MediaError(f"{str(path)!r}: the duration is unknown; re-encode it with ffmpeg")
    h, m, s = dur.groups()
    return VideoInfo(width=int(video.group(1)), height=int(video.group(2)),
                     fps=float(rate.group(1)) if rate else float("nan"),
                     duration=int(h) * 3600 + int(m) * 60 + float(s),
                     has_audio=bool(re.search(r"Stream #.*Audio:", err)))


def iter_frames(path: str | Path, info: VideoInfo | None = None,
                crop: tuple[int, int, int] | None = None,
                size: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames at 25 fps.

    Args:
        crop: (x0, y0, side) square in source pixels (may extend past the borders,
            which are padded black), or None for the whole frame.
        size: output side in pixels when cropping, else the source size.
    """
    info = info or probe_video(path)
    filters = [f"fps={FPS}"]
    w, h = info.width, info.height
    if crop is not None:
        x0, y0, cw = crop
        ch = cw
        pad_l, pad_t = max(0, -x0), max(0, -y0)
        pad_r, pad_b = max(0, x0 + cw - w), max(0, y0 + ch - h)
        if pad_l or pad_t or pad_r or pad_b:
            filters.append(f"pad={w + pad_l + pad_r}:{h + pad_t + pad_b}:{pad_l}:{pad_t}")
        filters.append(f"crop={cw}:{ch}:{x0 + pad_l}:{y0 + pad_t}")
        w, h = cw, ch
        if size is not None:
            filters.append(f"scale={size}:{size}:flags=area")
            w = h = size
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vf", ",".join(filters),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    nbytes = w * h * 3
    try:
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise MediaError(f"decoding {str(path)!r} failed: {stderr.strip()[-300:]}")
