"""``python -m fg3dgs.bench lookahead IDENTITY SPEECH...``: what a shorter streaming look-ahead
costs the mouth.

Each speech file is streamed through :class:`~fg3dgs.pipeline.streaming.SpeechStream` in
20 ms chunks, exactly (each frame once all the audio it depends on is here: the offline
render) and with each ``--lookahead`` (a frame made once the audio reaches that far past its
end, the rest taken as silence). Per look-ahead: the median wait from a frame's end to its
making, the rendered inner-lip opening's Pearson r against the exact render's and the ratio
of their standard deviations (the face observer on both), and the PSNR of a box around the
mouth (from the exact render's lip landmarks) against the exact render.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ..io_utils import atomic_output
from .machine import describe_machine

CHUNK = 320              # 20 ms


def stream_frames(head, audio: np.ndarray, lookahead_ms: int | None
                  ) -> tuple[np.ndarray, float]:
    """(frames [F, S, S, 3] uint8 of the base variant, median ms from a frame's end to the
    chunk that made it)."""
    from ..pipeline import RenderOptions
    from ..pipeline.streaming import SpeechStream

    s = SpeechStream(head, RenderOptions(variant="base"), lookahead_ms)
    out, waits = [], []
    for k in range(0, len(audio), CHUNK):
        for batch in s.push(audio[k:k + CHUNK]):
            waits += [(k + CHUNK) / 16 - (f + 1) * 40 for f in range(len(out), len(out)
                                                                     + len(batch))]
            out += list(batch)
    out += [f for batch in s.finish() for f in batch]
    return np.stack(out), float(np.median(waits))


def mouth_box(lm: np.ndarray, size: int) -> tuple[slice, slice]:
    """A box around the lips of every frame (face-mesh landmarks [F, 478, 2]), with a margin
    of half the mouth's width."""
    lips = lm[:, [0, 13, 14, 17, 61, 291]].reshape(-1, 2)
    lips = lips[np.isfinite(lips).all(1)]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    m = (x1 - x0) / 2
    y0, y1, x0, x1 = (int(np.clip(v, 0, size)) for v in (y0 - m, y1 + m, x0 - m, x1 + m))
    return slice(y0, y1), slice(x0, x1)


def run(args: argparse.Namespace) -> int:
    from ..face_observer import lip_opening, track_landmarks
    from ..media import read_audio
    from ..pipeline import TalkingHead

    head = TalkingHead.load(args.identity, device="cpu")
    rows = []
    for path in args.speech:
        audio = read_audio(path)
        exact, wait = stream_frames(head, audio, None)
        lm = track_landmarks(exact)
        ref, box = lip_opening(lm), mouth_box(lm, exact.shape[1])
        rows.append({"speech": str(path), "lookahead_ms": None, "wait_ms": wait})
        for la in args.lookahead:
            got, wait = stream_frames(head, audio, la)
            op = lip_opening(track_landmarks(got))
            ok = np.isfinite(op) & np.isfinite(ref)
            mse = ((got[:, box[0], box[1]].astype(float) - exact[:, box[0], box[1]]) ** 2
                   ).mean()
            rows.append({"speech": str(path), "lookahead_ms": la, "wait_ms": wait,
                         "opening_r": round(float(np.corrcoef(op[ok], ref[ok])[0, 1]), 4),
                         "std_ratio": round(float(np.std(op[ok]) / np.std(ref[ok])), 3),
                         "mouth_psnr_db": round(float(10 * np.log10(255 ** 2 /
                                                                    max(mse, 1e-9))), 1)})
    print(f"# machine: {describe_machine()}; identity {args.identity}")
    print("| speech | look-ahead ms | wait ms (median) | opening r vs exact | std ratio | "
          "mouth PSNR vs exact dB |\n|---|---|---|---|---|---|")
    for r in rows:
        la = "exact" if r["lookahead_ms"] is None else r["lookahead_ms"]
        print(f"| {r['speech']} | {la} | {r['wait_ms']:.0f} | {r.get('opening_r', 1.0)} | "
              f"{r.get('std_ratio', 1.0)} | {r.get('mouth_psnr_db', 'inf')} |")
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps({"machine": describe_machine(),
                                       "identity": args.identity, "rows": rows}, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction, output_file) -> None:
    p = sub.add_parser("lookahead", help="what a shorter streaming look-ahead costs the mouth")
    p.add_argument("identity", help="run folder or zoo id")
    p.add_argument("speech", nargs="+", help="speech files")
    p.add_argument("--lookahead", type=int, nargs="+", default=[0, 80, 160, 240],
                   metavar="MS", help="look-aheads to try, ms past a frame's end")
    p.add_argument("--json", type=output_file(".json"), help="also write the rows here")
    p.set_defaults(func=run)
